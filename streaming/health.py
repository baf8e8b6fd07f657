"""Modality health: is each sensor alive, and is what it sends usable?

Two kinds of evidence, both per window:

* liveness: when the newest item of a stream arrived and how old its timestamp is
  (nothing for ``no_data_s`` -> DROPPED; data older than ``lag_s`` -> DEGRADED);
* quality: every frame and chunk is checked as it arrives (``check_frame``,
  ``check_chunk``); a check is *bad* (the item is unusable and never reaches the model:
  invalid, black, over-exposed, frozen, no face, NaN, wrong rate, zeroed, repeating) or
  *poor* (usable but flagged: blurred, noisy, several faces, clipping). A window whose usable
  share is below ``min_usable`` is DROPPED; one with ``degraded_share`` or more of its items
  bad or poor is DEGRADED; the reason is the commonest problem.

Text health follows the recogniser: decode errors, injected outages and stalls drop it,
low confidence (avg_logprob) degrades it.

All thresholds are in ``HealthConfig``. Windows see only their own items, so a state
changes within one window of a fault and recovers within one window of the sensor's return.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from models.types import Modality
from streaming.types import Health, HealthStatus, Transcript


@dataclass
class HealthConfig:
    # liveness
    no_data_s: float = 1.0  # nothing arrived for this long -> DROPPED
    lag_s: float = 0.6  # newest item's timestamp this far behind the clock -> DEGRADED
    # window rules
    min_usable: float = 0.35  # share of expected items that must be usable, else DROPPED
    degraded_share: float = 0.2  # share of bad or poor items that makes a window DEGRADED
    # vision, on a grey copy of the frame scaled to 160 px wide
    dark_mean: float = 18.0  # mean brightness below -> black frame
    bright_mean: float = 240.0  # mean brightness above -> over-exposed
    min_contrast: float = 4.0  # brightness std below -> blank (uniform) frame
    blur_var: float = 12.0  # variance of the Laplacian in the face box below -> blurred
    noise_sigma: float = 10.0  # estimated pixel noise std above -> noisy
    frozen_diff: float = 0.3  # mean abs difference to the previous frame below -> same frame
    frozen_s: float = 0.8  # the same frame for longer than this -> frozen
    # audio, on 16 kHz mono float32
    sample_rate: int = 16_000
    silence_rms: float = 0.0003  # window RMS below (about -70 dBFS) -> silence
    # quieter than this (about -50 dBFS) and no speech standing out of the floor (estimated
    # SNR under min_snr_db) -> silence too; quiet speech above it is read (the features
    # are loudness-normalised): a soft-spoken person at a low microphone gain is not silent
    quiet_rms: float = 0.003
    clip_level: float = 0.99
    clip_share: float = 0.01  # share of samples at the rails above -> clipping
    min_snr_db: float = 10.0  # estimated speech-to-noise ratio below -> noisy
    # text
    asr_stall_s: float = 6.0  # no successful decode for this long while audio arrives -> DROPPED
    min_avg_logprob: float = -1.0  # below -> low recogniser confidence, DEGRADED


#: the issue of a frame with more than one face (the face read may not be the speaker's)
SEVERAL_FACES = "several faces"


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
    """Grey float32 copy of an RGB frame, scaled to ``width`` pixels wide."""
    g = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
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
    """Grey centre crop of an RGB frame at full resolution (noise is judged on it: scaling
    down would average the noise away)."""
    h, w = image.shape[:2]
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return cv2.cvtColor(image[y0 : y0 + size, x0 : x0 + size], cv2.COLOR_RGB2GRAY)


class VisionChecker:
    """Checks frames of one camera stream in order (it remembers the previous frame to find
    freezes)."""

    def __init__(self, cfg: HealthConfig):
        self.cfg = cfg
        self._prev: np.ndarray | None = None
        self._same_since: float | None = None

    def image(self, t: float, gray: np.ndarray, full: np.ndarray | None = None) -> Check:
        """Checks that need no face: black, over-exposed, blank, frozen, noisy. ``gray``: the
        small grey copy (``small_gray``); ``full``: a full-resolution grey crop for the noise
        estimate (``centre_gray``; default: gray)."""
        c = self.cfg
        prev, self._prev = self._prev, gray
        if prev is not None and prev.shape == gray.shape and float(np.mean(np.abs(gray - prev))) < c.frozen_diff:
            if self._same_since is None:
                self._same_since = t
        else:
            self._same_since = None
        mean, std = float(gray.mean()), float(gray.std())
        if mean < c.dark_mean:
            return Check(False, "black frames")
        if mean > c.bright_mean:
            return Check(False, "over-exposed frames")
        if std < c.min_contrast:
            return Check(False, "blank frames")
        if self._same_since is not None and t - self._same_since >= c.frozen_s:
            return Check(False, "frozen frames")
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


def estimate_snr_db(audio: np.ndarray, frame: int = 320) -> float:
    """Speech-to-noise estimate of a clip: the loud frames' power over the quiet frames'
    (90th over 10th percentile of 20 ms frame power), in dB."""
    n = len(audio) // frame
    if n < 10:
        return float("inf")
    p = np.mean(audio[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1)
    lo, hi = np.percentile(p, 10), np.percentile(p, 90)
    return float(10 * np.log10((hi + 1e-12) / (lo + 1e-12)))


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


# --------------------------------------------------------------- the monitor
@dataclass
class _Stream:
    last_arrival: float | None = None  # clock time the newest item arrived
    newest_t: float | None = None  # capture time of the newest item
    checks: deque = field(default_factory=lambda: deque(maxlen=4096))  # (t, duration, Check)
    error: str = ""  # a source-level error (device missing)


class HealthMonitor:
    """Collects item checks and arrivals, and judges each modality for a window.

    ``observe(m, t, duration, check, now)`` for every frame / chunk (t: capture time,
    now: arrival on the pipeline clock); ``source_error(m, message)`` when a device is gone;
    ``asr(transcript, now, outage)`` after each recogniser step; ``status(start, end, now)``
    judges the window [start, end).
    """

    def __init__(self, cfg: HealthConfig | None = None, expected_fps: float = 5.0):
        self.cfg = cfg or HealthConfig()
        self.expected_fps = expected_fps
        self.streams = {m: _Stream() for m in (Modality.VISION, Modality.AUDIO)}
        self._asr_ok_at: float | None = None
        self._asr_error = ""
        self._asr_logprob: float | None = None
        self._asr_started: float | None = None
        self._asr_log: deque[tuple[float, str]] = deque(maxlen=256)  # (time, error or "") per step

    def observe(self, m: Modality, t: float, duration: float, check: Check, now: float) -> None:
        s = self.streams[m]
        s.last_arrival = now
        s.newest_t = t if s.newest_t is None else max(s.newest_t, t)
        s.checks.append((t, duration, check))
        s.error = ""

    def source_error(self, m: Modality, message: str) -> None:
        self.streams[m].error = message

    def asr(self, transcript: Transcript | None, now: float, outage: bool = False) -> None:
        if self._asr_started is None:
            self._asr_started = now
        if outage:
            self._asr_error = "recogniser outage"
        elif transcript is None or transcript.error:
            self._asr_error = f"recogniser failed: {transcript.error}" if transcript else "recogniser failed"
        else:
            self._asr_error = ""
            self._asr_ok_at = now
            self._asr_logprob = transcript.avg_logprob
        self._asr_log.append((now, self._asr_error))

    # ------------------------------------------------------------- judging
    def _liveness(self, m: Modality, now: float) -> HealthStatus | None:
        s, c = self.streams[m], self.cfg
        if s.error:
            return HealthStatus(Health.DROPPED, s.error)
        if s.last_arrival is None:
            return HealthStatus(Health.DROPPED, "no data yet")
        if now - s.last_arrival > c.no_data_s:
            return HealthStatus(Health.DROPPED, f"no data for {now - s.last_arrival:.1f} s")
        if s.newest_t is not None and now - s.newest_t > c.no_data_s + c.lag_s:
            return HealthStatus(Health.DROPPED, f"data {now - s.newest_t:.1f} s late")
        return None

    def _lag(self, m: Modality, now: float) -> HealthStatus | None:
        s = self.streams[m]
        if s.newest_t is not None and now - s.newest_t > self.cfg.lag_s:
            return HealthStatus(Health.DEGRADED, f"lagging {now - s.newest_t:.1f} s")
        return None

    def _window_checks(self, m: Modality, start: float, end: float) -> list[tuple[float, Check]]:
        """(weight, check) of the items captured in [start, end); audio weighs its duration."""
        return [(d if m == Modality.AUDIO else 1.0, ck) for t, d, ck in self.streams[m].checks if start <= t < end]

    def judge(self, m: Modality, start: float, end: float, now: float, extra: Check | None = None) -> HealthStatus:
        """Liveness first, then the window's quality shares; ``extra`` is a whole-window check
        (audio: silence, noise)."""
        live = self._liveness(m, now)
        if live is not None:
            return live
        items = self._window_checks(m, start, end)
        if not items:
            return HealthStatus(Health.DROPPED, f"no data in the last {end - start:.0f} s")
        expected = (end - start) * (self.expected_fps if m == Modality.VISION else 1.0)
        usable = sum(w for w, ck in items if ck.usable)
        problems = Counter()
        for w, ck in items:
            if ck.issue:
                problems[ck.issue] += w
        if usable < self.cfg.min_usable * expected:
            bad = Counter({k: v for k, v in problems.items()})
            reason = bad.most_common(1)[0][0] if bad else "too little data"
            return HealthStatus(Health.DROPPED, reason)
        if extra is not None and extra.issue:
            return HealthStatus(Health.DEGRADED if extra.usable else Health.DROPPED, extra.issue)
        total = sum(problems.values())
        if total >= self.cfg.degraded_share * expected:
            return HealthStatus(Health.DEGRADED, problems.most_common(1)[0][0])
        lag = self._lag(m, now)
        return lag or HealthStatus()

    def text(self, audio: HealthStatus, n_words: int, now: float, start: float | None = None) -> HealthStatus:
        """The recogniser's health for the window [start, now): DROPPED when it fails now
        or failed in most of its steps during the window."""
        c = self.cfg
        if self._asr_error:
            return HealthStatus(Health.DROPPED, self._asr_error)
        if start is not None:
            steps = [e for t, e in self._asr_log if start < t <= now]
            failed = [e for e in steps if e]
            if steps and len(failed) * 2 > len(steps):
                return HealthStatus(Health.DROPPED, Counter(failed).most_common(1)[0][0])
        if audio.state == Health.DROPPED and audio.reason != "silence":
            return HealthStatus(Health.DROPPED, f"no audio for the recogniser ({audio.reason})")
        last = self._asr_ok_at if self._asr_ok_at is not None else self._asr_started
        if last is not None and now - last > c.asr_stall_s:
            return HealthStatus(Health.DROPPED, f"recogniser stalled for {now - last:.0f} s")
        if n_words == 0:
            return HealthStatus(Health.OK, "no speech")
        if self._asr_logprob is not None and self._asr_logprob < c.min_avg_logprob:
            return HealthStatus(Health.DEGRADED, f"low recogniser confidence (avg log-prob {self._asr_logprob:.2f})")
        return HealthStatus()
