"""Speech emotion encoder over the frame features of ``models.features.audio``.

In:  x float32 [B, F, 387] at 50 frames/s, valid bool [B, F] (False: no audio there).
Out: states [B, F', D] at 25 frames/s and their valid [B, F'] (for the fusion model),
     pooled [B, D], logits [B, 9] over ``models.labels.EMOTIONS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.features.audio import DIM
from models.labels import EMOTIONS
from models.layers import AttentionPool, Block
from models.types import AUDIO_STATE_DIM


@dataclass
class AudioEncoderConfig:
    in_dim: int = DIM
    dim: int = AUDIO_STATE_DIM
    layers: int = 2
    heads: int = 4
    ffn: int = 256
    dropout: float = 0.1
    n_emotions: int = len(EMOTIONS)


class AudioEncoder(nn.Module):
    def __init__(self, cfg: AudioEncoderConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or AudioEncoderConfig()
        self.norm_in = nn.LayerNorm(cfg.in_dim)
        self.conv = nn.Conv1d(cfg.in_dim, cfg.dim, kernel_size=3, stride=2, padding=1)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.layers))
        self.norm_out = nn.LayerNorm(cfg.dim)
        self.pool = AttentionPool(cfg.dim)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.dim, cfg.n_emotions))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.norm_in(x) * valid.unsqueeze(-1).to(x.dtype)  # missing frames read as zeros
        h = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        # a state is valid when any frame under the conv's window is (a conv, not max_pool1d,
        # so that ONNX export keeps the length dynamic)
        v = F.conv1d(valid.to(x.dtype).unsqueeze(1), x.new_ones(1, 1, 3), stride=2, padding=1).squeeze(1) > 0
        for block in self.blocks:
            h = block(h, v)
        h = self.norm_out(h)
        pooled = self.pool(h, v)
        return {"states": h, "valid": v, "pooled": pooled, "logits": self.head(pooled)}
