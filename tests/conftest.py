"""Shared fixtures: test media built at test time from ../shared/data."""

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def fer_test():
    from models.training.data import load_faces

    return load_faces("test")


@pytest.fixture(scope="session")
def face_frame(fer_test):
    """A 480x640 RGB frame with a real FER-2013 test face (happy) placed in a plain scene."""
    import cv2

    from models.labels import EMOTIONS

    idx = int(np.flatnonzero(np.array([EMOTIONS[e] for e in fer_test.emotion_idx]) == "happy")[0])
    face = cv2.resize(fer_test.images[idx], (220, 220), interpolation=cv2.INTER_CUBIC)
    scene = np.full((480, 640), 110, np.uint8)
    scene[130:350, 210:430] = face
    return cv2.cvtColor(scene, cv2.COLOR_GRAY2RGB)


@pytest.fixture(scope="session")
def speech_clip():
    """A RAVDESS test-actor clip as float32 16 kHz mono."""
    import soundfile as sf

    from models.training.data import load_speech

    df = load_speech()
    row = df[(df.corpus == "ravdess") & (df.split == "test")].iloc[0]
    audio, sr = sf.read(row.path, dtype="float32")
    assert sr == 16000
    return audio


@pytest.fixture(scope="session")
def make_window():
    """Builds a ``WindowResult`` the way the pipeline does: ``make_window(t_end, score,
    probs, states={"vision": "DROPPED"}, no_data=False, lag={...})``; modalities not named
    in ``states`` are OK and used."""
    from models.types import MODALITIES, SentimentResult
    from streaming.types import Health, HealthStatus, WindowResult

    def make(t_end, score=0.0, probs=(0.2, 0.5, 0.3), states=None, reasons=None, no_data=False, t_start=None, lag=None):
        states, reasons = states or {}, reasons or {}
        health = {m: HealthStatus(Health(states.get(m.value, "OK")), reasons.get(m.value, "")) for m in MODALITIES}
        used = () if no_data else tuple(m for m in MODALITIES if health[m].state != Health.DROPPED)
        result = SentimentResult(float(score), np.asarray(probs, float), used)
        start = float(t_end) - 3.0 if t_start is None else t_start
        return WindowResult(start, float(t_end), result, health, lag=dict(lag or {}))

    return make


# ----------------------------------------------------------------- shared by many modules
# (module scope: each test module gets its own, so one module's caches and state never
# reach another's)
@pytest.fixture(scope="module")
def model():
    """The shipped model (``SentimentModel.load()``)."""
    from models.runtime import SentimentModel

    return SentimentModel.load()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The demo clip (FER-2013 faces animated, espeak-ng speech), built at test time:
    ``streaming.democlip.build_clip``'s dict (path, lines, ...)."""
    from streaming.democlip import build_clip

    return build_clip(tmp_path_factory.mktemp("clip") / "demo.mp4")


@pytest.fixture(scope="module")
def asr():
    """The shipped streaming recogniser (faster-whisper tiny.en)."""
    from streaming.asr import StreamingASR

    return StreamingASR()
