"""Performance report: stages, batching, the recogniser and many sessions on one engine.

    python -m streaming.benchmark [--out docs/performance] [--sessions 1,6,16,32] [--seconds 8] [--quick] [--ray]

Measures on this machine, and writes ``OUT.md`` and ``OUT.json`` naming it (CPU, cores,
GPU if any):

1. per-stage latency of one live window at batch 1 (face mesh per frame, face encoder,
   audio features, text features, unimodal stack + fusion), p50 / p95;
2. fusion at batch 1 on one CPU thread, torch against onnxruntime;
3. batched throughput against batch size: the fusion (torch, onnxruntime), the face
   encoder, MiniLM, and a whole ``predict_many``;
4. the recogniser (faster-whisper tiny.en, CPU int8): one buffer decoded by N sessions at
   once, with Whisper's 30 s encoder and one sized to the speech, on a thread each or in
   one batch (``streaming.whisper_batch``);
5. concurrency in-process: N simulated sessions, each doing a live window's model work
   once per hop (1 s) at real-time pace, through the ``InferenceEngine`` (batched across
   sessions), without it (each session calls the model) and, with ``--ray``, through a
   local Ray Serve deployment; window latency p50 / p95 from
   the moment the window was due, and the largest N that keeps real time (p95 under the hop);
6. CPU time and resident memory per simulated session.

It measures no GPU figure: the GPU rows say unmeasured. On a GPU machine that has torch
alone, ``python -m streaming.torch_throughput --device cuda`` measures the encoders' and
the fusion's batched throughput. Input: real FER-2013 faces and espeak-ng speech
(``streaming.democlip``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np

from streaming.bench import machine

HOP_S = 1.0
SENTENCES = [
    "i really loved this movie, the acting was wonderful",
    "this is the worst service i have ever had",
    "the meeting is at three in the afternoon",
    "honestly i am not sure how i feel about it",
]


def _pct(xs, q) -> float:
    return round(float(np.percentile(xs, q)), 2) if len(xs) else float("nan")


def _timed(fn, n: int, warm: int = 2) -> list[float]:
    for _ in range(warm):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t0))
    return out


def gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


class Inputs:
    """A live window's raw inputs: frames with real faces, 3 s of speech, a transcript."""

    def __init__(self, model):
        import cv2

        from models.features.vision import FaceAnalyzer, fer_image_to_frame
        from streaming.democlip import pick_faces, speak

        faces = pick_faces(["happy", "sad", "neutral"])
        self.frames = [fer_image_to_frame(cv2.resize(f, (160, 160))) for f in faces]
        fa = FaceAnalyzer()
        self.crops = [fa(fr).crop for fr in self.frames]
        fa.close()
        speech = np.concatenate([speak(s) for s in SENTENCES[:2]])
        self.audio = np.resize(speech, 3 * 16000).astype(np.float32)
        self.speech = speech
        self.model = model

    def window(self, i: int = 0):
        from models.types import WindowFeatures

        m = self.model
        crops = [self.crops[(i + k) % len(self.crops)] for k in range(15)]
        return WindowFeatures(
            text=m.text_features(SENTENCES[i % len(SENTENCES)]),
            audio=m.audio_features(self.audio),
            vision=m.face_features(crops),
        )


def _new_texts(model, texts: list[str]):
    """MiniLM on ``texts`` as if never seen: the model's text cache emptied first."""
    model._text_cache.clear()
    return model.text_features_many(texts)


def stages(model, inp: Inputs, n: int) -> dict:
    from models.features.vision import FaceAnalyzer

    fa = FaceAnalyzer()
    w = inp.window()
    out = {
        "face mesh, per frame": _timed(lambda: fa(inp.frames[0]), n * 5),
        "face encoder, per frame (on arrival)": _timed(lambda: model.face_frames(np.stack(inp.crops[:1])), n * 5),
        "audio features, 3 s": _timed(lambda: model.audio_features(inp.audio), n),
        "text features (a new transcript)": _timed(lambda: _new_texts(model, SENTENCES[:1]), n),
        "stack + fusion (predict)": _timed(lambda: model.predict(w), n),
    }
    fa.close()
    return {k: {"p50": _pct(v, 50), "p95": _pct(v, 95)} for k, v in out.items()}


def fusion_inputs(model, inp: Inputs, batch: int):
    from models.types import MODALITIES
    from models.unimodal import stack_batch

    w = inp.window()
    b = stack_batch(*([w.get(m)] * batch for m in MODALITIES))
    return model.stack(b).fusion


def batching(torch_model, onnx_model, inp: Inputs, sizes: list[int], n: int) -> dict:
    import torch

    rows = {}
    for bs in sizes:
        with torch.no_grad():
            fi = fusion_inputs(onnx_model, inp, bs)
            t = _pct(_timed(lambda fi=fi: torch_model._fusion(fi), n), 50)
            o = _pct(_timed(lambda fi=fi: onnx_model._fusion(fi), n), 50)
        crops = np.stack([inp.crops[0]] * bs)
        ft = _pct(_timed(lambda crops=crops: torch_model.face_frames(crops), max(3, n // 4)), 50)
        f = _pct(_timed(lambda crops=crops: onnx_model.face_frames(crops), max(3, n // 4)), 50)
        texts = [SENTENCES[i % len(SENTENCES)] for i in range(bs)]
        x = _pct(_timed(lambda texts=texts: _new_texts(onnx_model, texts), max(3, n // 4)), 50)
        ws = [inp.window(i) for i in range(min(bs, 4))] * (bs // min(bs, 4) + 1)
        ws = ws[:bs]
        p = _pct(_timed(lambda ws=ws: onnx_model.predict_many(ws), max(3, n // 4)), 50)
        rows[bs] = {
            "fusion torch": round(1000 * bs / t),
            "fusion onnxruntime": round(1000 * bs / o),
            "face encoder torch": round(1000 * bs / ft),
            "face encoder onnxruntime": round(1000 * bs / f),
            "MiniLM text": round(1000 * bs / x),
            "predict_many (onnx stack + fusion)": round(1000 * bs / p),
        }
    return rows


def recogniser(inp: Inputs, sessions: list[int], repeats: int = 3) -> list[dict]:
    """One decode of the same speech buffer by ``n`` sessions at once, four ways: Whisper's
    30 s encoder ("full", as faster-whisper's transcribe) or one sized to the speech ("fit");
    each session decoding on its own thread on a shared one-thread model ("threads", the
    app without the engine) or all in one batch on a model using every core ("batched", the
    embedded engine's shared recogniser)."""
    from streaming.asr import StreamingASR
    from streaming.whisper_batch import WhisperDecoder

    audio = inp.speech
    secs = len(audio) / 16000
    models = {"threads": StreamingASR(threads=1).model, "batched": StreamingASR(threads=max(1, (os.cpu_count() or 1) // 2)).model}
    rows = []
    for context in ("full", "fit"):
        for way, whisper in models.items():
            dec = WhisperDecoder(whisper, context=context)
            dec.decode(audio)  # warm
            for n in sessions:
                walls = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    if way == "batched":
                        dec.decode_many([(audio, None)] * n)
                    else:
                        th = [threading.Thread(target=dec.decode, args=(audio,)) for _ in range(n)]
                        for t in th:
                            t.start()
                        for t in th:
                            t.join()
                    walls.append(time.perf_counter() - t0)
                wall = float(np.median(walls))
                rows.append(
                    {
                        "context": context,
                        "way": way,
                        "sessions": n,
                        "audio_s": round(secs, 2),
                        "wall_s": round(wall, 3),
                        "rtf_per_session": round(wall / secs, 3),
                        "speech_s_per_s": round(n * secs / wall, 2),
                    }
                )
    return rows


def concurrency(model, inp: Inputs, n: int, seconds: float, engine: str, ray_handle=None) -> dict:
    """N sessions at real-time pace: each, once per hop, encodes its 5 new face crops, reads
    3 s of audio and the transcript, and predicts; latency from the moment the window was due."""
    from models.engine import InferenceEngine

    eng = InferenceEngine(model) if engine == "batched" else None
    windows = [inp.window(i) for i in range(4)]
    lat: list[float] = []
    lock = threading.Lock()
    t_start = time.perf_counter() + 0.2
    cpu0 = time.process_time()

    def session(i):
        if engine == "ray":
            from models.serve_ray import ray_client

            m = ray_client(ray_handle, model)
        else:
            m = eng.client() if eng else model
        rng = np.random.default_rng(i)
        k = 0
        offset = rng.uniform(0, HOP_S)  # sessions started at different moments
        while True:
            due = t_start + offset + k * HOP_S
            if due - t_start > seconds:
                return
            time.sleep(max(0.0, due - time.perf_counter()))
            m.face_frames(np.stack(inp.crops[:1] * 5))
            m.text_features(SENTENCES[(i + k) % len(SENTENCES)])
            m.audio_features(inp.audio)
            m.predict(windows[(i + k) % len(windows)])
            with lock:
                lat.append(1000 * (time.perf_counter() - due))
            k += 1

    th = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(n)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    cpu = time.process_time() - cpu0
    out = {
        "sessions": n,
        "windows": len(lat),
        "p50_ms": _pct(lat, 50),
        "p95_ms": _pct(lat, 95),
        "real_time": bool(lat) and _pct(lat, 95) < 1000 * HOP_S,
        "cpu_s_per_session_s": round(cpu / (n * seconds), 3),
    }
    if eng:
        sizes = eng.predict.sizes
        out["fusion_batch_mean"] = round(sum(k * v for k, v in sizes.items()) / max(1, sum(sizes.values())), 2)
        eng.close()
    return out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write(res: dict, out: Path) -> None:
    g = res["gpu"] or "none"
    lines = [
        "# Performance",
        "",
        f"Written by `python -m streaming.benchmark` on {res['machine']}, GPU: {g}, {res['date']}. "
        "Every figure below was measured on that machine; GPU rows say unmeasured where no GPU was there.",
        "",
        "## One live window, stage by stage (batch 1, one thread)",
        "",
        "The face mesh and the face encoder run on each frame as it arrives; a window's own work is "
        "the audio features, the text features (only for a transcript not seen before) and the stack + fusion.",
        "",
        "| stage | p50 ms | p95 ms |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {k} | {v['p50']} | {v['p95']} |" for k, v in res["stages"].items()]
    st = res["stages"]
    one = next(r for r in res["recogniser"] if r["context"] == "fit" and r["way"] == "threads" and r["sessions"] == 1)
    per_s = {
        "face mesh (5 frames/s)": 5 * st["face mesh, per frame"]["p50"],
        "face encoder (5 crops/s)": 5 * st["face encoder, per frame (on arrival)"]["p50"],
        "audio features (a 3 s window/s)": st["audio features, 3 s"]["p50"],
        "text features": st["text features (a new transcript)"]["p50"],
        "stack + fusion": st["stack + fusion (predict)"]["p50"],
        f"recogniser (a decode of a {one['audio_s']} s buffer/s)": round(1000 * one["wall_s"], 1),
    }
    lines += ["", "CPU milliseconds per second of one live session, from the figures above (where the time goes):", ""]
    lines += ["| stage | ms per s |", "| --- | --- |"]
    lines += [f"| {k} | {v:.1f} |" for k, v in sorted(per_s.items(), key=lambda kv: -kv[1])]
    lines += [f"| total | {sum(per_s.values()):.1f} |"]
    streamed = Path("docs/asr-context.json")
    if streamed.is_file():  # what the recogniser costs streaming real speech, its pause rules on
        rows = {r["config"]: r for r in json.loads(streamed.read_text()).get("summary", [])}
        if "pauses" in rows:
            lines += [
                "",
                "The recogniser row is one decode of the whole buffer every second. Streaming speech as live, with "
                "its pause rules (words committed at a pause, the buffer cut there, silence not decoded), it spent "
                f"{1000 * rows['pauses']['cpu_s_per_audio_s']:.0f} ms of CPU per second of audio on the evaluation's "
                f"recordings (one step a second; {1000 * rows['fit']['cpu_s_per_audio_s']:.0f} ms without the pause "
                "rules; docs/asr-context.md).",
            ]
    f1 = res["fusion_batch1_ms"]
    lines += [
        "",
        "## Fusion at batch 1, one CPU thread",
        "",
        f"torch {f1['torch']} ms, onnxruntime {f1['onnxruntime']} ms (p50; target at most 1 ms on the reference Xeon).",
        "",
        "## Batched throughput (items per second, CPU)",
        "",
    ]
    cols = list(next(iter(res["batching"].values())))
    lines += ["| batch | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
    lines += [f"| {bs} | " + " | ".join(str(r[c]) for c in cols) + " |" for bs, r in res["batching"].items()]
    lines += [
        "",
        "GPU (onnxruntime CUDA / TensorRT, torch CUDA): unmeasured"
        + ("" if res["gpu"] else " (no GPU on this machine)")
        + "; on a GPU machine with torch alone, `python -m streaming.torch_throughput --device cuda` measures torch's.",
        "",
        "## Recogniser (faster-whisper tiny.en, CPU int8, one loaded model shared)",
        "",
        "One decode of the same buffer by N sessions at once. Context: full, Whisper's 30 s encoder "
        "(what faster-whisper's transcribe runs); fit, the encoder on the speech plus 2 s, at least 15 s "
        "(`streaming.whisper_batch`; its cost in words: docs/asr-context.md). Way: threads, each session "
        "on its own thread (one-thread model); batched, one batch on a model using the cores "
        "(the embedded engine's shared recogniser).",
        "",
        "| context | way | sessions | audio s | wall s | real-time factor per session | seconds of speech per s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['context']} | {r['way']} | {r['sessions']} | {r['audio_s']} | {r['wall_s']} | {r['rtf_per_session']} | {r['speech_s_per_s']} |"
        for r in res["recogniser"]
    ]
    lines += [
        "",
        "CUDA float16: unmeasured.",
        "",
        f"## Sessions at real-time pace, in-process ({res['seconds']} s each; window every {HOP_S:g} s)",
        "",
        "Each simulated session does a live window's model work (5 face crops, 3 s of audio features, "
        "the transcript, the prediction); the recogniser is left out (its figures are above).",
        "",
        "| sessions | way | windows | p50 ms | p95 ms | real time | fusion batch mean | CPU s per session-second |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["concurrency"]:
        lines.append(
            f"| {r['sessions']} | {r['engine']} | {r['windows']} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{'yes' if r['real_time'] else 'no'} | {r.get('fusion_batch_mean', '')} | {r['cpu_s_per_session_s']} |"
        )
    for way in sorted({r["engine"] for r in res["concurrency"]}):
        ok = [r["sessions"] for r in res["concurrency"] if r["real_time"] and r["engine"] == way]
        lines.append(f"\nLargest N in real time, {way}: {max(ok) if ok else 'none'} (of those tried).")
    lines += [
        "",
        f"Peak resident memory of the benchmark process: {res['rss_mb']:.0f} MB.",
        "",
        "Ways: batched, the embedded engine; direct, each session calls the model; ray, a local Ray "
        "Serve deployment on this machine (its replica shares the same cores). Sessions through the "
        "HTTP server, recogniser included: `python -m app.http_load` (docs/http-load.md). Not measured "
        "here: any GPU figure.",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(res, indent=2))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/performance", help="writes OUT.md and OUT.json")
    ap.add_argument("--sessions", default="1,6,16,32", help="concurrent sessions to try")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per concurrency run")
    ap.add_argument("--quick", action="store_true", help="few repeats (a smoke run)")
    ap.add_argument("--ray", action="store_true", help="also through a local Ray Serve deployment (requirements-scale.txt)")
    args = ap.parse_args(argv)
    import torch
    from tqdm import tqdm

    from models.runtime import SentimentModel

    torch.set_num_threads(1)
    n = 5 if args.quick else 40
    onnx_model = SentimentModel.load(use_onnx=True)
    torch_model = SentimentModel.load(use_onnx=False)
    res: dict = {"machine": machine(), "gpu": gpu_name(), "date": str(date.today()), "seconds": args.seconds}
    steps = tqdm(total=5, desc="benchmark")
    inp = Inputs(onnx_model)
    res["stages"] = stages(onnx_model, inp, n)
    steps.update()
    with torch.no_grad():
        fi = fusion_inputs(onnx_model, inp, 1)
        res["fusion_batch1_ms"] = {
            "torch": _pct(_timed(lambda: torch_model._fusion(fi), n * 5), 50),
            "onnxruntime": _pct(_timed(lambda: onnx_model._fusion(fi), n * 5), 50),
        }
    res["batching"] = batching(torch_model, onnx_model, inp, [1, 8, 32, 128] if not args.quick else [1, 8], n)
    steps.update()
    res["recogniser"] = recogniser(inp, [1, 3, 6] if not args.quick else [1, 2], 3 if not args.quick else 1)
    steps.update()
    res["concurrency"] = []
    ways, handle = ["batched", "direct"], None
    if args.ray:
        from models import serve_ray

        handle = serve_ray.start(num_cpus=os.cpu_count())
        ways.append("ray")
    for k in [int(x) for x in args.sessions.split(",")]:
        for engine in ways:
            r = concurrency(onnx_model, inp, k, args.seconds, engine, handle)
            r["engine"] = engine
            res["concurrency"].append(r)
    if handle is not None:
        serve_ray.stop()
    steps.update()
    res["rss_mb"] = rss_mb()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write(res, out)
    steps.update()
    steps.close()
    print(out.with_suffix(".md").read_text())
    return res


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
