"""Streaming ASR on speech synthesised at test time with espeak-ng (real model, no mocks)."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from models.features.audio import SAMPLE_RATE, to_mono_16k
from streaming.asr import StreamingASR

SENTENCE = "the weather today is wonderful and i am very happy"
TWO_SENTENCES = "i went to the market to buy fresh bread. then i walked home along the river."
CONTENT = {"weather", "today", "wonderful", "very", "happy"}
START = 100.0  # pipeline time of the first pushed sample
CHUNK = SAMPLE_RATE // 2


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _speak(tmp_path_factory, text: str) -> np.ndarray:
    """Speech for ``text`` with 0.5 s silence before and 1 s after, float32 16 kHz."""
    import soundfile as sf

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng)")
    wav = tmp_path_factory.mktemp("tts") / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "-s", "150", text], check=True, capture_output=True)
    audio, rate = sf.read(str(wav), dtype="float32")
    audio = to_mono_16k(audio, rate)
    return np.concatenate([np.zeros(CHUNK, np.float32), audio, np.zeros(2 * CHUNK, np.float32)])


def _stream(asr: StreamingASR, audio: np.ndarray, start: float = START):
    """Push ``audio`` in 0.5 s chunks, step after each; return every step's Transcript and flush's."""
    asr.reset()
    steps = []
    for i in range(0, len(audio), CHUNK):
        asr.push(audio[i : i + CHUNK], start + i / SAMPLE_RATE)
        steps.append(asr.step())
        steps[-1].buffer_s = len(asr._audio) / SAMPLE_RATE  # for the trimming test
    return steps, asr.flush()


@pytest.fixture(scope="module")
def asr():
    return StreamingASR(threads=1)


@pytest.fixture(scope="module")
def sentence(tmp_path_factory):
    return _speak(tmp_path_factory, SENTENCE)


@pytest.fixture(scope="module")
def streamed(asr, sentence):
    return _stream(asr, sentence)


def _assert_monotonic(words, lo, hi):
    for w in words:
        assert lo - 1e-6 <= w.start <= w.end <= hi + 1e-6, (w, lo, hi)
    for a, b in zip(words, words[1:]):
        assert a.end <= b.start + 1e-6, (a, b)


def test_streaming_transcribes_a_sentence(asr, sentence, streamed):
    steps, final = streamed
    said = set(_words(final.text()))
    assert len(CONTENT & said) >= 0.7 * len(CONTENT), final.text()
    assert final.partial == [] and final.error is None
    _assert_monotonic(final.committed, START, START + len(sentence) / SAMPLE_RATE)
    speech_starts = START + 0.5 - 0.3  # espeak speech begins after our 0.5 s of silence
    assert final.committed[0].start >= speech_starts - 0.3
    assert any(s.avg_logprob is not None and s.avg_logprob > -1.0 for s in steps)
    assert asr.transcript is final


def test_committed_words_never_change(streamed):
    steps, final = streamed
    history = [s.committed for s in steps] + [final.committed]
    for before, after in zip(history, history[1:]):
        assert after[: len(before)] == before  # same words, same times: each a prefix of the next
    texts = [w.text for w in final.committed]
    assert len(texts) <= len(_words(SENTENCE)) + 2  # nothing committed twice


def test_partial_words_come_before_commit(streamed):
    steps, final = streamed
    assert any(s.partial for s in steps)
    for s in steps:  # partial words follow the committed ones in time
        _assert_monotonic(s.committed + s.partial, START, s.t)


def test_no_decode_without_new_audio(asr, sentence):
    asr.reset()
    asr.push(sentence[: 2 * SAMPLE_RATE], 5.0)
    first = asr.step()
    asr.push(sentence[2 * SAMPLE_RATE : 2 * SAMPLE_RATE + 1600], 7.0)  # 0.1 s more
    assert asr.step() is first


def test_buffer_is_trimmed_and_words_stay_unique(asr, tmp_path_factory):
    audio = _speak(tmp_path_factory, TWO_SENTENCES)
    short = StreamingASR(whisper=asr.model, trim_s=3.0, max_buffer_s=6.0)
    steps, final = _stream(short, audio, start=0.0)
    assert len(audio) / SAMPLE_RATE > 2 * short.trim_s
    assert max(s.buffer_s for s in steps) <= short.max_buffer_s
    assert steps[-1].buffer_s < len(audio) / SAMPLE_RATE - short.trim_s  # it was cut
    assert len(short._audio) == 0  # flush empties the buffer
    said = _words(final.text())
    for w in ("market", "walked", "home", "river"):
        assert w in said, final.text()
    assert len(said) <= len(_words(TWO_SENTENCES)) + 2, said  # nothing committed twice at a seam
    _assert_monotonic(final.committed, 0.0, len(audio) / SAMPLE_RATE)
    history = [s.committed for s in steps] + [final.committed]
    for before, after in zip(history, history[1:]):
        assert after[: len(before)] == before


def test_silence_and_noise_commit_nothing(asr):
    rng = np.random.default_rng(0)
    quiet = np.concatenate([np.zeros(2 * SAMPLE_RATE), 0.003 * rng.standard_normal(2 * SAMPLE_RATE)]).astype(np.float32)
    asr.reset()
    steps = []
    for i in range(0, len(quiet), SAMPLE_RATE):
        asr.push(quiet[i : i + SAMPLE_RATE], 10.0 + i / SAMPLE_RATE)
        steps.append(asr.step())
    final = asr.flush()
    assert final.committed == [] and final.partial == []
    for s in steps:
        assert s.error is None
        assert s.no_speech_prob is None or s.no_speech_prob > 0.5


def test_push_aligns_gaps_and_overlaps(asr):
    asr.reset()
    one = np.full(SAMPLE_RATE, 0.1, np.float32)
    asr.push(one, 50.0)
    asr.push(one, 52.0)  # 1 s gap -> silence
    assert len(asr._audio) == 3 * SAMPLE_RATE and (asr._audio[SAMPLE_RATE : 2 * SAMPLE_RATE] == 0).all()
    asr.push(one, 52.5)  # half overlaps -> only the new half is kept
    assert len(asr._audio) == int(3.5 * SAMPLE_RATE)
    asr.push(one, 40.0)  # entirely in the past -> dropped
    assert len(asr._audio) == int(3.5 * SAMPLE_RATE)
    for k in range(40):  # never stepped: the buffer stays under Whisper's 30 s
        asr.push(one, 53.5 + k)
    assert len(asr._audio) <= asr.max_buffer_s * SAMPLE_RATE
    asr.reset()


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 16000), np.float32), "1-D"),
        (np.array([0.0, np.nan], np.float32), "NaN"),
        (np.zeros(16000, np.int16), "float"),
        (np.zeros(31 * SAMPLE_RATE, np.float32), "too long"),
    ],
)
def test_bad_audio_is_rejected(asr, bad, message):
    with pytest.raises(ValueError, match=message):
        asr.push(bad, 0.0)
    with pytest.raises(ValueError, match="finite"):
        asr.push(np.zeros(10, np.float32), float("nan"))


def test_bad_model_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        StreamingASR(model_path=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="model.bin"):
        StreamingASR(model_path=str(tmp_path))


def test_decode_failure_is_reported_not_raised(asr, sentence):
    asr.reset()
    asr.push(sentence[: 2 * SAMPLE_RATE], 0.0)
    asr.model.model.unload_model()  # a real failure: the CTranslate2 model is gone
    try:
        tr = asr.step()
    finally:
        asr.model.model.load_model()
    assert tr.error and tr.committed == []
    assert len(asr._audio) == 2 * SAMPLE_RATE  # the buffer is kept for the next try
    asr.push(sentence[2 * SAMPLE_RATE : 3 * SAMPLE_RATE], 2.0)
    assert asr.step().error is None


def test_a_pause_commits_the_words_before_it_and_silence_is_not_decoded(asr, tmp_path_factory):
    first = _speak(tmp_path_factory, "i went to the market to buy fresh bread")
    second = _speak(tmp_path_factory, "then i walked home along the river")
    audio = np.concatenate([first, np.zeros(2 * SAMPLE_RATE, np.float32), second])
    steps, final = _stream(asr, audio, start=0.0)
    second_at = (len(first) + 2 * SAMPLE_RATE) / SAMPLE_RATE
    before = [s for s, k in zip(steps, range(len(steps))) if (k + 1) * CHUNK / SAMPLE_RATE <= second_at]
    said = _words(" ".join(w.text for w in before[-1].committed))
    # the first sentence is committed before the second begins: its pause ended it
    assert {"went", "market", "fresh"} <= set(said), said
    assert before[-1].partial == []
    assert min(s.buffer_s for s in before[-3:]) < 1.5  # the buffer was cut in the pause
    assert asr.skipped >= 2  # steps over the silence decoded nothing ...
    ends = [(k + 1) * CHUNK / SAMPLE_RATE for k in range(len(audio) // CHUNK)]  # (a last short chunk: no step)
    assert [s.t for s in steps[: len(ends)]] == pytest.approx(ends)  # ... yet every step's transcript is up to date
    text = _words(final.text())
    assert {"market", "walked", "river"} <= set(text) and len(text) <= 16, text
    _assert_monotonic(final.committed, 0.0, len(audio) / SAMPLE_RATE)
