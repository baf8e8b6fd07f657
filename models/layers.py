"""Building blocks shared by the encoders and the fusion model.

Masks are boolean with True for a step that takes part. Attention never sees a row with
no valid key: such a row attends to every key instead (all of them zero-filled), so a
fully masked input gives finite numbers, never NaN; models that must ignore it check
presence themselves.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.types import TEXT_DIM


def safe_key_mask(valid: torch.Tensor) -> torch.Tensor:
    """[B, S] key mask with rows that have no valid key opened up entirely."""
    return valid | ~valid.any(dim=-1, keepdim=True)


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError("dim must be a multiple of heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.dropout = dropout
        self.scale = (dim // heads) ** -0.5

    def forward(
        self,
        x: torch.Tensor,
        ctx: torch.Tensor | None = None,
        key_valid: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ):
        """x [B, L, D] queries; ctx [B, S, D] keys and values (x itself when None); key_valid
        [B, S], or instead ``bias`` [B, 1, 1, S], added to the attention logits (``key_bias``
        makes one from a mask, so a model that attends to the same keys several times builds
        it once).

        Written out rather than ``F.scaled_dot_product_attention``, whose ONNX export adds a
        reshape chain, a second scaling and a NaN guard to every call: at batch 1 these small
        models' onnxruntime time follows their node count. Self-attention computes q, k and v
        in one product (the three weights side by side): the same numbers, fewer nodes."""
        ctx = x if ctx is None else ctx
        h = self.heads
        if ctx is x:
            w = torch.cat([self.q.weight, self.k.weight, self.v.weight])
            b = torch.cat([self.q.bias, self.k.bias, self.v.bias])
            q, k, v = F.linear(x, w, b).chunk(3, dim=-1)
        else:
            q, k, v = self.q(x), self.k(ctx), self.v(ctx)
        q = q.unflatten(-1, (h, -1)).transpose(1, 2) * self.scale  # [B, h, L, d/h]
        kt = k.unflatten(-1, (h, -1)).permute(0, 2, 3, 1)  # [B, h, d/h, S]
        v = v.unflatten(-1, (h, -1)).transpose(1, 2)  # [B, h, S, d/h]
        att = q @ kt
        if bias is not None:
            att = att + bias
        elif key_valid is not None:  # every row keeps a key: the softmax never sees all -inf
            att = att.masked_fill(~safe_key_mask(key_valid)[:, None, None, :], float("-inf"))
        att = F.dropout(att.softmax(-1), self.dropout, self.training)
        return self.o((att @ v).transpose(1, 2).flatten(2))


def key_bias(valid: torch.Tensor, dtype: torch.dtype = torch.float32, lead: int = 0) -> torch.Tensor:
    """[B, S] key mask -> [B, 1, 1, lead + S] additive attention bias: 0 for a key that takes
    part, -inf for one that does not. With ``lead`` > 0 the keys are ``lead`` tokens that are
    always attended to (learned tokens placed first), then the masked steps, so no row is
    ever fully masked; with none, a row with no valid key opens up entirely (``safe_key_mask``)."""
    zero = torch.zeros((), dtype=dtype, device=valid.device)
    if lead:
        return F.pad(torch.where(valid, zero, float("-inf"))[:, None, None, :], (lead, 0))
    return torch.where(safe_key_mask(valid), zero, float("-inf"))[:, None, None, :]


class Block(nn.Module):
    """Pre-norm Transformer block: (cross-)attention then a GELU feed-forward."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float = 0.1, cross: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm_ctx = nn.LayerNorm(dim) if cross else None
        self.attn = MultiHeadAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, key_valid=None, ctx=None, bias=None):
        """x [B, L, D]; key_valid [B, S] or an additive ``bias`` [B, 1, 1, S] (``key_bias``)."""
        q = self.norm1(x)
        kv = q if ctx is None else self.norm_ctx(ctx)
        x = x + self.drop(self.attn(q, kv, key_valid, bias))
        return x + self.drop(self.ff(self.norm2(x)))


class AttentionPool(nn.Module):
    """Masked attention pooling [B, L, D] -> [B, D]."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x, valid):
        w = self.score(x).squeeze(-1).masked_fill(~safe_key_mask(valid), -1e4)
        return (w.softmax(-1).unsqueeze(-1) * x).sum(1)


class BertLayer(nn.Module):
    """A post-norm BERT encoder layer, laid out so MiniLM's weights load into it."""

    def __init__(self, dim: int = TEXT_DIM, heads: int = 12, ffn: int = 1536, dropout: float = 0.1, eps: float = 1e-12):
        super().__init__()
        self.attn = MultiHeadAttention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.ff1 = nn.Linear(dim, ffn)
        self.ff2 = nn.Linear(ffn, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, key_valid):
        x = self.norm1(x + self.drop(self.attn(x, None, key_valid)))
        return self.norm2(x + self.drop(self.ff2(F.gelu(self.ff1(x)))))

    def load_hf(self, sd: dict[str, torch.Tensor], index: int) -> None:
        """Copy layer ``index`` of a Hugging Face BertModel state dict into this layer."""
        p = f"encoder.layer.{index}."
        names = {
            self.attn.q: "attention.self.query",
            self.attn.k: "attention.self.key",
            self.attn.v: "attention.self.value",
            self.attn.o: "attention.output.dense",
            self.norm1: "attention.output.LayerNorm",
            self.ff1: "intermediate.dense",
            self.ff2: "output.dense",
            self.norm2: "output.LayerNorm",
        }
        with torch.no_grad():
            for mod, name in names.items():
                mod.weight.copy_(sd[p + name + ".weight"])
                mod.bias.copy_(sd[p + name + ".bias"])


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[B, L, D] mean over valid steps; zeros where a row has none."""
    w = valid.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)
