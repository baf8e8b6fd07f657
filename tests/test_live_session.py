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
def frames():
    """Animated frames of a real FER-2013 face (the face mesh finds it), 5 per second."""
    from streaming.democlip import animate, pick_faces

    return animate(pick_faces(["happy"])[0], 60, np.random.default_rng(0))[::3]


def feed(
    s: LiveSession,
    clock: Clock,
    frames,
    start: float,
    stop: float,
    speech: np.ndarray | None = None,
    stall_every: float | None = None,
    stall_s: float = 0.0,
) -> None:
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


@pytest.mark.parametrize("every,late", [(1.0, 0.9), (2.0, 1.5)])
def test_a_stalled_server_skips_frames_not_the_camera(model, frames, speech48k, every, late):
    """The server looks at its queue only once a second, 0.9 s late, or every 2 s, 1.5 s
    late (a busy machine): frames that waited too long are skipped, yet the camera and
    microphone stay healthy (judged as when each window fell due, not when the server got
    round to it), every window comes out, and the delay shows as the server's lag."""
    clock = Clock()
    s = LiveSession(model, None, clock=clock, worker=False)
    try:
        feed(s, clock, frames, 0.0, 12.0, speech48k, stall_every=every, stall_s=late)
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


def test_late_delivery_is_the_transports_lag_not_the_sensors(model, frames, speech48k):
    """After the first chunk the microphone's chunks reach the server 1.7 s after their
    samples end (a busy queue between the browser and the pipeline), the camera's frames on
    time: the microphone is not judged a failed or late sensor, and the lateness shows as
    the transport's lag. A delay fault (the sensor itself late) still shows as lagging."""
    clock = Clock()
    s = LiveSession(model, None, clock=clock, worker=False)
    rate, late = 48000, 1.7
    pending = []
    try:
        for step in range(1, 171):
            t = clock.now = round(0.1 * step, 6)
            if step % 2 == 0:
                s.video(frames[(step // 2) % len(frames)])
            if step % 5 == 0:
                i = int(round((t - 0.5) * rate)) % (len(speech48k) - rate // 2)
                pending.append((t if step == 5 else t + late, speech48k[i : i + rate // 2]))
            while pending and pending[0][0] <= t + 1e-9:
                s.audio((rate, pending.pop(0)[1]))
            s.process()
        rows = s.rows
        assert len(rows) >= 10
        audio = [r["modalities"]["audio"] for r in rows]
        assert all(a["state"] != "DROPPED" for a in audio), [
            (r["t_end"], a) for r, a in zip(rows, audio) if a["state"] == "DROPPED"
        ]
        assert not any("late" in a["reason"] or "lagging" in a["reason"] for a in audio), audio
        assert sum(a["state"] == "OK" for a in audio[1:]) >= 0.8 * len(audio[1:]), audio
        assert all(r["modalities"]["vision"]["state"] == "OK" for r in rows[1:])
        assert max(r["lag"]["transport"] for r in rows) == pytest.approx(late, abs=0.15)
    finally:
        s.close()


def _mic_schedule(speech48k, steps: int, deliver):
    """(clock step, chunk) pairs of a 0.5 s chunk every 0.5 s, each handed over at the step
    ``deliver(step)`` says (the step its samples are over, or later)."""
    rate = 48000
    out = []
    for step in range(5, steps + 1, 5):
        i = int(round((0.1 * step - 0.5) * rate)) % (len(speech48k) - rate // 2)
        out.append((deliver(step), speech48k[i : i + rate // 2]))
    return sorted(out, key=lambda x: x[0])


def _run(s, clock, frames, mic, steps: int) -> None:
    for step in range(1, steps + 1):
        clock.now = round(0.1 * step, 6)
        if step % 2 == 0:
            s.video(frames[(step // 2) % len(frames)])
        while mic and mic[0][0] <= step:
            s.audio((48000, mic.pop(0)[1]))
        s.process()


def test_a_gap_in_the_transport_is_waited_for_a_dead_microphone_is_not(model, frames, speech48k):
    """Every 4 s the microphone's chunks are held up 0.3 to 2.3 s and then come together (the
    browser's events queued behind a busy machine): they keep their place on the
    microphone's clock, and no window says the microphone gave no or too little data. Then the microphone stops for good at 14 s: after a wait of at most STALL_HOLD_S
    the windows come out again, one a second, the microphone DROPPED, the camera OK."""
    from streaming.session import STALL_HOLD_S

    clock = Clock()
    s = LiveSession(model, None, clock=clock, worker=False)
    try:

        def held(step: int) -> int:  # from 4 to 12 s, the chunks ending 0.5-2.5 s into each 4 s come at 2.8 s, in order
            return (step // 40) * 40 + 28 if 40 <= step < 120 and 5 <= step % 40 <= 25 else step

        mic = [x for x in _mic_schedule(speech48k, 140, held)]
        placed = []  # where each chunk went on the stream's clock
        push = s.pipeline.push
        s.pipeline.push = lambda item, now=None: (placed.append(item.t) if hasattr(item, "samples") else None, push(item, now))[1]
        _run(s, clock, frames, mic, 260)
        assert np.allclose(np.diff(placed), 0.5), placed  # held-up chunks keep their place
        rows = s.rows
        ends = [r["t_end"] for r in rows]
        assert ends == pytest.approx(list(range(3, 3 + len(ends))))  # none lost
        assert ends[-1] >= 25 - 0.6 - STALL_HOLD_S - 1e-6
        audio = {r["t_end"]: r["modalities"]["audio"] for r in rows}
        before = [a for end, a in audio.items() if end <= 14.0]
        assert not any("data" in a["reason"] for a in before), [
            (e, a["reason"]) for e, a in audio.items() if e <= 14.0
        ]  # neither no data nor too little
        after = [a for end, a in audio.items() if end >= 15.5]
        assert after and all(a["state"] == "DROPPED" and "no data" in a["reason"] for a in after), after
        assert all(r["modalities"]["vision"]["state"] == "OK" for r in rows[1:])
    finally:
        s.close()


def test_after_a_pause_the_microphone_clock_catches_up(model, frames, speech48k):
    """The microphone pauses from 5 to 11 s (no samples at all), then streams again: its
    chunks are re-anchored to the clock within AUDIO_DRIFT_S, so later windows have audio
    OK again and arriving on time, not 6 s behind for ever."""
    from streaming.session import AUDIO_DRIFT_S

    clock = Clock()
    s = LiveSession(model, None, clock=clock, worker=False)
    try:
        # chunks captured before 5 s go on time; those "after" are the samples of the
        # resumed stream, 6 s of chunks fewer: the sample clock is 6 s behind
        mic = [(step if step <= 50 else step + 60, x) for step, x in _mic_schedule(speech48k, 200, lambda st: st)]
        _run(s, clock, frames, mic, 260)
        rows = s.rows
        late = [r["lag"].get("transport", 0.0) for r in rows if r["t_start"] >= 11 + AUDIO_DRIFT_S + 1.0]
        assert late and max(late) < 1.0, late
        audio = [r["modalities"]["audio"] for r in rows if r["t_start"] >= 11 + AUDIO_DRIFT_S + 1.0]
        assert sum(a["state"] != "DROPPED" or a["reason"] == "silence" for a in audio) >= 0.9 * len(audio), audio
    finally:
        s.close()


def test_a_delay_fault_is_the_sensor_late_on_top_of_the_transport(model, frames):
    """Frames that reach the pipeline 0.5 s late (the transport) and then 1 s more behind a
    delay fault: the camera is lagging by the fault's delay, not by the transport's."""
    from streaming.faults import FaultInjector, parse_spec
    from streaming.pipeline import Pipeline, PipelineConfig
    from streaming.types import VideoFrame

    p = Pipeline(model, None, FaultInjector(parse_spec("vision:delay:delay=1@4-9")), PipelineConfig(window_s=2.0, hop_s=1.0))
    rows = []
    for k in range(60):
        t = 0.2 * k
        rows += p.push(VideoFrame(t, frames[k % len(frames)]), now=t + 0.5)
    rows += p.advance(12.5)
    vision = {r.t_end: r.health[next(m for m in r.health if m.value == "vision")] for r in rows}
    early = [v for end, v in vision.items() if end <= 4.0]
    assert early and all(v.state.value == "OK" for v in early), early  # 0.5 s transport: fine
    inside = [v for end, v in vision.items() if 6.0 <= end <= 9.0]
    assert inside and all(v.state.value == "DEGRADED" and v.reason == "lagging 1.0 s" for v in inside), inside
    assert all(r.lag["transport"] == pytest.approx(0.5) for r in rows)


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

        html = score_html(s.latest())
        assert s.latest().no_data and s.latest().to_json() == late[-1]
        assert "no data" in html and not any(k in html for k in ("negative", "neutral", "positive"))
        c, j = s.write_exports(tmp_path, "live-test")
        assert c.name == "live-test.csv" and j.name == "live-test.jsonl"
        lines = [json.loads(x) for x in j.read_text().splitlines()]
        assert [x["no_data"] for x in lines] == [r["no_data"] for r in rows]
        table = list(csv.DictReader(io.StringIO(c.read_text())))
        assert table[-1]["no_data"] == "1" and table[-1]["label"] == "" and table[0]["no_data"] == "0"
    finally:
        s.close()
