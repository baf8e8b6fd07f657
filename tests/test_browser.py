"""End to end in a real browser: the Live tab with Chromium's fake camera and microphone
playing real clips of people speaking (``../shared/data/real``, joined by
``app.fake_media.make_fake_media``).

The app runs as ``python app.py`` in a subprocess, as a user starts it; headless Chromium
opens the page, starts the streaming webcam and microphone and the test watches the health
badges (``div.badge[data-modality][data-state]``) until one render shows vision, audio and
text all OK with words recognised; then ticks "vision:drop" in "Inject faults (live)" and
waits for vision DROPPED, unticks it and waits for vision OK again, and finally exports the
session and reads the CSV and JSONL back through the page's download links.

Waiting is polling with generous deadlines (the browser, the server, Whisper and the face
mesh share a 2-core CI machine); how long anything takes is never asserted. Screenshots of
each stage land in pytest's tmp folder, and are copied to ``$SCREENSHOT_DIR`` when set,
with the badge history (``badges.txt``) and the app's log.

Skipped only when Chromium (/usr/bin/chromium) or the playwright package is missing
(``apt-get install -y chromium``, ``pip install -r requirements-test.txt``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from app import browser as B
from app.fake_media import make_fake_media

MISSING = B.missing_browser()
pytestmark = [
    pytest.mark.skipif(MISSING is not None, reason=f"no browser to drive: {MISSING}"),
    pytest.mark.timeout(1200),  # a guard against a hang only; the deadlines below come first
]

STATES = {"OK", "DEGRADED", "DROPPED"}
FAULT = "vision:drop"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """(y4m, wav) of about 20 s of real speech on camera, looped by Chromium."""
    return make_fake_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, log path) of ``python app.py`` running on a free port; stopped after the module."""
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    port = B.free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = B.start_app(port, log)
        try:
            try:
                B.wait_for_server(url, proc, timeout=300)
            except (RuntimeError, TimeoutError) as e:
                pytest.fail(f"{e}\n--- app log ---\n{_tail(log_path)}")
            yield url, log_path
        finally:
            B.stop_app(proc)


@pytest.fixture
def shots(tmp_path):
    """save(page, name): a full-page screenshot into the test's tmp folder (and
    ``$SCREENSHOT_DIR``); ``shots.files`` lists them."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    extra = os.environ.get("SCREENSHOT_DIR")

    def save(page, name: str) -> Path:
        path = folder / f"{len(save.files) + 1:02d}-{name}.png"
        page.mouse.move(0, 0)
        page.screenshot(path=str(path), full_page=True)
        save.files.append(path)
        return path

    save.files = []
    save.folder = folder
    yield save
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        for f in folder.iterdir():
            shutil.copy2(f, Path(extra) / f.name)


def _tail(path: Path, n: int = 5000) -> str:
    """The app's log for a failure message: the first traceback in full (with how many there
    were), then the end of the log, without the noise (mediapipe's per-thread warnings,
    Gradio's "Unexpected argument" warnings, repeated tracebacks)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    noise = ("inference_feedback_manager", "Unexpected argument. Filling with None")
    lines = [ln for ln in lines if not any(x in ln for x in noise)]
    starts = [i for i, ln in enumerate(lines) if ln.startswith("Traceback")]
    head = ""
    if starts:
        i = starts[0]
        j = next((k for k in range(i + 1, len(lines)) if lines[k] and not lines[k].startswith(" ")), len(lines) - 1)
        head = f"{len(starts)} traceback(s) in the log; the first:\n" + "\n".join(lines[i : j + 1]) + "\n--- the end ---\n"
        # the rest without the repeats: only the last line of each further traceback
        keep, skipping = [], False
        for ln in lines[j + 1 :]:
            if ln.startswith("Traceback"):
                skipping = True
                continue
            if skipping and (not ln or ln.startswith(" ")):
                continue
            skipping = False
            keep.append(ln)
        lines = keep
    squeezed: list[str] = []  # consecutive repeats as one line with a count
    for ln in lines:
        if squeezed and squeezed[-1].split("  [x")[0] == ln:
            base, _, count = squeezed[-1].partition("  [x")
            squeezed[-1] = f"{base}  [x{int(count.rstrip(']') or 1) + 1}]"
        else:
            squeezed.append(ln)
    return head + "\n".join(squeezed)[-n:]


def _all_ok(snap) -> bool:
    """Every modality OK in this render, and the text OK because words were recognised (a
    window without words is OK with the reason "no speech")."""
    b = snap["badges"]
    return all(b.get(m, ("", ""))[0] == "OK" for m in B.MODALITIES) and "no speech" not in b["text"][1]


def _state(snap, m: str) -> str:
    return snap["badges"].get(m, ("", ""))[0]


def _starts_after(snap, t: float) -> bool:
    return snap["window"] is not None and snap["window"][0] >= t


def _ends_after(snap, t: float) -> bool:
    return snap["window"] is not None and snap["window"][1] >= t


def test_live_tab_streams_faults_and_exports(server, media, shots):
    from playwright.sync_api import sync_playwright

    url, log_path = server
    video, audio = media
    history: list[dict] = []
    t0 = time.monotonic()

    def context() -> str:
        return f"\n--- badges over time (changes only) ---\n{B.describe(history, t0)}\n--- app log ---\n{_tail(log_path)}"

    try:
        with sync_playwright() as pw:
            browser = B.launch_browser(pw, video, audio)
            try:
                page = B.new_page(browser, url)
                live = B.LivePage(page)
                live.open_live()
                assert set(live.badges()) == set(B.MODALITIES), live.badges()
                assert {s for s, _ in live.badges().values()} == {"waiting"}
                live.start_webcam()
                live.start_microphone()
                t0 = time.monotonic()

                # 1. every modality OK in one render, words recognised
                ok = live.wait_for(_all_ok, 180, "render with vision, audio and text all OK", history)
                shots(page, "all-ok")

                # 2. vision:drop ticked -> vision DROPPED in a window after the tick
                w0 = live.window()[1]
                live.set_fault(FAULT, True)
                dropped = live.wait_for(
                    lambda s: _state(s, "vision") == "DROPPED" and _starts_after(s, w0),
                    60,
                    f"vision DROPPED after ticking {FAULT}",
                    history,
                )
                w1 = dropped["window"][1]
                # keep the fault on for a few windows, so the export and the plot show it
                live.wait_for(lambda s: _ends_after(s, w1 + 3), 60, "three more windows during the drop", history)
                shots(page, "vision-dropped")
                w2 = live.window()[1]
                assert live.fault_box(FAULT).is_checked()

                # 3. unticked -> vision OK again
                live.set_fault(FAULT, False)
                back = live.wait_for(
                    lambda s: _state(s, "vision") == "OK" and _starts_after(s, w2 + 0.01),
                    120,
                    f"vision OK again after unticking {FAULT}",
                    history,
                )
                shots(page, "vision-back")

                # 4. export: the CSV and the JSONL the page links to
                files = live.export()
                shots(page, "exported")
                live.stop_streams()
            finally:
                browser.close()
    except Exception as e:  # noqa: BLE001 - any failure is reported with the badge history and the log
        (shots.folder / "badges.txt").write_text(B.describe(history, t0, changes_only=False))
        shutil.copy2(log_path, shots.folder / "app.log")
        pytest.fail(f"{type(e).__name__}: {e}{context()}")
    (shots.folder / "badges.txt").write_text(B.describe(history, t0, changes_only=False))
    shutil.copy2(log_path, shots.folder / "app.log")

    for name, data in files.items():
        (shots.folder / name).write_bytes(data)
    # one CSV and one JSON Lines file (their names are the app's: session.csv, live-<time>.csv)
    csvs = [n for n in files if n.endswith(".csv")]
    jsonls = [n for n in files if n.endswith(".jsonl")]
    assert len(csvs) == 1 and len(jsonls) == 1, sorted(files)
    rows = B.parse_jsonl(files[jsonls[0]])
    table = B.parse_csv(files[csvs[0]])
    assert rows and table, (len(rows), len(table))
    # the CSV was written just before the JSONL: its windows are the JSONL's first ones
    assert len(table) <= len(rows)
    for r, c in zip(rows, table):
        assert float(c["t_end"]) == pytest.approx(r["t_end"])
        for m in B.MODALITIES:
            assert c[f"{m}_state"] == r["modalities"][m]["state"]
    for r in rows:
        assert set(r["modalities"]) == set(B.MODALITIES), r
        assert {d["state"] for d in r["modalities"].values()} <= STATES, r
    by_end = {round(r["t_end"], 1): r for r in rows}
    ctx = context()

    # what the page showed is what was exported
    seen_ok = by_end.get(round(ok["window"][1], 1))
    assert seen_ok is not None, f"the all-OK window {ok['window']} is not in the export{ctx}"
    assert all(seen_ok["modalities"][m]["state"] == "OK" for m in B.MODALITIES), seen_ok
    words = [r["transcript"] or r.get("partial", "") for r in rows]
    assert any(w.strip() for w in words), f"no words (transcript or partial) in any exported window{ctx}"
    # the windows from the first one the page showed DROPPED to the newest one shown when
    # the box was unticked lie within the fault: all vision DROPPED
    during = [r for r in rows if w1 - 0.01 <= r["t_end"] <= w2 + 0.01]
    assert during, (w1, w2, [r["t_end"] for r in rows])
    not_dropped = [
        (r["t_start"], r["t_end"], r["modalities"]["vision"]) for r in during if r["modalities"]["vision"]["state"] != "DROPPED"
    ]
    assert not not_dropped, f"vision not DROPPED during {FAULT} ({w1}-{w2} s): {not_dropped}{ctx}"
    # and vision OK after it, as the page showed
    after = by_end.get(round(back["window"][1], 1))
    assert after is not None and after["modalities"]["vision"]["state"] == "OK", (back["window"], after)
