"""Timestamped items passed between the pipeline's stages, and sensor health.

The modality, window features and result types are defined once in ``models.types``;
this module adds what only streaming needs. Every item carries ``t``: seconds on the
pipeline's clock (``streaming.clock``), so the three streams align on one time axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from models.types import MODALITIES, Modality, SentimentResult


class Health(str, Enum):
    OK = "OK"
    DEGRADED = "DEGRADED"  # data arrives but is poor: the model still reads it, flagged
    DROPPED = "DROPPED"  # no usable data: the modality is masked out of the model input


@dataclass(frozen=True)
class HealthStatus:
    state: Health = Health.OK
    reason: str = ""

    def to_json(self) -> dict:
        return {"state": self.state.value, "reason": self.reason}


@dataclass
class VideoFrame:
    """One camera frame: RGB uint8 [H, W, 3]."""

    t: float
    image: np.ndarray


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
    text: str
    start: float
    end: float
    probability: float = 1.0


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

    def text(self, start: float = -np.inf, end: float = np.inf, partial: bool = True) -> str:
        words = self.committed + (self.partial if partial else [])
        return " ".join(w.text.strip() for w in words if w.end > start and w.start < end).strip()


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

    @property
    def current(self) -> SentimentResult:
        """What to show as the live answer: the smoothed result where there is one."""
        return self.smoothed if self.smoothed is not None else self.result

    def to_json(self) -> dict:
        """One line of the simulator's JSONL output: the window's own estimate (score,
        label, confidence, confidences) and the smoothed one (smoothed_*)."""
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
        return {
            "t_start": round(self.t_start, 3),
            "t_end": round(self.t_end, 3),
            "score": round(r.score, 4),
            "label": r.label,
            "confidence": round(r.confidence, 4),
            "confidences": {k: round(v, 4) for k, v in r.confidences().items()},
            "smoothed_score": round(sm.score, 4),
            "smoothed_label": sm.label,
            "smoothed_confidence": round(sm.confidence, 4),
            "modalities": mods,
            "transcript": self.transcript,
            "partial": self.partial,
            "latency_ms": round(self.latency_ms, 2),
        }
