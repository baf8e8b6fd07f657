"""DashFusion: dual-stream alignment with hierarchical bottleneck fusion, written from Wen et
al., "DashFusion: Dual-stream Alignment with Hierarchical Bottleneck Fusion for Multimodal
Sentiment Analysis" (IEEE TNNLS 2025), adapted to this project's windows and to missing
modalities, which the paper does not train for.

Inputs: ``models.types.FusionInputs`` (see ``models.fusion.lnln`` for the shapes).

The network (``DashFusionConfig``: width 64, 4 heads; about 0.4 M parameters):
1. Per modality, steps mapped to the width, plus the modality's evidence and a presence
   embedding (audio first averaged to 5 states a second), as the steps stream of each.
2. **Temporal alignment**: the text steps query the audio steps and the vision steps
   (cross-attention over valid steps only); what they bring is added to the text stream
   through a learned gate that is zero for an absent modality, so text-time-aligned
   audio and vision join the words.
3. **Semantic alignment**: each modality is summarised by ``n_tokens`` learned tokens (a
   Transformer block over [tokens; steps]). In training two contrastive losses align the
   projected summaries: NT-Xent between the text and the audio, and the text and the
   vision, of the same window (the other windows of the batch are the negatives), and a
   supervised contrastive loss (Khosla et al. 2020) that pulls together the summaries of
   windows of the same sentiment class, across modalities and windows. Only modalities
   present in a window take part.
4. **Hierarchical bottleneck fusion**: ``n_bottleneck`` bottleneck tokens start from the
   semantic summaries; in each of ``fusion_layers`` layers every present modality runs a
   block over [the bottleneck; its stream], the bottleneck becomes the mean of the
   present modalities' updates (an absent modality neither writes nor is read), and is
   then halved by averaging neighbouring tokens (8 -> 4 -> 2): information is squeezed
   through ever fewer tokens.
5. Ordinal head on the mean of the last bottleneck and the text summary
   (``models.ordinal``).

``completeness`` is the share of text steps observed (the model estimates nothing there).
Missing-modality training uses the project's scheme (``models.training.missing``):
modalities and steps are dropped and the bottleneck is averaged over what is present.
With every modality absent only learned tokens remain: finite output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.fusion.base import (
    EVIDENCE_DIMS,
    CrossUpdate,
    ModalityEncoder,
    ordinal_outputs,
    pool_audio,
    split_evidence,
)
from models.layers import Block, key_bias, masked_mean
from models.types import AUDIO_STATE_DIM, TEXT_DIM, VISION_DIM


@dataclass
class DashFusionConfig:
    text_dim: int = TEXT_DIM
    audio_dim: int = AUDIO_STATE_DIM
    vision_dim: int = VISION_DIM
    audio_pool: int = 5
    dim: int = 64
    heads: int = 4
    ffn: int = 128
    n_tokens: int = 4  # semantic summary tokens per modality
    n_bottleneck: int = 8  # halved after every fusion layer
    encoder_layers: int = 1
    fusion_layers: int = 2
    dropout: float = 0.1
    # training losses (the paper: NT-Xent at temperature 0.5, weight 0.2)
    w_align: float = 0.2
    align_temperature: float = 0.5
    w_supervised: float = 0.1
    supervised_temperature: float = 0.1


def _halving(n: int, dtype, device) -> torch.Tensor:
    """[n // 2, n] matrix that averages tokens 2i and 2i + 1."""
    return torch.eye(n // 2, dtype=dtype, device=device).repeat_interleave(2, dim=1) * 0.5


class StepProjection(nn.Module):
    """Steps of one modality -> the width, with its evidence and presence added to each step."""

    def __init__(self, in_dim: int, evidence_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, dim))
        self.evidence = nn.Linear(evidence_dim, dim)
        self.presence = nn.Embedding(2, dim)

    def forward(self, x, valid, evidence, present):
        valid = valid & present.unsqueeze(1)
        h = self.proj(x) + (self.evidence(evidence) + self.presence(present.long())).unsqueeze(1)
        return h * valid.unsqueeze(-1).to(h.dtype), valid


class DashFusion(nn.Module):
    def __init__(self, cfg: DashFusionConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or DashFusionConfig()
        if cfg.n_bottleneck >> cfg.fusion_layers < 1:
            raise ValueError("n_bottleneck must survive halving once per fusion layer")
        d, e = cfg.dim, EVIDENCE_DIMS
        dims = {"text": cfg.text_dim, "audio": cfg.audio_dim, "vision": cfg.vision_dim}
        names = ("text", "audio", "vision")
        self.steps = nn.ModuleList(StepProjection(dims[m], e[m], d) for m in names)
        # temporal stream: text queries audio and vision
        self.align = nn.ModuleList(CrossUpdate(cfg) for _ in range(2))
        self.align_gate = nn.Parameter(torch.zeros(2))
        # semantic stream: learned summary tokens per modality, projected for the contrastive loss
        self.summary = nn.ModuleList(ModalityEncoder(dims[m], e[m], cfg) for m in names)
        self.semantic = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        # hierarchical bottleneck fusion: one block per modality and layer
        self.bottleneck = nn.Parameter(torch.randn(1, cfg.n_bottleneck, d) * 0.02)
        self.bottleneck_in = nn.Linear(d, d)
        self.fuse = nn.ModuleList(
            nn.ModuleList(Block(d, cfg.heads, cfg.ffn, cfg.dropout) for _ in names) for _ in range(cfg.fusion_layers)
        )
        self.out_norm = nn.LayerNorm(d)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(d, 2))

    def forward(self, text, text_valid, audio, audio_valid, vision, vision_valid, evidence, present):
        """Returns a dict: score [B], spread [B], ordinal logits [B, 3], completeness [B], z
        [B, dim] and the per-modality semantic summaries ``semantic`` [B, 3, dim] (for the
        contrastive loss)."""
        c = self.cfg
        audio, audio_valid = pool_audio(audio, audio_valid, c.audio_pool)
        evs = split_evidence(evidence)
        xs, vs = (text, audio, vision), (text_valid, audio_valid, vision_valid)
        streams, valids = [], []
        for m in range(3):
            h, v = self.steps[m](xs[m], vs[m], evs[m], present[:, m])
            streams.append(h)
            valids.append(v)
        # temporal alignment: audio and vision brought to the text's steps
        gates = torch.tanh(self.align_gate)
        for j, m in enumerate((1, 2)):
            seen = valids[m].any(1, keepdim=True).unsqueeze(-1).to(text.dtype)  # [B, 1, 1]
            aligned = self.align[j](streams[0], streams[m], bias=key_bias(valids[m], text.dtype))
            streams[0] = streams[0] + gates[j] * seen * aligned
        # semantic alignment: summaries of each modality
        summaries = [self.summary[m](xs[m], vs[m], evs[m], present[:, m]) for m in range(3)]
        sem = torch.stack([s.mean(1) for s in summaries], 1)  # [B, 3, d]
        # hierarchical bottleneck fusion over the present modalities
        pres = present.to(text.dtype)  # [B, 3]
        weight = pres / pres.sum(1, keepdim=True).clamp_min(1.0)
        shares = weight[:, :, None, None].unbind(1)  # 3 x [B, 1, 1]
        alone = (pres.sum(1) == 0).to(text.dtype)[:, None, None]  # nothing present: keep the tokens
        b = self.bottleneck + self.bottleneck_in((sem * weight.unsqueeze(-1)).sum(1)).unsqueeze(1)
        # the bottleneck tokens go first (always attended to, so no row is ever fully masked),
        # so every slice below has a fixed start: fewer shape computations in the ONNX graph,
        # and order does not matter to attention (no positions inside these blocks)
        n_b = c.n_bottleneck
        for layer in self.fuse:
            update = None
            for m in range(3):
                h = layer[m](torch.cat([b, streams[m]], 1), bias=key_bias(valids[m], text.dtype, lead=n_b))
                streams[m] = h[:, n_b:]
                share = shares[m] * h[:, :n_b]
                update = share if update is None else update + share
            b = update + alone * b
            # neighbouring tokens averaged (8 -> 4 -> 2) by one constant product: no shape
            # arithmetic in the graph
            b = torch.matmul(_halving(n_b, b.dtype, b.device), b)
            n_b //= 2
        text_summary = masked_mean(streams[0], valids[0])
        z = self.out_norm(b.mean(1) + text_summary)
        out = ordinal_outputs(self.head, z)
        count = text_valid.to(text.dtype).sum(1)
        observed = valids[0].to(text.dtype).sum(1)
        out.update(z=z, semantic=sem, completeness=observed / count.clamp_min(1.0))
        return out

    def auxiliary_loss(self, out, clean, y, cls, text_rate, present) -> torch.Tensor:
        """The semantic alignment losses on the present modalities' projected summaries
        (module docstring, step 3): NT-Xent text <-> audio and text <-> vision of the same
        window, and supervised contrastive over every (window, modality) summary whose
        positives are the other summaries of windows of the same class."""
        c = self.cfg
        z = F.normalize(self.semantic(out["semantic"]), dim=-1)  # [B, 3, d]
        loss = z.sum() * 0.0
        for m in (1, 2):
            both = present[:, 0] & present[:, m]
            if int(both.sum()) >= 2:
                logits = z[both, 0] @ z[both, m].T / c.align_temperature
                target = torch.arange(logits.shape[0])
                loss = loss + c.w_align * 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        keep = present.reshape(-1)
        flat = z.reshape(-1, z.shape[-1])[keep]
        labels = cls.repeat_interleave(3)[keep]
        if flat.shape[0] >= 2:
            eye = torch.eye(len(flat), dtype=torch.bool)
            sim = (flat @ flat.T / c.supervised_temperature).masked_fill(eye, -1e4)
            pos = (labels[:, None] == labels[None, :]) & ~eye
            has = pos.any(1)
            if bool(has.any()):
                log_prob = sim - torch.logsumexp(sim, 1, keepdim=True)
                per = -(log_prob * pos).sum(1)[has] / pos.sum(1)[has]
                loss = loss + c.w_supervised * per.mean()
        return loss

    def after_step(self, clean) -> None:
        """Nothing to do after an optimiser step."""

    def finish_training(self, batches) -> None:
        """Nothing to do once trained."""
