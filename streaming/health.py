"""Modality health: is each sensor alive, and is what it sends usable?

Two kinds of evidence, both per window:

* liveness: when the newest item of a stream arrived, where its data ends, and how late
  the sensor made it (nothing arriving for ``no_data_s`` and the data stopping that long
  before the window's end -> DROPPED; items held back more than ``lag_s`` by the sensor
  -> DEGRADED). Lateness an item already had on reaching the pipeline is the transport's
  (browser, network, the server's queue): the pipeline reports it as ``lag["transport"]``
  and it is not held against the sensor;
* quality: every frame and chunk is checked as it arrives (``check_frame``,
  ``check_chunk``); a check is *bad* (the item is unusable and never reaches the model:
  invalid, black, over-exposed, frozen, no face, NaN, wrong rate, zeroed, repeating) or
  *poor* (usable but flagged: blurred, noisy, several faces, clipping). A window whose usable
  share is below ``min_usable`` is DROPPED; one with ``degraded_share`` or more of its items
  bad or poor is DEGRADED; the reason is the commonest problem. Shares are of what the
  sensor delivered, placed by the items' own capture times: frames the server did not get
  round to analysing are not held against the camera (a backlog is the server's lag,
  reported apart, ``WindowResult.lag``).

Text health follows the recogniser: decode errors, injected outages and stalls drop it; a
window with no trusted word drops it ("no speech", or every word suppressed as a
hallucination, or words on silent audio); suppressed words or low confidence (avg_logprob)
degrade it.

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
    lag_s: float = 0.6  # the sensor held its newest item back this long (a late sensor) -> DEGRADED
    # window rules
    min_usable: float = 0.35  # share of expected items that must be usable, else DROPPED
    degraded_share: float = 0.2  # share of bad or poor items that makes a window DEGRADED
    min_fps: float = 1.0  # a camera delivering fewer frames a second than this -> DEGRADED
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
    min_snr_db: float = 10.0  # estimated speech-to-noise ratio (estimate_snr_db) below -> noisy
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


# --------------------------------------------------------------- the monitor
@dataclass
class _Stream:
    last_arrival: float | None = None  # clock time the newest item arrived
    newest_t: float | None = None  # capture time of the newest item
    data_end: float | None = None  # where the newest item's data ends (capture time)
    checks: deque = field(default_factory=lambda: deque(maxlen=4096))  # (t, duration, Check)
    passed: deque = field(default_factory=lambda: deque(maxlen=4096))  # capture times of items not analysed
    #: how much later the newest item came than the transport brought it (arrival - capture
    #: time - the lateness it already had on reaching the pipeline): the sensor's own delay
    #: (a delay fault holds items back). Neither the transport's lateness (browser, network,
    #: the server's queue) nor how long the server took to get round to an item: both are
    #: lag, reported apart (``WindowResult.lag``), never a sensor fault
    transit: float = 0.0
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
        self.expected_fps = expected_fps  # the analysis rate (frames a second read at most)
        self.streams = {m: _Stream() for m in (Modality.VISION, Modality.AUDIO)}
        self._asr_ok_at: float | None = None
        self._asr_error = ""
        self._asr_logprob: float | None = None
        self._asr_started: float | None = None
        self._asr_log: deque[tuple[float, str]] = deque(maxlen=256)  # (time, error or "") per step

    def _arrived(self, m: Modality, t: float, now: float, duration: float = 0.0, transport: float = 0.0) -> _Stream:
        """Liveness bookkeeping of an item captured at ``t`` arriving at ``now``, that was
        already ``transport`` s late when it reached the pipeline."""
        s = self.streams[m]
        if s.newest_t is None or t >= s.newest_t:
            s.transit = max(0.0, now - t - (duration if m == Modality.AUDIO else 0.0) - transport)
        s.last_arrival = now
        s.newest_t = t if s.newest_t is None else max(s.newest_t, t)
        end = t + (duration if m == Modality.AUDIO else 0.0)
        s.data_end = end if s.data_end is None else max(s.data_end, end)
        s.error = ""
        return s

    def observe(self, m: Modality, t: float, duration: float, check: Check, now: float, transport: float = 0.0) -> None:
        self._arrived(m, t, now, duration, transport).checks.append((t, duration, check))

    def passed(self, m: Modality, t: float, now: float, transport: float = 0.0) -> None:
        """An item that arrived but was not analysed (more frames than the analysis rate, or
        frames the server skipped to keep up): the sensor is alive and delivered it."""
        self._arrived(m, t, now, transport=transport).passed.append(t)

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
    def _liveness(self, m: Modality, now: float, end: float) -> HealthStatus | None:
        s, c = self.streams[m], self.cfg
        if s.error:
            return HealthStatus(Health.DROPPED, s.error)
        if s.last_arrival is None:
            return HealthStatus(Health.DROPPED, "no data yet")
        # no data: nothing arrived for no_data_s, and the data that did stops that long
        # before the window's end (a quiet spell of the transport or a busy server, with
        # the window's data in, is not a dead sensor)
        gap = min(now - s.last_arrival, end - s.data_end)
        if gap > c.no_data_s:
            return HealthStatus(Health.DROPPED, f"no data for {gap:.1f} s")
        if s.transit > c.no_data_s + c.lag_s:
            return HealthStatus(Health.DROPPED, f"data {s.transit:.1f} s late")
        return None

    def _lag(self, m: Modality, now: float) -> HealthStatus | None:
        s = self.streams[m]
        if s.transit > self.cfg.lag_s:
            return HealthStatus(Health.DEGRADED, f"lagging {s.transit:.1f} s")
        return None

    def _window_checks(self, m: Modality, start: float, end: float) -> list[tuple[float, Check]]:
        """(weight, check) of the items captured in [start, end); audio weighs its duration."""
        return [(d if m == Modality.AUDIO else 1.0, ck) for t, d, ck in self.streams[m].checks if start <= t < end]

    def judge(self, m: Modality, start: float, end: float, now: float, extra: Check | None = None) -> HealthStatus:
        """Liveness first, then the window's quality shares; ``extra`` is a whole-window check
        (audio: silence, noise).

        Shares are of what the sensor delivered, by the items' own capture times: audio
        weighs seconds of samples against the window's length; vision counts the frames
        analysed (frames that arrived but were not analysed, by rate or because the server
        was behind, prove the camera alive and are not held against it). A camera that
        delivers fewer than ``min_fps`` frames a second is DEGRADED."""
        live = self._liveness(m, now, end)
        if live is not None:
            return live
        items = self._window_checks(m, start, end)
        if not items:
            return HealthStatus(Health.DROPPED, f"no data in the last {end - start:.0f} s")
        if m == Modality.VISION:
            expected = float(len(items))
            delivered = len(items) + sum(start <= t < end for t in self.streams[m].passed)
        else:
            expected, delivered = end - start, None
        usable = sum(w for w, ck in items if ck.usable)
        problems = Counter()
        for w, ck in items:
            if ck.issue:
                problems[ck.issue] += w
        if usable < self.cfg.min_usable * expected:
            reason = problems.most_common(1)[0][0] if problems else "too little data"
            return HealthStatus(Health.DROPPED, reason)
        if extra is not None and extra.issue:
            return HealthStatus(Health.DEGRADED if extra.usable else Health.DROPPED, extra.issue)
        total = sum(problems.values())
        if total >= self.cfg.degraded_share * expected:
            return HealthStatus(Health.DEGRADED, problems.most_common(1)[0][0])
        if delivered is not None and delivered < self.cfg.min_fps * (end - start):
            return HealthStatus(Health.DEGRADED, f"low frame rate ({delivered / (end - start):.1f} frames/s)")
        lag = self._lag(m, now)
        return lag or HealthStatus()

    def text(
        self, audio: HealthStatus, n_words: int, now: float, start: float | None = None, suspect: list[str] | None = None
    ) -> HealthStatus:
        """The recogniser's health for the window [start, now). ``n_words``: trusted words in
        the window; ``suspect``: the reasons of the window's suspect words (recogniser
        hallucinations, ``streaming.transcript_trust``), which never reach the model.

        DROPPED when the recogniser fails now or failed in most of its steps during the
        window, when it has no audio, when it returned no trusted word ("no speech", or every
        word suppressed), or when its words lie on audio judged silent (phantom text).
        DEGRADED when some words were suppressed or its confidence is low."""
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
        why = Counter(suspect).most_common(1)[0][0] if suspect else ""
        if n_words == 0:
            if why:
                return HealthStatus(Health.DROPPED, f"text suppressed: {why}")
            return HealthStatus(Health.DROPPED, "no speech")
        if audio.state == Health.DROPPED:  # silence, yet words: nobody said them
            return HealthStatus(Health.DROPPED, "words on silent audio: not trusted")
        if why:
            return HealthStatus(Health.DEGRADED, f"{len(suspect)} word{'s' * (len(suspect) > 1)} suppressed: {why}")
        if self._asr_logprob is not None and self._asr_logprob < c.min_avg_logprob:
            return HealthStatus(Health.DEGRADED, f"low recogniser confidence (avg log-prob {self._asr_logprob:.2f})")
        return HealthStatus()
