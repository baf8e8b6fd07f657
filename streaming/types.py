"""Timestamped items passed between the pipeline's stages, and sensor health.

The modality, window features and result types are defined once in ``models.types``;
this module adds what only streaming needs. Every item carries ``t``: seconds on the
pipeline's clock (``streaming.clock``), so the three streams align on one time axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from models.features.vision import validate_frame
from models.types import MODALITIES, Modality, SentimentResult


class Health(str, Enum):
    OK = "OK"
    DEGRADED = "DEGRADED"  # data arrives but is poor: the model still reads it, flagged
    DROPPED = "DROPPED"  # no usable data: the modality is masked out of the model input


@dataclass(frozen=True)
class HealthStatus:
    state: Health = Health.OK
    reason: str = ""


@dataclass
class VideoFrame:
    """One camera frame: RGB uint8 [H, W, 3], checked and converted when made
    (``models.features.vision.validate_frame``: grey and RGBA become RGB, anything else is a
    ValueError), so the stages after the source take its image as it is."""

    t: float
    image: np.ndarray

    def __post_init__(self) -> None:
        self.image = validate_frame(self.image)


@dataclass
class AudioChunk:
    """Consecutive microphone samples starting at ``t``: float32 mono in [-1, 1] at ``rate`` Hz
    (``streaming.sources`` converts what devices and browsers send)."""

    t: float
    samples: np.ndarray
    rate: int

    @property
    def duration(self) -> float:
        """Seconds of samples; 0 for a malformed chunk (not 1-D, or no rate), which the
        pipeline's checks reject."""
        if np.ndim(self.samples) != 1 or not self.rate:
            return 0.0
        return len(self.samples) / self.rate

    @property
    def end(self) -> float:
        return self.t + self.duration


@dataclass
class Word:
    """One recognised word, times in pipeline seconds. ``suspect``: why the word is not
    trusted as said (a recogniser hallucination, ``streaming.transcript_trust``); "" when it is.
    Suspect words are shown struck out and never reach the model."""

    text: str
    start: float
    end: float
    probability: float = 1.0
    suspect: str = ""


@dataclass
class Transcript:
    """The recogniser's view at time ``t``: committed words (final) and partial words (may
    still change), with the last decode's confidence."""

    t: float
    committed: list[Word] = field(default_factory=list)
    partial: list[Word] = field(default_factory=list)
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    error: str | None = None  # the last decode failed

    def text(self, start: float = -np.inf, end: float = np.inf, partial: bool = True, suspect: bool = False) -> str:
        """The words overlapping [start, end) as one string; suspect words only with ``suspect``."""
        words = self.committed + (self.partial if partial else [])
        return " ".join(w.text.strip() for w in words if w.end > start and w.start < end and (suspect or not w.suspect)).strip()


@dataclass
class WindowResult:
    """What the pipeline reports for one window."""

    t_start: float
    t_end: float
    result: SentimentResult
    health: dict[Modality, HealthStatus]
    transcript: str = ""
    partial: str = ""
    latency_ms: float = 0.0
    #: the estimate carried over the latest windows (``streaming.smoothing``); None: the
    #: window's own result stands alone
    smoothed: SentimentResult | None = None
    #: the window's words not trusted as said (recogniser hallucinations), never read
    suppressed: str = ""
    #: seconds the delivery and processing are behind the media, by stage ("transport": the
    #: most any of the window's items was already late on reaching the pipeline, browser,
    #: network and the server's queue; "recogniser": audio not yet decoded at the window's
    #: end; "server": how late the window came out); not sensor faults
    lag: dict[str, float] = field(default_factory=dict)

    @property
    def current(self) -> SentimentResult:
        """What to show as the live answer: the smoothed result where there is one."""
        return self.smoothed if self.smoothed is not None else self.result

    @property
    def no_data(self) -> bool:
        """No modality reached the model: the result is only the model's prior, not a reading."""
        return not self.result.used

    def to_json(self) -> dict:
        """One line of the JSONL output: the window's own estimate (score, label, confidence,
        confidences), the smoothed one (smoothed_*), each modality's health and estimate, the
        trusted transcript (committed, partial) and the suppressed words, the lag by stage.
        ``no_data`` is true when no modality was usable: then every estimate is null (the
        model's prior is no reading)."""
        r = self.result
        sm = self.current
        mods = {}
        for m in MODALITIES:
            est = r.per_modality.get(m)
            h = self.health.get(m, HealthStatus())
            mods[m.value] = {
                "state": h.state.value,
                "reason": h.reason,
                "score": None if est is None else round(est.score, 4),
                "in_domain": None if est is None else round(est.in_domain, 4),
            }
        empty = self.no_data

        def num(x: float) -> float | None:
            return None if empty else round(x, 4)

        return {
            "t_start": round(self.t_start, 3),
            "t_end": round(self.t_end, 3),
            "no_data": empty,
            "score": num(r.score),
            "label": None if empty else r.label,
            "confidence": num(r.confidence),
            "confidences": {k: num(v) for k, v in r.confidences().items()},
            "smoothed_score": num(sm.score),
            "smoothed_label": None if empty else sm.label,
            "smoothed_confidence": num(sm.confidence),
            "modalities": mods,
            "transcript": self.transcript,
            "partial": self.partial,
            "suppressed": self.suppressed,
            "lag": dict(self.lag),
            "latency_ms": round(self.latency_ms, 2),
        }
