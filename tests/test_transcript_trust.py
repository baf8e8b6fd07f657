"""The recogniser's hallucinations are caught and never reach the model as OK text:
the checks one by one, the text health they lead to, and the real recogniser on silence,
room noise and a real clip looped four times."""

from __future__ import annotations

import numpy as np
import pytest

from models.types import Modality
from streaming.health import HealthMonitor
from streaming.transcript_trust import (
    compression_ratio,
    flag_repeats,
    judge_segment,
    repeat_runs,
    sort_window_words,
    speech_share,
)
from streaming.types import Health, HealthStatus, Word


# ------------------------------------------------------------------ the checks
def test_a_word_looped_is_caught_and_said_once():
    words = ["I", "find", "it"] + ["interesting,"] * 90
    runs = repeat_runs([w.strip(",").lower() for w in words])
    assert runs == [(3, 1, 90)]
    reasons = flag_repeats(words)
    assert reasons[:4] == ["", "", "", ""]  # the first saying stays
    assert all("recogniser loop ('interesting' said 90 times" in r for r in reasons[4:])


def test_a_few_repeats_are_speech():
    assert flag_repeats("no no no that is wrong".split()) == [""] * 6
    assert all(flag_repeats(["no"] * 5)[1:])  # five in a row: a loop


def test_a_phrase_repeated_at_the_pace_of_speech_is_kept():
    """A sentence said four times over 8 s (a looped recording) is real; the same words
    squeezed into one second are a recogniser loop."""
    words = "don't forget a jacket".split() * 4
    paced = [(0.5 * i, 0.5 * i + 0.4) for i in range(16)]  # 2 words a second
    squeezed = [(0.06 * i, 0.06 * i + 0.05) for i in range(16)]
    assert flag_repeats(words, times=paced) == [""] * 16
    flagged = flag_repeats(words, times=squeezed)
    assert flagged[:4] == [""] * 4 and all(flagged[4:])


def test_window_words_sorted_by_trust():
    """A loop that runs from the committed words into the partial ones is caught across
    them; a word its segment's checks marked stays out; the rest is read, committed and
    partial apart."""
    committed = [Word("so", 0.0, 0.2), Word("well", 0.2, 0.4, suspect="no speech (p 0.9)")]
    committed += [Word("yes", 0.5 + 0.1 * i, 0.58 + 0.1 * i) for i in range(3)]
    partial = [Word("yes", 0.8 + 0.1 * i, 0.88 + 0.1 * i) for i in range(3)] + [Word("good", 1.5, 1.8)]
    w = sort_window_words(committed, partial)
    assert (w.committed, w.partial) == ("so yes", "good")
    assert w.suppressed == "well yes yes yes yes yes"
    assert w.text == "so yes good" and [x.text for x in w.trusted] == ["so", "yes", "good"]
    assert w.reasons[0] == "no speech (p 0.9)" and all("said 6 times" in r for r in w.reasons[1:]) and len(w.reasons) == 6
    assert sort_window_words([], []) == type(w)([], "", "", "", [])


def test_segment_rules():
    said = [
        ("Dogs", 0.4, 0.7),
        ("are", 0.7, 0.9),
        ("sitting", 0.9, 1.3),
        ("by", 1.3, 1.4),
        ("the", 1.4, 1.5),
        ("door.", 1.5, 1.9),
    ]
    speech = [(0.3, 2.0)]
    assert judge_segment(said, -0.2, 0.05, speech) == [""] * 6
    # Whisper's own no-speech rule
    assert all("no-speech" in r for r in judge_segment(said, -1.4, 0.8, speech))
    # twelve words in half a second
    fast = [(f"w{i}", 0.04 * i, 0.04 * i + 0.03) for i in range(12)]
    assert all("speech rate" in r for r in judge_segment(fast, -0.3, 0.1, None))
    # a phantom "Thank you." where the voice-activity detector found nothing
    phantom = [("Thank", 5.0, 5.3), ("you.", 5.3, 5.6)]
    assert judge_segment(phantom, -0.3, 0.2, speech) == ["no voice activity under the word"] * 2
    assert speech_share(5.0, 5.3, speech) == 0.0 and speech_share(0.5, 0.8, speech) == 1.0
    # a repetitive segment mostly outside the detected speech
    rep = [(w, 3.0 + 0.3 * i, 3.0 + 0.3 * i + 0.25) for i, w in enumerate("thanks for watching".split() * 6)]
    assert compression_ratio(" ".join(w for w, _, _ in rep)) > 2.4
    reasons = judge_segment(rep, -0.5, 0.3, speech)
    assert all(r.startswith("repetitive decode") for r in reasons), reasons


# ------------------------------------------------------------ the text health
def test_text_health_from_suspect_words():
    h = HealthMonitor()
    h.asr(None, 0.0)  # a recogniser that has started
    from streaming.types import Transcript

    h.asr(Transcript(t=1.0, avg_logprob=-0.3), 1.0)
    ok_audio = HealthStatus()
    s = h.text(ok_audio, 0, 1.0, 0.0, ["recogniser loop ('x' said 9 times in a row)"] * 8)
    assert s.state == Health.DROPPED and "recogniser loop" in s.reason
    s = h.text(ok_audio, 5, 1.0, 0.0, ["no voice activity under the word"] * 2)
    assert s.state == Health.DEGRADED and s.reason.startswith("2 words suppressed: no voice activity")
    s = h.text(HealthStatus(Health.DROPPED, "silence"), 2, 1.0, 0.0, [])
    assert s.state == Health.DROPPED and "silent audio" in s.reason
    assert h.text(ok_audio, 0, 1.0, 0.0, []) == HealthStatus(Health.DROPPED, "no speech")
    assert h.text(ok_audio, 4, 1.0, 0.0, []).state == Health.OK


# ------------------------------------------------- the real recogniser, end to end
@pytest.fixture(scope="module")
def parts():
    from models.runtime import SentimentModel
    from streaming.asr import StreamingASR

    return SentimentModel.load(), StreamingASR()


def _windows(audio: np.ndarray, parts, tmp_path, name: str) -> list[dict]:
    from streaming.evaluate_transcript import run_audio

    model, asr = parts
    return run_audio(audio.astype(np.float32), tmp_path, name, model, asr)


def test_silence_and_room_noise_give_no_ok_text(parts, tmp_path):
    """Real room tone at a hot microphone gain and fan-like rumble: no window has text OK,
    and no word reaches the model."""
    from streaming.evaluate_transcript import no_speech_recordings

    recs = no_speech_recordings(seconds=8.0)
    for name in ("real room tone at +30 dB gain", "fan-like low rumble (-30 dBFS)", "digital silence with dither"):
        rows = _windows(recs[name], parts, tmp_path, name)
        assert rows
        assert not [r for r in rows if r["modalities"]["text"]["state"] == "OK"], name
        assert all(r["modalities"]["text"]["score"] is None for r in rows), name


def test_real_clip_looped_has_no_ok_window_with_a_loop(parts, tmp_path):
    """A real clip looped four times: the phrase really said again comes back as OK text in
    most windows, and no OK window repeats a word five or more times in a row."""
    from models.paths import data_root
    from streaming.evaluate_transcript import longest_run
    from streaming.sources import decode_audio

    audio = decode_audio(data_root() / "real" / "ravdess_01-01-07-02-02-01-01.mp4")
    rows = _windows(np.tile(audio, 4), parts, tmp_path, "looped")
    ok = [r for r in rows if r["modalities"]["text"]["state"] == "OK"]
    assert len(ok) >= len(rows) // 2, [r["modalities"]["text"] for r in rows]
    assert all(longest_run(r["transcript"] + " " + r["partial"]) < 5 for r in ok)
    heard = " ".join(r["transcript"] + " " + r["partial"] for r in ok).lower()
    assert "door" in heard and "sitting" in heard  # what she says is there


def test_pipeline_keeps_suspect_words_from_the_model(parts):
    """A recogniser output holding a loop (as Whisper tiny gives on some audio): the window's
    text state is not OK, the loop's repeats are listed as suppressed and the model reads only
    the trusted words. The recogniser here is a stand-in returning that output, since the
    real one cannot be made to loop on demand; everything after it is the real pipeline."""
    from streaming.pipeline import Pipeline, PipelineConfig
    from streaming.types import AudioChunk, Transcript, Word

    class LoopingRecogniser:
        def __init__(self):
            loop = [Word("interesting,", 1.0 + 0.02 * i, 1.01 + 0.02 * i) for i in range(60)]
            self.tr = Transcript(t=0.0, committed=[Word("That", 0.2, 0.4), Word("is", 0.4, 0.6)] + loop, avg_logprob=-0.3)

        def push(self, samples, t):
            pass

        def step(self, now=None):
            self.tr.t = now
            return self.tr

        def flush(self, now=None):
            return self.step(now)

    model, _ = parts
    seen = []
    real_text_features = model.text_features
    p = Pipeline(model, LoopingRecogniser(), cfg=PipelineConfig(asr_mode="sync"))
    model.text_features = lambda text: seen.append(text) or real_text_features(text)
    try:
        rng = np.random.default_rng(0)
        t = np.arange(1600) / 16000
        for k in range(30):  # 3 s of voiced-like audio in 0.1 s chunks
            x = (0.1 * np.sin(2 * np.pi * 180 * t) * (1 + rng.normal(0, 0.05, 1600))).astype(np.float32)
            out = p.push(AudioChunk(0.1 * k, x, 16000))
        out = out or p.advance(3.0)
    finally:
        model.text_features = real_text_features
        p.close()
    w = out[-1]
    text = w.health[Modality.TEXT]
    assert text.state != Health.OK and "recogniser loop" in text.reason
    assert w.suppressed.count("interesting") >= 50
    assert seen and all(s.count("interesting") <= 1 for s in seen)


def test_the_prompt_holds_each_line_once():
    """A person saying the same line again and again: the recogniser's prompt keeps it once,
    at its latest place (a prompt that repeats itself invites the next decode to loop)."""
    from streaming.asr import _once_each

    said = "Don't forget a jacket. Dogs are sitting by the door. don't forget a JACKET! Don't forget".split()
    assert _once_each(said) == "Dogs are sitting by the door. don't forget a JACKET! Don't forget".split()
    assert _once_each([]) == []
    assert _once_each("no no no".split()) == ["no", "no", "no"]  # one unfinished line stays whole
