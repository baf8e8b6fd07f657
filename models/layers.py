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
    """[..., B, S] key mask -> [..., B, 1, 1, lead + S] additive attention bias: 0 for a key that takes
    part, -inf for one that does not. With ``lead`` > 0 the keys are ``lead`` tokens that are
    always attended to (learned tokens placed first), then the masked steps, so no row is
    ever fully masked; with none, a row with no valid key opens up entirely (``safe_key_mask``)."""
    zero = torch.zeros((), dtype=dtype, device=valid.device)
    if lead:
        return F.pad(torch.where(valid, zero, float("-inf"))[..., None, None, :], (lead, 0))
    return torch.where(safe_key_mask(valid), zero, float("-inf"))[..., None, None, :]


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


def stacked_layer_norm(x: torch.Tensor, norms) -> torch.Tensor:
    """x [M, ..., D]: slice m through ``norms[m]`` (M LayerNorms of width D, one eps)."""
    shape = (len(norms),) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    g = torch.stack([n.weight for n in norms]).reshape(shape)
    b = torch.stack([n.bias for n in norms]).reshape(shape)
    return F.layer_norm(x, x.shape[-1:], eps=norms[0].eps) * g + b


def stacked_linear(x: torch.Tensor, linears) -> torch.Tensor:
    """x [M, B, L, in]: slice m through ``linears[m]`` (M Linears of one shape), one product."""
    w = torch.stack([lin.weight.T for lin in linears])[:, None]  # [M, 1, in, out]
    b = torch.stack([lin.bias for lin in linears])[:, None, None]  # [M, 1, 1, out]
    return x @ w + b


def folded_norm_linear(norm: nn.LayerNorm, weight: torch.Tensor, bias: torch.Tensor):
    """A LayerNorm's scale g and shift b folded into the linear map (weight [out, in], bias
    [out]) that follows it: W (n g + b) + c = (W g) n + (W b + c). Returns the folded
    (weight, bias); n is the plain normalisation ``F.layer_norm(x, (in,))``."""
    return weight * norm.weight, weight @ norm.bias + bias


def head_projection(norm: nn.LayerNorm, attn: MultiHeadAttention, which: str):
    """The projections ``which`` (a string of "q", "k", "v") of ``attn`` after ``norm``, laid
    out per head: weight [heads, D, n d/h] and bias [heads, 1, n d/h], so that
    ``F.layer_norm(x, (D,)).unsqueeze(-3) @ weight + bias`` [..., heads, L, n d/h] holds each
    head's projections side by side (q already scaled), with no reshape or transpose of the
    activations; ``norm``'s scale and shift are folded in (``folded_norm_linear``)."""
    h = attn.heads
    lins = [getattr(attn, name) for name in which]
    d = lins[0].weight.shape[1]
    s = torch.tensor([attn.scale if name == "q" else 1.0 for name in which], dtype=lins[0].weight.dtype)
    s = s.to(lins[0].weight.device).repeat_interleave(d)
    w, c = folded_norm_linear(
        norm, torch.cat([lin.weight for lin in lins]) * s[:, None], torch.cat([lin.bias for lin in lins]) * s
    )
    n = len(lins)
    w = w.reshape(n, h, -1, d).permute(1, 3, 0, 2).reshape(h, d, -1)
    return w, c.reshape(n, h, 1, -1).permute(1, 2, 0, 3).reshape(h, 1, -1)


def head_output(attn: MultiHeadAttention):
    """``attn``'s output projection per head: weight [heads, d/h, D] and bias [1, D], so that
    ``(per_head @ weight).sum(-3) + bias`` is the projection of the heads side by side."""
    return attn.o.weight.T.reshape(attn.heads, -1, attn.o.weight.shape[0]), attn.o.bias[None]


def head_attention(q, k, v, bias, wo, bo, dropout: float = 0.0, training: bool = False) -> torch.Tensor:
    """Attention on heads laid out by ``head_projection``: q [..., heads, L, d/h], k and v
    [..., heads, S, d/h], the additive key ``bias`` [..., 1, 1, S] (``key_bias``), and the
    output projection per head ``wo`` [..., heads, d/h, D], ``bo`` (``head_output``).
    Returns [..., L, D]: the heads merged by a sum, no reshape of the activations."""
    att = F.dropout((q @ k.transpose(-1, -2) + bias).softmax(-1), dropout, training)
    return (att @ v @ wo).sum(-3) + bo


def stacked_blocks(blocks, x: torch.Tensor, bias: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """M self-attention ``Block``s of one shape run side by side: x [M, B, L, D], slice m
    through ``blocks[m]`` with the additive key bias ``bias`` [M, B, 1, 1, L] (``key_bias``).
    With ``rows`` only the first ``rows`` outputs are computed ([M, B, rows, D]; every row
    is still a key): for a caller that reads no more.

    The same function as calling each block on its slice, with the blocks' own weights (so
    their parameters and names stay as they are), rearranged for onnxruntime at batch 1,
    whose time follows the node count: one set of batched products for all M blocks; the
    heads made by the projection weights themselves ([M, 1, heads, D, d/h]: no reshapes
    or transposes of the activations) and merged by a sum over heads; each LayerNorm's
    scale and shift and the attention's scaling folded into the product after it
    (``folded_norm_linear``). Rows past a slice's own length (padding) are computed and
    meaningless; as keys they are masked by ``bias``."""
    first = blocks[0]
    d = x.shape[-1]
    eps = first.norm1.eps
    w, c = (torch.stack(t)[:, None] for t in zip(*(head_projection(blk.norm1, blk.attn, "qkv") for blk in blocks)))
    n = F.layer_norm(x, (d,), eps=eps).unsqueeze(2)  # [M, B, 1, L, D]
    q, k, v = (n @ w + c).chunk(3, dim=-1)  # [M, B, heads, L, d/h] each
    if rows is not None:
        q, x = q[..., :rows, :], x[..., :rows, :]
    wo, bo = (torch.stack(t)[:, None] for t in zip(*(head_output(blk.attn) for blk in blocks)))
    x = x + first.drop(head_attention(q, k, v, bias, wo, bo, first.attn.dropout, first.training))
    f1 = [folded_norm_linear(blk.norm2, blk.ff[0].weight, blk.ff[0].bias) for blk in blocks]
    f = (
        F.layer_norm(x, (d,), eps=eps) @ torch.stack([w.T for w, _ in f1])[:, None]
        + torch.stack([c for _, c in f1])[:, None, None]
    )
    f = first.ff[2](F.gelu(f))
    return x + first.drop(stacked_linear(f, [blk.ff[3] for blk in blocks]))


def shared_norm_linear(x: torch.Tensor, pairs) -> torch.Tensor:
    """Several ``nn.Sequential(LayerNorm, Linear)`` over the same x [..., in] in one product:
    the statistics are computed once and each LayerNorm is folded into its Linear
    (``folded_norm_linear``: the same function). Returns the pairs' outputs side by side
    [..., sum of their widths], in order."""
    n = F.layer_norm(x, x.shape[-1:], eps=pairs[0][0].eps)
    folded = [folded_norm_linear(norm, lin.weight, lin.bias) for norm, lin in pairs]
    w = torch.cat([w for w, _ in folded])
    b = torch.cat([c for _, c in folded])
    return F.linear(n, w, b)


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
