"""Drives the app's Live tab in a real (headless) Chromium with a fake camera and microphone.

Shared by the end-to-end test (``tests/test_browser.py``) and the README screenshot
(``python -m app.screenshot``). The pieces:

* the fake camera and microphone files come from ``app.fake_media.make_fake_media``;
* ``start_app`` / ``wait_for_server`` / ``stop_app`` run ``python app.py`` in a subprocess;
* ``launch_browser(pw, video, audio)`` starts Chromium with the fake devices and
  ``new_page(browser, url)`` opens the app with camera and microphone allowed;
* ``LivePage(page)`` clicks through the Live tab: ``open_live``, ``start_webcam``,
  ``start_microphone``, ``set_fault``, ``export``, and reads it: ``badges``, ``window``,
  ``snapshot``, ``wait_for`` (polling with a deadline); ``describe`` prints a badge history;
  ``parse_csv`` / ``parse_jsonl`` read the exported files.

Needs, besides the app's own requirements: the ``playwright`` Python package
(``pip install -r requirements-test.txt``; ``playwright install`` is not needed, Debian's
Chromium is used: ``apt-get install -y chromium``, at /usr/bin/chromium) and ffmpeg.

The page's handles used: the health badges ``div.badge[data-modality][data-state]``
(``app.ui.health_html``), the "window A-B s" text of the headline, and the ``elem_id``s
``live-tab``, ``live-webcam``, ``live-mic``, ``live-faults``, ``live-export`` and
``live-export-files`` in ``app/ui.py``; visible labels only where Gradio gives nothing else
(a fault's checkbox by its choice name).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
#: what headless Chromium needs on these machines (no sandbox in a container, no GPU, and
#: nothing that reaches out to the network on its own)
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
#: the real clips joined into the fake recording, in this order (cycled until long enough):
MODALITIES = ("vision", "audio", "text")


def missing_browser() -> str | None:
    """Why no browser can be driven here (no Chromium at ``CHROMIUM``, no playwright
    package), or None when both are there."""
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements-test.txt)"
    return None


# ====================================================================== the app
def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, log, args=(), env=None) -> subprocess.Popen:
    """Starts ``python app.py --host 127.0.0.1 --port PORT [args]`` in the repository, its
    output to the open file ``log``; ``env``: extra environment variables. Out: the process
    (``stop_app`` ends it)."""
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", **(env or {}))
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_for_server(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    """Returns once ``url``/config answers; raises if ``proc`` exits or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
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


def stop_app(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Ends the app started by ``start_app`` (SIGTERM, then SIGKILL after ``timeout`` s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


# ====================================================================== the browser
def chromium_args(video=None, audio=None) -> list[str]:
    """Chromium's flags: ``CHROMIUM_ARGS``, media permission prompts answered yes, and fake
    capture devices playing (and looping) the files ``video`` (.y4m) and ``audio`` (.wav)
    when given (Chromium's own test pattern and beep otherwise)."""
    args = CHROMIUM_ARGS + [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ]
    if video is not None:
        args.append(f"--use-file-for-fake-video-capture={Path(video).resolve()}")
    if audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={Path(audio).resolve()}")
    return args


def launch_browser(pw, video=None, audio=None, extra_args=()):
    """Headless Chromium (``CHROMIUM``) with the fake camera / microphone of
    ``chromium_args(video, audio)``. In: a started ``sync_playwright()`` object. Out: the
    playwright ``Browser`` (close it)."""
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args(video, audio) + list(extra_args))


def new_page(browser, url: str, width: int = 1400, height: int = 1000):
    """A page of a new browser context allowed camera and microphone on ``url``'s origin,
    opened at ``url`` (waits until the Gradio page has rendered its tabs). Out: the page."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    ctx.grant_permissions(["camera", "microphone"], origin=url)
    page = ctx.new_page()
    page.goto(url, wait_until="domcontentloaded", timeout=120_000)
    page.locator("#live-webcam").wait_for(state="attached", timeout=120_000)
    return page


_BADGES_JS = """() => Array.from(document.querySelectorAll('#live-tab div.badge[data-modality]')).map(b => {
    const reason = b.querySelector('div');
    return [b.dataset.modality, b.dataset.state, reason ? reason.innerText.trim() : ''];
})"""
_WINDOW_RE = r"window (-?[\d.]+)-(-?[\d.]+) s"


class LivePage:
    """The Live tab of an open page (``new_page``), driven by its ``elem_id``s.

    Gradio 6.31's streaming webcam (``gr.Image(sources=["webcam"], streaming=True)``) first
    shows a "Click to Access Webcam" button (inside ``div[title="grant webcam access"]``),
    then ``button.capture-button`` (labelled "Record", "Stop" while streaming); the streaming
    microphone shows ``button.record-button`` ("Record"), replaced by
    ``button.stop-button`` ("Stop") while it streams.
    """

    def __init__(self, page):
        self.page = page

    # ------------------------------------------------------------ controls
    def open_live(self) -> None:
        """Selects the Live tab (the first tab, selected already when the page opens)."""
        tab = self.page.locator("#live-tab-button")
        if tab.count():
            tab.first.click()
        else:
            self.page.get_by_role("tab", name="Live").first.click()
        self.page.locator("#live-tab").wait_for(state="visible", timeout=60_000)

    def start_webcam(self, timeout: float = 60.0) -> None:
        """Grants the webcam (if asked) and starts streaming it; returns once the component
        streams (its button reads "Stop")."""
        cam = self.page.locator("#live-webcam")
        grant = cam.locator("[title='grant webcam access'] button")
        capture = cam.locator("button.capture-button")
        capture.or_(grant).first.wait_for(timeout=timeout * 1000)
        if grant.count() and grant.first.is_visible():
            grant.first.click()
        capture.wait_for(timeout=timeout * 1000)
        cam.locator("video").first.wait_for(timeout=timeout * 1000)
        self.page.wait_for_function(
            "() => { const v = document.querySelector('#live-webcam video'); return v && v.readyState >= 2 && v.videoWidth > 0; }",
            timeout=timeout * 1000,
        )
        capture.click()
        self.page.wait_for_function(
            "() => /stop/i.test(document.querySelector('#live-webcam button.capture-button')?.innerText || '')",
            timeout=timeout * 1000,
        )

    def start_microphone(self, timeout: float = 60.0) -> None:
        """Starts the streaming microphone; returns once its "Stop" button shows."""
        mic = self.page.locator("#live-mic")
        mic.locator("button.record-button").click(timeout=timeout * 1000)
        mic.locator("button.stop-button").wait_for(timeout=timeout * 1000)

    def stop_streams(self) -> None:
        """Stops the webcam and microphone streams if they run."""
        cam = self.page.locator("#live-webcam button.capture-button")
        if cam.count() and "stop" in cam.first.inner_text().lower():
            cam.first.click()
        mic = self.page.locator("#live-mic button.stop-button")
        if mic.count():
            mic.first.click()

    def fault_box(self, name: str):
        """The checkbox of fault ``name`` (e.g. ``"vision:drop"``) in the "Inject faults
        (live)" group."""
        return self.page.locator("#live-faults").get_by_label(name, exact=True)

    def set_fault(self, name: str, on: bool) -> None:
        """Ticks (``on``) or unticks fault ``name``; the change goes to the server at once."""
        box = self.fault_box(name)
        if box.is_checked() != on:
            box.click()
        if box.is_checked() != on:
            raise AssertionError(f"the checkbox {name} did not turn {'on' if on else 'off'}")

    # ------------------------------------------------------------ reading
    def badges(self) -> dict[str, tuple[str, str]]:
        """The health badges now shown in the Live tab: {modality: (state, reason)}, state
        one of OK, DEGRADED, DROPPED, waiting."""
        return {m: (s, r) for m, s, r in self.page.evaluate(_BADGES_JS)}

    def window(self) -> tuple[float, float] | None:
        """(start, end) s of the newest window the Live tab shows, None before the first."""
        import re

        m = re.search(_WINDOW_RE, self.page.locator("#live-tab").inner_text())
        return (float(m.group(1)), float(m.group(2))) if m else None

    def snapshot(self) -> dict:
        """The badges and the newest window in one read: {"badges": ..., "window": ...,
        "t": monotonic seconds}."""
        return {"t": time.monotonic(), "badges": self.badges(), "window": self.window()}

    def wait_for(self, accept, timeout: float, what: str, log=None, poll: float = 1.0, stale: float | None = 60.0) -> dict:
        """Polls ``snapshot()`` every ``poll`` s until ``accept(snapshot)`` is true; appends
        every snapshot to the list ``log`` if given. Out: the accepted snapshot. Raises
        ``TimeoutError`` (naming ``what`` and the last badges) after ``timeout`` s, or as soon
        as the page has shown the same newest window for ``stale`` s (a page that stopped
        updating: the server failing on every call, say; None: no such check)."""
        deadline = time.monotonic() + timeout
        since, shown = time.monotonic(), None
        while True:
            snap = self.snapshot()
            if log is not None:
                log.append(snap)
            if accept(snap):
                return snap
            if snap["window"] != shown:
                since, shown = snap["t"], snap["window"]
            elif stale is not None and shown is not None and snap["t"] - since > stale:
                raise TimeoutError(
                    f"no {what}: the page has shown window {shown} for {snap['t'] - since:.0f} s "
                    f"(it stopped updating); last badges {snap['badges']}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout:.0f} s; last badges {snap['badges']}, window {snap['window']}")
            self.page.wait_for_timeout(poll * 1000)

    # ------------------------------------------------------------ export
    def export(self, timeout: float = 60.0) -> dict[str, bytes]:
        """Clicks the export button and downloads what the "Session export" file component
        then links to. Out: {file name: content}."""
        files = self.page.locator("#live-export-files")
        old = set(self._links())
        self.page.locator("#live-export").click()
        deadline = time.monotonic() + timeout
        links = []
        while time.monotonic() < deadline:
            links = [h for h in self._links() if h not in old]
            if links and len(links) >= 2:
                break
            self.page.wait_for_timeout(500)
        if not links:
            raise TimeoutError(f"the export showed no files within {timeout:.0f} s: {files.inner_text()!r}")
        out = {}
        for href in links:
            r = self.page.request.get(href)
            if not r.ok:
                raise AssertionError(f"GET {href}: HTTP {r.status}")
            name = urllib.parse.unquote(href.split("?")[0].rsplit("/", 1)[-1])
            out[name] = r.body()
        return out

    def _links(self) -> list[str]:
        return self.page.evaluate("() => Array.from(document.querySelectorAll('#live-export-files a[href]')).map(a => a.href)")


def parse_jsonl(data: bytes) -> list[dict]:
    """The rows of an exported ``session.jsonl``."""
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def parse_csv(data: bytes) -> list[dict]:
    """The rows of an exported ``session.csv`` as {column: text} dicts."""
    import csv
    import io

    return list(csv.DictReader(io.StringIO(data.decode())))


def describe(snapshots: list[dict], t0: float | None = None, changes_only: bool = True) -> str:
    """The badge history of ``snapshot()`` dicts as text, one line per snapshot (only those
    where a state or reason changed when ``changes_only``): seconds since ``t0`` (default:
    the first snapshot), the newest window, each modality's state and reason."""
    if not snapshots:
        return "(no snapshots)"
    t0 = snapshots[0]["t"] if t0 is None else t0
    lines, last = [], None
    for s in snapshots:
        key = tuple(sorted(s["badges"].items()))
        if changes_only and key == last:
            continue
        last = key
        w = "-" if s["window"] is None else f"{s['window'][0]:g}-{s['window'][1]:g}"
        states = "  ".join(f"{m} {st}" + (f" ({r})" if r else "") for m, (st, r) in s["badges"].items())
        lines.append(f"{s['t'] - t0:6.1f} s  window {w:>9}  {states}")
    return "\n".join(lines)
