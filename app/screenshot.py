"""Takes the README screenshot: the Live tab fed by a fake camera and microphone, with a fault.

    python -m app.screenshot [--out docs/screenshot.png] [--port 0] [--lead 8] [--wait 8] [--fault vision:drop]

Joins real clips of people speaking on camera (``../shared/data/real``) into the raw video
and sound files Chromium plays as its camera and microphone (``app.fake_media.make_fake_media``,
in a temporary folder), starts the app (``python app.py --port P``) in a subprocess, opens the
page in headless Chromium at 1400x1000 with those fake devices, starts the Live tab's webcam
and microphone streams and waits until the health badges show vision, audio and text OK
(at most ``--timeout`` seconds; it goes on with a warning otherwise) and the streams have
run for ``--lead`` seconds (some history on the timeline before the fault). Then it ticks
``--fault`` in "Inject faults (live)", leaves it on for ``--wait`` seconds (longer until the
badge of the fault's modality reads DROPPED, or DEGRADED for a fault that only degrades),
so the page shows the badge and the timeline plot the fault's interval, and saves a
full-page screenshot (palette-quantised if over 400 kB). The same browser path as
``tests/test_browser.py`` (``app.browser``).

Needs, besides the app's own requirements: ``pip install -r requirements-test.txt`` (the
playwright package; ``playwright install`` is not needed), Debian's Chromium
(``apt-get install -y chromium``, at /usr/bin/chromium) and ffmpeg.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from app import browser as B
from app.fake_media import make_fake_media

ROOT = B.ROOT
MAX_BYTES = 400_000


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


def capture(
    url: str,
    video: Path,
    audio: Path,
    out: Path,
    fault: str,
    wait_s: float,
    lead_s: float = 8.0,
    timeout_s: float = 180.0,
    width: int = 1400,
    height: int = 1000,
) -> None:
    """Drives the Live tab at ``url`` with the fake devices ``video`` / ``audio`` and writes
    the screenshot to ``out`` (see the module's docstring)."""
    from playwright.sync_api import sync_playwright

    modality = fault.split(":", 1)[0]
    with sync_playwright() as pw:
        browser = B.launch_browser(pw, video, audio)
        try:
            page = B.new_page(browser, url, width, height)
            live = B.LivePage(page)
            live.open_live()
            live.start_webcam()
            live.start_microphone()
            t0 = time.monotonic()
            history: list[dict] = []
            try:
                live.wait_for(
                    lambda s: all(st == "OK" for st, _ in s["badges"].values()),
                    timeout_s,
                    "render with every modality OK",
                    history,
                )
                print(f"every modality OK after {time.monotonic() - t0:.1f} s")
            except TimeoutError as e:
                print(f"warning: {e}", file=sys.stderr)
            page.wait_for_timeout(max(0.0, lead_s - (time.monotonic() - t0)) * 1000)
            live.set_fault(fault, True)
            t1 = time.monotonic()
            page.wait_for_timeout(wait_s * 1000)
            try:
                live.wait_for(
                    lambda s: s["badges"].get(modality, ("", ""))[0] in ("DROPPED", "DEGRADED"),
                    60,
                    f"{modality} DROPPED or DEGRADED under {fault}",
                    history,
                )
            except TimeoutError as e:
                print(f"warning: {e}", file=sys.stderr)
            print(f"{fault} on for {time.monotonic() - t1:.1f} s; badges over time:\n{B.describe(history, t0)}")
            page.wait_for_timeout(1500)  # the plot of the same tick
            page.mouse.move(0, 0)  # no hover effects in the picture
            png = page.screenshot(full_page=True)
            live.stop_streams()
        finally:
            browser.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(shrink_png(png))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    ap.add_argument("--port", type=int, default=0, help="port for the app (default: a free one)")
    ap.add_argument("--fault", default="vision:drop", help="the live fault ticked before the shot")
    ap.add_argument("--lead", type=float, default=8.0, help="least seconds of streaming before the fault")
    ap.add_argument("--wait", type=float, default=8.0, help="seconds the fault stays on before the shot")
    ap.add_argument("--timeout", type=float, default=180.0, help="most seconds to wait for every modality OK first")
    args = ap.parse_args(argv)
    missing = B.missing_browser()
    if missing:
        sys.exit(missing)

    port = args.port or B.free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="screenshot-") as tmp:
        t0 = time.monotonic()
        video, audio = make_fake_media(tmp)
        print(f"fake camera and microphone files built in {time.monotonic() - t0:.1f} s")
        log_path = Path(tmp) / "app.log"
        with open(log_path, "wb") as log:
            proc = B.start_app(port, log)
            try:
                t0 = time.monotonic()
                B.wait_for_server(url, proc)
                print(f"app up at {url} in {time.monotonic() - t0:.1f} s")
                t0 = time.monotonic()
                capture(url, video, audio, Path(args.out), args.fault, args.wait, args.lead, args.timeout)
                print(f"screenshot taken in {time.monotonic() - t0:.1f} s")
            except BaseException:
                log.flush()
                sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
                raise
            finally:
                B.stop_app(proc)
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
