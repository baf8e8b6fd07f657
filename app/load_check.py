"""Health under load: do healthy sensors stay OK when the machine is busy?

    python -m app.load_check [--busy 2] [--seconds 25] [--out docs/load-check]

Two recordings, the demo clip (``streaming.democlip``) and real people (the CREMA-D and
RAVDESS clips of ../shared/data/real joined), each played at real-time pace through the two
ways the app takes media:

- *live*: as a browser streams them, a frame every 0.2 s and a 0.5 s microphone chunk as its
  samples are over, into a ``LiveSession`` with its worker thread and the recogniser on its
  own thread, as the Live tab runs;
- *replay*: the Replay tab's path (``app.ui.start_replay``), the recording's own timestamps,
  the recogniser in the window step.

Each runs once on an idle machine and once with ``--busy`` processes spinning (one per core:
both cores busy). Reported per run: the share of windows with vision OK and audio OK, the
share of the windows OK on the idle machine that stay OK under load (target: at least 95 %),
the text states, the server lag and the frames skipped. Writes ``OUT.md`` and ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from app.browser import DEFAULT_CLIPS as REAL_CLIPS  # the clips the browser test plays

ROOT = Path(__file__).resolve().parents[1]


def _spin(stop) -> None:  # a busy core
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


class Busy:
    """``n`` processes keeping ``n`` cores busy while the block runs."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self):
        self.stop = mp.Event()
        self.procs = [mp.Process(target=_spin, args=(self.stop,), daemon=True) for _ in range(self.n)]
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()


def join_real_clips(out: Path) -> Path:
    """The real clips joined into one H.264/AAC recording at 640x480."""
    from models.paths import data_root

    real = data_root() / "real"
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    parts, pads = [], []
    for i, name in enumerate(REAL_CLIPS):
        cmd += ["-i", str(real / name)]
        parts.append(f"[{i}:v:0]fps=15,scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2,"
                     f"setsar=1,format=yuv420p[v{i}]")
        parts.append(f"[{i}:a:0]aresample=16000,aformat=channel_layouts=mono[a{i}]")
        pads.append(f"[v{i}][a{i}]")
    graph = ";".join(parts) + ";" + "".join(pads) + f"concat=n={len(REAL_CLIPS)}:v=1:a=1[v][a]"
    cmd += ["-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-preset", "veryfast",
            "-c:a", "aac", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def run_live(app, path: str, seconds: float) -> tuple[list[dict], dict]:
    """The recording streamed into a live session as a browser would, at real-time pace."""
    from models.features.audio import SAMPLE_RATE
    from streaming.sources import FileReplay

    s = app.new_session()
    src = FileReplay(path, realtime=True, loop=True, fps=5.0)
    pending: list[np.ndarray] = []
    t0 = time.monotonic()
    try:
        for item in src.items():
            if time.monotonic() - t0 > seconds:
                break
            if hasattr(item, "image"):
                s.video(item.image)
            else:
                pending.append(item.samples)
                if sum(len(x) for x in pending) >= SAMPLE_RATE // 2:
                    x = np.concatenate(pending)
                    pending = []
                    s.audio((SAMPLE_RATE, (np.clip(x, -1, 1) * 32767).astype(np.int16)))
        time.sleep(1.0)  # the last windows settle
        rows = list(s.rows)
        extra = {"frames_skipped": s.frames_skipped}
    finally:
        s.close()
    return rows, extra


def run_replay(app, path: str, seconds: float) -> tuple[list[dict], dict]:
    """The Replay tab's path at real-time pace (stopped after ``seconds``)."""
    from app.ui import start_replay

    s = start_replay(app, path, "", realtime=True)
    s.finished.wait(timeout=seconds + 120)
    rows = list(s.rows)
    s.close()
    return rows, {}


def summarise(rows: list[dict], base: list[dict] | None) -> dict:
    def share(m: str, rs) -> float:
        return round(100 * float(np.mean([r["modalities"][m]["state"] == "OK" for r in rs])), 1) if rs else float("nan")

    out = {"windows": len(rows)}
    for m in ("vision", "audio"):
        out[f"{m}_ok_pct"] = share(m, rows)
        out[f"{m}_states"] = dict(Counter(f"{r['modalities'][m]['state']}: {r['modalities'][m]['reason']}" for r in rows).most_common(6))
        if base is not None:
            ok_before = {r["t_end"] for r in base if r["modalities"][m]["state"] == "OK"}
            now = {r["t_end"]: r for r in rows}
            kept = [now[t]["modalities"][m]["state"] == "OK" for t in ok_before if t in now]
            out[f"{m}_kept_pct"] = round(100 * float(np.mean(kept)), 1) if kept else float("nan")
    out["text_states"] = dict(Counter(r["modalities"]["text"]["state"] for r in rows))
    lag = [r.get("lag", {}).get("server") for r in rows]
    lag = [x for x in lag if x is not None]
    if lag:
        out["server_lag_s"] = {"p50": round(float(np.median(lag)), 2), "max": round(float(max(lag)), 2)}
    asr = [r.get("lag", {}).get("recogniser") for r in rows]
    asr = [x for x in asr if x is not None]
    if asr:
        out["recogniser_lag_s"] = {"p50": round(float(np.median(asr)), 2), "max": round(float(max(asr)), 2)}
    out["latency_ms_p95"] = round(float(np.percentile([r["latency_ms"] for r in rows], 95)), 1) if rows else None
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="spinning processes under load (default: one per core)")
    ap.add_argument("--seconds", type=float, default=25.0, help="seconds of each live run")
    ap.add_argument("--out", default=str(ROOT / "docs" / "load-check"))
    args = ap.parse_args(argv)

    from app.ui import App
    from streaming.bench import machine
    from streaming.democlip import build_clip

    app = App()
    app.new_asr()
    res: dict = {"machine": machine(), "busy_processes": args.busy, "date": time.strftime("%Y-%m-%d"), "runs": []}
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        clips = {"demo clip": build_clip(Path(tmp) / "demo.mp4")["path"], "real clips joined": str(join_real_clips(Path(tmp) / "real.mp4"))}
        for name, path in clips.items():
            for way, fn in (("live", run_live), ("replay", run_replay)):
                base = None
                for load in ("idle", "busy"):
                    t0 = time.monotonic()
                    if load == "busy":
                        with Busy(args.busy):
                            rows, extra = fn(app, path, args.seconds)
                    else:
                        rows, extra = fn(app, path, args.seconds)
                    summary = summarise(rows, base)
                    base = rows if load == "idle" else base
                    entry = {"recording": name, "way": way, "load": load, "wall_s": round(time.monotonic() - t0, 1), **extra, **summary}
                    res["runs"].append(entry)
                    print(json.dumps(entry))
    write(res, Path(args.out))
    return res


def pair(x: dict | None) -> str:
    return "" if not x else f"{x['p50']} / {x['max']}"


def write(res: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [
        "# Health under load",
        "",
        f"Written by `python -m app.load_check` on {res['machine']}, {res['date']}; \"busy\": "
        f"{res['busy_processes']} processes spinning, one per core. Target: healthy vision and audio stay OK "
        "in at least 95 % of windows (\"kept\": of the windows OK on the idle machine, the share still OK under load).",
        "",
        "| recording | way | load | windows | vision OK | kept | audio OK | kept | text states | server lag p50 / max (s) | recogniser lag p50 / max (s) | frames skipped |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in res["runs"]:
        lag = e.get("server_lag_s")
        asr = e.get("recogniser_lag_s")
        lines.append(
            f"| {e['recording']} | {e['way']} | {e['load']} | {e['windows']} | {e['vision_ok_pct']} % | "
            f"{e.get('vision_kept_pct', '')}{' %' if 'vision_kept_pct' in e else ''} | {e['audio_ok_pct']} % | "
            f"{e.get('audio_kept_pct', '')}{' %' if 'audio_kept_pct' in e else ''} | "
            f"{', '.join(f'{k} {v}' for k, v in e['text_states'].items())} | "
            f"{pair(lag)} | {pair(asr)} | "
            f"{e.get('frames_skipped', '')} |"
        )
    lines += ["", "Vision and audio states that were not OK, per run (reason: windows):", ""]
    for e in res["runs"]:
        bad = {m: {k: v for k, v in e[f"{m}_states"].items() if not k.startswith("OK")} for m in ("vision", "audio")}
        lines.append(f"- {e['recording']}, {e['way']}, {e['load']}: vision {bad['vision'] or 'none'}; audio {bad['audio'] or 'none'}")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
