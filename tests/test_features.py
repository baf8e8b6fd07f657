"""Feature extractors: shapes, known signals, and clear errors on bad input."""

import numpy as np
import pytest

from models.features.audio import DIM, AudioFeatureExtractor, n_frames, prosody, to_mono_16k
from models.features.vision import CROP_SIZE, FaceAnalyzer, validate_frame


@pytest.fixture(scope="module")
def audio_ex():
    return AudioFeatureExtractor()


def test_prosody_finds_pitch_of_a_tone():
    t = np.arange(16000) / 16000
    for f0 in (110.0, 220.0):
        x = (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)
        p = prosody(x)
        assert p.shape == (50, 3)
        est = 200 * 2 ** p[5:-5, 1].mean()
        assert est == pytest.approx(f0, rel=0.03)
        assert p[5:-5, 2].mean() > 0.9  # voiced
    silent = prosody(np.zeros(16000, np.float32))
    assert (silent[:, 2] == 0).all() and (silent[:, 1] == 0).all()


def test_audio_features_shape_and_speech(audio_ex, speech_clip):
    f = audio_ex(speech_clip[:48000])
    assert f.shape == (150, DIM) and f.dtype == np.float32
    assert np.isfinite(f).all()
    assert audio_ex(speech_clip[:1000]).shape == (n_frames(1000), DIM)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 16000), np.float32),  # not mono
        np.zeros(0, np.float32),  # empty
        np.zeros(16000, np.int16),  # not float
        np.full(16000, np.nan, np.float32),
        np.zeros(31 * 16000, np.float32),  # too long for one window
    ],
)
def test_audio_features_reject_bad_input(audio_ex, bad):
    with pytest.raises(ValueError):
        audio_ex(bad)


def test_to_mono_16k_resamples_and_validates():
    t = np.arange(48000) / 48000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, 1)
    pcm = (stereo * 20000).astype(np.int16)
    out = to_mono_16k(pcm, 48000)
    assert out.dtype == np.float32 and len(out) == 16000
    spec = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spec) - 440) <= 1  # 1 Hz bins
    with pytest.raises(ValueError):
        to_mono_16k(pcm, 1000)
    with pytest.raises(ValueError):
        to_mono_16k(np.array([np.inf, 0.0]), 16000)
    with pytest.raises(ValueError):
        to_mono_16k(np.zeros(0, np.int16), 16000)


def test_face_analyzer_on_a_real_face(face_frame):
    an = FaceAnalyzer()
    obs = an(face_frame)
    assert obs.n_faces == 1 and obs.has_face
    assert obs.crop.shape == (CROP_SIZE, CROP_SIZE) and obs.crop.dtype == np.uint8
    x0, y0, x1, y1 = obs.box
    assert 180 < x0 < 320 and 330 < x1 < 460 and 100 < y0 < 240 and 280 < y1 < 380


def test_face_analyzer_no_face_is_marked_not_zero_filled():
    an = FaceAnalyzer()
    obs = an(np.full((240, 320, 3), 128, np.uint8))
    assert obs.n_faces == 0 and not obs.has_face
    assert obs.crop is None


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((48, 48, 3), np.float32),
        np.zeros((10, 10, 3), np.uint8),
        np.zeros((48, 48, 2), np.uint8),
        np.zeros((10_000, 20, 3), np.uint8),  # 8 pixels wide once scaled to fit 4096
    ],
)
def test_validate_frame_rejects(bad):
    with pytest.raises(ValueError):
        validate_frame(bad)


def test_text_features_shapes():
    from models.features.text import TextFeatureExtractor

    ex = TextFeatureExtractor()
    a, b = ex(["great", "this is a considerably longer sentence about the movie"])
    assert a.shape == (3, 384)  # [CLS] great [SEP]
    assert b.shape[0] > 5 and np.isfinite(b).all()
    long = ex(["word " * 5000])[0]
    assert long.shape[0] == 64  # truncated
    with pytest.raises(TypeError):
        ex([None])


def test_distinct_faces_counts_nested_meshes_once():
    from models.features.vision import distinct_faces

    def mesh(x0, y0, x1, y1):
        return np.array([[x0, y0, 0], [x1, y1, 0]], np.float32)

    big, inner, other = mesh(30, 30, 230, 240), mesh(150, 180, 200, 225), mesh(300, 30, 420, 160)
    assert len(distinct_faces([inner, big])) == 1  # a small mesh inside a face is the same face
    assert len(distinct_faces([big, other])) == 2  # side by side: two people
    assert distinct_faces([inner, big])[0] is big


def test_stereo_int16_is_scaled_before_mixing():
    from models.features.audio import to_mono_16k

    x = to_mono_16k(np.full((320, 2), 16384, np.int16), 16000)
    assert np.allclose(x, 0.5)
