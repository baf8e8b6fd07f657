"""The sentiment timeline: what it shows (``timeline_data``) and a light drawing of it for the
page (``timeline_svg``).

The timeline shows the fused score with its confidence band and the smoothed score, the
class probabilities, each sensor's health, and the faults injected, over the latest windows.
``streaming.plot`` draws it with matplotlib for files (the simulator's PNG); the live page
gets ``timeline_svg``: an SVG document (about 26 kB for 120 windows) that the browser
draws, built in 4 ms where a matplotlib figure takes about 200 ms of the server's CPU to
render (on the 2-core EPYC, 120 windows), which with many sessions was the server's largest
cost (a quarter of its samples with 6 sessions; docs/http-load.md).

    data = timeline_data(results, faults, horizon=90)   # WindowResult objects, oldest first
    html = timeline_svg(data)                           # <svg ...> for a gr.HTML
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.types import MODALITIES, SENTIMENT_CLASSES
from streaming.types import HealthStatus, WindowResult

STATE_COLOURS = {"OK": "#2ca02c", "DEGRADED": "#ff9f1c", "DROPPED": "#d62728"}
CLASS_COLOURS = {"negative": "#d62728", "neutral": "#9e9e9e", "positive": "#1f77b4"}
FAULT_COLOURS = {"vision": "#9467bd", "audio": "#17becf", "text": "#bcbd22"}
SCORE_COLOUR, SMOOTH_COLOUR = "#1f77b4", "#ff7f0e"


def confidence_band(score: np.ndarray, confidence: np.ndarray, width: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """score +- width * (1 - confidence): the band narrows as the model grows sure."""
    half = width * (1.0 - confidence)
    return np.clip(score - half, -3, 3), np.clip(score + half, -3, 3)


def band_polygons(t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """The band's polygons ([K, 2] points) between ``lo`` and ``hi`` over ``t``, one per run
    of windows with a score (a no-data window leaves a gap)."""
    ok = np.isfinite(lo) & np.isfinite(hi)
    polys, i = [], 0
    while i < len(t):
        if not ok[i]:
            i += 1
            continue
        j = i
        while j < len(t) and ok[j]:
            j += 1
        xs = np.concatenate([t[i:j], t[i:j][::-1]])
        ys = np.concatenate([lo[i:j], hi[i:j][::-1]])
        polys.append(np.stack([xs, ys], 1))
        i = j
    return polys


@dataclass
class TimelineData:
    """The timeline of some windows, as arrays (one entry per window, oldest first). A
    no-data window has NaN scores and zero probabilities (a gap, not a point). Each window's
    bars cover ``left`` to ``left + width``: the stretch since the previous window's end
    (the first, and a recording shorter than a window, its own span). ``health``: a colour
    per window for each modality of ``models.types.MODALITIES``. ``x0``-``x1``: the stretch
    shown; ``faults``: (modality, label, start, end) inside it."""

    t: np.ndarray
    left: np.ndarray
    width: np.ndarray
    score: np.ndarray
    confidence: np.ndarray
    smoothed: np.ndarray
    probs: np.ndarray
    health: list[list[str]]
    x0: float
    x1: float
    faults: list[tuple[str, str, float, float]] = field(default_factory=list)

    @property
    def band(self) -> tuple[np.ndarray, np.ndarray]:
        return confidence_band(self.score, self.confidence)


def timeline_data(results: Sequence[WindowResult], faults=(), horizon: float | None = None) -> TimelineData:
    """The timeline of ``results`` (only the last ``horizon`` seconds shown, when given) and
    ``faults`` (``streaming.faults.Fault`` objects or (modality, label, start, end) tuples;
    an open end runs to the last window)."""
    results = list(results)
    n = len(results)
    t = np.array([w.t_end for w in results], float)
    t0 = np.array([w.t_start for w in results], float)
    empty = np.array([w.no_data for w in results], bool)
    score = np.where(empty, np.nan, [w.result.score for w in results]) if n else np.zeros(0)
    conf = np.where(empty, np.nan, [w.result.confidence for w in results]) if n else np.zeros(0)
    smoothed = np.where(empty, np.nan, [w.current.score for w in results]) if n else np.zeros(0)
    probs = np.array([w.result.probs for w in results], float).reshape(n, len(SENTIMENT_CLASSES))
    probs[empty] = 0.0
    left = np.maximum(t0, np.concatenate([[-np.inf], t[:-1]])) if n else np.zeros(0)
    width = np.maximum(t - left, 1e-3)
    health = [[STATE_COLOURS.get(w.health.get(m, HealthStatus()).state.value, "#777") for w in results] for m in MODALITIES]
    if n:
        first = min(t0.min(), t.min() - 3)
        x0 = first if horizon is None else max(t.max() - horizon, first)
        x1 = t.max() + 0.2
    else:
        x0, x1 = 0.0, 1.0
    spans = []
    for f in faults:
        m, label, a, b = (f.modality.value, f.kind.value, f.start, f.end) if hasattr(f, "kind") else f
        if math.isinf(b):
            b = results[-1].t_end if results else a + 1
        a = max(a, x0) if n else a
        if b <= a:
            continue
        spans.append((m, f"{m}:{label}", float(a), float(b)))
    return TimelineData(t, left, width, score, conf, smoothed, probs, health, float(x0), float(x1), spans)


# -- the SVG drawing --------------------------------------------------------------------

W, LEFT, RIGHT = 760, 58, 10  # width and margins, px
TOP, SCORE_H, GAP, PROB_H, LANE_H = 26, 190, 10, 70, 16
LABEL_H = 14  # a fault label's lane
FONT = "font-family='sans-serif' font-size='11'"
CHAR_W = 6.2  # approximate width of a character at that size, px


def _ticks(x0: float, x1: float, most: int = 9) -> list[float]:
    span = max(x1 - x0, 1e-6)
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800) if span / s <= most), 3600)
    return [k * step for k in range(math.ceil(x0 / step), math.floor(x1 / step) + 1)]


def _fault_lanes(spans: list[tuple[float, float, float]]) -> list[int]:
    """A lane per (left, right, _) extent in px, greedily, so no two in a lane touch."""
    ends: list[float] = []
    lanes = [0] * len(spans)
    for i in sorted(range(len(spans)), key=lambda k: spans[k][:2]):
        left, right, _ = spans[i]
        for k, end in enumerate(ends):
            if left >= end + 6:
                ends[k], lanes[i] = right, k
                break
        else:
            lanes[i] = len(ends)
            ends.append(right)
    return lanes


def _path(xs: np.ndarray, ys: np.ndarray) -> str:
    """An SVG path through the finite points, broken at NaN."""
    out, pen = [], "M"
    for x, y in zip(xs, ys):
        if not (math.isfinite(x) and math.isfinite(y)):
            pen = "M"
            continue
        out.append(f"{pen}{x:.1f},{y:.1f}")
        pen = "L"
    return "".join(out)


def timeline_svg(data: TimelineData, title: str = "") -> str:
    """``data`` drawn as an SVG document (a string, for a ``gr.HTML``): the score panel
    (score, smoothed score, confidence band, faults shaded and labelled), the class
    probabilities, the health lanes, and the time axis."""
    lanes_top = TOP + SCORE_H + GAP + PROB_H + GAP
    axis_y = lanes_top + LANE_H * len(MODALITIES)
    height = axis_y + 32
    x0, x1 = data.x0, data.x1
    plot_w = W - LEFT - RIGHT

    def X(v):  # time -> px
        return LEFT + (np.asarray(v, float) - x0) / max(x1 - x0, 1e-6) * plot_w

    def Y(s):  # score -> px
        return TOP + (3.0 - np.clip(np.asarray(s, float), -3, 3)) / 6.0 * SCORE_H

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {W} {height}' width='100%' role='img' "
        f"aria-label='sentiment timeline' class='timeline' {FONT}>",
        f"<defs><clipPath id='plot'><rect x='{LEFT}' y='0' width='{plot_w}' height='{height}'/></clipPath></defs>",
        f"<rect width='{W}' height='{height}' fill='#fff'/>",
    ]
    legend = [(SCORE_COLOUR, "fused score (window)"), (SMOOTH_COLOUR, "smoothed")]
    legend += [(CLASS_COLOURS[k], k) for k in SENTIMENT_CLASSES]
    x = LEFT
    if title:
        out.append(f"<text x='{LEFT}' y='12' font-weight='bold'>{html.escape(title)}</text>")
        x += CHAR_W * len(title) + 16
    for colour, name in legend:
        out.append(f"<rect x='{x:.0f}' y='4' width='12' height='10' fill='{colour}'/>")
        out.append(f"<text x='{x + 16:.0f}' y='13'>{name}</text>")
        x += 24 + CHAR_W * len(name)
    # panels and their axes
    out.append(f"<rect x='{LEFT}' y='{TOP}' width='{plot_w}' height='{SCORE_H}' fill='none' stroke='#bbb'/>")
    for s in (-3, -2, -1, 0, 1, 2, 3):
        y = float(Y(s))
        dash = "" if s == 0 else " stroke-dasharray='2,3'"
        out.append(f"<line x1='{LEFT}' x2='{W - RIGHT}' y1='{y:.1f}' y2='{y:.1f}' stroke='#ccc'{dash}/>")
        out.append(f"<text x='{LEFT - 6}' y='{y + 4:.1f}' text-anchor='end'>{s:+d}</text>".replace("+0<", "0<"))
    out.append(f"<text transform='translate(12,{TOP + SCORE_H / 2:.0f}) rotate(-90)' text-anchor='middle'>sentiment score</text>")
    prob_top = TOP + SCORE_H + GAP
    out.append(f"<rect x='{LEFT}' y='{prob_top}' width='{plot_w}' height='{PROB_H}' fill='none' stroke='#bbb'/>")
    out.append(f"<text x='{LEFT - 6}' y='{prob_top + PROB_H / 2 + 4:.0f}' text-anchor='end'>class p</text>")
    for i, m in enumerate(MODALITIES):
        out.append(f"<text x='{LEFT - 6}' y='{lanes_top + i * LANE_H + 12}' text-anchor='end'>{m.value}</text>")
    body = ["<g clip-path='url(#plot)'>"]
    labels = []  # drawn over the data
    # faults: shaded through every panel, labelled in lanes at the top of the score panel
    if data.faults:
        ext = []
        for _, label, a, b in data.faults:
            pa, pb = float(X(a)), float(X(b))
            w = CHAR_W * len(label) + 6
            cx = min(max((pa + pb) / 2, LEFT + w / 2 + 1), W - RIGHT - w / 2 - 1)
            ext.append((min(pa, cx - w / 2), max(pb, cx + w / 2), cx))
        for (m, label, a, b), lane, (_, _, cx) in zip(data.faults, _fault_lanes(ext), ext):
            colour = FAULT_COLOURS.get(m, "#999")
            pa, pb = float(X(a)), float(X(b))
            body.append(
                f"<rect x='{pa:.1f}' y='{TOP}' width='{max(pb - pa, 1):.1f}' height='{axis_y - TOP}' "
                f"fill='{colour}' fill-opacity='0.15' class='fault-span'/>"
            )
            y = TOP + 1 + lane * (LABEL_H + 2)
            body.append(
                f"<rect x='{pa:.1f}' y='{y}' width='{max(pb - pa, 1):.1f}' height='{LABEL_H}' fill='{colour}' "
                f"fill-opacity='0.45' class='fault-band'/>"
            )
            labels.append(f"<text x='{cx:.1f}' y='{y + 11}' text-anchor='middle' class='fault-label'>{html.escape(label)}</text>")
    if len(data.t):
        lo, hi = data.band
        for poly in band_polygons(X(data.t), Y(lo), Y(hi)):
            pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in poly)
            body.append(f"<polygon points='{pts}' fill='{SCORE_COLOUR}' fill-opacity='0.18'/>")
        body.append(f"<path d='{_path(X(data.t), Y(data.score))}' fill='none' stroke='{SCORE_COLOUR}' stroke-width='1.5'/>")
        for x, y in zip(X(data.t), Y(data.score)):
            if math.isfinite(y):
                body.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.2' fill='{SCORE_COLOUR}'/>")
        body.append(
            f"<path d='{_path(X(data.t), Y(data.smoothed))}' fill='none' stroke='{SMOOTH_COLOUR}' stroke-width='2.2' "
            "class='smoothed'/>"
        )
        # class probabilities, stacked (one path of rectangles per class); health lanes (a
        # rectangle per run of windows in one state)
        left, right = X(data.left), X(data.left + data.width)
        bottom = np.zeros(len(data.t))
        for k, name in enumerate(SENTIMENT_CLASSES):
            d = [
                f"M{a:.1f},{prob_top + PROB_H * (1 - lo_ - p):.1f}h{max(b - a, 0.5):.1f}v{PROB_H * p:.1f}h{-max(b - a, 0.5):.1f}z"
                for a, b, lo_, p in zip(left, right, bottom, data.probs[:, k])
                if p > 0
            ]
            body.append(f"<path d='{''.join(d)}' fill='{CLASS_COLOURS[name]}' fill-opacity='0.8'/>")
            bottom = bottom + data.probs[:, k]
        for i, colours in enumerate(data.health):
            y = lanes_top + i * LANE_H + 2
            j = 0
            while j < len(colours):
                k = j
                while k + 1 < len(colours) and colours[k + 1] == colours[j] and abs(data.left[k + 1] - data.t[k]) < 1e-6:
                    k += 1
                a, b = float(left[j]), float(right[k])
                body.append(
                    f"<rect x='{a:.1f}' y='{y}' width='{max(b - a - 0.5, 0.5):.1f}' height='{LANE_H - 4}' fill='{colours[j]}'/>"
                )
                j = k + 1
    body.append("</g>")
    out += body + labels
    for v in _ticks(x0, x1):
        x = float(X(v))
        out.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{axis_y}' y2='{axis_y + 4}' stroke='#555'/>")
        out.append(f"<text x='{x:.1f}' y='{axis_y + 16}' text-anchor='middle'>{v:g}</text>")
    out.append(f"<text x='{W - RIGHT}' y='{axis_y + 29}' text-anchor='end'>time (s, window end)</text>")
    out.append(f"<text x='{LEFT}' y='{axis_y + 29}'>sensor health: green OK, orange DEGRADED, red DROPPED</text></svg>")
    return "".join(out)


__all__ = ["TimelineData", "band_polygons", "confidence_band", "timeline_data", "timeline_svg"]
