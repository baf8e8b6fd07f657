"""Short recordings and the end of a stream: a recording shorter than one window gives one
window of its true length, and the end of a stream flushes a final partial window, in the
simulator's replay, the Replay tab's session and the One window analyser."""

import numpy as np
import pytest

from streaming.windowing import Windower

REAL = "real"


def test_windower_tail_covers_what_the_grid_left():
    w = Windower(3.0, 1.0)
    assert w.due(0.0) == []
    assert w.due(1.9) == []
    assert w.tail(1.9) == (0.0, 1.9)  # shorter than a window: one window, its true length
    assert w.tail(1.9) is None  # given once

    w = Windower(3.0, 1.0)
    w.due(0.0)
    assert w.due(4.0) == [(0.0, 3.0), (1.0, 4.0)]
    assert w.tail(4.6) == pytest.approx((1.6, 4.6))  # the last 0.6 s after the last grid window
    w = Windower(3.0, 1.0)
    w.due(0.0)
    w.due(4.0)
    assert w.tail(4.1) is None  # within min_tail_s of the last window: nothing new to say
    assert Windower(3.0, 1.0).tail(5.0) is None  # nothing ever came


def test_windower_stream_not_starting_at_zero():
    w = Windower(3.0, 1.0)
    w.due(10.2)
    assert w.tail(11.5) == (10.2, 11.5)  # from where the stream began, not before


def _real(name: str):
    from models.paths import data_root

    p = data_root() / REAL / name
    if not p.is_file():
        pytest.skip(f"{p} not present")
    return p


def test_simulator_replay_of_a_clip_shorter_than_a_window(model):
    """The 1.9 s CREMA-D clip (real face, voice and words) gives one window over what exists."""
    from streaming.simulate import build_pipeline, replay
    from streaming.sources import media_duration

    path = _real("cremad_1001_DFA_HAP_XX.flv")
    duration = media_duration(path)
    assert duration < 3.0
    pipe = build_pipeline("", asr_mode="off", model=model)
    try:
        rows = [w.to_json() for w in replay(pipe, path, progress=False)]
    finally:
        pipe.close()
    assert len(rows) == 1
    r = rows[0]
    assert r["t_start"] == 0.0 and r["t_end"] == pytest.approx(duration, abs=0.05)
    assert r["modalities"]["audio"]["state"] != "DROPPED"
    assert r["modalities"]["vision"]["state"] != "DROPPED"  # a real face, found
    assert abs(sum(r["confidences"].values()) - 1) < 1e-3


def _pipeline_with_audio(model, seconds: float, speech: np.ndarray):
    from streaming.pipeline import Pipeline, PipelineConfig
    from streaming.types import AudioChunk

    pipe = Pipeline(model, None, cfg=PipelineConfig(asr_mode="off"))
    n = int(seconds * 16000)
    audio = np.resize(speech, n).astype(np.float32)
    out = []
    for i in range(0, n, 1600):
        out += pipe.push(AudioChunk(i / 16000, audio[i : i + 1600], 16000))
    return pipe, out


def test_end_of_stream_flushes_a_final_partial_window(model, speech_clip):
    pipe, out = _pipeline_with_audio(model, 4.6, speech_clip)
    try:
        assert [(w.t_start, w.t_end) for w in out] == [(0.0, 3.0), (1.0, 4.0)]
        tail = pipe.flush()  # default end: where the pushed audio ends
        assert len(tail) == 1
        assert tail[0].t_start == pytest.approx(1.6) and tail[0].t_end == pytest.approx(4.6)
        assert tail[0].health[next(iter(tail[0].health))] is not None
        assert pipe.flush() == []  # once only
    finally:
        pipe.close()


def test_end_of_stream_on_the_grid_adds_nothing(model, speech_clip):
    pipe, out = _pipeline_with_audio(model, 4.0, speech_clip)
    try:
        assert [w.t_end for w in out] == [3.0]  # the 4 s window is due once the clock reaches 4
        tail = pipe.flush()
        assert [(w.t_start, w.t_end) for w in tail] == [(1.0, 4.0)]
    finally:
        pipe.close()


def test_replay_tab_session_of_a_short_clip_gives_its_window(model):
    from app.ui import App, start_replay
    from streaming.sources import media_duration

    path = _real("cremad_1001_DFA_SAD_XX.flv")
    app = App(model=model, asr=False)
    s = start_replay(app, str(path), "", realtime=False)
    try:
        assert type(s.model).__name__ == "EngineClient"  # the app's sessions share one engine
        assert s.finished.wait(120)  # a hang guard only
        assert len(s.rows) == 1
        assert s.rows[0]["t_end"] == pytest.approx(media_duration(path), abs=0.05)
    finally:
        s.close()


def test_one_window_tab_reads_a_short_clip(model):
    from app.ui import WindowAnalyser
    from streaming.sources import read_media

    frames, audio = read_media(_real("cremad_1001_DFA_ANG_XX.flv"), fps=5)
    assert audio is not None and len(audio) < 3 * 16000
    analyser = WindowAnalyser(model)
    conf, summary, rows = analyser("Don't forget a jacket.", (16000, audio), frames[len(frames) // 2].image)
    assert "audio" in summary.split("modalities used:")[1] and "vision" in summary.split("modalities used:")[1]
    assert abs(sum(conf.values()) - 1) < 1e-3


def test_flush_commits_the_recogniser_words_into_the_final_window(model):
    """A short utterance, the recogniser on its own thread that never gets to decode
    (period 1000 s): the end of the stream decodes, commits, and the final window reads the words."""
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    from streaming.asr import StreamingASR
    from streaming.democlip import speak
    from streaming.pipeline import Pipeline, PipelineConfig
    from streaming.types import AudioChunk

    speech = np.concatenate([np.zeros(4000, np.float32), speak("i really love this wonderful film"), np.zeros(4000, np.float32)])
    pipe = Pipeline(model, StreamingASR(), cfg=PipelineConfig(asr_mode="thread", asr_every_s=1000.0))
    try:
        out = []
        for i in range(0, len(speech), 1600):
            out += pipe.push(AudioChunk(i / 16000, speech[i : i + 1600], 16000))
        assert all(w.transcript == "" for w in out)  # nothing decoded yet
        final = pipe.flush()
        assert final and final[-1].t_end == pytest.approx(len(speech) / 16000, abs=0.01)
        heard = final[-1].transcript.lower()
        assert "love" in heard and "film" in heard, heard
        assert final[-1].result.used and "text" in [m.value for m in final[-1].result.used]
    finally:
        pipe.close()
