"""The ordinal output: one score gives the label, the three class probabilities and the
confidence together, so they can never contradict each other.

The sentiment classes are intervals of the score axis (``models.types``):
negative ``s < -0.5``, neutral ``-0.5 <= s <= 0.5``, positive ``s > 0.5``. Given a score
``s`` and a spread ``tau > 0`` (how unsure the model is of where the score lies), each
class gets the logit ``-d_k(s) / tau``, where ``d_k(s)`` is the distance from ``s`` to
class k's interval (zero inside it):

    d_neg = max(0, s + 0.5)      d_neu = max(0, |s| - 0.5)      d_pos = max(0, 0.5 - s)

The class whose interval holds ``s`` has distance zero, every other class a positive one,
so the softmax ranks it first for every ``s`` and ``tau`` (the two classes meeting at a
boundary, ``s = +-0.5``, tie there; the label is then neutral, as the interval rule says).
Mass falls off with the distance in score units, so the probabilities are unimodal over
the ordered classes: negative and positive never both outweigh neutral. A small ``tau``
is a sure answer; calibration multiplies ``tau`` by one temperature fitted on validation
data, which keeps the order.

Used by the fusion model's head (torch, exported to ONNX), by each unimodal estimate
(``models.unimodal``) and by the runtime: one definition, no relabelling afterwards.
"""

from __future__ import annotations

import numpy as np
import torch

from models.types import NEUTRAL_BAND, SCORE_MAX

#: Smallest spread the heads produce (a floor, so a logit never divides by zero).
MIN_SPREAD = 0.05


def interval_distance(score: torch.Tensor) -> torch.Tensor:
    """[..., 3] distance of each score to the negative, neutral and positive intervals."""
    b = NEUTRAL_BAND
    return torch.stack([torch.relu(score + b), torch.relu(score.abs() - b), torch.relu(b - score)], dim=-1)


def ordinal_logits(score: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """[..., 3] class logits ``-d(score) / spread`` (spread broadcast against score)."""
    return -interval_distance(score) / spread.unsqueeze(-1)


def bounded_score(raw: torch.Tensor) -> torch.Tensor:
    """A raw head output mapped smoothly into (-3, 3): no clamp is needed afterwards."""
    return SCORE_MAX * torch.tanh(raw / SCORE_MAX)


def spread_from_raw(raw: torch.Tensor) -> torch.Tensor:
    """A raw head output mapped to a spread > ``MIN_SPREAD``."""
    return torch.nn.functional.softplus(raw) + MIN_SPREAD


# ---------------------------------------------------------------- numpy side (runtime, evaluation)
def interval_distance_np(score) -> np.ndarray:
    s = np.asarray(score, np.float64)
    b = NEUTRAL_BAND
    return np.stack([np.maximum(s + b, 0.0), np.maximum(np.abs(s) - b, 0.0), np.maximum(b - s, 0.0)], -1)


def ordinal_probs_np(score, spread) -> np.ndarray:
    """[..., 3] probabilities (float64, rows sum to 1) of scores with spreads."""
    z = -interval_distance_np(score) / np.asarray(spread, np.float64)[..., None]
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def grid_min_nll(make_logits, truth, grid) -> float:
    """The value v of ``grid`` whose ``make_logits(v)`` [N, C] gives the lowest mean negative
    log-likelihood of the labels ``truth`` [N] under a softmax."""
    truth = np.asarray(truth, dtype=np.int64)
    best, best_nll = float(grid[0]), np.inf
    for v in grid:
        z = make_logits(v)
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        nll = -logp[np.arange(len(truth)), truth].mean()
        if nll < best_nll:
            best, best_nll = float(v), nll
    return best


def fit_spread(score, cls, grid: np.ndarray | None = None) -> float:
    """The one spread that minimises the negative log-likelihood of classes ``cls`` [N]
    under ``ordinal_probs_np(score, spread)`` (grid search; used to calibrate a unimodal
    estimate on validation data)."""
    score = np.asarray(score, np.float64).reshape(-1)
    cls = np.asarray(cls, np.int64).reshape(-1)
    if score.shape != cls.shape or not len(score):
        raise ValueError("score and cls must be non-empty and of one length")
    grid = np.exp(np.linspace(np.log(0.02), np.log(5.0), 161)) if grid is None else grid
    d = interval_distance_np(score)
    return grid_min_nll(lambda tau: -d / tau, cls, grid)
