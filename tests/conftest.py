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
