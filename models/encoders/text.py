"""Text sentiment encoder: MiniLM's top layers, fine-tuned, over the token features of
``models.features.text`` (MiniLM's bottom layers).

In:  x float32 [B, L, 384] token features, valid bool [B, L].
Out: states [B, L, 384] (token level, for the fusion model), pooled [B, 384],
     score [B] (MOSI scale), logits [B, 3] (negative / neutral / positive).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from models.features.text import DIM, N_LAYERS
from models.layers import AttentionPool, BertLayer


@dataclass
class TextEncoderConfig:
    in_dim: int = DIM
    first_layer: int = N_LAYERS  # the MiniLM layer this encoder continues from
    n_layers: int = 6 - N_LAYERS
    heads: int = 12
    ffn: int = 1536
    dropout: float = 0.1


class TextEncoder(nn.Module):
    def __init__(self, cfg: TextEncoderConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TextEncoderConfig()
        self.layers = nn.ModuleList(BertLayer(cfg.in_dim, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.n_layers))
        self.pool = AttentionPool(cfg.in_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.score_head = nn.Linear(cfg.in_dim, 1)
        self.class_head = nn.Linear(cfg.in_dim, 3)

    def init_from_minilm(self) -> None:
        """Start the layers from MiniLM's layers first_layer ... first_layer + n_layers - 1."""
        from models.features.text import minilm_state_dict

        sd = minilm_state_dict()
        for i, layer in enumerate(self.layers):
            layer.load_hf(sd, self.cfg.first_layer + i)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        for layer in self.layers:
            x = layer(x, valid)
        pooled = self.pool(x, valid)
        h = self.drop(pooled)
        return {
            "states": x,
            "pooled": pooled,
            "score": self.score_head(h).squeeze(-1),
            "logits": self.class_head(h),
        }
