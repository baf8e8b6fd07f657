"""Baselines the fusion model is measured against.

``late_fusion``: the confidence-weighted late fusion of the unimodal estimates. Each present
modality's score and probabilities are averaged, weighted by its confidence (the
probability of its own label); with none present the training prior answers. It is
scored by its probabilities (their argmax), as the evaluations score every source; being
two averages, its score may lie in another class's interval (it is a baseline, not a
product output).

In: per-window unimodal scores, probabilities and presence; out: fused scores and
probabilities. Used by the evaluations only (``models.training.evaluate``,
``streaming.evaluate_real``).
"""

from __future__ import annotations

import numpy as np

from models.types import score_to_class


def late_fusion(scores, probs, present, prior_score: float, prior_probs) -> tuple[np.ndarray, np.ndarray]:
    """scores [B, M], probs [B, M, 3], present bool [B, M] -> (scores [B], probs [B, 3])."""
    scores = np.asarray(scores, np.float64)
    probs = np.asarray(probs, np.float64)
    present = np.asarray(present, bool)
    if scores.ndim != 2 or probs.shape != scores.shape + (3,) or present.shape != scores.shape:
        raise ValueError(
            f"need scores [B, M], probs [B, M, 3], present [B, M]; got {scores.shape}, {probs.shape}, {present.shape}"
        )
    own = np.take_along_axis(probs, score_to_class(scores)[..., None], -1)[..., 0]
    w = np.where(present, own, 0.0)
    wsum = w.sum(1)
    some = wsum > 0
    out_s = np.full(len(scores), float(prior_score))
    out_p = np.tile(np.asarray(prior_probs, np.float64), (len(scores), 1))
    out_s[some] = (w * scores).sum(1)[some] / wsum[some]
    out_p[some] = np.einsum("bm,bmc->bc", w, probs)[some] / wsum[some, None]
    return out_s, out_p
