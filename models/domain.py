"""How in-domain each modality's input is, per window: a number in (0, 1].

Each encoder maps a window to one summary vector (``UnimodalStack``: the mean text-encoder
state, the audio encoder's pooled state, the mean face embedding). A Gaussian fitted to
those vectors on the training data (shrunk covariance) gives each window a Mahalanobis
distance ``d``; with ``d50`` and ``d95`` the median and 95th percentile of ``d`` on held-out
validation data of the same corpora,

    in_domain = 1                                   where d <= d95
              = 2 ** (-(d - d95) / (d95 - d50))     beyond: halved every (d95 - d50)

so 95 % of held-out in-domain windows count fully, and a voice, face or transcript far
from anything the encoders learnt from counts less and less. The runtime and the fusion
read it three ways (``models.unimodal``): it is part of the fusion's evidence input; it
shrinks a voice's or face's own estimate towards neutral and widens its spread (so its
confidence is low out of domain); and below ``GATE`` that modality is not given to the
fusion at all (its own, low-confidence estimate is still reported).

``fit`` (training: the domain stage, ``models.training.calibrate``) and the torch
buffers of ``UnimodalStack`` (``load_into``) are the two sides; the stats ship in
``assets/weights/domain.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

#: below this, a voice or face is out of domain and not given to the fusion
GATE = 0.25
SHRINK = 0.1  # covariance shrinkage towards a scaled identity
KEYS = ("t", "a", "v")


def fit(train: np.ndarray, valid: np.ndarray, shrink: float = SHRINK) -> dict[str, np.ndarray]:
    """Stats of one modality from summary vectors [N, D] of training and validation data:
    mean [D], precision [D, D], ref [2] = (d50, d95) on the validation vectors."""
    x = np.asarray(train, np.float64)
    if len(x) < 2 or not np.isfinite(x).all():
        raise ValueError("need at least two finite training vectors")
    mean = x.mean(0)
    cov = np.cov(x, rowvar=False)
    d = cov.shape[0]
    cov = (1 - shrink) * cov + shrink * np.trace(cov) / d * np.eye(d)
    prec = np.linalg.inv(cov)
    dist = mahalanobis(np.asarray(valid, np.float64), mean, prec)
    d50, d95 = np.percentile(dist, [50, 95])
    return {"mean": mean.astype(np.float32), "prec": prec.astype(np.float32), "ref": np.array([d50, d95], np.float32)}


def mahalanobis(x: np.ndarray, mean: np.ndarray, prec: np.ndarray) -> np.ndarray:
    z = np.asarray(x, np.float64) - mean
    return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", z, prec, z), 0.0))


def score_torch(x: torch.Tensor, mean: torch.Tensor, prec: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """[B] in-domain scores of summary vectors x [B, D] (the formula of the module docstring)."""
    z = x - mean
    dist = ((z @ prec) * z).sum(-1).clamp_min(0).sqrt()  # (a matmul, not einsum: exports to ONNX with any batch)
    d50, d95 = ref[0], ref[1]
    beyond = torch.pow(torch.tensor(2.0, dtype=x.dtype), -(dist - d95) / (d95 - d50).clamp_min(1e-6))
    return torch.where(dist <= d95, torch.ones_like(dist), beyond)


def save(path: Path, stats: dict[str, dict[str, np.ndarray]]) -> None:
    """stats: modality key ('t', 'a', 'v') -> ``fit`` output."""
    from safetensors.numpy import save_file

    flat = {f"{k}.{name}": np.ascontiguousarray(v, np.float32) for k, s in stats.items() for name, v in s.items()}
    save_file(flat, str(path))


def load(path: Path) -> dict[str, dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    flat = load_file(str(path))
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, v in flat.items():
        m, name = key.split(".", 1)
        out.setdefault(m, {})[name] = v
    missing = [k for k in KEYS if k not in out or set(out[k]) != {"mean", "prec", "ref"}]
    if missing:
        raise ValueError(f"{path}: domain stats of {missing} missing")
    return out
