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


def flips(windows: list[dict], smoothed: bool = False, min_conf: float = 0.8) -> int:
    """Negative <-> positive changes between adjacent windows, both at confidence >= min_conf."""

    def lc(w):
        x = w["smoothed"] if smoothed else w
        return x["label"], x["confidence"]

    n = 0
    for a, b in zip(windows, windows[1:]):
        (la, ca), (lb, cb) = lc(a), lc(b)
        n += {la, lb} == {"negative", "positive"} and ca >= min_conf and cb >= min_conf
    return n


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


def voice_in_domain(real: list[dict], rav: list[dict]) -> dict[str, float]:
    """Mean in-domain score of the voice over each real clip's windows (by file) and over
    the RAVDESS test actors' windows."""

    def mean(wins):
        v = [w["modalities"]["audio"]["in_domain"] for w in wins if w["modalities"]["audio"]["in_domain"] is not None]
        return round(float(np.mean(v)), 3) if v else None

    out = {c["file"]: mean(c["windows"]) for c in real}
    out["RAVDESS test actors"] = mean([w for c in rav for w in c["windows"]])
    return {k: v for k, v in out.items() if v is not None}


def accuracy_table(clips: list[dict]) -> dict[str, dict]:
    """Per source: clips with a prediction, correct ones, accuracy (%)."""
    out = {}
    for src in ("fused", "late_fusion", *[m.value for m in MODALITIES]):
        have = [c for c in clips if c["clip"][src] is not None]
        ok = sum(c["clip"][src] == c["truth"] for c in have)
        out[src] = {"n": len(have), "correct": ok, "acc": round(100 * ok / len(have), 1) if have else None}
    return out


def coherence(clips: list[dict]) -> dict[str, int]:
    wins = [w for c in clips for w in c["windows"]]
    ests = [m for w in wins for m in w["modalities"].values() if m["coherent"] is not None]
    return {
        "windows": len(wins),
        "incoherent": sum(not w["coherent"] for w in wins),
        "beyond": sum(w["beyond"] for w in wins),
        "flips_window": sum(flips(c["windows"]) for c in clips),
        "flips_smoothed": sum(flips(c["windows"], True) for c in clips),
        "pairs": sum(max(len(c["windows"]) - 1, 0) for c in clips),
        "estimates": len(ests),
        "estimates_incoherent": sum(not m["coherent"] for m in ests),
    }


# ---------------------------------------------------------------- the document
def _fmt_est(m: dict) -> str:
    if m["score"] is None:
        return f"— ({m['state']}{': ' + m['reason'] if m['reason'] else ''})"
    state = "" if m["state"] == "OK" else f" [{m['state']}: {m['reason']}]"
    return f"{m['label']} {m['score']:+.2f} ({m['confidence']:.2f}){state}"


def write_document(report: dict, docs: Path) -> Path:
    L = [
        "# Real recordings",
        "",
        f"Written by `python -m streaming.evaluate_real` on {report['meta']['evaluated']} "
        f"({report['meta']['machine']}, {report['meta']['seconds']} s). The live code path: each clip replayed as "
        "`streaming.simulate` replays it, the shipped model and recogniser, no faults. These clips are a check, never "
        "training, selection or calibration data. Clip-level class: the argmax of the mean of the clip's window "
        "probabilities. Late fusion: the confidence-weighted average of the modalities' own estimates.",
        "",
    ]
    real, rav = report["real_clips"], report["ravdess"]
    allc = real + rav
    L += [
        "## Summary",
        "",
        "| set | clips | fused | text | audio | vision | late fusion |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, clips in (("real clips (../shared/data/real)", real), ("RAVDESS test actors, voice + words", rav), ("all", allc)):
        t = accuracy_table(clips)

        def cell(k, t=t):
            return "n/a" if t[k]["acc"] is None else f"{t[k]['acc']:.1f} % ({t[k]['correct']}/{t[k]['n']})"

        L.append(
            f"| {name} | {len(clips)} | {cell('fused')} | {cell('text')} | {cell('audio')} | {cell('vision')} | {cell('late_fusion')} |"
        )
    co = report["coherence"]
    rr, dm = co["real_and_ravdess"], co["demo"]
    L += [
        "",
        "## Trust and stability",
        "",
        f"- Bounds: windows whose fused score lies more than 0.5 beyond every present modality's own estimate: "
        f"{rr['beyond']} of {rr['windows']} (real clips and RAVDESS), {dm.get('beyond', 0)} on the demo clip "
        "(clean and under faults).",
        f"- Flips (negative <-> positive between adjacent windows, both at confidence >= 0.8): real clips "
        f"{co['real']['flips_window']} per-window / {co['real']['flips_smoothed']} smoothed over {co['real']['pairs']} "
        f"adjacent pairs; RAVDESS {co['ravdess']['flips_window']} / {co['ravdess']['flips_smoothed']} over "
        f"{co['ravdess']['pairs']}.",
    ]
    if dm.get("flips"):
        for name, f in dm["flips"].items():
            L.append(f"- Demo clip ({name}): {f['window']} per-window / {f['smoothed']} smoothed flips over {f['pairs']} pairs.")
        for kind in ("window", "smoothed"):
            hops = ", ".join(
                f"line {x['line']} {x['from']}->{x['to']}: {x['hops'] if x['hops'] is not None else 'never'}"
                for x in dm["follow"][kind]
            )
            L.append(
                f"- Demo clip, hops until the {kind} label shows each scripted change (0 = the first window wholly "
                f"in the new line): {hops}."
            )
    if report.get("voice_in_domain"):
        vi = report["voice_in_domain"]
        L.append(
            "- Voice in-domain score (models.domain), mean over windows: "
            + ", ".join(f"{k} {v:.2f}" for k, v in vi.items())
            + "."
        )
    L += [
        "",
        f"Coherence: {co['real_and_ravdess']['incoherent']} of {co['real_and_ravdess']['windows']} windows "
        f"(real clips and RAVDESS) and {co['real_and_ravdess']['estimates_incoherent']} of {co['real_and_ravdess']['estimates']} "
        f"per-modality estimates have a label outside their score's interval; the demo clip under `{co['demo']['faults']}`: "
        f"{co['demo']['incoherent']} of {co['demo']['windows']} windows. Every real clip yields at least one window: "
        f"{'yes' if all(c['windows'] for c in real) else '**no**'} (fewest: {min(len(c['windows']) for c in real)}).",
        "",
    ]
    if rav:
        agree = [c for c in rav if c["clip"]["fused"] is not None and c["clip"]["audio"] is not None]
        same = sum(c["clip"]["fused"] == c["clip"]["audio"] for c in agree)
        L += [
            f"RAVDESS: the words carry nothing, so the fused class should follow the voice: it equals the voice's own "
            f"class in {same} of {len(agree)} clips.",
            "",
        ]
    L += [
        "## The real clips",
        "",
        "| clip | corpus | s | truth | windows | fused (clip) | text | audio | vision | late fusion | faces: mesh / with detector | leakage |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in real:
        p = c["clip"]

        def mark(k, p=p, c=c):
            if p[k] is None:
                return "—"
            return f"{p[k]}" + (" ✓" if p[k] == c["truth"] else " ✗")

        L.append(
            f"| {c['file']} | {c['corpus']} | {c['duration_s']:.1f} | {c['truth']} ({c['emotion']}) | {len(c['windows'])} | "
            f"{mark('fused')} | {mark('text')} | {mark('audio')} | {mark('vision')} | {mark('late_fusion')} | "
            f"{c['faces']['mesh_only']:.0f} % / {c['faces']['with_fallback']:.0f} % | {c['leakage'] or '—'} |"
        )
    L += ["", "### Windows", ""]
    for c in real:
        L += [
            f'**{c["file"]}** (truth {c["truth"]}). Official transcript: "{c["transcript_official"]}"; recognised: '
            f'"{c["transcript_recognised"]}".',
            "",
            "| window (s) | fused: label, score (confidence) | text | audio | vision | late fusion |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for w in c["windows"]:
            m = w["modalities"]
            lf = w["late_fusion"]
            L.append(
                f"| {w['t_start']:.1f}–{w['t_end']:.1f} | {w['label']} {w['score']:+.2f} ({w['confidence']:.2f}) | "
                f"{_fmt_est(m['text'])} | {_fmt_est(m['audio'])} | {_fmt_est(m['vision'])} | "
                f"{SENTIMENT_CLASSES[int(np.argmax(lf['probs']))]} {lf['score']:+.2f} |"
            )
        L.append("")
    if rav:
        L += [
            "## RAVDESS test actors: voice with its statement",
            "",
            "Clip-level accuracy by emotion (fused / audio alone / text alone):",
            "",
            "| emotion | truth | clips | fused | audio | text |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for emo in sorted({c["emotion"] for c in rav}):
            cs = [c for c in rav if c["emotion"] == emo]
            t = accuracy_table(cs)
            L.append(
                f"| {emo} | {cs[0]['truth']} | {len(cs)} | {t['fused']['acc']:.0f} % | {t['audio']['acc']:.0f} % | {t['text']['acc']:.0f} % |"
            )
        L.append("")
    path = docs / "real-recordings.md"
    path.write_text("\n".join(L) + "\n")
    return path


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
