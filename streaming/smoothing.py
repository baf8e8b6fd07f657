"""Temporal smoothing of the window results: the live estimate carries earlier windows.

Windows overlap (3 s, one every 1 s), yet one window's answer can swing: a word misheard,
a face turned away. ``Smoother`` keeps the last ``windows`` results (3 by default) and
reports, for each new window, the one among them whose score is the median:

- a one-window excursion never passes (it is never the median of three);
- a change that lasts two windows passes one hop after the first of them (with the
  default of three; in general after ``windows // 2`` hops);
- the smoothed result is one window's own result (score, probabilities, modality
  estimates), so it is as coherent as any window's; nothing is averaged into a value no
  window had.

A window where no modality reached the fusion (the prior) clears the history: old
evidence is not carried across a stretch with no sensor. Both the window's own estimate
and the smoothed one travel on in ``WindowResult`` (``result`` and ``smoothed``), into the
JSONL and the UI.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from models.types import SentimentResult


@dataclass
class SmoothingConfig:
    windows: int = 3  # how many of the latest windows the median is taken over (1: off)

    def __post_init__(self) -> None:
        if not 1 <= int(self.windows) <= 15:
            raise ValueError(f"smoothing windows must be 1-15, not {self.windows!r}")
        self.windows = int(self.windows)


class Smoother:
    """``update(result)`` -> the smoothed result after that window (see the module docstring)."""

    def __init__(self, cfg: SmoothingConfig | None = None):
        self.cfg = cfg or SmoothingConfig()
        self._recent: deque[SentimentResult] = deque(maxlen=self.cfg.windows)

    def update(self, result: SentimentResult) -> SentimentResult:
        if not result.used:
            self._recent.clear()
            return result
        self._recent.append(result)
        order = sorted(range(len(self._recent)), key=lambda i: self._recent[i].score)
        n = len(order)
        if n % 2:
            return self._recent[order[n // 2]]
        # an even count (a history still filling up): of the two middle ones the older, so
        # a single new window does not move the estimate
        return self._recent[min(order[n // 2 - 1], order[n // 2])]

    def reset(self) -> None:
        self._recent.clear()
