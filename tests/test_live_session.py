"""The live session on an injected clock: settings that apply while streaming, health judged
on what arrived (a stalled server skips frames and reports lag, the camera stays healthy),
the honest no-data state and the exports."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from streaming.session import LATE_FPS, MAX_FRAME_BACKLOG_S, LiveSession


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def model():
    from models.runtime import SentimentModel

    return SentimentModel.load()


@pytest.fixture(scope="module")
def frames():
    """Animated frames of a real FER-2013 face (the face mesh finds it), 5 per second."""
    from streaming.democlip import animate, pick_faces

    return animate(pick_faces(["happy"])[0], 60, np.random.default_rng(0))[::3]


def feed(s: LiveSession, clock: Clock, frames, start: float, stop: float, speech: np.ndarray | None = None,
         stall_every: float | None = None, stall_s: float = 0.0) -> None:
    """The browser's inputs from ``start`` to ``stop`` s of the clock: a frame every 0.2 s, a
    0.5 s microphone chunk (48 kHz int16) when its samples are over. With ``stall_every`` the
    server gets round to its queue only every so many seconds, ``stall_s`` late."""
    rate = 48000
    t = start
    next_process = start + (stall_every or 0.0)
    k = int(round(start * 5))
    while t < stop - 1e-9:
        t = round(t + 0.1, 6)
        clock.now = t
        if abs(t * 5 - round(t * 5)) < 1e-6:
            s.video(frames[k % len(frames)])
            k += 1
        if abs(t * 2 - round(t * 2)) < 1e-6 and speech is not None:
            i = int(round((t - 0.5) * rate)) % (len(speech) - rate // 2)
            s.audio((rate, speech[i : i + rate // 2]))
        if stall_every is None:
            s.process()
        elif t >= next_process - 1e-9:
            clock.now = t + stall_s  # the server was busy: it looks at its queue late
            s.process()
            clock.now = t
            next_process += stall_every
    s.process()


@pytest.fixture(scope="module")
def speech48k(speech_clip):
    x = np.concatenate([speech_clip, np.zeros(8000, np.float32)])
    x = np.tile(x, 6)
    y = np.interp(np.arange(len(x) * 3) / 3, np.arange(len(x)), x)
    return (np.clip(y, -1, 1) * 32767).astype(np.int16)


def test_window_and_hop_apply_while_streaming(model, frames):
    clock = Clock()
    s = LiveSession(model, None, window_s=3.0, hop_s=1.0, clock=clock, worker=False)
    try:
        feed(s, clock, frames, 0.0, 6.0)
        first = list(s.rows)
        assert first and all(r["t_end"] - r["t_start"] == pytest.approx(3.0) for r in first)
        s.configure(2.0, 0.5)
        assert s.rows == []  # the old windows are cleared with the old settings
        feed(s, clock, frames, 6.0, 11.0)
        rows = s.rows
        assert rows, "no window after the change"
        assert all(r["t_end"] - r["t_start"] == pytest.approx(2.0) for r in rows), [(r["t_start"], r["t_end"]) for r in rows]
        assert np.allclose(np.diff([r["t_end"] for r in rows]), 0.5)
        assert rows[0]["t_start"] >= 6.0 - 1e-6  # nothing of the old session shows
        assert any(r["modalities"]["vision"]["state"] == "OK" for r in rows)
        with pytest.raises(ValueError):
            s.configure(1.0, 2.0)  # a hop longer than the window
        assert s.cfg.window_s == 2.0 and s.cfg.hop_s == 0.5  # refused: unchanged
    finally:
        s.close()


def test_a_stalled_server_skips_frames_not_the_camera(model, frames, speech48k):
    """The server looks at its queue only once a second, 0.9 s late (a busy machine): frames
    that waited too long are skipped, yet the camera and microphone stay healthy, every
    window comes out, and the delay shows as the server's lag."""
    clock = Clock()
    s = LiveSession(model, None, clock=clock, worker=False)
    try:
        feed(s, clock, frames, 0.0, 12.0, speech48k, stall_every=1.0, stall_s=0.9)
        rows = s.rows
        ends = [r["t_end"] for r in rows]
        assert len(ends) >= 9 and ends == pytest.approx(list(range(3, 3 + len(ends))))  # no window lost
        assert s.frames_skipped > 0
        vision = [r["modalities"]["vision"]["state"] for r in rows]
        audio = [r["modalities"]["audio"]["state"] for r in rows]
        assert vision.count("OK") >= 0.9 * len(rows), [r["modalities"]["vision"] for r in rows]
        assert "DROPPED" not in vision and "DROPPED" not in audio, [r["modalities"]["audio"] for r in rows]
        assert max(r["lag"]["server"] for r in rows) > 0.2
    finally:
        s.close()


def test_frames_past_the_backlog_are_thinned(model, frames):
    """2 s of frames queued while the server did nothing: those that waited longer than the
    backlog allows are analysed at LATE_FPS, the rest skipped; the fresh ones all go in."""
    clock = Clock()
    s = LiveSession(model, None, clock=clock, worker=False)
    try:
        for k in range(10):
            clock.now = 0.2 * (k + 1)
            s.video(frames[k])
        clock.now = 2.0 + 1e-3
        s.process()
        late = [0.2 * (k + 1) for k in range(10) if clock.now - 0.2 * (k + 1) > MAX_FRAME_BACKLOG_S]
        kept = np.floor(np.array(late) * LATE_FPS + 1e-6)
        assert s.frames_skipped == len(late) - len(set(kept))
        assert 0 < s.frames_skipped < len(late)
    finally:
        s.close()


def test_no_usable_modality_is_no_data(model, frames, tmp_path):
    """Camera on for 4 s, then nothing at all: the later windows say no data, carry no label
    or score, and the export keeps the flag."""
    clock = Clock()
    s = LiveSession(model, None, clock=clock, worker=False)
    try:
        feed(s, clock, frames, 0.0, 4.0)
        for t in np.arange(4.5, 12.01, 0.5):
            clock.now = float(t)
            s.process()
        rows = s.rows
        late = [r for r in rows if r["t_start"] >= 5.5]
        assert late and all(r["no_data"] and r["label"] is None and r["score"] is None for r in late)
        assert not rows[0]["no_data"] and rows[0]["label"] in ("negative", "neutral", "positive")
        from app.ui import score_html

        html = score_html(late[-1])
        assert "no data" in html and not any(k in html for k in ("negative", "neutral", "positive"))
        c, j = s.write_exports(tmp_path, "live-test")
        assert c.name == "live-test.csv" and j.name == "live-test.jsonl"
        lines = [json.loads(x) for x in j.read_text().splitlines()]
        assert [x["no_data"] for x in lines] == [r["no_data"] for r in rows]
        table = list(csv.DictReader(io.StringIO(c.read_text())))
        assert table[-1]["no_data"] == "1" and table[-1]["label"] == "" and table[0]["no_data"] == "0"
    finally:
        s.close()
