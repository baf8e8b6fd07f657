"""What the three fusion models (``lnln``, ``dashfusion``, ``hme``) share: the evidence
layout, the modality token encoder, audio pooling, the ordinal head and the deployable
wrapper that ``models.training.export`` writes to ONNX.

Every fusion model takes ``models.types.FusionInputs`` (text, audio and vision steps with
their masks, each encoder's evidence, presence) in that order and returns a dict with at
least ``score`` [B] in (-3, 3), ``spread`` [B], ordinal class ``logits`` [B, 3],
``completeness`` [B] and the pooled representation ``z`` [B, dim]. Every row is computed on
its own: a window alone gives the same outputs as in a batch.

Training hooks (``models.training.fusion`` calls them for any of the three):
- ``auxiliary_loss(out, clean, y, cls, text_rate, present)``: the model's own losses beside
  the shared task loss; ``clean`` is the same batch's ``FusionInputs`` with nothing dropped;
- ``after_step(clean)``: called after each optimiser step (HME fills its memory bank);
- ``finish_training(batches)``: called once on the restored best weights with clean
  training batches (HME rebuilds its memory bank from them).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.layers import Block, MultiHeadAttention, key_bias
from models.ordinal import bounded_score, ordinal_logits, spread_from_raw

#: evidence columns per modality (``models.unimodal``): text score + 3 sentiment
#: probabilities, audio 9 emotions + 3, vision 7 emotions + 3, each + its in-domain score
EVIDENCE_DIMS = {"text": 5, "audio": 13, "vision": 11}
EVIDENCE_DIM = sum(EVIDENCE_DIMS.values())


def split_evidence(evidence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    e = EVIDENCE_DIMS
    return tuple(torch.split(evidence, [e["text"], e["audio"], e["vision"]], dim=1))


def pool_audio(audio: torch.Tensor, audio_valid: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked average of audio states [B, N, D] in groups of ``k`` steps (25/s -> 25/k per s)."""
    if k <= 1:
        return audio, audio_valid
    b, n, d = audio.shape
    pad = (-n) % k
    w = audio_valid.to(audio.dtype)
    audio = F.pad(audio * w.unsqueeze(-1), (0, 0, 0, pad))
    w = F.pad(w, (0, pad))
    total = audio.reshape(b, -1, k, d).sum(2)
    count = w.reshape(b, -1, k).sum(2)
    return total / count.clamp_min(1.0).unsqueeze(-1), count > 0


def ordinal_outputs(head: nn.Module, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """``head`` maps z [B, dim] to (raw score, raw spread): score, spread and the ordinal
    class logits (``models.ordinal``), which never contradict each other."""
    raw = head(z)
    score = bounded_score(raw[:, 0])
    spread = spread_from_raw(raw[:, 1])
    return {"score": score, "spread": spread, "logits": ordinal_logits(score, spread)}


class ModalityEncoder(nn.Module):
    """Features of one modality -> ``n_tokens`` representative tokens. ``cfg`` needs dim,
    heads, ffn, n_tokens, dropout and encoder_layers. An absent modality (or one with no
    valid step) leaves only the learned tokens with its evidence and presence embedding."""

    def __init__(self, in_dim: int, evidence_dim: int, cfg):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, cfg.dim))
        self.tokens = nn.Parameter(torch.randn(1, cfg.n_tokens, cfg.dim) * 0.02)
        self.evidence = nn.Linear(evidence_dim, cfg.dim)
        self.presence = nn.Embedding(2, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.encoder_layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.n = cfg.n_tokens

    def forward(self, x, valid, evidence, present):
        valid = valid & present.unsqueeze(1)
        cond = self.evidence(evidence) + self.presence(present.long())
        tok = self.tokens + cond.unsqueeze(1)  # [B, n_tokens, dim] by broadcasting
        h = torch.cat([tok, self.proj(x) * valid.unsqueeze(-1).to(x.dtype)], dim=1)
        bias = key_bias(valid, x.dtype, lead=self.n)  # the tokens, always attended to, then the valid steps
        for blk in self.blocks:
            h = blk(h, bias=bias)
        return self.norm(h[:, : self.n])


class CrossUpdate(nn.Module):
    """Queries attend to a context; returns the attention output alone (no residual)."""

    def __init__(self, cfg):
        super().__init__()
        self.norm_q = nn.LayerNorm(cfg.dim)
        self.norm_kv = nn.LayerNorm(cfg.dim)
        self.attn = MultiHeadAttention(cfg.dim, cfg.heads, cfg.dropout)

    def forward(self, q, kv, key_valid=None, bias=None):
        return self.attn(self.norm_q(q), self.norm_kv(kv), key_valid, bias)


class FusionInference(nn.Module):
    """The deployable part of any fusion model: the same weights, returning score [B],
    logits [B, 3], completeness [B] and spread [B] only (the ONNX graph's outputs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, text, text_valid, audio, audio_valid, vision, vision_valid, evidence, present):
        out = self.model(text, text_valid, audio, audio_valid, vision, vision_valid, evidence, present)
        return out["score"], out["logits"], out["completeness"], out["spread"]
