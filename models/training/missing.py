"""Missing-data schemes: which tokens, frames and whole modalities a sample loses.

LNLN's random data missing: every step inside the valid length is dropped independently
with probability r. Text drops become [UNK] (``models.features.text``); audio and vision
drops become steps marked not valid (zero features, never read). In training each sample
and modality draws r ~ U(0, 1) and a random half of the samples keep r = 0; on top of that
whole modalities are dropped, as a failing sensor would. In testing one r is used for all.

In: validity masks and a random generator; out: masks with steps dropped, per-sample
rates [n, 3] and presence flags [n, 3] (used by the trainers, ``models.training.composed``
and the evaluation).
"""

from __future__ import annotations

import itertools

import numpy as np

#: The 7 non-empty modality subsets, as (text, audio, vision) presence flags.
SUBSETS: tuple[tuple[bool, bool, bool], ...] = tuple(s for s in itertools.product((True, False), repeat=3) if any(s))
SUBSET_NAMES = {s: "+".join(n for n, on in zip(("T", "A", "V"), s) if on) for s in SUBSETS}
TEST_RATES = tuple(round(0.1 * i, 1) for i in range(10))


def drop_steps(valid: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of the bool mask ``valid`` with each valid step cleared with probability ``rate``."""
    valid = np.asarray(valid, dtype=bool)
    if not 0.0 <= rate <= 1.0:
        raise ValueError("rate must lie in [0, 1]")
    if rate == 0:
        return valid.copy()
    return valid & (rng.random(valid.shape) >= rate)


def draw_rates(n: int, rng: np.random.Generator, p_complete: float = 0.5) -> np.ndarray:
    """[n, 3] per-sample, per-modality missing rates: r ~ U(0, 1), all zero for a
    ``p_complete`` share of the samples."""
    rates = rng.uniform(0.0, 1.0, (n, 3))
    rates[rng.random(n) < p_complete] = 0.0
    return rates


def draw_presence(n: int, rng: np.random.Generator, p_partial: float = 0.4, p_none: float = 0.02) -> np.ndarray:
    """[n, 3] bool presence of (text, audio, vision): all three, else with probability
    ``p_partial`` one of the six smaller non-empty subsets, with ``p_none`` none at all."""
    out = np.ones((n, 3), bool)
    u = rng.random(n)
    partial = u < p_partial
    choices = np.array(SUBSETS[1:], bool)  # SUBSETS[0] is all three
    out[partial] = choices[rng.integers(0, len(choices), partial.sum())]
    out[u > 1.0 - p_none] = False
    return out
