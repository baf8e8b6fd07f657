"""Shared types of the data path: modalities, sentiment classes, model inputs and results.

This is the one definition of these types, of the feature sizes and of the window shape
the models were trained on. The streaming side (frames, windows, health states) builds on
them in ``streaming/types.py``; nothing redefines them.

Conventions
- A sentiment *score* is on the CMU-MOSI scale, a float in [-3, 3].
- A sentiment *class* is one of ``SENTIMENT_CLASSES``; a score maps to a class
  through ``score_to_class`` (neutral band |score| <= ``NEUTRAL_BAND``).
- Probabilities over the classes are ordered as ``SENTIMENT_CLASSES`` and sum to 1.
- A result's label is the class of its score, and its confidence that class's
  probability; the ordinal outputs (``models.ordinal``) rank that class first, so label,
  score, probabilities and confidence always agree (``coherent``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import torch

SCORE_MIN, SCORE_MAX = -3.0, 3.0
SENTIMENT_CLASSES = ("negative", "neutral", "positive")
#: Scores with |score| <= NEUTRAL_BAND count as neutral (MOSEI's 1/3 steps fall inside).
NEUTRAL_BAND = 0.5


class Modality(str, Enum):
    """One input stream of the system."""

    TEXT = "text"
    AUDIO = "audio"
    VISION = "vision"


MODALITIES: tuple[Modality, ...] = (Modality.TEXT, Modality.AUDIO, Modality.VISION)

# Feature sizes: one step of each modality's input (``WindowFeatures``).
#: a word piece: MiniLM's hidden state (``models.features.text``); the text encoder keeps the width
TEXT_DIM = 384
#: an audio frame (``models.features.audio``): Whisper tiny.en's encoder output, then prosody
#: (energy, pitch, voicing)
WHISPER_DIM = 384
PROSODY_DIM = 3
AUDIO_DIM = WHISPER_DIM + PROSODY_DIM
#: a video frame: the face encoder's embedding, then its expression logits over
#: ``models.labels.FER_EMOTIONS`` (``models.encoders.face``)
FACE_EMB_DIM = 128
FACE_LOGITS_DIM = 7
VISION_DIM = FACE_EMB_DIM + FACE_LOGITS_DIM
#: an audio encoder state (``models.encoders.audio``, 25 per second), the fusion's audio input
AUDIO_STATE_DIM = 128

# Window shape: what one window holds, as the models were trained (``models.training.composed``)
# and as the live pipeline cuts it.
WINDOW_SECONDS = 3.0
#: audio feature frames per second (16 kHz samples, 20 ms hop) and per window
AUDIO_FRAME_RATE = 50
AUDIO_FRAMES = int(WINDOW_SECONDS * AUDIO_FRAME_RATE)
#: video frames read per second and per window
VISION_FPS = 5
VISION_FRAMES = int(WINDOW_SECONDS * VISION_FPS)


def score_to_class(score: float | np.ndarray) -> int | np.ndarray:
    """Index into ``SENTIMENT_CLASSES`` of a score (scalar or array)."""
    s = np.asarray(score, dtype=np.float64)
    cls = np.where(s < -NEUTRAL_BAND, 0, np.where(s > NEUTRAL_BAND, 2, 1))
    return int(cls) if cls.ndim == 0 else cls.astype(np.int64)


@dataclass
class SequenceFeatures:
    """A feature sequence of one modality for one window.

    values: float32 [T, D], finite.
    valid:  bool [T]; False marks a step with no observation (no face in that frame,
            a dropped chunk); such a step is never read by a model.
    """

    values: np.ndarray
    valid: np.ndarray

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        self.valid = np.asarray(self.valid, dtype=bool)
        if self.values.ndim != 2:
            raise ValueError(f"values must be [T, D], got shape {self.values.shape}")
        if self.valid.shape != (self.values.shape[0],):
            raise ValueError(f"valid must be [T]={self.values.shape[0]}, got {self.valid.shape}")
        if not np.isfinite(self.values[self.valid]).all():
            raise ValueError("values hold NaN or inf at valid steps")
        # Steps that are not valid carry zeros, so nothing undefined travels on.
        self.values[~self.valid] = 0.0

    @property
    def present(self) -> bool:
        return bool(self.valid.any())

    @classmethod
    def empty(cls, dim: int) -> SequenceFeatures:
        return cls(np.zeros((0, dim), np.float32), np.zeros((0,), bool))


@dataclass
class WindowFeatures:
    """Everything the model reads for one window; None marks a modality that is absent.

    text:   [L, TEXT_DIM] MiniLM token features (``models.features.text``)
    audio:  [F, AUDIO_DIM] audio frame features, AUDIO_FRAME_RATE per second (``models.features.audio``)
    vision: [T, VISION_DIM] per frame: face embedding and expression logits of the face encoder
    """

    text: SequenceFeatures | None = None
    audio: SequenceFeatures | None = None
    vision: SequenceFeatures | None = None
    #: a factor in [0, 1] on a modality's in-domain score (``models.domain``) from what the
    #: caller knows of the input: the pipeline sets the face's to the share of frames where
    #: it is the only face in view (with several, the face read may not be the speaker's)
    reliability: dict | None = None

    def reliability_of(self, m: Modality) -> float:
        r = 1.0 if not self.reliability else float(self.reliability.get(m, 1.0))
        if not np.isfinite(r) or not 0.0 <= r <= 1.0:
            raise ValueError(f"reliability of {m.value} must lie in [0, 1], not {r!r}")
        return r

    def get(self, m: Modality) -> SequenceFeatures | None:
        return {Modality.TEXT: self.text, Modality.AUDIO: self.audio, Modality.VISION: self.vision}[m]

    def present(self) -> tuple[Modality, ...]:
        return tuple(m for m in MODALITIES if (f := self.get(m)) is not None and f.present)


class FusionInputs(NamedTuple):
    """The fusion model's inputs (``models.fusion.lnln.LNLN``), in its argument order: what
    ``models.unimodal.UnimodalStack`` hands on, what ``models.training.export`` names the
    ONNX inputs (``FusionInputs._fields``). Masks are True where a step holds an
    observation. Tensors, or numpy arrays for onnxruntime."""

    text: torch.Tensor  # [B, Lt, TEXT_DIM] the text encoder's token states
    text_valid: torch.Tensor  # [B, Lt] bool
    audio: torch.Tensor  # [B, La, AUDIO_STATE_DIM] the audio encoder's states (25 per second)
    audio_valid: torch.Tensor  # [B, La] bool
    vision: torch.Tensor  # [B, Lv, VISION_DIM] per-frame face features
    vision_valid: torch.Tensor  # [B, Lv] bool
    evidence: torch.Tensor  # [B, 29] each encoder's own conclusions (``models.fusion.lnln.EVIDENCE_DIMS``)
    present: torch.Tensor  # [B, 3] bool: text, audio, vision reach the fusion


class _Scored:
    """Label, confidence and coherence of anything with a ``score`` and ``probs``."""

    score: float
    probs: np.ndarray

    @property
    def label(self) -> str:
        """The class whose interval holds the score."""
        return SENTIMENT_CLASSES[score_to_class(self.score)]

    @property
    def confidence(self) -> float:
        """The (calibrated) probability of ``label``."""
        return float(self.probs[score_to_class(self.score)])

    @property
    def coherent(self) -> bool:
        return is_coherent(self.score, self.probs)


@dataclass
class ModalityEstimate(_Scored):
    """What one modality says on its own about a window."""

    score: float
    probs: np.ndarray  # [3] over SENTIMENT_CLASSES
    detail: dict[str, float] = field(default_factory=dict)  # e.g. emotion probabilities
    in_domain: float = 1.0  # how in-domain the input was (``models.domain``); below its GATE the fusion did not read it


@dataclass
class SentimentResult(_Scored):
    """The fused answer for one window."""

    score: float  # [-3, 3]
    probs: np.ndarray  # [3] over SENTIMENT_CLASSES, sums to 1
    used: tuple[Modality, ...]  # modalities that reached the fusion (an out-of-domain voice or face does not)
    per_modality: dict[Modality, ModalityEstimate] = field(default_factory=dict)

    def confidences(self) -> dict[str, float]:
        return {c: float(p) for c, p in zip(SENTIMENT_CLASSES, self.probs)}


def is_coherent(score: float, probs: np.ndarray, tol: float = 1e-9) -> bool:
    """Whether the probabilities rank the class of the score first (ties allowed) and sum to 1."""
    p = np.asarray(probs, np.float64)
    k = score_to_class(score)
    return bool(np.isfinite(score) and SCORE_MIN <= score <= SCORE_MAX and abs(p.sum() - 1) < 1e-6 and p[k] >= p.max() - tol)
