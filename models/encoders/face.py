"""Facial expression encoder: a small residual CNN over 48x48 grayscale face crops framed
as FER-2013 frames its faces (``models.features.vision.aligned_crop``).

In:  crops uint8 [N, 48, 48] through ``prepare`` (centre 44x44, scaled), or the float
     tensor it returns [N, 1, 44, 44].
Out: emb [N, 128] (per-frame input of the fusion model), logits [N, 7] over
     ``models.labels.FER_EMOTIONS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from models.labels import FER_EMOTIONS
from models.types import FACE_EMB_DIM

INPUT = 44  # training takes random 44x44 crops of the 48x48 faces, inference the centre one


@dataclass
class FaceEncoderConfig:
    width: int = 40  # stage widths 40, 80, 160, 320
    blocks: int = 2  # residual blocks per stage
    emb: int = FACE_EMB_DIM
    n_emotions: int = len(FER_EMOTIONS)
    dropout: float = 0.2


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


def prepare(crops: np.ndarray) -> torch.Tensor:
    """uint8 [N, 48, 48] faces -> normalised float [N, 1, 44, 44] centre crops."""
    c = np.asarray(crops)
    if c.dtype != np.uint8 or c.ndim != 3 or c.shape[1:] != (48, 48):
        raise ValueError(f"face crops must be uint8 [N, 48, 48], got {c.dtype} {c.shape}")
    m = (48 - INPUT) // 2
    x = torch.from_numpy(np.ascontiguousarray(c[:, m : m + INPUT, m : m + INPUT])).float().div_(255.0)
    return normalise(x.unsqueeze(1))


def normalise(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> the network's input scale."""
    return (x - 0.5) / 0.25


class FaceEncoder(nn.Module):
    def __init__(self, cfg: FaceEncoderConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or FaceEncoderConfig()
        w = cfg.width
        layers = [nn.Conv2d(1, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        for cin, cout in ((w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w)):
            layers.append(_Residual(cin, cout, 2))
            layers += [_Residual(cout, cout, 1) for _ in range(cfg.blocks - 1)]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embed = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(8 * w, cfg.emb), nn.GELU())
        self.head = nn.Linear(cfg.emb, cfg.n_emotions)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.embed(self.features(x))
        return {"emb": emb, "logits": self.head(emb)}


#: Whether per-frame face features average each crop with its mirror image. The fusion
#: model was trained on single views (``models.training.predict.face_view_features``),
#: so the live runtime uses single views too; the FER-2013 evaluation reports both.
FRAME_FLIP = False


@torch.no_grad()
def encode_faces(
    model: FaceEncoder, images: np.ndarray, flip: bool = FRAME_FLIP, batch: int = 64, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """{"emb": [N, 128], "logits": [N, 7]} of uint8 [N, 48, 48] faces (centre crop; with
    ``flip`` the image and its mirror averaged). The one path for training, evaluation and
    the live runtime. ``device`` is where ``model`` lives (training on a GPU validates there).
    Batches of 64 keep activations under glibc's 32 MB mmap ceiling: with 512, every batch
    mapped and unmapped its buffers and 2048 faces took 17.6 s instead of 10.7 s (2 cores)."""
    model.eval()
    embs, logits = [], []
    for i in range(0, len(images), batch):
        x = prepare(images[i : i + batch]).to(device).contiguous(memory_format=torch.channels_last)
        out = model(x)
        e, lg = out["emb"], out["logits"]
        if flip:
            o2 = model(x.flip(3))
            e, lg = (e + o2["emb"]) / 2, (lg + o2["logits"]) / 2
        embs.append(e.float().cpu().numpy())
        logits.append(lg.float().cpu().numpy())
    if not embs:
        return {"emb": np.zeros((0, model.cfg.emb), np.float32), "logits": np.zeros((0, model.cfg.n_emotions), np.float32)}
    return {"emb": np.concatenate(embs), "logits": np.concatenate(logits)}
