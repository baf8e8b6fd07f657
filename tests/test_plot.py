"""The timeline plot: fault labels stay readable when faults overlap in time."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest

from streaming.plot import FAULT_LABEL_GID, timeline_figure


@pytest.fixture
def rows(make_window):
    """``rows(t_end)``: windows ending 3 .. t_end s, random scores and probabilities."""

    def make(t_end: int = 20):
        rng = np.random.default_rng(0)
        return [make_window(t, rng.uniform(-2.8, 2.8), rng.dirichlet([2, 2, 2])) for t in range(3, t_end + 1)]

    return make


def labels(fig):
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    texts = [t for t in ax.texts if t.get_gid() == FAULT_LABEL_GID]
    return texts, [t.get_window_extent(renderer) for t in texts], ax.get_window_extent(renderer)


def assert_readable(fig, expected: set[str]):
    texts, boxes, axbox = labels(fig)
    assert {t.get_text() for t in texts} == expected
    for (ta, a), (tb, b) in itertools.combinations(zip(texts, boxes), 2):
        assert not a.overlaps(b), f"{ta.get_text()!r} {a} overlaps {tb.get_text()!r} {b}"
    for t, b in zip(texts, boxes):  # inside the score plot, not cut at its edges
        assert axbox.x0 <= b.x0 and b.x1 <= axbox.x1 and axbox.y0 <= b.y0 and b.y1 <= axbox.y1, t.get_text()


def test_overlapping_scheduled_faults_have_separate_labels(tmp_path, rows):
    faults = [
        ("vision", "drop", 2, 5),
        ("audio", "noise", 4, 8),
        ("text", "outage", 6, 9),
        ("vision", "delay", 10, math.inf),
        ("audio", "freeze", 10.5, 11),
        ("audio", "blackout", 10.2, 12),
    ]
    fig = timeline_figure(rows(), faults, title="overlapping faults")
    assert_readable(fig, {f"{m}:{k}" for m, k, _, _ in faults})
    fig.savefig(tmp_path / "plot.png", dpi=110)  # still renders (and at another dpi)
    # labels of faults apart in time share the top lane
    texts, boxes, _ = labels(fig)
    y = {t.get_text(): round(b.y0) for t, b in zip(texts, boxes)}
    assert y["vision:drop"] == y["text:outage"] == y["vision:delay"]
    assert len(set(y.values())) == 3  # drop/outage/delay, noise/freeze, blackout


def test_live_faults_switched_on_at_once(rows):
    """Several live faults on from the same moment (open-ended, identical spans), as the UI
    makes them, with the horizon cutting the start of the timeline."""
    from streaming.faults import FaultInjector

    inj = FaultInjector()
    for m, k in (("vision", "noise"), ("vision", "freeze"), ("audio", "noise"), ("audio", "delay"), ("text", "outage")):
        inj.set_live(m, k, True, t=12.0)
    fig = timeline_figure(rows(30), inj.timeline(), horizon=20)
    assert_readable(fig, {"vision:noise", "vision:freeze", "audio:noise", "audio:delay", "text:outage"})


@pytest.mark.parametrize("n", [1, 8])
def test_many_short_faults_and_one(n, rows):
    faults = [("audio", "blackout", 5 + 0.2 * i, 5.3 + 0.2 * i) for i in range(n)]
    fig = timeline_figure(rows(), faults)
    texts, boxes, _ = labels(fig)
    assert len(texts) == n
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)


def test_faults_outside_the_shown_stretch_have_no_label(rows):
    fig = timeline_figure(rows(30), [("vision", "drop", 1, 3), ("audio", "noise", 20, 25)], horizon=10)
    texts, _, _ = labels(fig)
    assert [t.get_text() for t in texts] == ["audio:noise"]


def test_no_rows_still_draws_labels():
    fig = timeline_figure([], [("vision", "drop", 0, 2), ("audio", "noise", 1, 3)])
    assert_readable(fig, {"vision:drop", "audio:noise"})


def test_timeline_moves_on_with_new_windows(make_window):
    """The UI's timeline keeps one figure: an update moves its artists to the new windows,
    leaves no shading or label of the last update behind, and a no-data window is a gap."""
    from streaming.plot import Timeline

    tl = Timeline()
    first = [make_window(t, 1.0) for t in range(3, 10)]
    fig = tl.update(first, [("vision", "drop", 4, 6)], horizon=90)
    n_artists = len(fig.axes[0].get_children())
    later = first + [make_window(10, no_data=True), make_window(11, -2.0, (0.8, 0.15, 0.05))]
    assert tl.update(later, [("audio", "noise", 9, math.inf)], horizon=5) is fig
    assert len(fig.axes[0].get_children()) == n_artists  # the drop's span and label replaced by the noise's
    assert [t.get_text() for t in labels(fig)[0]] == ["audio:noise"]
    x, y = tl.line.get_data()
    assert list(x) == [float(t) for t in range(3, 12)] and np.isnan(y[-2]) and y[-1] == -2.0
    assert fig.axes[0].get_xlim() == pytest.approx((6.0, 11.2))  # the last 5 s
    # the class bars: one rectangle per window, the no-data one empty, the last mostly negative
    neg = tl.bars[0].get_paths()
    assert len(neg) == len(later) and np.ptp(neg[-2].vertices[:, 1]) == 0 and np.ptp(neg[-1].vertices[:, 1]) == pytest.approx(0.8)
    fig.savefig(io.BytesIO(), format="webp")  # renders as Gradio does


def test_the_page_timeline_is_an_svg_of_the_same_data(make_window):
    """The live page's timeline (``streaming.timeline``, an SVG the browser draws) shows the
    same windows, stretch and faults as the matplotlib one; a no-data window is a gap, the
    health lanes keep their states, and a recogniser's text in a label cannot inject markup."""
    import xml.etree.ElementTree as ET

    from streaming.plot import Timeline
    from streaming.timeline import timeline_data, timeline_svg

    rows = [make_window(t, 1.0) for t in range(3, 10)]
    rows += [make_window(10, no_data=True), make_window(11, -2.0, (0.8, 0.15, 0.05), states={"audio": "DROPPED"})]
    faults = [("audio", "noise", 9, math.inf), ("vision", "<b>x</b>", 2, 4)]
    data = timeline_data(rows, faults, horizon=5)
    fig = Timeline().update(rows, faults, horizon=5)
    assert (data.x0, data.x1) == pytest.approx(fig.axes[0].get_xlim())
    assert np.isnan(data.score[-2]) and data.score[-1] == -2.0 and data.probs[-2].sum() == 0
    assert [f[1] for f in data.faults] == ["audio:noise"]  # the other ended before the stretch shown
    svg = timeline_svg(timeline_data(rows, faults))
    root = ET.fromstring(svg)  # well-formed
    ns = "{http://www.w3.org/2000/svg}"
    labels = [t.text for t in root.iter(ns + "text") if t.get("class") == "fault-label"]
    assert sorted(labels) == ["audio:noise", "vision:<b>x</b>"]  # escaped text, not markup
    fills = [r.get("fill") for r in root.iter(ns + "rect")]
    assert "#d62728" in fills and "#2ca02c" in fills  # the audio lane's DROPPED window and OK ones
    path = [p.get("d") for p in root.iter(ns + "path") if p.get("stroke") == "#1f77b4"][0]
    assert path.count("M") == 2  # the no-data window breaks the score line in two
