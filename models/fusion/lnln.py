"""LNLN fusion: language-dominated noise-resistant learning, written from Zhang et al.,
"Towards Robust Multimodal Sentiment Analysis with Incomplete Data" (NeurIPS 2024), and
adapted to this project's features and windows.

Inputs (one window, batched; masks True where a step holds an observation):
- text   [B, Lt, 384]  token states of the text encoder;
- audio  [B, La, 128]  frame states of the speech emotion encoder (25 per second);
- vision [B, Lv, 135]  per-frame face embedding (128) and expression logits (7);
- evidence [B, 29]     what each unimodal encoder concludes on its own (text: score and
                       3 sentiment probabilities; audio: 9 emotion + 3 sentiment
                       probabilities; vision: 7 emotion + 3 sentiment probabilities),
                       each followed by the modality's in-domain score
                       (``models.domain``), zero for an absent modality;
- present [B, 3]       whether text, audio, vision reached the model at all.

The network (``LNLNConfig``: width 96, 4 heads, one block per stage but two language /
hyper-modality layers; about 1 M parameters):
1. Per modality: a linear map to the width, ``n_tokens`` learnable tokens (plus the modality's
   evidence and a presence embedding) prepended, a Transformer block; the learnable
   tokens' outputs represent the modality.
2. Completeness estimator: a Transformer over [query; language tokens] and an MLP with a
   sigmoid give w in [0, 1], trained (MSE) towards 1 - the language missing rate.
3. Proxy generator: a Transformer over [proxy tokens; audio tokens; vision tokens] gives
   a proxy language representation h_p; the corrected language is
   h_d = (1 - w) * h_p + w * h_l.
4. Effectiveness discriminator (training): an MLP tells h_d from the language tokens of
   the complete input; h_d reaches it through gradient reversal (adversarial).
5. Hyper-modality learning: a language Transformer over h_d keeps each layer's output;
   hyper-modality tokens (start at ones) are updated layer by layer by language-queried
   attention over audio and over vision; a cross-Transformer lets the language attend to
   the hyper tokens; the mean of its tokens feeds the ordinal head.
6. Reconstructor (training): maps each modality's tokens from incomplete input to those
   from complete input (MSE).
7. Ordinal head (``models.ordinal``): one linear map gives a score, bounded smoothly to
   (-3, 3), and a spread; the three class logits are ``-distance(score, class interval) /
   spread``, so the label (the class whose interval holds the score), the probabilities
   and the confidence come out together and never contradict each other.
With every modality absent only learned tokens remain, so the output is finite; the
runtime then reports the training prior (see ``models.runtime``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.fusion.base import (
    EVIDENCE_DIM,
    EVIDENCE_DIMS,
    CrossUpdate,
    FusionInference,
    ModalityEncoder,
    ordinal_outputs,
    pool_audio,
    split_evidence,
)
from models.layers import Block
from models.ordinal import MIN_SPREAD
from models.types import AUDIO_STATE_DIM, TEXT_DIM, VISION_DIM

__all__ = ["EVIDENCE_DIM", "EVIDENCE_DIMS", "LNLN", "LNLNConfig", "FusionInference", "upgrade_state_dict"]


@dataclass
class LNLNConfig:
    text_dim: int = TEXT_DIM
    audio_dim: int = AUDIO_STATE_DIM
    vision_dim: int = VISION_DIM
    audio_pool: int = 5  # audio states are averaged in groups of 5 (25/s -> 5/s) first
    # sized for the 2 ms budget of one window on one CPU thread (onnxruntime, batch 1)
    dim: int = 96
    heads: int = 4
    ffn: int = 192
    n_tokens: int = 8
    encoder_layers: int = 1  # inputs are already contextual encoder states
    completeness_layers: int = 1
    proxy_layers: int = 1
    fusion_layers: int = 2  # language layers, each with a hyper-modality update
    cross_layers: int = 1
    dropout: float = 0.1
    # loss weights, as in the paper
    w_completeness: float = 0.9
    w_adversarial: float = 0.8
    w_reconstruction: float = 0.1


class GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


class TokenTransformer(nn.Module):
    """Learned query tokens prepended to a token sequence; returns the queries' outputs."""

    def __init__(self, n_queries: int, layers: int, cfg: LNLNConfig):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, n_queries, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.n = n_queries

    def forward(self, tokens):
        h = torch.cat([self.queries.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h[:, : self.n])


class LNLN(nn.Module):
    def __init__(self, cfg: LNLNConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or LNLNConfig()
        d, e = cfg.dim, EVIDENCE_DIMS
        self.enc_t = ModalityEncoder(cfg.text_dim, e["text"], cfg)
        self.enc_a = ModalityEncoder(cfg.audio_dim, e["audio"], cfg)
        self.enc_v = ModalityEncoder(cfg.vision_dim, e["vision"], cfg)
        # completeness estimator
        self.completeness = TokenTransformer(1, cfg.completeness_layers, cfg)
        self.completeness_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))
        # proxy generator
        self.proxy = TokenTransformer(cfg.n_tokens, cfg.proxy_layers, cfg)
        # effectiveness discriminator
        self.discriminator = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(d, 2))
        # hyper-modality learning
        self.lang = nn.ModuleList(Block(d, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.fusion_layers))
        self.hyper_a = nn.ModuleList(CrossUpdate(cfg) for _ in range(cfg.fusion_layers))
        self.hyper_v = nn.ModuleList(CrossUpdate(cfg) for _ in range(cfg.fusion_layers))
        self.hyper_norm = nn.LayerNorm(d)
        self.cross = nn.ModuleList(Block(d, cfg.heads, cfg.ffn, cfg.dropout, cross=True) for _ in range(cfg.cross_layers))
        self.out_norm = nn.LayerNorm(d)
        # ordinal head: raw score and raw spread (``models.ordinal``)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(d, 2))
        # reconstructors (training only)
        self.recon = nn.ModuleList(nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d)) for _ in range(3))

    def pool_audio(self, audio, audio_valid):
        """Masked average of audio states in groups of ``audio_pool`` steps."""
        return pool_audio(audio, audio_valid, self.cfg.audio_pool)

    def encode(self, text, text_valid, audio, audio_valid, vision, vision_valid, evidence, present):
        audio, audio_valid = self.pool_audio(audio, audio_valid)
        ev_t, ev_a, ev_v = split_evidence(evidence)
        h_t = self.enc_t(text, text_valid, ev_t, present[:, 0])
        h_a = self.enc_a(audio, audio_valid, ev_a, present[:, 1])
        h_v = self.enc_v(vision, vision_valid, ev_v, present[:, 2])
        return h_t, h_a, h_v

    def forward(self, text, text_valid, audio, audio_valid, vision, vision_valid, evidence, present):
        """Returns a dict: score [B] in (-3, 3), spread [B], ordinal class logits [B, 3],
        completeness [B], the pooled representation z [B, dim] and the token
        representations h_t, h_a, h_v, h_p, h_d [B, n_tokens, dim] that the training
        losses read."""
        out = self.trunk(text, text_valid, audio, audio_valid, vision, vision_valid, evidence, present)
        out.update(self.ordinal(out["z"]))
        return out

    def ordinal(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The ordinal head on pooled representations z [B, dim]: score, spread, logits."""
        return ordinal_outputs(self.head, z)

    def trunk(self, text, text_valid, audio, audio_valid, vision, vision_valid, evidence, present):
        """Everything before the head: z [B, dim], completeness and the token representations."""
        h_t, h_a, h_v = self.encode(text, text_valid, audio, audio_valid, vision, vision_valid, evidence, present)
        w = torch.sigmoid(self.completeness_head(self.completeness(h_t)[:, 0])).squeeze(-1)
        h_p = self.proxy(torch.cat([h_a, h_v], dim=1))
        wb = w.view(-1, 1, 1)
        h_d = (1 - wb) * h_p + wb * h_t

        lang = h_d
        hyper = torch.ones_like(h_d)
        for blk, ha, hv in zip(self.lang, self.hyper_a, self.hyper_v):
            lang = blk(lang)
            hyper = hyper + ha(lang, h_a) + hv(lang, h_v)
        hyper = self.hyper_norm(hyper)
        x = lang
        for blk in self.cross:
            x = blk(x, ctx=hyper)
        z = self.out_norm(x).mean(1)
        return {
            "z": z,
            "completeness": w,
            "h_t": h_t,
            "h_a": h_a,
            "h_v": h_v,
            "h_p": h_p,
            "h_d": h_d,
        }

    def discriminate(self, tokens: torch.Tensor, reverse: float = 0.0) -> torch.Tensor:
        """Logits [B, 2] (0: from incomplete input, 1: complete); reverse > 0 puts a gradient
        reversal of that scale in front."""
        if reverse > 0:
            tokens = GradReverse.apply(tokens, reverse)
        return self.discriminator(tokens.mean(1))

    def reconstruct(self, m: int, tokens: torch.Tensor) -> torch.Tensor:
        return self.recon[m](tokens)

    def auxiliary_loss(self, out, clean, y, cls, text_rate, present) -> torch.Tensor:
        """LNLN's own losses (``models.fusion.base``): completeness towards 1 - the text's
        drop rate, the adversarial effectiveness discriminator, and reconstruction of each
        present modality's tokens from incomplete input towards those from the complete
        input (``clean``, encoded without gradient)."""
        c = self.cfg
        n = out["score"].shape[0]
        with torch.no_grad():
            ref = self.encode(*clean)
        completeness = F.mse_loss(out["completeness"], 1.0 - text_rate)
        real = self.discriminate(ref[0])
        fake = self.discriminate(out["h_d"], reverse=1.0)
        ones, zeros = torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
        adversarial = F.cross_entropy(real, ones) + F.cross_entropy(fake, zeros)
        pres = present.float()
        recon = 0.0
        for m, key in enumerate(("h_t", "h_a", "h_v")):
            err = ((self.reconstruct(m, out[key]) - ref[m]) ** 2).mean((1, 2))
            recon = recon + (err * pres[:, m]).sum() / pres[:, m].sum().clamp_min(1)
        return c.w_completeness * completeness + c.w_adversarial * adversarial + c.w_reconstruction * recon

    def after_step(self, clean) -> None:
        """Nothing to do after an optimiser step (see ``models.fusion.base``)."""

    def finish_training(self, batches) -> None:
        """Nothing to do once trained (see ``models.fusion.base``)."""


def upgrade_state_dict(sd: dict[str, torch.Tensor], init_spread: float = 0.3) -> dict[str, torch.Tensor]:
    """A state dict of the earlier LNLN (separate ``score_head`` and ``class_head``) for this
    one: the trunk is kept, the ordinal head starts from the old score head (raw score) and a
    constant spread ``init_spread``; the old class head is dropped. A current state dict is
    returned unchanged."""
    if "head.1.weight" in sd:
        return sd
    sd = {k: v for k, v in sd.items() if not k.startswith(("score_head.", "class_head."))} | {
        "head.1.weight": torch.cat([_old(sd, "score_head.1.weight"), torch.zeros_like(_old(sd, "score_head.1.weight"))]),
        "head.1.bias": torch.cat(
            [_old(sd, "score_head.1.bias"), torch.tensor([float(np.log(np.expm1(init_spread - MIN_SPREAD)))])]
        ),
    }
    return sd


def _old(sd, key):
    if key not in sd:
        raise KeyError(f"not an LNLN state dict: {key} missing")
    return sd[key]
