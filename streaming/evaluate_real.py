"""Real recordings through the live code path: ``python -m streaming.evaluate_real``.

Writes ``docs/real-recordings.md`` and ``docs/real-recordings.json``. Three parts:

1. The real co-recorded clips of ``<data>/real`` (labels.csv: file, corpus, transcript,
   emotion, sentiment), each replayed as ``streaming.simulate`` replays it (the shipped
   model and recogniser, no faults). Per clip and window: the fused label, score and
   confidence; each modality's health and own estimate; the confidence-weighted late
   fusion of those estimates (``models.training.baselines.late_fusion``); the recognised transcript
   beside the official one; the share of frames with a face, with and without the face
   detector fallback (``models.features.vision.FaceAnalyzer``).
2. Co-recorded voice and words of the RAVDESS test actors: each clip's audio with its
   spoken statement as typed text ("Kids are talking by the door." / "Dogs are sitting by
   the door."). The words carry no sentiment, so the fused result should follow the voice.
3. A table over the whole set: clip-level accuracy (the class of the mean of a clip's window
   probabilities against the clip's sentiment), fused against each modality alone and
   against late fusion; and the coherence count over every window (label outside its
   score's interval), also on the demo clip under the README's fault schedule.

These clips are a check: never training, selection or calibration data. Leakage: the
RAVDESS real clip is actor 01, whose speech trains the voice encoder; the MELD clip's line
is a MELD train row (MELD is not a training corpus here, but the row is public train data).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.agreement import MARGIN
from models.labels import sentiment_index
from models.paths import REPO_ROOT, data_root
from models.training.baselines import late_fusion
from models.training.data import load_speech
from models.types import MODALITIES, SENTIMENT_CLASSES
from streaming.real_report import accuracy_table, coherence, flips, voice_in_domain, write_document
from streaming.types import Health, WindowResult

#: The two RAVDESS statements (file name field SS).
RAVDESS_STATEMENTS = {1: "Kids are talking by the door.", 2: "Dogs are sitting by the door."}
#: The README's fault schedule for the demo clip.
DEMO_FAULTS = "vision:drop@2-5,audio:noise:snr=0@4-8,text:outage@6-9"
LEAKAGE = {
    "ravdess_01-01-07-02-02-01-01.mp4": "actor 01's speech is voice-encoder training data",
    "meld_train_dia0_utt0.mp4": "its line is a MELD train row (MELD is not a training corpus here)",
}


def window_record(w: WindowResult, prior_score: float, prior_probs: np.ndarray) -> dict:
    """One window: fused, each modality (state, own estimate), late fusion, coherence."""
    r = w.result
    mods = {}
    scores, probs, present = np.zeros((1, 3)), np.zeros((1, 3, 3)), np.zeros((1, 3), bool)
    for i, m in enumerate(MODALITIES):
        est = r.per_modality.get(m)
        h = w.health.get(m)
        mods[m.value] = {
            "state": h.state.value if h else Health.OK.value,
            "reason": h.reason if h else "",
            "score": None if est is None else round(est.score, 3),
            "label": None if est is None else est.label,
            "confidence": None if est is None else round(est.confidence, 3),
            "probs": None if est is None else [round(float(p), 4) for p in est.probs],
            "coherent": None if est is None else est.coherent,
            "in_domain": None if est is None else round(est.in_domain, 3),
        }
        if est is not None:
            scores[0, i], probs[0, i], present[0, i] = est.score, est.probs, True
    lf_s, lf_p = late_fusion(scores, probs, present, prior_score, prior_probs)
    own = [e.score for e in r.per_modality.values()]
    sm = w.current
    return {
        "t_start": round(w.t_start, 3),
        "t_end": round(w.t_end, 3),
        "label": r.label,
        "score": round(r.score, 3),
        "confidence": round(r.confidence, 3),
        "probs": [round(float(p), 4) for p in r.probs],
        "coherent": r.coherent,
        # beyond MARGIN (half a class) past every modality's own estimate
        "beyond": bool(own) and (r.score > max(own) + MARGIN + 1e-6 or r.score < min(own) - MARGIN - 1e-6),
        "smoothed": {"label": sm.label, "score": round(sm.score, 3), "confidence": round(sm.confidence, 3)},
        "used": [m.value for m in r.used],
        "modalities": mods,
        "late_fusion": {"score": round(float(lf_s[0]), 3), "probs": [round(float(p), 4) for p in lf_p[0]]},
        "transcript": w.transcript,
    }


def clip_predictions(windows: list[dict]) -> dict[str, str | None]:
    """Clip-level class of each source: the argmax of the mean of its window probabilities
    (a modality absent from every window: None)."""
    out: dict[str, str | None] = {}
    if not windows:
        return {k: None for k in ("fused", "late_fusion", *[m.value for m in MODALITIES])}
    out["fused"] = SENTIMENT_CLASSES[int(np.mean([w["probs"] for w in windows], 0).argmax())]
    out["late_fusion"] = SENTIMENT_CLASSES[int(np.mean([w["late_fusion"]["probs"] for w in windows], 0).argmax())]
    for m in MODALITIES:
        ps = [w["modalities"][m.value]["probs"] for w in windows if w["modalities"][m.value]["probs"] is not None]
        out[m.value] = SENTIMENT_CLASSES[int(np.mean(ps, 0).argmax())] if ps else None
    return out


def face_rates(path: Path, fps: float = 5.0) -> dict[str, float]:
    """Share of frames (at ``fps``) with a face crop, video-mode analyser, without and with
    the detector fallback."""
    from models.features.vision import FaceAnalyzer
    from streaming.sources import read_media

    frames, _ = read_media(path, fps=fps)
    out = {"frames": len(frames)}
    for name, fallback in (("mesh_only", False), ("with_fallback", True)):
        fa = FaceAnalyzer(static=False, detector_fallback=fallback)
        try:
            found = [fa(f.image).has_face for f in frames]
        finally:
            fa.close()
        out[name] = round(100 * float(np.mean(found)), 1) if found else 0.0
    return out


def evaluate_real_clips(model, asr, root: Path) -> list[dict]:
    from streaming.simulate import build_pipeline, replay
    from streaming.sources import media_duration

    rows = list(csv.DictReader((root / "labels.csv").open()))
    out = []
    for row in tqdm(rows, desc="real clips"):
        path = root / row["file"]
        asr.reset()
        pipe = build_pipeline("", asr_mode="sync", model=model, asr=asr)
        try:
            windows = replay(pipe, path, progress=False)
        finally:
            pipe.close()
        recs = [window_record(w, model.prior_score, model.prior_probs) for w in windows]
        out.append(
            {
                "file": row["file"],
                "corpus": row["corpus"],
                "duration_s": round(media_duration(path), 2),
                "truth": row["sentiment"],
                "emotion": row["emotion"],
                "transcript_official": row["transcript"],
                "transcript_recognised": asr.transcript.text(partial=True),
                "leakage": LEAKAGE.get(row["file"], ""),
                "faces": face_rates(path),
                "windows": recs,
                "clip": clip_predictions(recs),
            }
        )
    return out


def evaluate_ravdess(model, root, actors: tuple[int, ...] | None = None, limit: int = 0) -> list[dict]:
    """RAVDESS test actors' clips: the audio replayed through a pipeline, the statement as typed text."""
    from models.features.vision import FaceAnalyzer
    from models.training.data import SPEECH_SPLITS
    from streaming.pipeline import Pipeline, PipelineConfig
    from streaming.sources import FileReplay

    df = load_speech(root)
    actors = actors or tuple(sorted(SPEECH_SPLITS["ravdess"]["test"]))
    df = df[(df.corpus == "ravdess") & df.speaker.isin(actors)]
    df = df[[sentiment_index(e) >= 0 for e in df.emotion]]
    if limit:
        df = df.iloc[:limit]
    faces = FaceAnalyzer(static=False, detector_fallback=False)  # never used: audio only
    out = []
    try:
        for r in tqdm(df.itertuples(), total=len(df), desc="RAVDESS test actors, voice + words"):
            statement = RAVDESS_STATEMENTS[int(Path(r.path).stem.split("-")[4])]
            pipe = Pipeline(model, None, cfg=PipelineConfig(asr_mode="off"), face_analyzer=faces)
            pipe.set_text(statement, 0.0)
            src = FileReplay(r.path, realtime=False, video=False)
            windows = []
            for item in src.items():
                windows += pipe.push(item)
            windows += pipe.flush(src.duration)
            recs = [window_record(w, model.prior_score, model.prior_probs) for w in windows]
            out.append(
                {
                    "file": Path(r.path).name,
                    "speaker": int(r.speaker),
                    "emotion": r.emotion,
                    "truth": SENTIMENT_CLASSES[sentiment_index(r.emotion)],
                    "statement": statement,
                    "windows": recs,
                    "clip": clip_predictions(recs),
                }
            )
    finally:
        faces.close()
    return out


def follow_hops(windows: list[dict], lines: list, smoothed: bool) -> list[dict]:
    """For each scripted change (line k > 0 of the demo clip, whose class differs from the
    line before): how many hops after the first window lying wholly in the new line the
    label first shows the new line's class (None: never, within that line and the next
    hop)."""
    from streaming.democlip import line_sentiment

    out = []
    for k in range(1, len(lines)):
        new, old = line_sentiment(lines[k][3]), line_sentiment(lines[k - 1][3])
        if new == old:
            continue
        start = k * (lines[1][0] - lines[0][0])  # the line's slot start (lead silence included)
        idx = [i for i, w in enumerate(windows) if w["t_start"] >= start - 1e-6]
        hops = None
        if idx:
            j0 = idx[0]
            for j in range(j0, min(j0 + 4, len(windows))):
                lab = (windows[j]["smoothed"] if smoothed else windows[j])["label"]
                if lab == new:
                    hops = j - j0
                    break
        out.append({"line": k, "from": old, "to": new, "hops": hops})
    return out


def evaluate_demo(model, asr) -> dict:
    """The demo clip: clean (stability: flips and how fast the label follows each scripted
    change, window's own and smoothed), and under the README's fault schedule (coherence,
    bounds, flips)."""
    import tempfile

    from streaming.democlip import build_clip
    from streaming.simulate import build_pipeline, replay

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = build_clip(Path(tmp) / "demo.mp4")
        for name, faults in (("clean", ""), ("faults", DEMO_FAULTS)):
            asr.reset()
            pipe = build_pipeline(faults, asr_mode="sync", model=model, asr=asr)
            try:
                windows = replay(pipe, clip["path"], progress=False)
            finally:
                pipe.close()
            runs[name] = [window_record(w, model.prior_score, model.prior_probs) for w in windows]
    clean = runs["clean"]
    return {
        "faults": DEMO_FAULTS,
        "lines": [list(x) for x in clip["lines"]],
        "windows": len(runs["faults"]),
        "incoherent": sum(not w["coherent"] for w in runs["faults"]),
        "beyond": sum(w["beyond"] for r in runs.values() for w in r),
        "flips": {
            name: {"window": flips(r), "smoothed": flips(r, True), "pairs": max(len(r) - 1, 0)} for name, r in runs.items()
        },
        "follow": {"window": follow_hops(clean, clip["lines"], False), "smoothed": follow_hops(clean, clip["lines"], True)},
        "labels": [w["label"] for w in runs["faults"]],
        "runs": runs,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="data root (default ../shared/data or $MSA_DATA_ROOT)")
    ap.add_argument("--docs", default=str(REPO_ROOT / "docs"))
    ap.add_argument("--ravdess-limit", type=int, default=0, help="cap the RAVDESS clips (0: all test actors)")
    ap.add_argument("--no-demo", action="store_true", help="skip the demo clip under faults")
    args = ap.parse_args(argv)
    import torch

    from models.runtime import SentimentModel
    from models.training.speed import cpu_name as _cpu_name
    from streaming.asr import StreamingASR

    torch.set_num_threads(2)
    t0 = time.time()
    root = data_root(args.data)
    model = SentimentModel.load(threads=1)
    asr = StreamingASR(threads=2)
    real = evaluate_real_clips(model, asr, root / "real")
    rav = evaluate_ravdess(model, root, limit=args.ravdess_limit)
    demo = {"faults": DEMO_FAULTS, "windows": 0, "incoherent": 0, "beyond": 0} if args.no_demo else evaluate_demo(model, asr)
    report = {
        "real_clips": real,
        "ravdess": rav,
        "tables": {"real": accuracy_table(real), "ravdess": accuracy_table(rav), "all": accuracy_table(real + rav)},
        "coherence": {
            "real_and_ravdess": coherence(real + rav),
            "real": coherence(real),
            "ravdess": coherence(rav),
            "demo": demo,
        },
        "voice_in_domain": voice_in_domain(real, rav),
        "meta": {
            "evaluated": time.strftime("%Y-%m-%d %H:%M"),
            "seconds": round(time.time() - t0),
            "machine": f"{platform.machine()}, {_cpu_name()}",
        },
    }
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "real-recordings.json").write_text(json.dumps(report, indent=1))
    path = write_document(report, docs)
    t = report["tables"]
    print(f"wrote {path}")
    for k in ("real", "ravdess", "all"):
        print(k, {s: v["acc"] for s, v in t[k].items()})
    print("coherence", report["coherence"]["real_and_ravdess"], "demo", {k: demo[k] for k in ("windows", "incoherent")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
