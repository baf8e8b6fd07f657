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

from models.fusion.base import EVIDENCE_DIMS, CrossUpdate, ModalityEncoder, ordinal_outputs, pool_audio
from models.layers import (
    Block,
    head_attention,
    head_output,
    head_projection,
    key_bias,
    masked_mean,
    shared_norm_linear,
    stacked_blocks,
    stacked_layer_norm,
)
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


#: modalities whose blocks run side by side (``DashFusion.forward``): text alone; audio and vision
GROUPS = ((0,), (1, 2))


def _halving(n: int, dtype, device) -> torch.Tensor:
    """[n // 2, n] matrix that averages tokens 2i and 2i + 1."""
    return torch.eye(n // 2, dtype=dtype, device=device).repeat_interleave(2, dim=1) * 0.5


class StepProjection(nn.Module):
    """Steps of one modality -> the width, with its evidence and presence added to each step.
    ``forward`` is this one modality's form; ``DashFusion.forward`` computes the same for all
    three at once from these weights (``DashFusion.conditions``, ``shared_norm_linear``)."""

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

    def conditions(self, evidence, present):
        """Evidence [B, 29] and presence [B, 3] -> [2, 3, B, 1, dim]: per modality the
        conditioning added to its steps (0: ``StepProjection``'s evidence + presence) and
        to its summary tokens (1: ``ModalityEncoder``'s), all six in one product: the
        evidence layers side by side in one block-diagonal matrix, the presence embeddings
        in one table."""
        d = self.cfg.dim
        pairs = [(s, e) for s, e in zip(self.steps, self.summary)]
        w = torch.block_diag(*(torch.cat([s.evidence.weight, e.evidence.weight]).T for s, e in pairs))
        b = torch.cat([torch.cat([s.evidence.bias, e.evidence.bias]) for s, e in pairs])
        table = torch.cat([torch.cat([s.presence.weight, e.presence.weight], 1) for s, e in pairs])  # [6, 2d]
        rows = present.long() + torch.arange(0, 6, 2, device=present.device)  # modality m's rows 2m, 2m + 1
        cond = (F.linear(evidence, w.T, b).unflatten(1, (3, 2 * d)) + F.embedding(rows, table)).unflatten(2, (2, d))
        return cond.permute(2, 1, 0, 3).unsqueeze(3)

    def forward(self, text, text_valid, audio, audio_valid, vision, vision_valid, evidence, present):
        """Returns a dict: score [B], spread [B], ordinal logits [B, 3], completeness [B], z
        [B, dim] and the per-modality semantic summaries ``semantic`` [B, 3, dim] (for the
        contrastive loss).

        Written for speed at batch 1, where onnxruntime's time follows the node count: the
        audio and the vision steps (5 a second each, so one length in a full window) are
        padded to one length and stacked [2, B, L, dim], so their semantic encoders and
        their blocks in each fusion layer run as one set of batched products
        (``models.layers.stacked_blocks``); padded steps are masked keys. The text, whose
        length varies most, runs alone (a group of one), so no padding grows with it. The
        function is the one the module docstring describes, block by block: tests compare
        it with the modules called one modality at a time."""
        c = self.cfg
        audio, audio_valid = pool_audio(audio, audio_valid, c.audio_pool)
        xs, vs = (text, audio, vision), (text_valid, audio_valid, vision_valid)
        lengths = (text.shape[1], torch.sym_max(audio.shape[1], vision.shape[1]))
        cond_steps, cond_tokens = self.conditions(evidence, present)  # [3, B, 1, d] each
        # per group (text; audio and vision): steps [M, B, L, d], the semantic encoders'
        # steps and the valid-step mask [M, B, L]
        streams, sem_steps, valid = [], [], []
        for g, group in enumerate(GROUPS):
            projected, masks = [], []
            for m in group:
                # the steps projection and the semantic encoder's, from one normalisation
                p = shared_norm_linear(xs[m], (self.steps[m].proj, self.summary[m].proj))  # [B, n, 2d]
                pad = lengths[g] - xs[m].shape[1]
                projected.append(F.pad(p, (0, 0, 0, pad)) if len(group) > 1 else p)
                mask = vs[m] & present[:, m : m + 1]
                masks.append(F.pad(mask, (0, pad)) if len(group) > 1 else mask)
            mask = torch.stack(masks)
            keep = mask.unsqueeze(-1).to(text.dtype)
            steps, sem = torch.stack(projected).chunk(2, -1)
            streams.append((steps + cond_steps[group[0] : group[-1] + 1]) * keep)
            sem_steps.append(sem * keep)
            valid.append(mask)
        # temporal alignment: audio and vision brought to the text's steps (in turn: the
        # vision query is the text already joined by audio); their keys and values at once
        text_stream = streams[0][0]
        align = [a.attn for a in self.align]
        wkv, bkv = (torch.stack(t)[:, None] for t in zip(*(head_projection(a.norm_kv, a.attn, "kv") for a in self.align)))
        eps = self.align[0].norm_kv.eps
        k, v = (F.layer_norm(streams[1], (c.dim,), eps=eps).unsqueeze(2) @ wkv + bkv).chunk(2, -1)
        bias = key_bias(valid[1], text.dtype)  # [2, B, 1, 1, L]
        seen = torch.tanh(self.align_gate)[:, None, None, None] * valid[1].any(-1)[..., None, None].to(text.dtype)
        for j in range(2):
            wq, cq = head_projection(self.align[j].norm_q, align[j], "q")
            q = F.layer_norm(text_stream, (c.dim,), eps=eps).unsqueeze(1) @ wq + cq  # [B, heads, L, d/h]
            aligned = head_attention(q, k[j], v[j], bias[j], *head_output(align[j]), align[j].dropout, self.training)
            text_stream = text_stream + seen[j] * aligned
        streams[0] = text_stream[None]
        # semantic alignment: each modality's summary tokens over its steps
        n_tok = c.n_tokens
        sem = []
        for g, group in enumerate(GROUPS):
            enc = [self.summary[m] for m in group]
            tokens = torch.stack([e.tokens[0] for e in enc])[:, None] + cond_tokens[group[0] : group[-1] + 1]
            h = torch.cat([tokens, sem_steps[g]], 2)
            bias = key_bias(valid[g], text.dtype, lead=n_tok)
            for i in range(c.encoder_layers):  # the last layer: only the tokens are read
                last = i == c.encoder_layers - 1
                h = stacked_blocks([e.blocks[i] for e in enc], h, bias, rows=n_tok if last else None)
            sem.append(stacked_layer_norm(h, [e.norm for e in enc]).mean(2))
        sem = torch.cat(sem).transpose(0, 1)  # [B, 3, d]
        # hierarchical bottleneck fusion over the present modalities
        pres = present.to(text.dtype)  # [B, 3]
        weight = pres / pres.sum(1, keepdim=True).clamp_min(1.0)
        shares = weight.T[:, :, None, None]  # [3, B, 1, 1]
        alone = (pres.sum(1) == 0).to(text.dtype)[:, None, None]  # nothing present: keep the tokens
        b = self.bottleneck + self.bottleneck_in((sem * weight.unsqueeze(-1)).sum(1)).unsqueeze(1)
        # the bottleneck tokens go first (always attended to, so no row is ever fully masked),
        # so every slice below has a fixed start: fewer shape computations in the ONNX graph,
        # and order does not matter to attention (no positions inside these blocks)
        n_b = c.n_bottleneck
        for i, layer in enumerate(self.fuse):
            update = alone * b
            for g, group in enumerate(GROUPS):
                x = torch.cat([b.expand(len(group), -1, -1, -1), streams[g]], 2)
                # after the last layer only the bottleneck is read (and the text's steps)
                rows = n_b if g > 0 and i == len(self.fuse) - 1 else None
                h = stacked_blocks([layer[m] for m in group], x, key_bias(valid[g], text.dtype, lead=n_b), rows)
                streams[g] = h[:, :, n_b:]
                update = update + (shares[group[0] : group[-1] + 1] * h[:, :, :n_b]).sum(0)
            # neighbouring tokens averaged (8 -> 4 -> 2) by one constant product: no shape
            # arithmetic in the graph
            b = torch.matmul(_halving(n_b, b.dtype, b.device), update)
            n_b //= 2
        text_summary = masked_mean(streams[0][0], valid[0][0])
        z = self.out_norm(b.mean(1) + text_summary)
        out = ordinal_outputs(self.head, z)
        count = text_valid.to(text.dtype).sum(1)
        observed = valid[0][0].to(text.dtype).sum(1)
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
