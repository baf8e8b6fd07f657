"""Windowing: the three streams on one clock, cut into overlapping windows.

``AudioTrack`` keeps the last seconds of 16 kHz samples at their absolute positions on the
pipeline clock, with a per-sample flag that says whether a real, usable sample is there
(gaps and rejected chunks are not). ``VisionTrack`` keeps the analysed frames (face crop or
None, the frame's check). ``Windower`` says which windows are due as the clock advances:
windows of ``window_s`` seconds ending every ``hop_s`` seconds (ends at multiples of the hop),
and at the end of a stream one final window over what the grid windows left (``tail``),
also for a recording shorter than one window.
Text is cut from the recogniser's words by time (``words_in``), with ``context_s`` of
look-back because a sentence says more than the three seconds it ends in.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from models.features.audio import HOP, SAMPLE_RATE
from streaming.checks import Check
from streaming.types import Word


class AudioTrack:
    """Float32 samples and validity flags on the absolute sample grid of the pipeline clock."""

    def __init__(self, keep_s: float = 12.0, rate: int = SAMPLE_RATE):
        self.rate = rate
        self.keep = int(keep_s * rate)
        self._start = 0  # absolute index of _buf[0]
        self._buf = np.zeros(0, np.float32)
        self._ok = np.zeros(0, bool)

    def write(self, t: float, samples: np.ndarray, usable: bool = True) -> None:
        """Places samples starting at clock time t (usable=False keeps the place marked as a gap)."""
        i0 = int(round(t * self.rate))
        n = len(samples)
        if not len(self._buf):
            self._start = i0
        end = i0 + n
        if end - self._start > len(self._buf):  # grow, marking the new room as a gap
            grow = end - self._start - len(self._buf)
            self._buf = np.concatenate([self._buf, np.zeros(grow, np.float32)])
            self._ok = np.concatenate([self._ok, np.zeros(grow, bool)])
        a, b = i0 - self._start, end - self._start
        skip = max(0, -a)  # samples older than the buffer are lost
        if skip < n:
            self._buf[a + skip : b] = samples[skip:] if usable else 0.0
            self._ok[a + skip : b] = usable
        over = len(self._buf) - self.keep
        if over > 0:
            self._buf, self._ok = self._buf[over:], self._ok[over:]
            self._start += over

    def read(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
        """(samples, valid) of [start, end); what the track does not hold is a gap."""
        i0, i1 = int(round(start * self.rate)), int(round(end * self.rate))
        out = np.zeros(i1 - i0, np.float32)
        ok = np.zeros(i1 - i0, bool)
        a, b = max(i0, self._start), min(i1, self._start + len(self._buf))
        if b > a:
            out[a - i0 : b - i0] = self._buf[a - self._start : b - self._start]
            ok[a - i0 : b - i0] = self._ok[a - self._start : b - self._start]
        return out, ok

    @staticmethod
    def frame_valid(ok: np.ndarray, hop: int = HOP) -> np.ndarray:
        """Per 20 ms feature frame: True when most of its samples are real."""
        n = -(-len(ok) // hop)
        padded = np.zeros(n * hop, bool)
        padded[: len(ok)] = ok
        return padded.reshape(n, hop).mean(1) >= 0.5


@dataclass
class AnalysedFrame:
    t: float
    crop: np.ndarray | None  # aligned 48x48 face, None when the frame is unusable
    check: Check
    features: np.ndarray | None = None  # face-encoder output, filled when the frame arrives


class VisionTrack:
    """Analysed frames of the last ``keep_s`` seconds, in time order."""

    def __init__(self, keep_s: float = 12.0):
        self.keep_s = keep_s
        self.frames: deque[AnalysedFrame] = deque()

    def add(self, frame: AnalysedFrame) -> None:
        self.frames.append(frame)
        if len(self.frames) > 1 and frame.t < self.frames[-2].t:  # a late frame: keep order
            self.frames = deque(sorted(self.frames, key=lambda f: f.t))
        while self.frames and self.frames[-1].t - self.frames[0].t > self.keep_s:
            self.frames.popleft()

    def restate(self, start: float, end: float, check: Check) -> None:
        """The frames captured in [start, end) are unusable after all (``check``: why): their
        face crops and features are forgotten, so no window reads them."""
        for f in self.frames:
            if start <= f.t < end:
                f.check, f.crop, f.features = check, None, None

    def window(self, start: float, end: float, n: int) -> list[AnalysedFrame]:
        """At most n frames of [start, end), evenly spread."""
        fs = [f for f in self.frames if start <= f.t < end]
        if len(fs) > n:
            idx = np.linspace(0, len(fs) - 1, n).round().astype(int)
            fs = [fs[i] for i in idx]
        return fs


def words_in(words: list[Word], start: float, end: float) -> list[Word]:
    return [w for w in words if w.end > start and w.start < end]


class Windower:
    """Which windows [end - window_s, end) are due once the clock reads ``now``.

    Windows end on the hop grid. ``tail(end)`` closes a stream: the last stretch that no
    window has ended on yet (a recording shorter than one window, or the seconds after the
    last grid window) becomes one final window of its true length, ``[max(origin, end -
    window_s), end)``, where ``origin`` is the time the stream began."""

    def __init__(self, window_s: float = 3.0, hop_s: float = 1.0, min_tail_s: float = 0.25):
        if not (0 < hop_s <= window_s):
            raise ValueError(f"need 0 < hop <= window, got hop {hop_s}, window {window_s}")
        self.window_s, self.hop_s, self.min_tail_s = window_s, hop_s, min_tail_s
        self._next_end: float | None = None
        self.origin: float | None = None  # when the stream began (the first clock reading)
        self.last_end: float | None = None  # end of the latest window given out

    def due(self, now: float) -> list[tuple[float, float]]:
        if self._next_end is None:
            self.origin = now
            # the first window ends on the hop grid, one window length after the clock started
            self._next_end = math.ceil((now + self.window_s) / self.hop_s - 1e-9) * self.hop_s
        out = []
        while now >= self._next_end - 1e-9:
            out.append((self._next_end - self.window_s, self._next_end))
            self.last_end = self._next_end
            self._next_end += self.hop_s
        return out

    def tail(self, end: float) -> tuple[float, float] | None:
        """The final window of a stream whose data end at ``end``, or None when the windows
        given out already reach within ``min_tail_s`` of it (or nothing ever came)."""
        if self.origin is None or end - self.origin < 1e-6:
            return None
        if self.last_end is not None and end - self.last_end < self.min_tail_s:
            return None
        start = max(self.origin, end - self.window_s)
        self.last_end = end  # the grid goes on unchanged should more data come
        return start, end
