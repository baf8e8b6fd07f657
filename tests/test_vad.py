"""The recogniser's speech detector: Silero's probabilities computed once per 32 ms of a
growing buffer equal a pass over the whole buffer, its spans equal faster-whisper's, and
pauses are found where the speaker stopped (real speech, the real Silero model)."""

import numpy as np
import pytest

from streaming.vad import WINDOW, SpeechDetector, last_pause, speech_spans


@pytest.fixture(scope="module")
def speech(speech_clip):
    """Two RAVDESS sentences with 1.5 s of silence between them and 1 s after."""
    gap = np.zeros(24000, np.float32)
    return np.concatenate([speech_clip, gap, speech_clip, gap[:16000]]).astype(np.float32)


def _full(buffer):
    from faster_whisper.vad import get_vad_model

    return get_vad_model()(np.pad(buffer, (0, WINDOW - len(buffer) % WINDOW))).ravel()


def test_incremental_probabilities_and_spans_equal_a_whole_pass(speech):
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    det = SpeechDetector()
    rng = np.random.default_rng(0)
    end = 0
    while end < len(speech):
        end = min(len(speech), end + int(rng.integers(1000, 12000)))  # chunks of any length
        buf = speech[:end]
        p, ref = det.probs(buf), _full(buf)
        assert len(p) == len(ref) == end // WINDOW + 1
        assert np.array_equal(p[:-1], ref[:-1])  # whole windows: the same numbers
        assert abs(p[-1] - ref[-1]) < 0.05  # the filling window: one network call of its own
        fw = [(c["start"], c["end"]) for c in get_speech_timestamps(buf, VadOptions())]
        assert speech_spans(p, end) == fw


def test_a_cut_on_the_grid_keeps_what_was_computed(speech):
    det = SpeechDetector()
    det.probs(speech[:80000])
    det.drop(10 * WINDOW)  # the buffer now starts 10 windows later
    kept = det.probs(speech[10 * WINDOW : 90000])
    whole = SpeechDetector().probs(speech[:90000])
    assert np.array_equal(kept[:-1], whole[10:-1])  # the state carried on: as if never cut
    det.drop(1000)  # off the grid: starts over on the new buffer
    fresh = det.probs(speech[10 * WINDOW + 1000 : 90000])
    assert np.array_equal(fresh[:-1], SpeechDetector().probs(speech[10 * WINDOW + 1000 : 90000])[:-1])
    with pytest.raises(ValueError, match="shrank"):
        det.probs(speech[:5000])


def test_pauses_are_where_the_speaker_stopped(speech, speech_clip):
    n1 = len(speech_clip)
    p = SpeechDetector().probs(speech[: n1 + 20000])  # the first sentence, then 1.25 s of silence
    pause = last_pause(p, n1 + 20000, pause_s=0.5)
    assert pause is not None and pause[1] == n1 + 20000  # still quiet at the buffer's end
    assert 16000 < pause[0] <= n1  # the speech stopped inside the clip (its end is quiet too)
    p = SpeechDetector().probs(speech[: n1 + 56000])  # ... and the second sentence has begun
    stopped, resumed = last_pause(p, n1 + 56000, pause_s=0.5)
    assert stopped == pause[0] and n1 + 24000 <= resumed < n1 + 56000
    assert last_pause(SpeechDetector().probs(speech[:12000]), 12000, 0.5) is None  # no pause yet
    quiet = np.zeros(32000, np.float32)
    assert last_pause(SpeechDetector().probs(quiet), 32000, 0.5) is None and speech_spans(np.zeros(63), 32000) == []


def test_spans_follow_the_hysteresis_and_padding():
    p = np.array([0.0] * 10 + [0.9] * 20 + [0.4] * 5 + [0.1] * 80 + [0.8] * 10 + [0.0] * 5)
    n = len(p) * WINDOW
    # speech 10-30 (0.4 keeps it going), silence from 35: 80 windows = 2.56 s > 2 s ends it
    spans = speech_spans(p, n)
    pad = 6400
    assert spans == [(0, 35 * WINDOW + pad), (115 * WINDOW - pad, n)]  # padded, not before the audio
    assert speech_spans(p, n, min_silence_s=5.0, pad_s=0.0) == [(10 * WINDOW, n)]  # one span: the silence is short
