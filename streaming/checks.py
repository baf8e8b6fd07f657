"""Item checks: the verdict (``Check``) on one camera frame or microphone chunk as it
arrives, and on a window's audio as a whole. ``streaming.health`` collects the verdicts and
judges each sensor per window; its ``HealthConfig`` holds the thresholds used here.

- frames: ``VisionChecker.image`` (black, over-exposed, blank, frozen, noisy) on a small grey
  copy (``small_gray``) and a full-resolution grey centre (``centre_gray``, for
  ``noise_sigma``), then ``VisionChecker.face`` on the face analyser's answer (no face,
  several faces, blurred face);
- chunks: ``AudioChecker.chunk`` (malformed, not float, wrong rate, NaN, zeroed, repeating,
  clipping);
- a window's usable samples: ``audio_window_issue`` (silence, noise by ``estimate_snr_db``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from streaming.health import HealthConfig

#: the issue of a frame with more than one face (the face read may not be the speaker's)
SEVERAL_FACES = "several faces"
#: the issue of a frame that has stayed the same for ``HealthConfig.frozen_s`` or longer
FROZEN = "frozen frames"


@dataclass(frozen=True)
class Check:
    """The verdict on one frame or chunk."""

    usable: bool
    issue: str = ""  # empty when fine

    @property
    def poor(self) -> bool:
        return self.usable and bool(self.issue)


OK_CHECK = Check(True)


# --------------------------------------------------------------------- vision
def small_gray(image: np.ndarray, width: int = 160) -> np.ndarray:
    """Grey float32 copy of a frame (RGB, or grey already), scaled to ``width`` pixels wide."""
    g = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = g.shape
    if w > width:
        g = cv2.resize(g, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return g.astype(np.float32)


def noise_sigma(gray: np.ndarray) -> float:
    """Pixel noise standard deviation of a grey image at full resolution (Immerkaer 1996: a
    Laplacian-difference mask that cancels image structure, averaged in absolute value)."""
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = cv2.filter2D(gray.astype(np.float32), cv2.CV_32F, k)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.mean(np.abs(r)) / 6.0)


def centre_gray(image: np.ndarray, size: int = 256) -> np.ndarray:
    """Grey centre crop of a frame (RGB, or grey already) at full resolution (noise is judged
    on it: scaling down would average the noise away)."""
    h, w = image.shape[:2]
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    crop = image[y0 : y0 + size, x0 : x0 + size]
    return crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)


class VisionChecker:
    """Checks frames of one camera stream in order (it remembers the previous frame to find
    freezes).

    A run of the same frame is frozen once it has lasted ``frozen_s``; the whole run was
    frozen then, from its first frame: ``still_since`` is that frame's time while the run
    lasts (None otherwise), so the caller can mark the run's earlier frames frozen too
    (``HealthMonitor.restate``), which the verdicts given before the run had lasted could
    not say."""

    def __init__(self, cfg: HealthConfig):
        self.cfg = cfg
        self._prev: np.ndarray | None = None
        self._prev_t: float | None = None
        self._same_since: float | None = None  # the second frame of the run of the same frame
        self.still_since: float | None = None  # the first frame of that run

    def image(self, t: float, gray: np.ndarray, full: np.ndarray | None = None) -> Check:
        """Checks that need no face: black, over-exposed, blank, frozen, noisy. ``gray``: the
        small grey copy (``small_gray``); ``full``: a full-resolution grey crop for the noise
        estimate (``centre_gray``; default: gray)."""
        c = self.cfg
        prev, self._prev = self._prev, gray
        prev_t, self._prev_t = self._prev_t, t
        if prev is not None and prev.shape == gray.shape and float(np.mean(np.abs(gray - prev))) < c.frozen_diff:
            if self._same_since is None:
                self._same_since, self.still_since = t, prev_t
        else:
            self._same_since = self.still_since = None
        mean, std = float(gray.mean()), float(gray.std())
        if mean < c.dark_mean:
            return Check(False, "black frames")
        if mean > c.bright_mean:
            return Check(False, "over-exposed frames")
        if std < c.min_contrast:
            return Check(False, "blank frames")
        # (a tolerance: four 0.2 s steps are 0.8 s, though 5.0 - 4.2 < 0.8 in floating point)
        if self._same_since is not None and t - self._same_since >= c.frozen_s - 1e-6:
            return Check(False, FROZEN)
        if noise_sigma(gray if full is None else full) > c.noise_sigma:
            return Check(True, "noisy frames")
        return OK_CHECK

    def face(self, gray: np.ndarray, n_faces: int, has_crop: bool, box, frame_width: int) -> Check:
        """Checks on the face mesh's answer: no face, several faces, a blurred face."""
        if n_faces == 0:
            return Check(False, "no face")
        if not has_crop:
            return Check(False, "face not measurable")
        if n_faces > 1:
            return Check(True, SEVERAL_FACES)
        if box is not None:
            s = gray.shape[1] / frame_width
            x0, y0, x1, y1 = (int(round(v * s)) for v in box)
            roi = gray[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)]
            if roi.size >= 64 and float(cv2.Laplacian(roi, cv2.CV_32F).var()) < self.cfg.blur_var:
                return Check(True, "blurred face")
        return OK_CHECK


# ---------------------------------------------------------------------- audio
class AudioChecker:
    """Checks the chunks of one microphone stream in order."""

    def __init__(self, cfg: HealthConfig):
        self.cfg = cfg
        self._prev: np.ndarray | None = None

    def chunk(self, samples, rate) -> Check:
        c = self.cfg
        a = np.asarray(samples)
        if a.ndim != 1 or a.size == 0:
            return Check(False, f"malformed audio chunk (shape {a.shape})")
        if not np.issubdtype(a.dtype, np.floating):
            return Check(False, f"audio chunk of dtype {a.dtype}")
        if rate != c.sample_rate:
            return Check(False, f"wrong sample rate {rate} Hz")
        if not np.isfinite(a).all():
            return Check(False, "NaN or inf samples")
        prev, self._prev = self._prev, a
        if not a.any():
            return Check(False, "zeroed samples")
        if prev is not None and prev.shape == a.shape and np.array_equal(prev, a):
            return Check(False, "repeating samples")
        if np.mean(np.abs(a) >= c.clip_level) > c.clip_share:
            return Check(True, "clipping")
        return OK_CHECK


#: the noise judgement looks at the speech band from here up: below it room rumble, mains hum
#: and a microphone's drift dominate and carry little of the speech
SNR_LOW_HZ = 250.0
_HANN: dict[int, np.ndarray] = {}
_FLOOR_BIAS: dict[tuple, float] = {}


def _band_powers(x: np.ndarray, frame: int, band: int, lo: int) -> np.ndarray:
    """Power of ``x`` per Hann-windowed frame of ``frame`` samples (half-frame hops) in bands
    of ``band`` FFT bins from bin ``lo`` up: [frames, bands] (no rows for a clip under one frame)."""
    hop = frame // 2
    n = (len(x) - frame) // hop + 1 if len(x) >= frame else 0
    nb = (frame // 2 + 1 - lo) // band
    if n <= 0 or nb <= 0:
        return np.zeros((0, max(nb, 0)))
    w = _HANN.get(frame)
    if w is None:
        w = _HANN[frame] = np.hanning(frame).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(x, np.float32), frame)[::hop][:n] * w
    spec = np.fft.rfft(frames, axis=1)[:, lo : lo + nb * band]
    return (spec.real**2 + spec.imag**2).reshape(n, nb, band).mean(axis=2)


def _floor_bias(frame: int, band: int, lo: int, q: float) -> float:
    """The q-th percentile over time of a band's power as a share of its mean, for stationary
    Gaussian noise: measured once on seeded white noise. A floor read as a low percentile is
    divided by it, so noise alone reads as its own mean power."""
    key = (frame, band, lo, q)
    if key not in _FLOOR_BIAS:
        p = _band_powers(np.random.default_rng(20240611).normal(0.0, 0.1, 30 * 16_000), frame, band, lo)
        _FLOOR_BIAS[key] = float(np.mean(np.percentile(p, q, axis=0) / p.mean(axis=0)))
    return _FLOOR_BIAS[key]


def estimate_snr_db(audio: np.ndarray, frame: int = 512, band: int = 8, q: float = 10.0, rate: int = 16_000) -> float:
    """Speech-to-noise estimate of a clip in dB, over the speech band (``SNR_LOW_HZ`` up).

    The noise floor is found per frequency band, not over the whole spectrum: in each band of
    ``band`` FFT bins (250 Hz at the defaults) it is the q-th percentile of the band's power
    over the 32 ms frames (bias-corrected, ``_floor_bias``). Speech is sparse in time and
    frequency: between syllables, and in the bands the current sound does not use, a band falls
    back to its floor, so the percentile finds the floor even in speech without pauses, while
    stationary noise (a hiss, the injected white noise) holds every band up all the time. The
    signal is each band's mean power above its floor; the estimate is all signal over all floor.

    Scale-invariant (quiet speech reads like loud speech). On real clips, clean speech reads
    15 dB and more, speech under white noise at 0 / 5 dB SNR about 0 / 4 dB. inf for a clip
    under 10 frames (too short to judge); otherwise within [-30, 120] dB."""
    lo = max(1, int(np.ceil(SNR_LOW_HZ * frame / rate)))
    p = _band_powers(audio, frame, band, lo)
    if p.shape[0] < 10 or p.shape[1] == 0:
        return float("inf")
    mean = p.mean(axis=0)
    floor = np.percentile(p, q, axis=0) / _floor_bias(frame, band, lo, q)
    total = float(mean.sum())
    if total <= 0.0:
        return 0.0  # digital zeros: nothing stands out of anything
    signal = float(np.maximum(mean - floor, 0.0).sum())
    snr = 10 * np.log10((signal + 1e-12 * total) / (float(floor.sum()) + 1e-12 * total))
    return float(min(max(snr, -30.0), 120.0))


def audio_window_issue(audio: np.ndarray, valid: np.ndarray, cfg: HealthConfig) -> Check:
    """Checks on a window's usable samples as a whole: silence, noise."""
    x = audio[valid]
    if x.size == 0:
        return OK_CHECK
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    if rms < cfg.silence_rms:
        return Check(False, "silence")
    snr = estimate_snr_db(x)
    if rms < cfg.quiet_rms and snr < cfg.min_snr_db:
        return Check(False, "silence")
    if snr < cfg.min_snr_db:
        return Check(True, f"noisy (about {snr:.0f} dB SNR)")
    return OK_CHECK
