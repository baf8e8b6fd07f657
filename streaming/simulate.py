"""Sensor-failure simulator: replays a recording through the live pipeline under injected
faults and writes one JSON object per window.

    python -m streaming.simulate INPUT --faults "vision:drop@2-5,audio:noise:snr=0@4-8,text:outage@6-9" \\
        --out OUT.jsonl [--plot OUT.png] [--realtime] [--window 3 --hop 1] [--fusion lnln|dashfusion|hme]

INPUT is a video with sound (mp4, webm, mkv, avi) or an audio file (wav, flac, mp3, ogg;
vision then reads as DROPPED). Each line of OUT.jsonl: t_start, t_end, score (-3..3), label,
confidence, confidences {negative, neutral, positive} (sum 1), modalities {vision|audio|text:
{state, reason, score}}, transcript, partial, latency_ms. With ``--realtime`` the recording
is paced at its own speed (what a live sensor does) and latency is what a user would see.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from models.fusion import DEFAULT_FUSION, FUSIONS
from streaming.faults import FaultInjector, parse_spec
from streaming.pipeline import Pipeline, PipelineConfig
from streaming.types import WindowResult


def build_pipeline(
    faults_spec: str = "",
    window_s: float = 3.0,
    hop_s: float = 1.0,
    asr_mode: str = "sync",
    seed: int = 0,
    model=None,
    asr=None,
    threads: int = 1,
    fusion: str = "lnln",
):
    """A pipeline with the shipped model (fusion ``fusion``), the shipped recogniser and the
    given faults."""
    from models.runtime import SentimentModel
    from streaming.asr import StreamingASR

    model = model or SentimentModel.load(threads=threads, fusion=fusion)
    if asr is None and asr_mode != "off":
        asr = StreamingASR(threads=threads)
    faults = FaultInjector(parse_spec(faults_spec), seed=seed)
    cfg = PipelineConfig(window_s=window_s, hop_s=hop_s, asr_mode=asr_mode)
    return Pipeline(model, asr, faults, cfg)


def replay(
    pipeline: Pipeline, path: str | Path, realtime: bool = False, speed: float = 1.0, on_window=None, progress: bool = True
) -> list[WindowResult]:
    """Pushes every item of the recording through ``pipeline`` and flushes it at the end
    (``streaming.replay.drive``); returns all windows. ``on_window(result)`` is called as
    each window comes out."""
    from tqdm import tqdm

    from streaming.replay import drive
    from streaming.sources import FileReplay

    src = FileReplay(path, sink=None, realtime=realtime, speed=speed)
    total = src.duration or None
    bar = tqdm(total=round(total, 1) if total else None, unit="s", desc="replay", disable=not progress, leave=False)
    shown = [0.0]  # media time the bar shows

    def tick(item) -> None:
        if item.t - shown[0] >= 0.5:
            bar.update(round(item.t - shown[0], 1))
            shown[0] = item.t

    out = drive(src, pipeline.push, flush=pipeline.flush, on_window=on_window, on_item=tick)
    bar.close()
    return out


def latency_summary(results: list[WindowResult]) -> dict[str, float]:
    lat = np.array([r.latency_ms for r in results], float)
    if not len(lat):
        return {}
    return {
        "windows": len(lat),
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "max_ms": float(lat.max()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="video or audio file to replay")
    ap.add_argument("--faults", default="", help='e.g. "vision:drop@2-5,audio:noise:snr=0@4-8,text:outage@6-9"')
    ap.add_argument("--out", required=True, help="JSONL output, one window per line")
    ap.add_argument("--plot", help="PNG timeline with fault intervals shaded")
    ap.add_argument("--realtime", action="store_true", help="pace the replay at the recording's speed")
    ap.add_argument("--speed", type=float, default=1.0, help="with --realtime: playback speed factor")
    ap.add_argument("--window", type=float, default=3.0, help="window length, s")
    ap.add_argument("--hop", type=float, default=1.0, help="hop between windows, s")
    ap.add_argument("--no-asr", action="store_true", help="no speech recognition (text absent)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fusion", choices=list(FUSIONS), default=DEFAULT_FUSION, help="the fusion model (default lnln)")
    args = ap.parse_args(argv)

    try:
        spec = parse_spec(args.faults)
    except ValueError as e:
        ap.error(str(e))
    if not Path(args.input).is_file():
        ap.error(f"no such file: {args.input}")
    try:
        pipe = build_pipeline(args.faults, args.window, args.hop, "off" if args.no_asr else "sync", args.seed, fusion=args.fusion)
    except FileNotFoundError as e:  # that fusion is not shipped
        ap.error(str(e))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with out.open("w") as fh:

        def write(w: WindowResult) -> None:
            fh.write(json.dumps(w.to_json()) + "\n")
            fh.flush()

        results = replay(pipe, args.input, realtime=args.realtime, speed=args.speed, on_window=write)
    pipe.close()
    if args.plot:
        from streaming.plot import save_timeline

        save_timeline(results, args.plot, spec, title=f"{Path(args.input).name}  faults: {args.faults or 'none'}")
    lat = latency_summary(results)
    print(f"{len(results)} windows in {time.time() - t0:.1f} s -> {out}" + (f", plot {args.plot}" if args.plot else ""))
    if lat:
        print(f"window latency p50 {lat['p50_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
