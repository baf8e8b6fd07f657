"""Faces in wide shots: the full-range detector fallback of ``FaceAnalyzer`` on a real TV
scene (MELD, 1280x720, a small face), with real MediaPipe. Skipped without ../shared/data/real."""

from pathlib import Path

import numpy as np
import pytest

from models.features.vision import CROP_SIZE, N_LANDMARKS, FaceAnalyzer

MELD_CLIP = "meld_train_dia0_utt0.mp4"


def _real_dir() -> Path:
    from models.paths import data_root

    try:
        real = data_root() / "real"
    except FileNotFoundError:
        pytest.skip("no data root")
    if not (real / MELD_CLIP).is_file():
        pytest.skip(f"{real / MELD_CLIP} not found")
    return real


def _frames(path: Path, fps: float | None = None) -> list[np.ndarray]:
    """RGB frames of a clip: all of them, or about ``fps`` a second."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        pytest.skip(f"OpenCV cannot open {path.name}")
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames, i, next_t = [], 0, 0.0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if fps is None or i / src_fps >= next_t - 1e-6:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            next_t += 1.0 / fps if fps else 0.0
        i += 1
    cap.release()
    if not frames:
        pytest.skip(f"no frames read from {path.name}")
    return frames


@pytest.fixture(scope="module")
def meld_frames():
    return _frames(_real_dir() / MELD_CLIP)


def test_wide_shot_face_found_by_the_detector_fallback(meld_frames):
    frame = meld_frames[len(meld_frames) // 2]
    h, w = frame.shape[:2]

    off = FaceAnalyzer(static=True, detector_fallback=False)
    try:
        obs_off = off(frame)
    finally:
        off.close()
    assert obs_off.n_faces == 0 and obs_off.crop is None and not obs_off.has_face

    on = FaceAnalyzer(static=True)
    try:
        obs = on(frame)
    finally:
        on.close()
    assert obs.has_face and obs.source == "detector"
    assert 1 <= obs.n_faces <= 2
    assert obs.crop.shape == (CROP_SIZE, CROP_SIZE) and obs.crop.dtype == np.uint8
    assert obs.crop.std() > 5  # a picture, not a flat patch
    assert obs.landmarks.shape == (N_LANDMARKS, 3) and np.isfinite(obs.landmarks).all()
    x0, y0, x1, y1 = obs.box
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert 10 < x1 - x0 < w / 4 and 10 < y1 - y0 < h / 3  # a small face: the wide shot
    # Landmarks are full-frame pixels: the box is theirs.
    assert obs.landmarks[:, 0].min() == pytest.approx(x0) and obs.landmarks[:, 1].max() == pytest.approx(y1)


def test_video_mode_finds_the_face_in_most_frames():
    frames = _frames(_real_dir() / MELD_CLIP, fps=5.0)
    an = FaceAnalyzer(static=False)
    try:
        obs = [an(f) for f in frames]
    finally:
        an.close()
    found = [o for o in obs if o.has_face]
    assert len(found) >= 0.5 * len(frames), f"{len(found)}/{len(frames)} frames with a face"
    assert all(o.crop.shape == (CROP_SIZE, CROP_SIZE) and o.crop.dtype == np.uint8 for o in found)
    assert all(o.source in ("mesh", "detector") for o in found)


@pytest.mark.parametrize("kind", ["gray", "noise"])
def test_no_face_frame_gives_no_face_with_the_fallback(kind):
    if kind == "gray":
        frame = np.full((720, 1280, 3), 128, np.uint8)
    else:
        frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for static in (True, False):
        an = FaceAnalyzer(static=static)
        try:
            assert an.detector_fallback
            for _ in range(2):
                obs = an(frame)
                assert obs.n_faces == 0 and not obs.has_face
                assert obs.crop is None and obs.box is None
        finally:
            an.close()
    an.close()  # closing twice is harmless
