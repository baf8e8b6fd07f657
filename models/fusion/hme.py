"""HME: hyper-modality enhancement with uncertainty-aware fusion, written from the HME paper
(robust multimodal sentiment analysis that enriches each modality with semantically related
cues retrieved from other samples, then fuses by uncertainty) and adapted so that the
output of a window never depends on the other windows of its batch: the public code
retrieves from the same batch, which breaks at batch size 1 as streaming needs. Here the
cues come from a **memory bank of training windows stored with the weights**.

Inputs: ``models.types.FusionInputs`` (see ``models.fusion.lnln`` for the shapes).

The network (``HMEConfig``: width 64, 4 heads; about 0.3 M parameters and a bank of 512
windows):
1. Per modality, ``n_tokens`` tokens from a Transformer block over [tokens; steps] with the
   modality's evidence and presence (``models.fusion.base.ModalityEncoder``); the
   modality's embedding u_m is their mean.
2. **Hyper-modality enhancement**: the bank holds, for each of ``bank_size`` complete
   training windows, the three modality embeddings. A present modality queries the bank's
   entries of the same modality with its own embedding; an absent one with a projection of
   the present modalities' embeddings (what it would likely look like). Retrieval is a
   softmax over cosine similarities (temperature ``bank_temperature``), entries below
   ``similarity_floor`` damped further (the paper keeps neighbours with cosine >= 0.6).
   The enriched embedding is e_m = u_m + g_m * r_m for a present modality (g_m a learned
   gate of [u_m, r_m]) and e_m = r_m for an absent one.
3. **Uncertainty-aware fusion**: a variational bottleneck gives the original and the
   enriched embedding each a mean and a variance (sampled in training, the mean at
   inference); each modality's representation is their precision-weighted mean (an absent
   modality has no original). A Transformer block over the three representations (with
   modality and presence embeddings, each token's input scaled by its precision share)
   and the mean of its outputs feeds the ordinal head.
4. Training losses beside the task: each modality's own score head (L1, weight 0.8 as in
   the paper), the bottleneck's KL (weight 0.01), and for dropped modalities the retrieved
   embedding towards the one of the complete input (weight 0.1; our addition for live
   missing data).

During training the bank is a ring of the latest clean training windows' embeddings
(written after each optimiser step, ``after_step``); once trained it is rebuilt from a
fixed set of clean training windows under the final weights (``finish_training``), and
from then on it is constant. With every modality absent only learned tokens and the bank
remain: finite output. ``completeness`` is the share of text steps observed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.fusion.base import EVIDENCE_DIMS, ModalityEncoder, ordinal_outputs, pool_audio, split_evidence
from models.layers import Block
from models.types import AUDIO_STATE_DIM, TEXT_DIM, VISION_DIM


@dataclass
class HMEConfig:
    text_dim: int = TEXT_DIM
    audio_dim: int = AUDIO_STATE_DIM
    vision_dim: int = VISION_DIM
    audio_pool: int = 5
    dim: int = 64
    heads: int = 4
    ffn: int = 128
    n_tokens: int = 4
    encoder_layers: int = 1
    dropout: float = 0.1
    bank_size: int = 512
    bank_temperature: float = 0.1
    similarity_floor: float = 0.6
    # training losses
    w_unimodal: float = 0.8
    w_kl: float = 0.01
    w_retrieval: float = 0.1


class Variational(nn.Module):
    """x [B, d] -> (sample or mean [B, d], variance [B] (mean over the width), KL [B])."""

    def __init__(self, dim: int):
        super().__init__()
        self.mu = nn.Linear(dim, dim)
        self.logvar = nn.Linear(dim, dim)

    def forward(self, x):
        mu, logvar = self.mu(x), self.logvar(x).clamp(-8.0, 8.0)
        h = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(-1)
        return h, logvar.exp().mean(-1), kl


class HME(nn.Module):
    def __init__(self, cfg: HMEConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or HMEConfig()
        d, e = cfg.dim, EVIDENCE_DIMS
        dims = {"text": cfg.text_dim, "audio": cfg.audio_dim, "vision": cfg.vision_dim}
        names = ("text", "audio", "vision")
        self.enc = nn.ModuleList(ModalityEncoder(dims[m], e[m], cfg) for m in names)
        # what an absent modality would look like, from the present ones
        self.cross_query = nn.ModuleList(nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d)) for _ in names)
        self.gate = nn.ModuleList(nn.Linear(2 * d, d) for _ in names)
        self.var_orig = nn.ModuleList(Variational(d) for _ in names)
        self.var_enh = nn.ModuleList(Variational(d) for _ in names)
        self.unimodal = nn.ModuleList(nn.Linear(d, 1) for _ in names)
        self.modality = nn.Parameter(torch.randn(1, 3, d) * 0.02)
        self.presence = nn.Embedding(2, d)
        self.block = Block(d, cfg.heads, cfg.ffn, cfg.dropout)
        self.out_norm = nn.LayerNorm(d)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(d, 2))
        # the memory bank: embeddings of complete training windows (see the module docstring)
        self.register_buffer("bank", torch.zeros(cfg.bank_size, 3, d))
        self.register_buffer("bank_filled", torch.zeros(cfg.bank_size, dtype=torch.bool))
        self._ring = 0
        self._pending: torch.Tensor | None = None

    # ------------------------------------------------------------ parts
    def embed(self, text, text_valid, audio, audio_valid, vision, vision_valid, evidence, present):
        """The modality embeddings u [B, 3, dim]."""
        audio, audio_valid = pool_audio(audio, audio_valid, self.cfg.audio_pool)
        evs = split_evidence(evidence)
        xs, vs = (text, audio, vision), (text_valid, audio_valid, vision_valid)
        return torch.stack([self.enc[m](xs[m], vs[m], evs[m], present[:, m]).mean(1) for m in range(3)], 1)

    def retrieve(self, u: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Retrieved cues r [B, 3, dim] from the bank for every modality (module docstring)."""
        c = self.cfg
        pres = present.to(u.dtype)
        others = (u * pres.unsqueeze(-1)).sum(1) / pres.sum(1, keepdim=True).clamp_min(1.0)  # [B, d]
        bank = F.normalize(self.bank, dim=-1)  # [K, 3, d]
        filled = self.bank_filled
        cues = []
        for m in range(3):
            q = torch.where(present[:, m : m + 1], u[:, m], self.cross_query[m](others))
            cos = F.normalize(q, dim=-1) @ bank[:, m].T  # [B, K]
            # entries below the floor are damped by exp(-(floor - cos) / 0.05): a hinge in the
            # log domain (linear, so onnxruntime computes it exactly as torch does)
            logits = cos / c.bank_temperature + ((cos - c.similarity_floor) / 0.05).clamp(max=0.0)
            logits = logits.masked_fill(~filled.unsqueeze(0), -1e4)
            w = logits.softmax(-1) * filled.any().to(u.dtype)  # an empty bank (start of training) gives nothing
            cues.append(w @ self.bank[:, m])
        return torch.stack(cues, 1)

    # ------------------------------------------------------------ forward
    def forward(self, text, text_valid, audio, audio_valid, vision, vision_valid, evidence, present):
        """Returns a dict: score [B], spread [B], ordinal logits [B, 3], completeness [B], z
        [B, dim], and for the training losses the embeddings ``u`` and cues ``r`` [B, 3,
        dim], each modality's own score ``unimodal`` [B, 3] and the bottleneck's ``kl`` [B]."""
        u = self.embed(text, text_valid, audio, audio_valid, vision, vision_valid, evidence, present)
        r = self.retrieve(u, present)
        pres = present.to(u.dtype)
        reps, precision, unimodal, kl = [], [], [], 0.0
        for m in range(3):
            g = torch.sigmoid(self.gate[m](torch.cat([u[:, m], r[:, m]], -1)))
            enriched = torch.where(present[:, m : m + 1], u[:, m] + g * r[:, m], r[:, m])
            h_o, var_o, kl_o = self.var_orig[m](u[:, m])
            h_e, var_e, kl_e = self.var_enh[m](enriched)
            p_o, p_e = pres[:, m] / var_o, 1.0 / var_e  # an absent modality has no original
            h = (p_o.unsqueeze(-1) * h_o + p_e.unsqueeze(-1) * h_e) / (p_o + p_e).unsqueeze(-1)
            reps.append(h)
            precision.append(p_o + p_e)
            unimodal.append(torch.tanh(self.unimodal[m](h).squeeze(-1) / 3.0) * 3.0)
            kl = kl + kl_e + pres[:, m] * kl_o
        reps = torch.stack(reps, 1)  # [B, 3, d]
        share = torch.stack(precision, 1)
        share = share / share.sum(1, keepdim=True)
        tokens = (reps * share.unsqueeze(-1) * 3.0) + self.modality + self.presence(present.long())
        z = self.out_norm(self.block(tokens).mean(1))
        out = ordinal_outputs(self.head, z)
        count = text_valid.to(text.dtype).sum(1)
        observed = (text_valid & present[:, :1]).to(text.dtype).sum(1)
        out.update(z=z, u=u, r=r, unimodal=torch.stack(unimodal, 1), kl=kl, completeness=observed / count.clamp_min(1.0))
        return out

    # ------------------------------------------------------------ training hooks
    def auxiliary_loss(self, out, clean, y, cls, text_rate, present) -> torch.Tensor:
        """Unimodal L1 on the present modalities, the bottleneck's KL, and the retrieved
        cue of each dropped modality towards its embedding from the complete input. Keeps
        the complete input's embeddings for ``after_step`` to write into the bank."""
        c = self.cfg
        pres = present.float()
        uni = ((out["unimodal"] - y.unsqueeze(1)).abs() * pres).sum() / pres.sum().clamp_min(1.0)
        with torch.no_grad():
            ref = self.embed(*clean)
        self._pending = ref.detach()
        absent = 1.0 - pres
        retrieval = (((out["r"] - ref) ** 2).mean(-1) * absent).sum() / absent.sum().clamp_min(1.0)
        return c.w_unimodal * uni + c.w_kl * out["kl"].mean() + c.w_retrieval * retrieval

    @torch.no_grad()
    def after_step(self, clean) -> None:
        """Writes the last batch's complete-input embeddings into the bank's ring."""
        ref = self._pending if self._pending is not None else self.embed(*clean)
        self._pending = None
        k = self.cfg.bank_size
        idx = (self._ring + torch.arange(min(len(ref), k))) % k
        self.bank[idx] = ref[: len(idx)]
        self.bank_filled[idx] = True
        self._ring = int((self._ring + len(idx)) % k)

    @torch.no_grad()
    def finish_training(self, batches) -> None:
        """Rebuilds the bank from clean training windows (``FusionInputs`` batches, all
        modalities present) under the final weights, in eval mode: the first ``bank_size``
        windows of ``batches`` (draw them shuffled)."""
        was = self.training
        self.eval()
        rows = []
        for inputs in batches:
            rows.append(self.embed(*inputs))
            if sum(len(x) for x in rows) >= self.cfg.bank_size:
                break
        u = torch.cat(rows)[: self.cfg.bank_size]
        self.bank.zero_()
        self.bank_filled.zero_()
        self.bank[: len(u)] = u
        self.bank_filled[: len(u)] = True
        self._ring = len(u) % self.cfg.bank_size
        self.train(was)
