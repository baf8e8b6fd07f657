"""The unimodal stack: the three encoders together, turning a batch of window features into
(1) what each modality says on its own and (2) the inputs of the fusion model.

Training (fusion stage, evaluation) and the live runtime call this same code.

In: a ``StackBatch`` (padded tensors, masks True where a step holds an observation), which
``stack_batch`` builds from per-window features: the one way the runtime, the training and
the evaluation batch windows. Out: a ``StackOutput``: the ``FusionInputs``
(``models.types``) and each modality's own estimate (``UnimodalEstimate``).

Each modality's own estimate is a score with ordinal probabilities (``models.ordinal``):
text's score is the text encoder's, audio's and vision's the expected score of their
emotion-mapped sentiment probabilities; each modality's spread is fitted on validation
data (the calibrate stage, ``models.training.calibrate``). So an estimate's label,
probabilities and confidence agree with its score, as the fused result's do. The fusion
model's evidence input keeps the encoders' own class probabilities, as it was trained.

Each modality also gets an in-domain score (``models.domain``; 1 where the stats are not
loaded): it is appended to that modality's evidence; a voice's or face's own estimate is
shrunk towards neutral by it (score times in-domain, spread divided by it); and a voice or
face below ``models.domain.GATE`` is not given to the fusion ("present" false, "observed"
still true), while its own estimate is still returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn

from models import domain
from models.encoders.audio import AudioEncoder, AudioEncoderConfig
from models.encoders.face import FaceEncoder, FaceEncoderConfig
from models.encoders.text import TextEncoder, TextEncoderConfig
from models.labels import EMOTIONS, FER_EMOTIONS, sentiment_matrix
from models.layers import masked_mean
from models.ordinal import ordinal_logits
from models.types import (
    AUDIO_DIM,
    FACE_EMB_DIM,
    MODALITIES,
    TEXT_DIM,
    VISION_DIM,
    WHISPER_DIM,
    FusionInputs,
    Modality,
    SequenceFeatures,
)

#: the emotions whose probabilities a modality's estimate carries (``UnimodalEstimate.emotions``)
EMOTION_NAMES: dict[Modality, tuple[str, ...]] = {Modality.AUDIO: EMOTIONS, Modality.VISION: FER_EMOTIONS}


class EncodedText(NamedTuple):
    """The text encoder's outputs computed ahead (the training cache,
    ``models.training.text.text_states``); the batch's text then holds its token states."""

    score: torch.Tensor  # [B]
    logits: torch.Tensor  # [B, 3]


@dataclass
class StackBatch:
    """A padded batch of windows for ``UnimodalStack`` (``stack_batch`` builds it)."""

    text: torch.Tensor  # [B, Lt, TEXT_DIM] MiniLM token features (with text_encoded: the encoder's states)
    text_valid: torch.Tensor  # [B, Lt] bool
    audio: torch.Tensor  # [B, Fa, AUDIO_DIM] audio frame features
    audio_valid: torch.Tensor  # [B, Fa] bool
    vision: torch.Tensor  # [B, Tv, VISION_DIM] per frame: face embedding and expression logits
    vision_valid: torch.Tensor  # [B, Tv] bool
    present: torch.Tensor  # [B, 3] bool: text, audio, vision reached the model
    reliability: torch.Tensor | None = None  # [B, 3] factors on the in-domain scores
    text_encoded: EncodedText | None = None


class UnimodalEstimate(NamedTuple):
    """What one modality says on its own, for a batch (``StackOutput.estimates``)."""

    score: torch.Tensor  # [B] in [-3, 3]
    probs: torch.Tensor  # [B, 3] ordinal, coherent with the score
    emotions: torch.Tensor | None = None  # [B, K] over EMOTION_NAMES[modality] (audio, vision)
    #: [B] bool (text): the text encoder's raw score lay outside [-3, 3] and was clamped
    clamped: torch.Tensor | None = None


@dataclass(frozen=True)
class StackOutput:
    """What ``UnimodalStack`` makes of a batch."""

    fusion: FusionInputs
    estimates: dict[Modality, UnimodalEstimate]  # in MODALITIES order
    observed: torch.Tensor  # [B, 3] bool: the modality had input ("present" is that less the gated ones)
    in_domain: torch.Tensor  # [B, 3] in-domain scores (0 where not observed)

    @property
    def present(self) -> torch.Tensor:
        """[B, 3] bool: the modalities that reach the fusion."""
        return self.fusion.present

    def scores(self) -> np.ndarray:
        """[B, 3] each modality's own score, in MODALITIES order."""
        return np.stack([self.estimates[m].score.numpy() for m in MODALITIES], 1)

    def flat(self) -> tuple[torch.Tensor, ...]:
        """The tensors in ``STACK_OUTPUTS`` order (``StackGraph``'s outputs)."""
        e = self.estimates
        t, a, v = e[Modality.TEXT], e[Modality.AUDIO], e[Modality.VISION]
        return (
            *self.fusion,
            t.score,
            t.probs,
            t.clamped,
            a.score,
            a.probs,
            a.emotions,
            v.score,
            v.probs,
            v.emotions,
            self.observed,
            self.in_domain,
        )

    @classmethod
    def from_flat(cls, xs: Sequence) -> StackOutput:
        """Inverse of ``flat``, from tensors or arrays (onnxruntime's outputs)."""
        xs = [x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x)) for x in xs]
        n = len(FusionInputs._fields)
        if len(xs) != len(STACK_OUTPUTS):
            raise ValueError(f"expected {len(STACK_OUTPUTS)} stack outputs, got {len(xs)}")
        ts, tp, tc, as_, ap, ae, vs, vp, ve, observed, dom = xs[n:]
        return cls(
            fusion=FusionInputs(*xs[:n]),
            estimates={
                Modality.TEXT: UnimodalEstimate(ts, tp, clamped=tc),
                Modality.AUDIO: UnimodalEstimate(as_, ap, emotions=ae),
                Modality.VISION: UnimodalEstimate(vs, vp, emotions=ve),
            },
            observed=observed,
            in_domain=dom,
        )


#: the fewest audio frames ``stack.onnx`` takes (its graph assumes the stride-2 convolution
#: gives more than one state)
STACK_MIN_AUDIO = 3
#: ``StackGraph``'s inputs: a ``StackBatch`` without the training cache, reliability given
STACK_INPUTS = ("text", "text_valid", "audio", "audio_valid", "vision", "vision_valid", "present", "reliability")
#: ``StackGraph``'s outputs (``StackOutput.flat``): the fusion inputs, then each estimate
STACK_OUTPUTS = tuple(f"fusion_{k}" for k in FusionInputs._fields) + (
    "text_score",
    "text_probs",
    "text_clamped",
    "audio_score",
    "audio_probs",
    "audio_emotions",
    "vision_score",
    "vision_probs",
    "vision_emotions",
    "observed",
    "in_domain",
)


class UnimodalStack(nn.Module):
    def __init__(
        self,
        text: TextEncoder | None = None,
        audio: AudioEncoder | None = None,
        face: FaceEncoder | None = None,
    ):
        super().__init__()
        self.text = text or TextEncoder(TextEncoderConfig())
        self.audio = audio or AudioEncoder(AudioEncoderConfig())
        self.face = face or FaceEncoder(FaceEncoderConfig())
        # calibration temperatures, fitted on validation data after training
        self.register_buffer("temperature", torch.ones(3))  # text classes, audio emotions, face emotions
        # mean score of each sentiment class in the text training data, to turn the
        # sentiment probabilities of audio / vision into a score
        self.register_buffer("class_scores", torch.tensor([-1.5, 0.0, 1.5]))
        # ordinal spread of each modality's own estimate (text, audio, vision), fitted on
        # validation data after training
        self.register_buffer("spread", torch.ones(3))
        # in-domain stats (``models.domain``); dom_fitted 0: not loaded, every score 1
        for k, d in (("t", TEXT_DIM), ("a", WHISPER_DIM), ("v", FACE_EMB_DIM)):
            self.register_buffer(f"dom_{k}_mean", torch.zeros(d))
            self.register_buffer(f"dom_{k}_prec", torch.eye(d))
            self.register_buffer(f"dom_{k}_ref", torch.tensor([1.0, 2.0]))
        self.register_buffer("dom_fitted", torch.zeros(()))
        self.register_buffer("audio_map", torch.from_numpy(sentiment_matrix(EMOTIONS)))
        self.register_buffer("face_map", torch.from_numpy(sentiment_matrix(FER_EMOTIONS)))

    def load_domain(self, stats: dict[str, dict]) -> None:
        """In-domain stats (``models.domain.load`` / ``fit`` output) into the buffers."""
        for k in domain.KEYS:
            for name in ("mean", "prec", "ref"):
                buf = getattr(self, f"dom_{k}_{name}")
                v = torch.as_tensor(np.asarray(stats[k][name]), dtype=buf.dtype)
                if v.shape != buf.shape:
                    raise ValueError(f"domain stats {k}.{name}: shape {tuple(v.shape)}, expected {tuple(buf.shape)}")
                buf.copy_(v)
        self.dom_fitted.fill_(1.0)

    def in_domain(self, key: str, x: torch.Tensor, fitted: bool | None = None) -> torch.Tensor:
        """[B] in-domain score of summary vectors [B, D] of modality key ('t', 'a', 'v');
        ``fitted`` (default: whether the stats were loaded) False gives every score 1."""
        if not (bool(self.dom_fitted) if fitted is None else fitted):
            return torch.ones(x.shape[0], dtype=x.dtype)
        return domain.score_torch(
            x, getattr(self, f"dom_{key}_mean"), getattr(self, f"dom_{key}_prec"), getattr(self, f"dom_{key}_ref")
        )

    @staticmethod
    def summaries(t_states, tv, ax, av, vx, vv) -> dict[str, torch.Tensor]:
        """The per-window summary vectors the in-domain scores read: the mean text-encoder
        state; the mean of the audio input's Whisper part (acoustic conditions, voice and
        speaking style as the recogniser's encoder hears them: the emotion encoder's own
        pooled state turned out blind to them, scoring synthetic speech in domain); the
        mean face embedding."""
        return {
            "t": masked_mean(t_states, tv),
            "a": masked_mean(ax[..., :WHISPER_DIM], av),
            "v": masked_mean(vx[..., :FACE_EMB_DIM], vv),
        }

    def text_probs(self, logits):
        return (logits / self.temperature[0]).softmax(-1)

    def audio_probs(self, logits):
        return (logits / self.temperature[1]).softmax(-1)

    def face_probs(self, logits):
        return (logits / self.temperature[2]).softmax(-1)

    @torch.no_grad()
    def forward(self, batch: StackBatch, fitted: bool | None = None) -> StackOutput:
        """The fusion inputs and each modality's own estimate (score, ordinal
        probabilities, emotion probabilities for audio and vision, and for text whether
        the raw score was clamped: counted by the evaluation) of a batch. ``fitted``: see
        ``in_domain`` (``StackGraph`` fixes it, so the exported graph has no branch on it)."""
        present = batch.present.bool()
        tv = batch.text_valid.bool() & present[:, :1]
        av = batch.audio_valid.bool() & present[:, 1:2]
        vv = batch.vision_valid.bool() & present[:, 2:3]
        # a modality whose every step is missing is absent
        observed = present & torch.stack([tv.any(1), av.any(1), vv.any(1)], dim=1)

        if batch.text_encoded is not None:  # text encoder outputs computed ahead (training cache)
            t = {"states": batch.text, "score": batch.text_encoded.score, "logits": batch.text_encoded.logits}
        else:
            t = self.text(batch.text, tv)
        t_probs = self.text_probs(t["logits"])
        t_clamped = t["score"].abs() > 3.0
        t_score = t["score"].clamp(-3.0, 3.0)

        a = self.audio(batch.audio, av)
        a_emotions = self.audio_probs(a["logits"])
        a_probs = a_emotions @ self.audio_map

        vx = batch.vision
        v_emotions = masked_mean(self.face_probs(vx[..., -len(FER_EMOTIONS) :]), vv)
        v_probs = v_emotions @ self.face_map

        summ = self.summaries(t["states"], tv, batch.audio, av, vx, vv)
        dom = torch.stack([self.in_domain(k, summ[k], fitted) for k in domain.KEYS], 1) * observed.float()
        if batch.reliability is not None:  # the caller's own knowledge of the input (WindowFeatures.reliability)
            dom = dom * batch.reliability.to(dom.dtype).clamp(0, 1)
        gate = torch.tensor([False, True, True]) & (dom < domain.GATE)
        present = observed & ~gate
        pt, pa, pv = (present[:, i : i + 1].float() for i in range(3))

        evidence = torch.cat(
            [
                torch.cat([t_score.unsqueeze(-1) / 3.0, t_probs, dom[:, 0:1]], -1) * pt,
                torch.cat([a_emotions, a_probs, dom[:, 1:2]], -1) * pa,
                torch.cat([v_emotions, v_probs, dom[:, 2:3]], -1) * pv,
            ],
            dim=-1,
        )
        # a voice's or face's own estimate counts as far as it is in domain
        a_dom, v_dom = dom[:, 1].clamp_min(0.05), dom[:, 2].clamp_min(0.05)
        a_score = (a_probs @ self.class_scores) * a_dom
        v_score = (v_probs @ self.class_scores) * v_dom

        def coherent(score, m, scale=None):
            spread = self.spread[m].expand_as(score)
            return ordinal_logits(score, spread if scale is None else spread / scale).softmax(-1)

        fusion = FusionInputs(
            text=t["states"],
            text_valid=tv,
            audio=a["states"],
            audio_valid=a["valid"] & present[:, 1:2],
            vision=vx,
            vision_valid=vv,
            evidence=evidence,
            present=present,
        )
        estimates = {
            Modality.TEXT: UnimodalEstimate(t_score, coherent(t_score, 0), clamped=t_clamped & present[:, 0]),
            Modality.AUDIO: UnimodalEstimate(a_score, coherent(a_score, 1, a_dom), emotions=a_emotions),
            Modality.VISION: UnimodalEstimate(v_score, coherent(v_score, 2, v_dom), emotions=v_emotions),
        }
        return StackOutput(fusion=fusion, estimates=estimates, observed=observed, in_domain=dom)


class StackGraph(nn.Module):
    """``UnimodalStack`` on flat tensors (``STACK_INPUTS`` in, ``STACK_OUTPUTS`` out), with
    whether its in-domain stats are loaded fixed when it is made: what
    ``models.training.export`` writes to ``stack.onnx`` and the runtime runs."""

    def __init__(self, stack: UnimodalStack):
        super().__init__()
        self.stack = stack
        self.fitted = bool(stack.dom_fitted)

    def forward(self, text, text_valid, audio, audio_valid, vision, vision_valid, present, reliability):
        batch = StackBatch(text, text_valid, audio, audio_valid, vision, vision_valid, present, reliability)
        return self.stack(batch, self.fitted).flat()

    @staticmethod
    def feeds(batch: StackBatch) -> dict[str, np.ndarray] | None:
        """A ``StackBatch`` as ``STACK_INPUTS`` arrays (reliability 1 where not given, the same
        as none: the in-domain scores are multiplied by it). The exported graph takes at least
        ``STACK_MIN_AUDIO`` audio frames: a batch whose audio is shorter (a batch without
        audio, padded to 1 frame) is padded with unobserved frames, which change nothing in a
        window without audio; None when a window with audio has fewer frames (run torch)."""
        if batch.text_encoded is not None:
            raise ValueError("StackGraph takes MiniLM token features, not the training cache's encoder states")
        rel = batch.reliability
        if rel is None:
            rel = torch.ones(batch.present.shape, dtype=torch.float32)
        out = {k: getattr(batch, k).numpy() for k in STACK_INPUTS[:-1]}
        out["reliability"] = rel.numpy().astype(np.float32, copy=False)
        short = STACK_MIN_AUDIO - out["audio"].shape[1]
        if short > 0:
            if (out["present"][:, 1] & out["audio_valid"].any(1)).any():
                return None
            out["audio"] = np.pad(out["audio"], ((0, 0), (0, short), (0, 0)))
            out["audio_valid"] = np.pad(out["audio_valid"], ((0, 0), (0, short)))
        return out


def stack_fingerprint(stack: nn.Module) -> str:
    """A hash of every parameter and buffer of ``stack`` (weights, calibration, in-domain
    stats): ``stack.onnx`` carries its stack's, and the runtime runs it only on a match."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(stack.state_dict().items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(v.detach().cpu().numpy()).tobytes())
    return h.hexdigest()


def pad_batch(
    seqs: list[np.ndarray | None], dim: int, valids: list[np.ndarray | None] | None = None, min_len: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pads [T_i, dim] arrays (None = nothing) to [B, T, dim] float32 with a [B, T] mask;
    ``valids`` optionally gives each array's own [T_i] mask (steps outside it are zeroed)."""
    length = max([min_len] + [len(s) for s in seqs if s is not None])
    x = np.zeros((len(seqs), length, dim), np.float32)
    m = np.zeros((len(seqs), length), bool)
    for i, s in enumerate(seqs):
        if s is not None and len(s):
            v = np.ones(len(s), bool) if valids is None or valids[i] is None else valids[i]
            x[i, : len(s)] = s * v[:, None]
            m[i, : len(s)] = v
    return torch.from_numpy(x), torch.from_numpy(m)


#: one window's steps of one modality: None (absent), an array [T, D] (every step
#: observed), or values with their [T] mask (a ``SequenceFeatures``, or a (values, valid) pair)
Steps = SequenceFeatures | np.ndarray | tuple[np.ndarray, np.ndarray] | None


def _padded(items: Sequence[Steps], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    seqs, valids = [], []
    for it in items:
        if isinstance(it, SequenceFeatures):
            it = (it.values, it.valid)
        seqs.append(it[0] if isinstance(it, tuple) else it)
        valids.append(it[1] if isinstance(it, tuple) else None)
    return pad_batch(seqs, dim, valids)


def stack_batch(
    text: Sequence[Steps],
    audio: Sequence[Steps],
    vision: Sequence[Steps],
    present: np.ndarray | None = None,
    reliability: np.ndarray | Sequence | None = None,
    text_encoded: tuple[np.ndarray, np.ndarray] | None = None,
) -> StackBatch:
    """The ``UnimodalStack`` batch of B windows from each modality's steps per window
    (``Steps``; padded with ``pad_batch``, unobserved steps zeroed). ``present`` [B, 3]
    bool: the modalities that reach the model (default: those not None). ``reliability``
    [B, 3]: factors on the in-domain scores (``WindowFeatures.reliability``; default none).
    ``text_encoded``: (scores [B], logits [B, 3]) of the text encoder computed ahead; the
    text steps are then its token states."""
    if not len(text) == len(audio) == len(vision):
        raise ValueError(f"windows per modality differ: {len(text)}, {len(audio)}, {len(vision)}")
    if present is None:
        present = [[x is not None for x in row] for row in zip(text, audio, vision)]
    tx, tv = _padded(text, TEXT_DIM)
    ax, av = _padded(audio, AUDIO_DIM)
    vx, vv = _padded(vision, VISION_DIM)
    return StackBatch(
        text=tx,
        text_valid=tv,
        audio=ax,
        audio_valid=av,
        vision=vx,
        vision_valid=vv,
        present=torch.from_numpy(np.asarray(present, bool).reshape(len(text), 3)),
        reliability=None if reliability is None else torch.from_numpy(np.asarray(reliability, np.float32)),
        text_encoded=None if text_encoded is None else EncodedText(*(torch.from_numpy(np.asarray(x)) for x in text_encoded)),
    )
