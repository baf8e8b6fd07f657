"""Evaluation metrics (training and evaluation only; the runtime imports none of them).

In: predictions and truths as arrays; out: floats or dicts of floats.

``mmsa_regression`` reproduces how MMSA (thuiar/MMSA) scores MOSI / MOSEI regression:
- Acc-2 has-0: truth >= 0 against prediction >= 0 over all samples;
- Acc-2 non-0: samples with truth exactly 0 dropped, then truth > 0 against prediction > 0;
- F1: sklearn's weighted F1 of the same binary split, called f1_score(truth, pred);
- Acc-7 / Acc-5: clip to [-3, 3] / [-2, 2], round (numpy's round-half-to-even), compare;
- MAE; Corr: Pearson.
All accuracies are fractions in [0, 1]; reports print them as percentages.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

from models.ordinal import grid_min_nll


def _as_1d(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if not np.isfinite(a).all():
        raise ValueError("metrics got NaN or inf")
    return a


def pearson(a, b) -> float:
    a, b = _as_1d(a), _as_1d(b)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def multiclass_acc(pred, truth) -> float:
    return float(np.mean(np.round(pred) == np.round(truth)))


def mmsa_regression(pred, truth) -> dict[str, float]:
    """MOSI / MOSEI metrics of predicted against true scores (both on the [-3, 3] scale)."""
    pred, truth = _as_1d(pred), _as_1d(truth)
    if pred.shape != truth.shape or pred.size == 0:
        raise ValueError("pred and truth must be non-empty and of one length")
    nz = truth != 0
    return {
        "acc2_has0": float(np.mean((pred >= 0) == (truth >= 0))),
        "f1_has0": float(f1_score(truth >= 0, pred >= 0, average="weighted")),
        "acc2_non0": float(np.mean((pred[nz] > 0) == (truth[nz] > 0))),
        "f1_non0": float(f1_score(truth[nz] > 0, pred[nz] > 0, average="weighted")),
        "acc7": multiclass_acc(np.clip(pred, -3, 3), np.clip(truth, -3, 3)),
        "acc5": multiclass_acc(np.clip(pred, -2, 2), np.clip(truth, -2, 2)),
        "mae": float(np.mean(np.abs(pred - truth))),
        "corr": pearson(pred, truth),
    }


def expected_calibration_error(confidence, correct, n_bins: int = 15) -> float:
    """ECE: sum over equal-width confidence bins of |accuracy - mean confidence| * bin share."""
    conf, corr = _as_1d(confidence), _as_1d(correct)
    if conf.size == 0:
        raise ValueError("no samples")
    if (conf < 0).any() or (conf > 1).any():
        raise ValueError("confidence must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(corr[m].mean() - conf[m].mean())
    return float(ece)


def classification(probs, truth) -> dict[str, float]:
    """Accuracy, macro F1 and ECE of class probabilities [N, C] against labels [N]."""
    probs = np.asarray(probs, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] != truth.shape[0]:
        raise ValueError("probs must be [N, C] with N labels")
    pred = probs.argmax(1)
    return {
        "acc": float(np.mean(pred == truth)),
        "f1_macro": float(f1_score(truth, pred, average="macro", labels=np.arange(probs.shape[1]))),
        "ece": expected_calibration_error(probs.max(1), pred == truth),
        "n": int(truth.size),
    }


def fit_temperature(logits, truth, grid: np.ndarray | None = None) -> float:
    """Temperature T minimising the negative log-likelihood of softmax(logits / T) (grid search)."""
    logits = np.asarray(logits, dtype=np.float64)
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121)) if grid is None else grid
    return grid_min_nll(lambda t: logits / t, truth, grid)
