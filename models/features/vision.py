"""Vision features: MediaPipe face mesh (0.10.21, ``mp.solutions.face_mesh``) on each frame.

For each RGB frame the analyser returns a ``FaceObservation``:
- ``n_faces``: faces found (up to ``max_faces``); the largest one is described;
- ``crop``: a 48x48 grayscale face aligned by a similarity transform that puts the eye
  centres and the mouth centre where FER-2013 has them on average (``FER_FRAMING``), so
  the expression encoder trained on FER-2013 sees live faces framed as in training;
- ``landmarks`` and ``box``: the described face's mesh and bounding box, in pixels.
A frame with no face gives ``FaceObservation(n_faces=0)`` with crop None; it is never
zero-filled: the window marks that frame as not valid.

Wide shots: the face mesh's own detector is a short-range one and misses small faces (a TV
scene, a webcam across the room). When the mesh finds nothing in a frame, and the fallback
is on (``detector_fallback``, the default), MediaPipe's full-range face detector
(``mp.solutions.face_detection``, ``model_selection=1``, at ``min_confidence``) looks for
faces; around each detected box, largest first, a square margin crop (``FALLBACK_MARGIN``
times the box, clamped to the frame, resized to ``FALLBACK_SIDE`` pixels) goes to a second,
static-image face mesh, and the first crop the mesh reads gives the landmarks, mapped back
to full-frame pixels; crop and box are then computed from the full frame exactly
as for a face the mesh found directly. ``n_faces`` is then the number of faces the detector
found (at least 1, at most ``max_faces``), and ``source`` says ``"detector"``. A detection
the mesh cannot read (a profile, a false alarm) is not counted: if no crop is read the
frame gives ``n_faces=0``. The fallback costs time only on frames where the mesh finds
nothing; frames the mesh reads take the direct path unchanged.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from streaming.limits import MAX_FRAME_SIDE

CROP_SIZE = 48
MIN_SIDE = 16  # frames with a shorter side than this (pixels) are refused
N_LANDMARKS = 478
FALLBACK_MARGIN = 2.0  # the detector's box is enlarged this much (a square on its longer side)
FALLBACK_SIDE = 256  # the margin crop's longer side, in pixels, as the crop mesh sees it
FALLBACK_MIN_FACE = 12  # detector boxes smaller than this (pixels, longer side) are ignored

# Landmark indices of the MediaPipe face mesh topology.
RIGHT_EYE = (33, 133)  # outer, inner corner (the subject's right eye, image left)
LEFT_EYE = (362, 263)
MOUTH = (61, 291, 13, 14)  # corners, upper and lower inner lip

#: Where FER-2013 puts the right-eye centre, left-eye centre and mouth centre, in pixels of
#: its 48x48 images: medians over the train images in which the face mesh finds a face
#: (recomputed by ``python -m models.features.vision --fer-framing``).
FER_FRAMING = np.array([[15.21, 18.96], [32.65, 18.79], [24.22, 36.89]], np.float32)


@dataclass
class FaceObservation:
    n_faces: int
    crop: np.ndarray | None = None  # uint8 [48, 48]
    landmarks: np.ndarray | None = None  # float32 [478, 3], x and y in pixels
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in pixels
    source: str = "mesh"  # how the face was found: "mesh" (directly) or "detector" (wide-shot fallback)

    @property
    def has_face(self) -> bool:
        return self.n_faces > 0 and self.crop is not None


def fit_frame(frame: np.ndarray, side: int = MAX_FRAME_SIDE) -> np.ndarray:
    """A frame (any array of 2 or more dimensions, as given) whose longer side exceeds
    ``side`` pixels, scaled down to fit it, keeping its aspect ratio; a frame within it comes
    back as it is. Up to twice the size it is an area average (``cv2.INTER_AREA``); a larger
    frame is thinned to every k-th pixel first, a view, so that even a huge frame (or a
    broadcast array that holds one pixel) is never copied whole. The dtype is kept."""
    h, w = frame.shape[:2]
    if max(h, w) <= side:
        return frame
    if max(h, w) > 2 * side:
        k = -(-max(h, w) // side)
        frame = frame[::k, ::k]
        h, w = frame.shape[:2]
        if max(h, w) <= side:
            return np.ascontiguousarray(frame)
    f = side / max(h, w)
    size = (max(1, min(side, round(w * f))), max(1, min(side, round(h * f))))
    return cv2.resize(np.ascontiguousarray(frame), size, interpolation=cv2.INTER_AREA)


def validate_frame(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] (gray [H, W] or [H, W, 1] and RGBA accepted, converted) or
    ValueError with the reason. A frame larger than ``MAX_FRAME_SIDE`` on a side is scaled
    down to fit (``fit_frame``), so an 8K frame costs what a 4K one does; a frame with a side
    under ``MIN_SIDE`` pixels, before or after that, is refused. The dtype and shape are
    checked before anything is converted."""
    f = np.asarray(frame)
    if f.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {f.dtype}")
    if f.ndim == 3 and f.shape[2] == 1:
        f = f[:, :, 0]
    if not (f.ndim == 2 or (f.ndim == 3 and f.shape[2] in (3, 4))):
        raise ValueError(f"frame must be [H, W, 3], got shape {f.shape}")
    h, w = f.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"frame size {w}x{h}: a side under {MIN_SIDE} pixels")
    if f.ndim == 3 and f.shape[2] == 4:
        f = f[:, :, :3]
    f = fit_frame(f)
    if min(f.shape[:2]) < MIN_SIDE:
        raise ValueError(f"frame size {w}x{h}: too narrow, a side under {MIN_SIDE} pixels once scaled to {MAX_FRAME_SIDE}")
    if f.ndim == 2:
        f = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(f)


def _points(lm: np.ndarray, idx) -> np.ndarray:
    return lm[list(idx), :2]


def anchor_points(landmarks: np.ndarray) -> np.ndarray:
    """[3, 2] right-eye centre, left-eye centre, mouth centre (pixels)."""
    return np.stack(
        [
            _points(landmarks, RIGHT_EYE).mean(0),
            _points(landmarks, LEFT_EYE).mean(0),
            _points(landmarks, MOUTH[:2]).mean(0),
        ]
    ).astype(np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, shift) taking src points to dst."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    denom = (s**2).sum()
    if denom < 1e-9:
        raise ValueError("degenerate landmarks")
    a = (s * d).sum() / denom
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / denom
    rot = np.array([[a, -b], [b, a]])
    shift = mu_d - rot @ mu_s
    return np.hstack([rot, shift[:, None]]).astype(np.float32)


def aligned_crop(gray: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """48x48 uint8 crop of a grayscale image, framed as FER-2013 frames its faces."""
    m = similarity_transform(anchor_points(landmarks), FER_FRAMING)
    return cv2.warpAffine(gray, m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def _box(lm: np.ndarray) -> tuple[float, float, float, float]:
    return float(lm[:, 0].min()), float(lm[:, 1].min()), float(lm[:, 0].max()), float(lm[:, 1].max())


def _overlap(a, b) -> float:
    """Intersection of two boxes over the smaller box's area."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / small if small > 0 else 0.0


def distinct_boxes(boxes: list[tuple[float, float, float, float]], overlap: float = 0.5) -> list[int]:
    """Indices of the boxes that are different faces, largest first: a box lying mostly (more
    than ``overlap`` of its area) inside a larger kept one counts once."""
    keep: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: -(boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])):
        if all(_overlap(boxes[i], boxes[k]) <= overlap for k in keep):
            keep.append(i)
    return keep


def distinct_faces(meshes: list[np.ndarray], overlap: float = 0.5) -> list[np.ndarray]:
    """Meshes that are different people. The video-mode tracker can hold a stale track, or a
    spurious small mesh, on the same face after a cut: a mesh lying mostly (more than
    ``overlap`` of its box) inside a larger one's box counts once."""
    return [meshes[i] for i in distinct_boxes([_box(m) for m in meshes], overlap)]


def margin_crop_box(
    box: tuple[float, float, float, float], width: int, height: int, margin: float = FALLBACK_MARGIN
) -> tuple[int, int, int, int]:
    """Integer x0, y0, x1, y1 of a square ``margin`` times the box's longer side, centred on
    the box and clamped to a ``width`` x ``height`` frame (so it is cut off at the edges)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = margin * max(box[2] - box[0], box[3] - box[1]) / 2
    x0, y0 = max(0, int(np.floor(cx - half))), max(0, int(np.floor(cy - half)))
    x1, y1 = min(width, int(np.ceil(cx + half))), min(height, int(np.ceil(cy + half)))
    return x0, y0, x1, y1


class FaceAnalyzer:
    """RGB frames in, ``FaceObservation`` out.

    static: True for unrelated still images (training), False for a video stream (the mesh
    then tracks between frames, which is faster). One analyser serves one stream.
    detector_fallback: when the mesh finds nothing, look for small faces with the
    full-range face detector and read them with the mesh on a margin crop (see the module
    docstring); False gives the mesh alone.
    """

    def __init__(self, static: bool = False, max_faces: int = 2, min_confidence: float = 0.5, detector_fallback: bool = True):
        import mediapipe as mp

        self._max_faces = max_faces
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )
        self._detector = None
        self._crop_mesh = None
        if detector_fallback:
            self._detector = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)
            # The crop moves from frame to frame, so its mesh treats every crop as a new image.
            self._crop_mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=min_confidence,
            )
        self._lock = threading.Lock()
        self._closed = False

    @property
    def detector_fallback(self) -> bool:
        return self._detector is not None

    def close(self) -> None:
        """Closes every MediaPipe graph the analyser holds; closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for g in (self._mesh, self._detector, self._crop_mesh):
                if g is not None:
                    g.close()

    def __call__(self, frame: np.ndarray, gray: np.ndarray | None = None) -> FaceObservation:
        """The observation of one frame (``validate_frame`` checks and converts it). ``gray``:
        the frame in grey (``cv2.COLOR_RGB2GRAY``) when the caller has it already; ``frame``
        must then be a validated RGB frame (a ``streaming.types.VideoFrame``'s image), and it
        is neither checked nor converted again."""
        rgb = validate_frame(frame) if gray is None else frame
        h, w = rgb.shape[:2]
        fallback: np.ndarray | None = None
        with self._lock:
            res = self._mesh.process(rgb)
            faces = res.multi_face_landmarks or []
            if not faces and self._detector is not None:
                fallback, n_detected = self._detect_and_read(rgb)
        if faces:
            arrays = [np.array([(p.x * w, p.y * h, p.z * w) for p in f.landmark], np.float32) for f in faces]
            areas = [np.ptp(a[:, 0]) * np.ptp(a[:, 1]) for a in arrays]
            lm = arrays[int(np.argmax(areas))]
            n_faces, source = len(distinct_faces(arrays)), "mesh"
        elif fallback is not None:
            lm, n_faces, source = fallback, max(1, n_detected), "detector"
        else:
            return FaceObservation(n_faces=0)
        box = _box(lm)
        if gray is None:
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        try:
            crop = aligned_crop(gray, lm)
        except ValueError:  # degenerate landmarks
            return FaceObservation(n_faces=n_faces, landmarks=lm, box=box, source=source)
        return FaceObservation(n_faces=n_faces, crop=crop, landmarks=lm, box=box, source=source)

    def _detect_and_read(self, rgb: np.ndarray) -> tuple[np.ndarray | None, int]:
        """The wide-shot fallback (called under the lock): full-range detector, then the crop
        mesh on a margin crop around each detected face, largest first, until one is read.
        Returns (full-frame landmarks [478, 3] or None, number of distinct faces detected,
        at most ``max_faces``)."""
        h, w = rgb.shape[:2]
        boxes = []
        for d in self._detector.process(rgb).detections or []:
            b = d.location_data.relative_bounding_box
            x0, y0 = max(0.0, b.xmin * w), max(0.0, b.ymin * h)
            x1, y1 = min(float(w), (b.xmin + b.width) * w), min(float(h), (b.ymin + b.height) * h)
            if max(x1 - x0, y1 - y0) >= FALLBACK_MIN_FACE:
                boxes.append((x0, y0, x1, y1))
        distinct = [boxes[i] for i in distinct_boxes(boxes)]
        n_detected = min(len(distinct), self._max_faces)
        for b in distinct[: self._max_faces]:
            x0, y0, x1, y1 = margin_crop_box(b, w, h)
            cw, ch = x1 - x0, y1 - y0
            if min(cw, ch) < 2:
                continue
            f = FALLBACK_SIDE / max(cw, ch)
            size = (max(1, round(cw * f)), max(1, round(ch * f)))
            crop = cv2.resize(rgb[y0:y1, x0:x1], size, interpolation=cv2.INTER_CUBIC if f > 1 else cv2.INTER_AREA)
            found = self._crop_mesh.process(np.ascontiguousarray(crop)).multi_face_landmarks
            if found:
                # Relative crop coordinates to full-frame pixels; z in pixels, as on the direct path.
                lm = np.array([(x0 + p.x * cw, y0 + p.y * ch, p.z * cw) for p in found[0].landmark], np.float32)
                return lm, n_detected
        return None, n_detected


def fer_image_to_frame(image: np.ndarray, scale: int = 4, margin: float = 0.25) -> np.ndarray:
    """A 48x48 FER-2013 face as an RGB frame the face mesh can read: upscaled and given a
    replicated border (the detector wants some room around the face). Returns the frame;
    a point (x, y) of the frame is (x / scale - m, y / scale - m) in the 48x48 image, with
    m = round(48 * margin)."""
    m = int(round(CROP_SIZE * margin))
    big = cv2.copyMakeBorder(image, m, m, m, m, cv2.BORDER_REPLICATE)
    big = cv2.resize(big, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(big, cv2.COLOR_GRAY2RGB)


def _fer_framing(n: int = 4000) -> np.ndarray:
    from models.training.data import load_faces

    faces = load_faces("train")
    rng = np.random.default_rng(0)
    analyzer = FaceAnalyzer(static=True, max_faces=1, detector_fallback=False)  # the mesh's own framing
    m = int(round(CROP_SIZE * 0.25))
    anchors = []
    for i in rng.choice(len(faces), min(n, len(faces)), replace=False):
        obs = analyzer(fer_image_to_frame(faces.images[i]))
        if obs.landmarks is not None:
            anchors.append(anchor_points(obs.landmarks) / 4 - m)
    return np.median(np.stack(anchors), axis=0)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="vision feature utilities")
    ap.add_argument("--fer-framing", action="store_true", help="measure FER_FRAMING on FER-2013 train")
    args = ap.parse_args()
    if args.fer_framing:
        print(np.round(_fer_framing(), 2).tolist())
