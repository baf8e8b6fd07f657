"""Health under load: do healthy sensors stay OK when the machine is busy?

    python -m app.load_check [--busy 2] [--seconds 25] [--ways live,replay,browser] [--out docs/load-check]

Two recordings, the demo clip (``streaming.democlip``) and real people (the CREMA-D and
RAVDESS clips of ../shared/data/real joined), each played at real-time pace through the two
ways the app takes media:

- *live*: as a browser streams them, a frame every 0.2 s and a 0.5 s microphone chunk as its
  samples are over, into a ``LiveSession`` with its worker thread and the recogniser on its
  own thread, as the Live tab runs;
- *replay*: the Replay tab's path (``app.ui.start_replay``), the recording's own timestamps,
  the recogniser in the window step;
- *browser* (real clips only; ``--ways live,replay`` leaves it out): ``python app.py`` in its own
  process and headless Chromium whose fake camera and microphone play the clips
  (``app.browser``) into the Live tab, exported after ``--seconds``: Gradio's streaming
  transport included, so items reach the server late under load (``lag["transport"]``).

Each runs once on an idle machine and once with ``--busy`` processes spinning (one per core:
both cores busy). Reported per run: the share of windows with vision OK and audio OK, the
share of the windows OK on the idle machine that stay OK under load (target: at least 95 %),
the text states, the transport, server and recogniser lag and the frames skipped. Writes
``OUT.md`` and ``OUT.json`` (a "## Before" section already in ``OUT.md`` is kept).
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from app.fake_media import DEFAULT_CLIPS as REAL_CLIPS  # the clips the browser test plays
from app.fake_media import make_fake_media

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
        parts.append(
            f"[{i}:v:0]fps=15,scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2,"
            f"setsar=1,format=yuv420p[v{i}]"
        )
        parts.append(f"[{i}:a:0]aresample=16000,aformat=channel_layouts=mono[a{i}]")
        pads.append(f"[v{i}][a{i}]")
    graph = ";".join(parts) + ";" + "".join(pads) + f"concat=n={len(REAL_CLIPS)}:v=1:a=1[v][a]"
    cmd += [
        "-filter_complex",
        graph,
        "-map",
        "[v]",
        "-map",
        "[a]",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-c:a",
        "aac",
        str(out),
    ]
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


def run_browser(url: str, media: tuple[Path, Path], seconds: float) -> tuple[list[dict], dict]:
    """The real clips played by Chromium's fake camera and microphone into the Live tab of
    the app at ``url`` (``python app.py``, its own process) for ``seconds``, then exported:
    the browser's transport (Gradio's streaming events) included, as a user runs it."""
    from playwright.sync_api import sync_playwright

    from app import browser as B

    with sync_playwright() as pw:
        browser = B.launch_browser(pw, *media)
        try:
            live = B.LivePage(B.new_page(browser, url))
            live.open_live()
            live.start_webcam()
            live.start_microphone()
            time.sleep(seconds)
            files = live.export()
            live.stop_streams()
        finally:
            browser.close()
    jsonl = next(v for k, v in files.items() if k.endswith(".jsonl"))
    return B.parse_jsonl(jsonl), {}


class Server:
    """``python app.py`` on a free port for the block (``url``)."""

    def __enter__(self):
        from app import browser as B

        self.log = tempfile.TemporaryFile()
        self.url = f"http://127.0.0.1:{B.free_port()}"
        self.proc = B.start_app(int(self.url.rsplit(":", 1)[1]), self.log)
        B.wait_for_server(self.url, self.proc, timeout=300)
        return self

    def __exit__(self, *exc) -> None:
        from app import browser as B

        B.stop_app(self.proc)
        self.log.close()


def summarise(rows: list[dict], base: list[dict] | None) -> dict:
    def share(m: str, rs) -> float:
        return round(100 * float(np.mean([r["modalities"][m]["state"] == "OK" for r in rs])), 1) if rs else float("nan")

    out = {"windows": len(rows)}
    for m in ("vision", "audio"):
        out[f"{m}_ok_pct"] = share(m, rows)
        out[f"{m}_states"] = dict(
            Counter(f"{r['modalities'][m]['state']}: {r['modalities'][m]['reason']}" for r in rows).most_common(6)
        )
        if base is not None:
            ok_before = {r["t_end"] for r in base if r["modalities"][m]["state"] == "OK"}
            now = {r["t_end"]: r for r in rows}
            kept = [now[t]["modalities"][m]["state"] == "OK" for t in ok_before if t in now]
            out[f"{m}_kept_pct"] = round(100 * float(np.mean(kept)), 1) if kept else float("nan")
    out["not_ok"] = [
        f"{r['t_start']:g}-{r['t_end']:g} s {m} {r['modalities'][m]['state']}: {r['modalities'][m]['reason']}"
        for r in rows
        for m in ("vision", "audio")
        if r["modalities"][m]["state"] != "OK"
    ][:30]
    out["text_states"] = dict(Counter(r["modalities"]["text"]["state"] for r in rows))
    out["text_not_ok"] = dict(
        Counter(
            f"{r['modalities']['text']['state']}: {r['modalities']['text']['reason']}"
            for r in rows
            if r["modalities"]["text"]["state"] != "OK"
        ).most_common(6)
    )
    lag = [r.get("lag", {}).get("server") for r in rows]
    lag = [x for x in lag if x is not None]
    if lag:
        out["server_lag_s"] = {"p50": round(float(np.median(lag)), 2), "max": round(float(max(lag)), 2)}
    late = [r.get("lag", {}).get("transport") for r in rows]
    late = [x for x in late if x is not None]
    if late:
        out["transport_lag_s"] = {"p50": round(float(np.median(late)), 2), "max": round(float(max(late)), 2)}
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
    ap.add_argument(
        "--ways",
        default="live,replay,browser",
        help="which ways to run, comma-separated (browser: needs chromium and playwright)",
    )
    args = ap.parse_args(argv)

    from app.ui import App
    from streaming.bench import machine
    from streaming.democlip import build_clip

    app = App()
    app.new_asr()
    res: dict = {"machine": machine(), "busy_processes": args.busy, "date": time.strftime("%Y-%m-%d"), "runs": []}
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        clips = {
            "demo clip": build_clip(Path(tmp) / "demo.mp4")["path"],
            "real clips joined": str(join_real_clips(Path(tmp) / "real.mp4")),
        }
        ways = set(args.ways.split(","))
        runs = [
            (name, way, functools.partial(fn, app, path, args.seconds))
            for name, path in clips.items()
            for way, fn in (("live", run_live), ("replay", run_replay))
            if way in ways
        ]
        server = None
        if "browser" in ways:
            from app import browser as B

            if B.missing_browser():
                print(f"browser runs skipped: {B.missing_browser()}")
            else:
                media = make_fake_media(Path(tmp) / "fake")
                server = Server().__enter__()
                runs.append(("real clips joined", "browser", functools.partial(run_browser, server.url, media, args.seconds)))
        try:
            for name, way, fn in runs:
                base = None
                for load in ("idle", "busy"):
                    t0 = time.monotonic()
                    if load == "busy":
                        with Busy(args.busy):
                            rows, extra = fn()
                    else:
                        rows, extra = fn()
                    # the browser's two runs are two sessions on their own clocks: no pairing
                    summary = summarise(rows, base if way != "browser" else None)
                    base = rows if load == "idle" else base
                    entry = {
                        "recording": name,
                        "way": way,
                        "load": load,
                        "wall_s": round(time.monotonic() - t0, 1),
                        **extra,
                        **summary,
                    }
                    res["runs"].append(entry)
                    print(json.dumps(entry))
        finally:
            if server is not None:
                server.__exit__(None, None, None)
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
        f'Written by `python -m app.load_check` on {res["machine"]}, {res["date"]}; "busy": '
        f"{res['busy_processes']} processes spinning, one per core. Target: healthy vision and audio stay OK "
        'in at least 95 % of windows ("kept": of the windows OK on the idle machine, the share still OK under load).',
        "",
        "| recording | way | load | windows | vision OK | kept | audio OK | kept | text states | transport lag p50 / max (s) | server lag p50 / max (s) | recogniser lag p50 / max (s) | frames skipped |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in res["runs"]:
        lag = e.get("server_lag_s")
        asr = e.get("recogniser_lag_s")
        lines.append(
            f"| {e['recording']} | {e['way']} | {e['load']} | {e['windows']} | {e['vision_ok_pct']} % | "
            f"{e.get('vision_kept_pct', '')}{' %' if 'vision_kept_pct' in e else ''} | {e['audio_ok_pct']} % | "
            f"{e.get('audio_kept_pct', '')}{' %' if 'audio_kept_pct' in e else ''} | "
            f"{', '.join(f'{k} {v}' for k, v in e['text_states'].items())} | "
            f"{pair(e.get('transport_lag_s'))} | {pair(lag)} | {pair(asr)} | "
            f"{e.get('frames_skipped', '')} |"
        )
    lines += ["", "States that were not OK, per run (reason: windows):", ""]
    for e in res["runs"]:
        bad = {m: {k: v for k, v in e[f"{m}_states"].items() if not k.startswith("OK")} for m in ("vision", "audio")}
        lines.append(
            f"- {e['recording']}, {e['way']}, {e['load']}: vision {bad['vision'] or 'none'}; audio {bad['audio'] or 'none'}; "
            f"text {e.get('text_not_ok') or 'none'}"
        )
    md = out.with_suffix(".md")
    before = md.read_text().partition("\n## Before")[2] if md.is_file() else ""
    md.write_text("\n".join(lines) + "\n" + (f"\n## Before{before}" if before else ""))


if __name__ == "__main__":
    main()
