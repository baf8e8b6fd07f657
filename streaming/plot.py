"""The sentiment timeline drawn with matplotlib, for files (the simulator's PNG): score with
its confidence band, class probabilities and each sensor's health, with fault intervals
shaded. What it shows comes from ``streaming.timeline.timeline_data``; the live page draws
the same data as SVG (``streaming.timeline.timeline_svg``).

``Timeline`` keeps one figure and moves its artists to new windows; ``timeline_figure``
draws a figure once."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from models.types import MODALITIES, SENTIMENT_CLASSES  # noqa: E402
from streaming.timeline import CLASS_COLOURS, FAULT_COLOURS, band_polygons, timeline_data  # noqa: E402
from streaming.types import WindowResult  # noqa: E402

#: the gid of a fault label's text (tests and callers find the labels by it)
FAULT_LABEL_GID = "fault-label"
_FAULT_GIDS = (FAULT_LABEL_GID, "fault-band", "fault-span")  # redrawn on every update


def _rects(left: np.ndarray, width: np.ndarray, bottom, height) -> np.ndarray:
    """[N, 4, 2] rectangle corners for a PolyCollection."""
    left, width = np.asarray(left, float), np.asarray(width, float)
    bottom = np.broadcast_to(np.asarray(bottom, float), left.shape)
    height = np.broadcast_to(np.asarray(height, float), left.shape)
    x = np.stack([left, left, left + width, left + width], 1)
    y = np.stack([bottom, bottom + height, bottom + height, bottom], 1)
    return np.stack([x, y], -1)


class Timeline:
    """One timeline figure, kept and updated: ``update(results, faults, horizon)`` moves its
    lines and bars to the windows given (``WindowResult`` objects, oldest first) and shades
    ``faults`` (``streaming.faults.Fault`` objects or (modality, label, start, end) tuples);
    ``figure`` is the matplotlib figure. The layout is fitted on the first update that has
    windows, and kept: an update only sets data, so it costs a few milliseconds where
    building the figure costs about a second (``python -m streaming.plot --bench``)."""

    def __init__(self, title: str = "") -> None:
        # a Figure of its own, not pyplot's global state: the UI draws from several threads.
        # ``lock``: held by ``update``; a caller that renders the figure while other threads
        # may update it holds it too (``app.views``)
        self.lock = threading.RLock()
        fig = self.figure = Figure(figsize=(10, 6.2))
        axes = self.axes = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.4, 1.2]})
        ax, axp, axh = axes
        self.band = PolyCollection([], color="#1f77b4", alpha=0.18, lw=0, label="confidence band")
        ax.add_collection(self.band, autolim=False)
        (self.line,) = ax.plot([], [], "-o", color="#1f77b4", ms=3, lw=1.5, label="fused score (window)")
        (self.smooth,) = ax.plot([], [], "-", color="#ff7f0e", lw=2.2, label="smoothed")
        self.bars = []
        for k in SENTIMENT_CLASSES:
            c = PolyCollection([], facecolor=CLASS_COLOURS[k], alpha=0.8, lw=0, label=k)
            axp.add_collection(c, autolim=False)
            self.bars.append(c)
        self.health = PolyCollection([], lw=0)
        axh.add_collection(self.health, autolim=False)
        ax.axhline(0, color="#999", lw=0.8)
        ax.set_ylim(-3.05, 3.05)
        ax.set_ylabel("sentiment score")
        ax.legend(loc="lower left", fontsize=8)
        axp.set_ylim(0, 1)
        axp.set_ylabel("class prob.")
        axp.legend(loc="lower left", fontsize=7, ncol=3)
        axh.set_yticks(range(len(MODALITIES)), [m.value for m in MODALITIES])
        axh.set_ylim(-0.6, len(MODALITIES) - 0.4)
        axh.set_xlabel("time (s, window end)")
        axh.set_title("sensor health: green OK, orange DEGRADED, red DROPPED", fontsize=8, loc="left")
        if title:
            ax.set_title(title)
        self._laid_out = False

    def update(self, results: Sequence[WindowResult], faults=(), horizon: float | None = None) -> Figure:
        """Shows ``results`` (only the last ``horizon`` seconds, when given) and ``faults``;
        returns ``figure``."""
        with self.lock:
            self._draw(list(results), list(faults), horizon)
        return self.figure

    def _draw(self, results: list[WindowResult], faults: list, horizon: float | None) -> None:
        ax, axp, axh = self.axes
        for axis in self.axes:  # the last update's fault shading and labels
            for a in [*axis.patches, *axis.texts]:
                if a.get_gid() in _FAULT_GIDS:
                    a.remove()
        d = timeline_data(results, faults, horizon)
        if results:
            self.band.set_verts(band_polygons(d.t, *d.band))
            self.line.set_data(d.t, d.score)
            self.smooth.set_data(d.t, d.smoothed)
            bottom = np.zeros(len(d.t))
            for j, bars in enumerate(self.bars):
                bars.set_verts(_rects(d.left, d.width, bottom, d.probs[:, j]))
                bottom = bottom + d.probs[:, j]
            verts = [_rects(d.left, d.width, i - 0.35, 0.7) for i in range(len(MODALITIES))]
            self.health.set_verts(np.concatenate(verts))
            self.health.set_facecolor([c for colours in d.health for c in colours])
            ax.set_xlim(d.x0, d.x1)
        else:
            for artist in (self.band, *self.bars, self.health):
                artist.set_verts([])
            self.line.set_data([], [])
            self.smooth.set_data([], [])
        spans = []
        for m, label, a, b in d.faults:
            for axis in self.axes:
                axis.axvspan(a, b, color=FAULT_COLOURS.get(m, "#999"), alpha=0.15, lw=0, gid="fault-span")
            spans.append((m, label, a, b))
        if not self._laid_out:
            self.figure.tight_layout()
            self._laid_out = bool(results)
        if spans:
            fault_labels(ax, spans)


def timeline_figure(results: Sequence[WindowResult], faults=(), title: str = "", horizon: float | None = None) -> Figure:
    """A matplotlib figure of ``results`` (``WindowResult`` objects, oldest first), drawn
    once; ``faults``: ``streaming.faults.Fault`` objects (or (modality, label, start, end)
    tuples) to shade. ``horizon``: show only the last so many seconds."""
    return Timeline(title).update(results, faults, horizon)


def fault_labels(ax, spans, fontsize: float = 7.5, gap_px: float = 6.0) -> list:
    """Draws each fault of ``spans`` ((modality, label, start, end), in data x) as a band of
    its own across its interval at the top of ``ax``, labelled inside the band (the bands lie
    under the plotted lines, the labels over them).

    Faults that overlap in time, or whose labels would touch, go to separate lanes (stacked
    downwards, each one label high): a greedy interval colouring on the bands' and labels'
    extents in pixels, so no two labels or bands of a lane meet. Call it once the layout is
    final (after ``tight_layout``): the pixel sizes depend on it. Returns the label texts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.patches import Rectangle
    from matplotlib.transforms import blended_transform_factory

    fig = ax.figure
    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)  # a figure made without pyplot: give it a canvas that can measure text
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    x0, x1 = ax.get_xlim()
    to_px = ax.transData.transform
    texts, placed = [], []
    for m, label, a, b in spans:
        if min(b, x1) <= max(a, x0):
            continue  # outside the shown stretch
        t = ax.text(0, 0, label, fontsize=fontsize, color="#222", ha="center", va="center", zorder=5, gid=FAULT_LABEL_GID)
        ext = t.get_window_extent(renderer)
        pa, pb = to_px([[max(a, x0), 0], [min(b, x1), 0]])[:, 0]
        w = ext.width + 4  # a little air either side of the text
        # the label sits on its band's middle, moved inwards where it would leave the axes
        cx = min(max((pa + pb) / 2, box.x0 + w / 2 + 1), box.x1 - w / 2 - 1)
        placed.append([min(pa, cx - w / 2), max(pb, cx + w / 2), cx, ext.height, m, a, b, t])
        texts.append(t)
    if not placed:
        return texts
    lane_end: list[float] = []  # the right edge (px) of the last thing in each lane
    lanes = []
    for item in sorted(placed, key=lambda it: (it[0], it[1])):
        left, right = item[0], item[1]
        for k, end in enumerate(lane_end):
            if left >= end + gap_px:
                lane_end[k] = right
                break
        else:
            k = len(lane_end)
            lane_end.append(right)
        lanes.append((k, item))
    height_px = max(it[3] for it in placed) + 4
    lane_h = height_px / max(box.height, 1.0)  # in axes fraction
    blend = blended_transform_factory(ax.transData, ax.transAxes)
    inv = ax.transData.inverted()
    for k, (_, _, cx, _, m, a, b, t) in lanes:
        top = 1.0 - 0.01 - k * (lane_h + 2 / max(box.height, 1.0))
        ax.add_patch(
            Rectangle(
                (max(a, x0), top - lane_h),
                min(b, x1) - max(a, x0),
                lane_h,
                transform=blend,
                color=FAULT_COLOURS.get(m, "#999"),
                alpha=0.45,
                lw=0,
                zorder=1.5,
                clip_on=True,
                gid="fault-band",
            )
        )
        t.set_transform(blend)
        t.set_position((inv.transform([[cx, 0]])[0, 0], top - lane_h / 2))
    return texts


def save_timeline(results: Sequence[WindowResult], path, faults=(), title: str = "") -> None:
    timeline_figure(results, faults, title).savefig(path, dpi=110)


def bench(n: int = 120, updates: int = 10) -> dict[str, float]:
    """Milliseconds per window of the UI's timeline, as the UI draws it (the last ``n``
    windows, a 90 s horizon, two faults) and as Gradio renders it (webp): building a new
    figure each time against updating one ``Timeline``."""
    import io
    import time

    from models.types import Modality, SentimentResult
    from streaming.types import Health, HealthStatus

    rng = np.random.default_rng(0)

    def window(t: float) -> WindowResult:
        p = rng.dirichlet([2, 2, 2])
        r = SentimentResult(float(rng.uniform(-2.8, 2.8)), p, tuple(Modality))
        return WindowResult(t - 3.0, t, r, {m: HealthStatus(Health.OK) for m in MODALITIES})

    results = [window(float(t)) for t in range(3, n + 3 + updates)]
    faults = [("vision", "drop", 20, 40), ("audio", "noise", 60, math.inf)]

    def render(fig) -> None:
        with io.BytesIO() as buf:
            fig.savefig(buf, format="webp")

    out = {}
    t0 = time.perf_counter()
    for i in range(updates):
        timeline_figure(results[i : i + n], faults, horizon=90)
    out["build_ms"] = (time.perf_counter() - t0) / updates * 1000
    tl = Timeline()
    tl.update(results[:n], faults, horizon=90)
    t0 = time.perf_counter()
    for i in range(updates):
        tl.update(results[i : i + n], faults, horizon=90)
    out["update_ms"] = (time.perf_counter() - t0) / updates * 1000
    t0 = time.perf_counter()
    for _ in range(updates):
        render(tl.figure)
    out["render_ms"] = (time.perf_counter() - t0) / updates * 1000
    return out


if __name__ == "__main__":
    import argparse
    import platform

    ap = argparse.ArgumentParser(description="Time the UI's timeline: a new figure per window against one updated.")
    ap.add_argument("--bench", action="store_true", help="print milliseconds per window")
    if ap.parse_args().bench:
        figures = bench()
        print(f"{platform.processor() or platform.machine()}: " + ", ".join(f"{k} {v:.0f}" for k, v in figures.items()))
