"""The sentiment timeline: score with its confidence band, class probabilities and each
sensor's health, with fault intervals shaded. Used by the simulator and the UI."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from models.types import MODALITIES, SENTIMENT_CLASSES  # noqa: E402

STATE_COLOURS = {"OK": "#2ca02c", "DEGRADED": "#ff9f1c", "DROPPED": "#d62728"}
CLASS_COLOURS = {"negative": "#d62728", "neutral": "#9e9e9e", "positive": "#1f77b4"}
FAULT_COLOURS = {"vision": "#9467bd", "audio": "#17becf", "text": "#bcbd22"}


def confidence_band(score: np.ndarray, confidence: np.ndarray, width: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """score +- width * (1 - confidence): the band narrows as the model grows sure."""
    half = width * (1.0 - confidence)
    return np.clip(score - half, -3, 3), np.clip(score + half, -3, 3)


def timeline_figure(rows: list[dict], faults=(), title: str = "", horizon: float | None = None):
    """A matplotlib figure of windows given as ``WindowResult.to_json()`` dicts; ``faults``:
    ``streaming.faults.Fault`` objects (or (modality, label, start, end) tuples) to shade.
    ``horizon``: show only the last so many seconds."""
    # a Figure of its own, not pyplot's global state: the UI draws from several threads
    fig = Figure(figsize=(10, 6.2))
    axes = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.4, 1.2]})
    ax, axp, axh = axes
    if rows:
        t = np.array([r["t_end"] for r in rows], float)
        s = np.array([r["score"] for r in rows], float)  # None (no data) -> NaN: a gap in the line
        c = np.array([r["confidence"] for r in rows], float)
        lo, hi = confidence_band(s, c)
        ax.fill_between(t, lo, hi, color="#1f77b4", alpha=0.18, step=None, label="confidence band")
        ax.plot(t, s, "-o", color="#1f77b4", ms=3, lw=1.5, label="fused score (window)")
        if all("smoothed_score" in r for r in rows):
            sm = np.array([r["smoothed_score"] for r in rows], float)
            ax.plot(t, sm, "-", color="#ff7f0e", lw=2.2, label="smoothed")
        # each window stands for the stretch since the previous window's end (the first, and
        # a recording shorter than one window, for its own span)
        t0 = np.array([r.get("t_start", r["t_end"] - 1.0) for r in rows], float)
        left = np.maximum(t0, np.concatenate([[-np.inf], t[:-1]]))
        width = np.maximum(t - left, 1e-3)
        # a no-data window (``no_data``: no modality usable) has no estimate: a gap, not a bar
        probs = np.nan_to_num(np.array([[r["confidences"][k] for k in SENTIMENT_CLASSES] for r in rows], float))
        bottom = np.zeros(len(rows))
        for j, k in enumerate(SENTIMENT_CLASSES):
            axp.bar(left, probs[:, j], width, bottom=bottom, align="edge", color=CLASS_COLOURS[k], label=k, alpha=0.8, lw=0)
            bottom += probs[:, j]
        for i, m in enumerate(MODALITIES):
            states = [r["modalities"][m.value]["state"] for r in rows]
            for a, w, st in zip(left, width, states):
                axh.barh(i, w, left=a, color=STATE_COLOURS.get(st, "#777"), height=0.7, edgecolor="none")
        first = min(t0.min(), t.min() - 3)
        x0 = first if horizon is None else max(t.max() - horizon, first)
        ax.set_xlim(x0, t.max() + 0.2)
    x_lo = ax.get_xlim()[0] if rows else -math.inf
    spans = []
    for f in faults:
        m, label, a, b = (f.modality.value, f.kind.value, f.start, f.end) if hasattr(f, "kind") else f
        if math.isinf(b):
            b = rows[-1]["t_end"] if rows else a + 1
        a = max(a, x_lo)  # only the part inside the shown stretch
        if b <= a:
            continue
        for axis in axes:
            axis.axvspan(a, b, color=FAULT_COLOURS.get(m, "#999"), alpha=0.15, lw=0)
        spans.append((m, f"{m}:{label}", a, b))
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
    fig.tight_layout()
    if spans:
        fault_labels(ax, spans)
    return fig


#: the gid of a fault label's text (tests and callers find the labels by it)
FAULT_LABEL_GID = "fault-label"


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
            )
        )
        t.set_transform(blend)
        t.set_position((inv.transform([[cx, 0]])[0, 0], top - lane_h / 2))
    return texts


def save_timeline(rows: list[dict], path, faults=(), title: str = "") -> None:
    fig = timeline_figure(rows, faults, title)
    fig.savefig(path, dpi=110)
