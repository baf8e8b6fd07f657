"""Latency benchmark: the live pipeline at real-time pace.

    python -m streaming.bench [--clip CLIP.mp4] [--seconds 60] [--asr thread|sync|off]

Replays a recording (by default the demo clip, built from ../shared/data) paced at its own
speed, as a camera and microphone would deliver it, with the recogniser on its own thread as
in the app, and prints per-window latency (from the moment a window is due to its result):
p50, p95, max, plus the recogniser's decode times and the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", help="recording to replay (default: build the demo clip)")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long to run (the clip loops)")
    ap.add_argument("--asr", default="thread", choices=["thread", "sync", "off"])
    ap.add_argument("--threads", type=int, default=1, help="threads per model")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)

    from models.runtime import SentimentModel
    from streaming.asr import StreamingASR
    from streaming.faults import FaultInjector
    from streaming.pipeline import Pipeline, PipelineConfig
    from streaming.replay import drive
    from streaming.sources import FileReplay

    clip = args.clip
    if clip is None:
        from streaming.democlip import build_clip

        clip = build_clip(os.path.join(tempfile.mkdtemp(), "demo.mp4"))["path"]
    model = SentimentModel.load(threads=args.threads)
    asr = None if args.asr == "off" else StreamingASR(threads=args.threads)
    pipe = Pipeline(model, asr, FaultInjector(), PipelineConfig(asr_mode=args.asr))
    waits = []

    def push(item):
        # 'due' is when the window's end passed on the wall clock; latency runs from there
        due = time.perf_counter()
        out = pipe.push(item)
        if out:
            waits.append(1000 * (time.perf_counter() - due))
        return out

    src = FileReplay(clip, realtime=True, loop=True)
    t0 = time.monotonic()
    windows = drive(src, push, stop=lambda: time.monotonic() - t0 > args.seconds)
    pipe.close()
    asr_ms = pipe.recogniser_ms
    res = windows[1:]  # the first window includes loading
    lat = np.array([r.latency_ms for r in res])
    out = {
        "machine": machine(),
        "clip": os.path.basename(clip),
        "seconds": round(time.monotonic() - t0, 1),
        "windows": len(res),
        "asr_mode": args.asr,
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 1),
            "p95": round(float(np.percentile(lat, 95)), 1),
            "max": round(float(lat.max()), 1),
        },
        "push_to_result_ms": {"p50": round(float(np.percentile(waits, 50)), 1), "p95": round(float(np.percentile(waits, 95)), 1)}
        if waits
        else {},
        "asr_decode_ms": {"p50": round(float(np.percentile(asr_ms, 50)), 1), "p95": round(float(np.percentile(asr_ms, 95)), 1)}
        if asr_ms
        else {},
    }
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
