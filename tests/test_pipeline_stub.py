"""The pipeline's own logic with a stub model and a stub face analyser: what reaches the model
when a modality is dropped or degraded, and the health the faults give. No weights, no
recogniser, no face mesh: synthetic frames and sound, a few seconds at most."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.features.vision import FaceObservation
from models.types import Modality, SentimentResult, SequenceFeatures, WindowFeatures
from streaming.faults import FaultInjector, parse_spec
from streaming.pipeline import Pipeline, PipelineConfig
from streaming.types import AudioChunk, VideoFrame

RATE = 16000
FPS = 5.0
CHUNK_S = 0.1


class StubModel:
    """Everything ``Pipeline`` calls on a model, recording what it was given."""

    FACE_DIM, AUDIO_DIM, TEXT_DIM = 135, 387, 384

    def __init__(self) -> None:
        self.windows: list[WindowFeatures] = []
        self.encoded = 0  # face crops encoded
        self.texts: list[str] = []

    def text_features(self, text: str) -> SequenceFeatures | None:
        self.texts.append(text)
        n = len(text.split())
        return SequenceFeatures(np.ones((n, self.TEXT_DIM), np.float32), np.ones(n, bool)) if n else None

    def audio_features(self, samples: np.ndarray, frame_valid: np.ndarray | None = None) -> SequenceFeatures:
        valid = np.ones(len(samples) // 320, bool) if frame_valid is None else np.asarray(frame_valid, bool)
        return SequenceFeatures(np.full((len(valid), self.AUDIO_DIM), 0.5, np.float32), valid)

    def face_frames(self, crops: np.ndarray) -> np.ndarray:
        self.encoded += len(crops)
        return np.repeat(crops.reshape(len(crops), -1).mean(1, keepdims=True) / 255.0, self.FACE_DIM, 1).astype(np.float32)

    @staticmethod
    def face_sequence(frames: list[np.ndarray | None]) -> SequenceFeatures:
        valid = np.array([f is not None for f in frames], bool)
        values = np.stack([np.zeros(StubModel.FACE_DIM, np.float32) if f is None else f for f in frames])
        return SequenceFeatures(values, valid)

    def predict(self, window: WindowFeatures) -> SentimentResult:
        self.windows.append(window)
        used = window.present()
        if not used:
            return SentimentResult(score=0.0, probs=np.array([0.2, 0.6, 0.2]), used=())
        return SentimentResult(score=0.1 * len(used), probs=np.array([0.1, 0.8, 0.1]), used=used)


class StubFaces:
    """A face analyser that finds one face in every frame: the crop is the frame's grey centre."""

    def __init__(self) -> None:
        self.calls = 0
        self.given_gray = 0
        self.closed = False

    def __call__(self, frame: np.ndarray, gray: np.ndarray | None = None) -> FaceObservation:
        self.calls += 1
        if gray is not None:  # the pipeline's grey copy, the same as converting the frame here
            assert gray.shape == frame.shape[:2] and np.array_equal(gray, cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
            self.given_gray += 1
        g = gray if gray is not None else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        h, w = g.shape
        crop = cv2.resize(g[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4], (48, 48))
        return FaceObservation(n_faces=1, crop=crop, box=None)

    def close(self) -> None:
        self.closed = True


def frame(k: int) -> np.ndarray:
    """RGB 120x160: a smooth gradient with a bright square that moves (never frozen)."""
    y, x = np.mgrid[0:120, 0:160]
    img = (60 + 0.5 * x + 0.3 * y).astype(np.uint8)
    x0 = 20 + (7 * k) % 100
    img[40:80, x0 : x0 + 40] = 210
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Tone bursts (three syllables a second) over a faint noise floor: clean 'speech'."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * RATE))) / RATE
    on = np.sin(2 * np.pi * 3 * t) > 0
    voice = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1210 * t)
    return (voice * on + rng.normal(0, 1e-3, len(t))).astype(np.float32)


def stream(spec: str = "", seconds: float = 13.0, typed: str | None = None):
    """Replays ``seconds`` of synthetic camera and microphone through a pipeline with the
    stubs; returns (windows as JSON rows keyed by their end, the model, the faces stub)."""
    model, faces = StubModel(), StubFaces()
    pipe = Pipeline(model, None, FaultInjector(parse_spec(spec)), PipelineConfig(asr_mode="off"), face_analyzer=faces)
    if typed:
        pipe.set_text(typed, 0.0)
    audio = speech_like(seconds)
    step = int(CHUNK_S * RATE)
    items = [VideoFrame(k / FPS, frame(k)) for k in range(int(seconds * FPS))]
    items += [AudioChunk(i / RATE, audio[i : i + step], RATE) for i in range(0, len(audio), step)]
    out = []
    for item in sorted(items, key=lambda it: it.t):
        out += pipe.push(item)
    out += pipe.flush(seconds)
    pipe.close()
    assert faces.closed
    # the model saw one WindowFeatures per window, in order
    assert len(model.windows) == len(out)
    by_end = {}
    for w, feats in zip(out, model.windows):
        by_end[round(w.t_end, 3)] = (w.to_json(), feats)
    return by_end, model, faces


def state(row, m: str) -> tuple[str, str]:
    d = row["modalities"][m]
    return d["state"], d["reason"]


@pytest.fixture(scope="module")
def clean():
    return stream()


def test_clean_stream_reaches_the_model(clean):
    by_end, model, faces = clean
    assert sorted(by_end)[:3] == [3.0, 4.0, 5.0] and max(by_end) == 13.0
    for end, (row, feats) in by_end.items():
        assert state(row, "vision") == ("OK", ""), (end, row["modalities"])
        assert state(row, "audio") == ("OK", ""), (end, row["modalities"])
        assert state(row, "text") == ("DROPPED", "no recogniser") and feats.text is None
        assert feats.vision is not None and feats.vision.valid.all() and feats.vision.values.shape == (15, 135)
        assert feats.audio is not None and feats.audio.valid.mean() > 0.95
        assert feats.reliability == {Modality.VISION: 1.0}
        assert not row["no_data"] and row["modalities"]["vision"]["score"] is None  # the stub gives no estimates


def test_each_frame_is_analysed_and_encoded_once(clean):
    _, model, faces = clean
    n_frames = int(13.0 * FPS)
    assert faces.calls == n_frames  # every frame (5 a second, the analysis rate) read once ...
    assert faces.given_gray == n_frames  # ... with the grey copy the checks used
    assert model.encoded == n_frames  # windows overlap three times, each crop is encoded once


def test_a_face_is_encoded_when_its_frame_arrives():
    """The face encoder runs as each analysed frame comes, not inside the window that first
    holds it: a window then only assembles encoded frames (its latency is the others')."""
    model, faces = StubModel(), StubFaces()
    pipe = Pipeline(model, None, FaultInjector([]), PipelineConfig(asr_mode="off"), face_analyzer=faces)
    for k in range(3):
        pipe.push(VideoFrame(k / FPS, frame(k)))
        assert model.encoded == k + 1 and not model.windows
    pipe.close()


class StubASR:
    """A recogniser that 'hears' one word per chunk, named after the chunk's time."""

    def __init__(self) -> None:
        self.words: list = []

    def push(self, samples, t: float) -> None:
        from streaming.types import Word

        self.words.append(Word(f"w{t:.1f}", t, t + len(samples) / RATE))

    def step(self, now: float | None = None):
        """Like ``StreamingASR.step``: without ``now``, stamped with the end of the audio heard."""
        from streaming.types import Transcript

        t = now if now is not None else (self.words[-1].end if self.words else 0.0)
        return Transcript(t=t, committed=[], partial=list(self.words))


def test_the_transcript_shows_each_decode_before_any_window():
    """With the recogniser on its thread, ``Pipeline.transcript`` (the transcript panel) is
    the newest decode, not the one the last window read; in a text outage it stays put."""
    import time

    for spec, expect in (("", ["w0.0", "w0.1"]), ("text:outage@0-60", [])):
        model = StubModel()
        pipe = Pipeline(
            model, StubASR(), FaultInjector(parse_spec(spec)), PipelineConfig(asr_mode="thread"), face_analyzer=StubFaces()
        )
        for i in range(2):
            pipe.push(AudioChunk(i * CHUNK_S, speech_like(CHUNK_S, i), RATE))
        for _ in range(500 if expect else 0):  # the decode thread's turn (at most 5 s; no time asserted)
            tr = pipe.transcript
            if tr is not None and len(tr.partial) == 2:
                break
            time.sleep(0.01)
        assert not model.windows  # no window closed yet
        got = [] if pipe.transcript is None else [w.text for w in pipe.transcript.partial]
        assert got == expect, spec
        pipe.close()


def test_vision_drop_is_masked_and_recovers():
    by_end, _, _ = stream("vision:drop@2-5")
    row, feats = by_end[5.0]  # the window [2, 5) lies inside the fault
    s, why = state(row, "vision")
    assert s == "DROPPED" and "no data" in why
    assert feats.vision is None  # a DROPPED modality never reaches the model
    assert feats.audio is not None and state(row, "audio")[0] == "OK"  # the others are still read
    assert row["modalities"]["vision"]["score"] is None
    row, feats = by_end[8.0]  # the first window wholly after it
    assert state(row, "vision") == ("OK", "") and feats.vision is not None and feats.vision.valid.all()


def test_audio_noise_degrades_and_is_still_read():
    by_end, _, _ = stream("audio:noise:snr=0@6-9")
    row, feats = by_end[9.0]
    s, why = state(row, "audio")
    assert s == "DEGRADED" and why.startswith("noisy"), row["modalities"]["audio"]
    assert feats.audio is not None and feats.audio.valid.all()  # DEGRADED audio is read, flagged
    assert state(row, "vision") == ("OK", "")
    row, feats = by_end[12.0]
    assert state(row, "audio") == ("OK", "") and feats.audio is not None


def test_audio_drop_masks_audio_and_typed_text_is_read():
    by_end, model, _ = stream("audio:drop@4-8", typed="what a lovely day")
    row, feats = by_end[7.0]
    assert state(row, "audio")[0] == "DROPPED" and feats.audio is None
    assert state(row, "text") == ("OK", "typed text") and feats.text is not None
    assert row["transcript"] == "what a lovely day" and "what a lovely day" in model.texts
    assert set(feats.present()) == {Modality.TEXT, Modality.VISION}


def test_every_modality_dropped_is_no_data():
    by_end, _, _ = stream("vision:drop@2-,audio:drop@2-", seconds=8.0)
    row, feats = by_end[8.0]
    assert feats.present() == () and row["no_data"] is True and row["score"] is None


def test_bad_items_get_a_clear_error_or_health_state():
    with pytest.raises(ValueError, match="uint8"):
        VideoFrame(0.0, np.zeros((120, 160, 3), np.float32))  # a frame is checked as it is made
    with pytest.raises(ValueError, match="shape"):
        VideoFrame(0.0, np.zeros((120, 160, 2), np.uint8))
    model = StubModel()
    pipe = Pipeline(model, None, cfg=PipelineConfig(asr_mode="off"), face_analyzer=StubFaces())
    out = []
    for k in range(20):  # 2 s of 48 kHz chunks: converted by no source, refused by the check
        out += pipe.push(AudioChunk(0.1 * k, np.zeros(4800, np.float32) + 0.1, 48000))
    pipe.reject(Modality.VISION, 0.5, "invalid frame: frame must be uint8, got float32")
    out += pipe.flush(3.0)
    row = out[-1].to_json()
    assert state(row, "audio") == ("DROPPED", "wrong sample rate 48000 Hz")
    assert model.windows[-1].audio is None
