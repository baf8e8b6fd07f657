"""Keep the weights of the best validation epoch.

In: after each epoch, the epoch's validation score and the model; out: the best score so
far and a CPU copy of the state dict that gave it, loaded back with ``restore``.

The stages differ in which way is better and in what a tie does, so both are parameters:

    text encoder    lower MAE is better, a tie keeps the earlier epoch
    speech, face    higher accuracy is better, a tie takes the later epoch
    fusion, head    lower MAE + (1 - Acc-3) is better, a tie keeps the earlier epoch

A score that compares false either way (NaN) is never kept.
"""

from __future__ import annotations

import math

import torch


class BestWeights:
    """The best score so far (``score``) and a copy of the weights that gave it (``state``).

    lower_is_better: True for a loss or an error, False for an accuracy.
    take_ties: a score equal to the best replaces it (the later epoch wins); otherwise the
    earlier epoch stays.
    """

    def __init__(self, lower_is_better: bool, take_ties: bool = False):
        self.lower_is_better = lower_is_better
        self.take_ties = take_ties
        self.score = math.inf if lower_is_better else -math.inf
        self.state: dict[str, torch.Tensor] | None = None

    def better(self, score: float) -> bool:
        """Whether ``score`` would replace the best one."""
        if self.lower_is_better:
            return score <= self.score if self.take_ties else score < self.score
        return score >= self.score if self.take_ties else score > self.score

    def keep(self, score: float, model: torch.nn.Module) -> None:
        """Keeps ``score`` and a CPU copy of ``model``'s weights, whatever the best was."""
        self.score = score
        self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def update(self, score: float, model: torch.nn.Module) -> bool:
        """Keeps ``score`` and ``model``'s weights when the score is better; says whether it was."""
        if not self.better(score):
            return False
        self.keep(score, model)
        return True

    def restore(self, model: torch.nn.Module) -> None:
        """Loads the kept weights into ``model``."""
        if self.state is None:
            raise RuntimeError("no validation score was kept (every score was NaN?)")
        model.load_state_dict(self.state)
