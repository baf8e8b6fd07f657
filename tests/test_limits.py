"""The limits a visitor cannot exceed (``streaming.limits``): frames and audio a second per
session (excess dropped and counted, on the session's injected clock), the number of
sessions (the next one told the server is busy, on the page through the real server),
idle sessions closed and freed, and uploads over the size limit refused by the server."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from app.http_load import API, QueueSession, frame_payload, free_port  # noqa: E402
from streaming import limits  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def frame():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)


# ---------------------------------------------------------------- per-session rates
def test_rate_limit_bucket():
    from streaming.session import RateLimit

    r = RateLimit(rate=10, burst=20)
    took = [r.take(1, 0.0) for _ in range(25)]
    assert took == [True] * 20 + [False] * 5  # the burst, then the excess
    assert r.dropped == 5
    assert [r.take(1, 0.5) for _ in range(6)] == [True] * 5 + [False]  # 0.5 s refills 5
    # steady input at the limit is never dropped
    r = RateLimit(rate=10, burst=20)
    assert all(r.take(1, k / 10) for k in range(200))


def test_session_drops_and_counts_frames_over_the_limit(model):
    from streaming.session import LiveSession

    clock = Clock()
    s = LiveSession(model, None, clock=clock, worker=False)
    try:
        f = frame()
        # the browser's pace (5 a second) for 10 s: nothing dropped
        for k in range(50):
            clock.now = k * 0.2
            s.video(f)
        assert s.limited["frames"] == 0
        # a script sending 100 frames a second for 2 s: about the limit's worth get through
        queued = len(s._inbox)
        for k in range(200):
            clock.now = 10.0 + k * 0.01
            s.video(f)
        taken = len(s._inbox) - queued
        limit = limits.MAX_FRAMES_PER_S
        assert 2 * limit <= taken <= 2 * limit + 2 * limit + 1  # two seconds' worth plus the burst
        assert s.limited["frames"] == 200 - taken
    finally:
        s.close()


def test_session_drops_and_counts_audio_over_the_limit(model):
    from streaming.session import AUDIO_BURST_S, LiveSession

    clock = Clock()
    s = LiveSession(model, None, clock=clock, worker=False)
    try:
        rate = 48000
        chunk = (rate, np.zeros(rate // 2, np.int16))
        for k in range(40):  # 20 s at the microphone's pace
            clock.now = 0.5 * (k + 1)
            s.audio(chunk)
        assert s.limited["audio_s"] == 0
        # a burst after a stall of the transport (the chunks held up arrive at once): kept
        clock.now = 26.0
        for _ in range(10):
            s.audio(chunk)
        assert s.limited["audio_s"] == 0
        # a script flooding a minute of audio at once: beyond the burst it is dropped
        queued = len(s._inbox)
        for _ in range(120):
            s.audio(chunk)
        taken_s = 0.5 * (len(s._inbox) - queued)
        assert taken_s <= AUDIO_BURST_S
        assert s.limited["audio_s"] == pytest.approx(60.0 - taken_s)
        # the status line says so
        from app.views import status_md

        assert "over the input limits" in status_md(s)
    finally:
        s.close()


# ---------------------------------------------------------------- sessions
def test_session_count_and_idle_sessions(model):
    from app.sessions import App, ServerBusy

    clocks = []

    def make_clock():
        clocks.append(Clock())
        return clocks[-1]

    app = App(model=model, asr=False, clock_factory=make_clock, max_sessions=2, idle_timeout_s=60, reap_every_s=None)
    try:
        a, b = app.live_session("a"), app.live_session("b")
        assert app.live_session("a") is a  # the same tab keeps its session
        with pytest.raises(ServerBusy, match="busy"):
            app.live_session("c")
        with pytest.raises(ServerBusy):
            app.new_session()  # a replay counts too
        assert app.refused == 2
        # a's tab keeps streaming, b's went quiet: after the timeout b is closed and freed
        for t in (30.0, 59.0, 65.0):
            clocks[0].now = clocks[1].now = t
            a.video(frame())
            assert app.reap_idle() == (1 if t == 65.0 else 0)
        assert b.closed and not a.closed and app.reaped == 1
        c = app.live_session("c")  # the freed place is taken
        assert not c.closed and app.open_sessions() == 2
        with pytest.raises(ServerBusy):  # b's tab back while the server is full: told so
            app.live_session("b")
        c.close()
        b2 = app.live_session("b")  # and with room again, a fresh session
        assert b2 is not b and not b2.closed
    finally:
        for s in list(app._sessions):
            s.close()
        app.close()


@pytest.fixture(scope="module")
def busy_server(model):
    """A running server that serves one session at a time and takes uploads up to 1 MB."""
    import httpx

    from app.sessions import App
    from app.ui import build_demo, launch

    app = App(model=model, asr=False, max_sessions=1, reap_every_s=None)
    demo = build_demo(app)
    port = free_port()
    launch(demo, "127.0.0.1", port, max_upload_mb=1, prevent_thread_lock=True, quiet=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield app, http, http.get("/config").json()
    finally:
        demo.close()
        for session_hash in list(demo.state_holder.session_data):
            demo.state_holder.delete_state(session_hash)
        app.close()


def test_server_tells_the_next_visitor_it_is_busy(busy_server):
    app, http, config = busy_server
    first, second = QueueSession(http, config), QueueSession(http, config)
    ev = first.join("stream_frame", [frame_payload(frame()), None])
    first.wait_outputs(ev, 1)
    assert app.open_sessions() == 1
    ev2 = second.join("stream_frame", [frame_payload(frame()), None])
    deadline = time.monotonic() + 600  # a guard against a hang, not a timing check
    while not second.errors() and time.monotonic() < deadline:
        time.sleep(0.05)
    errs = second.errors()
    assert errs, second.messages
    assert "busy" in str(errs[0].get("output", {}).get("error", "")).lower(), errs[0]
    assert app.open_sessions() == 1 and app.refused >= 1
    # the first visitor is still served
    first.send("stream_frame", ev, [frame_payload(frame()), None])
    first.wait_outputs(ev, 2)
    for q, e in ((first, ev), (second, ev2)):
        q.close(e)


def test_server_refuses_an_upload_over_the_size_limit(busy_server):
    _, http, _ = busy_server
    small = http.post(f"{API}/upload", files=[("files", ("a.bin", b"x" * 1000, "application/octet-stream"))])
    assert small.status_code == 200
    big = http.post(f"{API}/upload", files=[("files", ("b.bin", b"x" * 2_000_000, "application/octet-stream"))])
    assert big.status_code == 413, (big.status_code, big.text[:200])
