"""Modality health: is each sensor alive, and is what it sends usable?

Two kinds of evidence, both per window:

* liveness: when the newest item of a stream arrived, where its data ends, and how late
  the sensor made it (nothing arriving for ``no_data_s`` and the data stopping that long
  before the window's end -> DROPPED; items held back more than ``lag_s`` by the sensor
  -> DEGRADED). Lateness an item already had on reaching the pipeline is the transport's
  (browser, network, the server's queue): the pipeline reports it as ``lag["transport"]``
  and it is not held against the sensor;
* quality: every frame and chunk is checked as it arrives (``streaming.checks``:
  ``VisionChecker.image`` and ``VisionChecker.face`` for frames, ``AudioChecker.chunk`` for
  chunks; the pipeline passes each verdict, a ``Check``, to ``HealthMonitor.observe``), and
  a window's audio once more as a whole (``audio_window_issue``: silence, noise); a check is *bad* (the item is unusable
  and never reaches the model: invalid, black, over-exposed, blank, frozen, no face,
  malformed, NaN, wrong rate, zeroed, repeating, silence) or *poor* (usable but flagged:
  blurred, noisy, several faces, clipping). A window whose usable share is below ``min_usable`` is DROPPED;
  one with ``degraded_share`` or more of its items bad or poor is DEGRADED; the reason is
  the commonest problem. Shares are of what the sensor delivered, placed by the items' own
  capture times: frames the server did not get round to analysing are not held against the
  camera (a backlog is the server's lag, reported apart, ``WindowResult.lag``).

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

from models.types import Modality
from streaming.checks import Check
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
    now: arrival on the pipeline clock), ``passed(m, t, now)`` for one that arrived but was
    not analysed, ``restate(m, start, end, check)`` when earlier items turn out bad (a
    frozen run); ``source_error(m, message)`` when a device is gone; ``asr(transcript, now,
    outage)`` after each recogniser step; ``judge(m, start, end, now)`` judges a sensor for
    the window [start, end), ``text(...)`` the recogniser.
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

    def restate(self, m: Modality, start: float, end: float, check: Check) -> int:
        """The items of ``m`` captured in [start, end) get the verdict ``check`` after all
        (a run of the same frame, found frozen once it had lasted, was frozen from its first
        frame); returns how many were changed. Windows judged from now on see the new verdict."""
        s, n = self.streams[m], 0
        for i, (t, d, _) in enumerate(s.checks):
            if start <= t < end:
                s.checks[i] = (t, d, check)
                n += 1
        return n

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
