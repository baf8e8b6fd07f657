"""Takes the README screenshot: the failure simulator replaying the demo clip with faults.

    python -m app.screenshot [--out docs/screenshot.png] [--port 7871] [--wait 14]

Builds the demo clip (``streaming.democlip``: FER-2013 faces and espeak-ng speech from
``../shared/data``) in a temporary folder, starts the app (``python app.py --port P``) in a
subprocess, opens the page in headless Chromium at 1400x1000, switches to the "Replay
(failure simulator)" tab, uploads the clip, types a fault schedule, clicks "Replay", lets the
replay run in real time for ``--wait`` seconds (longer if the machine is too slow to show the
windows up to ``--until`` seconds by then) and saves a full-page screenshot.

Needs, besides the app's own requirements (deliberately not in requirements.txt):
``pip install playwright`` (the Python package only; ``playwright install`` is not needed)
and Debian's Chromium (``apt-get install -y chromium``, at /usr/bin/chromium), plus
espeak-ng and ffmpeg for the clip.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEFAULT_SPEC = "vision:drop@6-10,audio:noise:snr=0@12-16"
MAX_BYTES = 400_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/config", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"the app did not answer at {url} within {timeout:.0f} s")


def start_app(port: int, log) -> subprocess.Popen:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def shrink_png(data: bytes, max_bytes: int = MAX_BYTES) -> bytes:
    """The PNG as is when small enough, else palette-quantised (UI colours survive well)."""
    if len(data) <= max_bytes:
        return data
    from PIL import Image

    im = Image.open(io.BytesIO(data)).convert("RGB")
    for colors in (256, 128, 64):
        buf = io.BytesIO()
        im.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
        if buf.tell() <= max_bytes:
            break
    return buf.getvalue()


def browser_playable(clip: str, out: Path) -> str:
    """The clip re-encoded as H.264 (the demo clip's MPEG-4 part 2 video has no preview in
    browsers); the clip itself when ffmpeg cannot."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", clip, "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-preset", "veryfast", "-c:a", "copy", "-movflags", "+faststart", str(out)]
    try:
        subprocess.run(cmd, check=True, capture_output=True)
        return str(out)
    except (OSError, subprocess.CalledProcessError):
        return clip


def shown_window_end(page) -> float:
    """End (s) of the newest window the visible page shows, -1 before the first."""
    ends = [float(m) for m in re.findall(r"window \d+-(\d+) s", page.evaluate("document.body.innerText"))]
    return max(ends, default=-1.0)


def capture(url: str, clip: str, out: Path, spec: str, wait_s: float, until_s: float, timeout_s: float = 180.0,
            width: int = 1400, height: int = 1000) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url, wait_until="domcontentloaded", timeout=120_000)
            tab = page.get_by_role("tab", name="Replay (failure simulator)")
            tab.wait_for(timeout=120_000)
            tab.click()
            video = page.locator(".block", has_text="Recording (video with sound, or audio)").last
            video.locator("input[type=file]").set_input_files(clip)
            preview = video.locator("video").first
            preview.wait_for(timeout=60_000)  # uploaded and previewed
            # show a face in the preview rather than the first (dark) frame
            preview.evaluate("v => new Promise(r => { const go = () => { v.onseeked = () => r(); v.currentTime = 2; };"
                             " v.readyState >= 1 ? go() : (v.onloadedmetadata = go); setTimeout(r, 10000); })")
            page.get_by_label("Scheduled faults").fill(spec)
            page.get_by_role("button", name="Replay", exact=True).click()
            t0 = time.monotonic()
            page.wait_for_timeout(wait_s * 1000)
            # the replay runs at real-time pace but a loaded machine can fall behind: wait until
            # the windows up to ``until_s`` are on the page
            while shown_window_end(page) < until_s and time.monotonic() - t0 < timeout_s:
                page.wait_for_timeout(500)
            print(f"replay shown up to {shown_window_end(page):.0f} s after {time.monotonic() - t0:.1f} s")
            page.wait_for_timeout(1500)  # the plot of the same tick
            page.mouse.move(0, 0)  # no hover effects in the picture
            png = page.screenshot(full_page=True)
        finally:
            browser.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(shrink_png(png))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    ap.add_argument("--port", type=int, default=0, help="port for the app (default: a free one)")
    ap.add_argument("--spec", default=DEFAULT_SPEC, help="scheduled faults typed into the simulator")
    ap.add_argument("--wait", type=float, default=14.0, help="seconds of real-time replay before the shot")
    ap.add_argument("--until", type=float, default=14.0, help="then wait until the windows up to this time (s) are shown")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        sys.exit(f"{CHROMIUM} not found: apt-get install -y chromium")

    from streaming.democlip import build_clip

    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="screenshot-") as tmp:
        t0 = time.monotonic()
        clip = browser_playable(build_clip(Path(tmp) / "demo.mp4")["path"], Path(tmp) / "demo-h264.mp4")
        print(f"demo clip built in {time.monotonic() - t0:.1f} s")
        with open(Path(tmp) / "app.log", "wb") as log:
            proc = start_app(port, log)
            try:
                t0 = time.monotonic()
                wait_for_server(url, proc)
                print(f"app up at {url} in {time.monotonic() - t0:.1f} s")
                t0 = time.monotonic()
                capture(url, clip, Path(args.out), args.spec, args.wait, args.until)
                print(f"screenshot taken in {time.monotonic() - t0:.1f} s")
            except BaseException:
                log.flush()
                sys.stderr.write((Path(tmp) / "app.log").read_text(errors="replace")[-4000:])
                raise
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
