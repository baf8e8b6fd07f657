"""The fused answer against the modalities' own estimates: disagreement lowers the
confidence, and the fused score never lies beyond all of them.

Given the fusion's score ``s`` and spread ``tau`` for a window, and the own estimates
``s_m`` of the modalities that had input (``observed``; ``w_m`` their in-domain scores,
``models.domain``):

- conflict ``c = max over pairs (i, j) of min(w_i, w_j) * |s_i - s_j|``: how far apart two
  modalities that both count put the window (0 with one modality);
- the calibrated spread is ``tau * T * (1 + gain * c)``: ``T`` the fusion's temperature,
  ``gain`` fitted with it on validation windows (``fit``), so confidence falls as the
  modalities disagree, as far as validation data say it should;
- the score is held to ``[min_m s_m - 0.5, max_m s_m + 0.5]``: the fused estimate may go
  beyond the modalities by at most half a class (the neutral band's half width), never
  further against every one of them.

Probabilities are the ordinal ones of the final score and spread (``models.ordinal``),
so label, score and confidence stay coherent. ``SentimentModel.fuse`` and the training's
calibration call this one function.
"""

from __future__ import annotations

import numpy as np

from models.ordinal import ordinal_probs_np

#: how far (score units) the fused score may lie beyond every present modality's own
MARGIN = 0.5


def conflict(est: np.ndarray, observed: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """[B] the weighted largest gap between two observed modalities' own scores.
    est, weight [B, M] float; observed [B, M] bool."""
    est = np.asarray(est, np.float64)
    w = np.where(observed, np.asarray(weight, np.float64), 0.0)
    out = np.zeros(len(est))
    m = est.shape[1]
    for i in range(m):
        for j in range(i + 1, m):
            both = observed[:, i] & observed[:, j]
            gap = np.minimum(w[:, i], w[:, j]) * np.abs(est[:, i] - est[:, j])
            out = np.where(both, np.maximum(out, gap), out)
    return out


def bound(score: np.ndarray, est: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Scores held within MARGIN of the observed modalities' own range (unchanged where
    none is observed)."""
    est = np.asarray(est, np.float64)
    any_obs = observed.any(1)
    lo = np.where(any_obs, np.where(observed, est, np.inf).min(1) - MARGIN, -np.inf)
    hi = np.where(any_obs, np.where(observed, est, -np.inf).max(1) + MARGIN, np.inf)
    return np.clip(np.asarray(score, np.float64), lo, hi)


def combine(score, spread, est, observed, weight, temperature: float, gain: float) -> tuple[np.ndarray, np.ndarray]:
    """(scores [B], probabilities [B, 3]) of fusion outputs against own estimates (see
    the module docstring). score, spread [B]; est, weight [B, 3]; observed [B, 3] bool."""
    observed = np.asarray(observed, bool)
    s = bound(score, est, observed)
    tau = np.asarray(spread, np.float64) * temperature * (1.0 + gain * conflict(est, observed, weight))
    return s, ordinal_probs_np(s, tau)


GAINS = np.linspace(0.0, 3.0, 31)  # the conflict gains fit tries


def fit(score, spread, est, observed, weight, cls, gains=GAINS, temps=None) -> tuple[float, float]:
    """(temperature, gain) minimising the negative log-likelihood of classes ``cls`` [N]
    on validation windows (grid search)."""
    temps = np.exp(np.linspace(np.log(0.2), np.log(5.0), 61)) if temps is None else temps
    cls = np.asarray(cls, np.int64)
    best = (np.inf, 1.0, 0.0)
    s = bound(score, est, np.asarray(observed, bool))
    c = conflict(est, np.asarray(observed, bool), weight)
    for g in gains:
        for t in temps:
            p = ordinal_probs_np(s, np.asarray(spread, np.float64) * t * (1 + g * c))
            nll = -np.log(np.clip(p[np.arange(len(cls)), cls], 1e-12, None)).mean()
            if nll < best[0]:
                best = (nll, float(t), float(g))
    return best[1], best[2]
