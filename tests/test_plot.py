"""The timeline plot: fault labels stay readable when faults overlap in time."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from streaming.plot import FAULT_LABEL_GID, timeline_figure


def rows(t_end: int = 20):
    rng = np.random.default_rng(0)
    out = []
    for t in range(3, t_end + 1):
        p = rng.dirichlet([2, 2, 2])
        out.append(
            {
                "t_start": t - 3.0,
                "t_end": float(t),
                "score": float(rng.uniform(-2.8, 2.8)),
                "confidence": 0.6,
                "confidences": dict(zip(("negative", "neutral", "positive"), map(float, p))),
                "modalities": {m: {"state": "OK"} for m in ("vision", "audio", "text")},
            }
        )
    return out


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


def test_overlapping_scheduled_faults_have_separate_labels(tmp_path):
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


def test_live_faults_switched_on_at_once():
    """Several live faults on from the same moment (open-ended, identical spans), as the UI
    makes them, with the horizon cutting the start of the timeline."""
    from streaming.faults import FaultInjector

    inj = FaultInjector()
    for m, k in (("vision", "noise"), ("vision", "freeze"), ("audio", "noise"), ("audio", "delay"), ("text", "outage")):
        inj.set_live(m, k, True, t=12.0)
    fig = timeline_figure(rows(30), inj.timeline(), horizon=20)
    assert_readable(fig, {"vision:noise", "vision:freeze", "audio:noise", "audio:delay", "text:outage"})


@pytest.mark.parametrize("n", [1, 8])
def test_many_short_faults_and_one(n):
    faults = [("audio", "blackout", 5 + 0.2 * i, 5.3 + 0.2 * i) for i in range(n)]
    fig = timeline_figure(rows(), faults)
    texts, boxes, _ = labels(fig)
    assert len(texts) == n
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)


def test_faults_outside_the_shown_stretch_have_no_label():
    fig = timeline_figure(rows(30), [("vision", "drop", 1, 3), ("audio", "noise", 20, 25)], horizon=10)
    texts, _, _ = labels(fig)
    assert [t.get_text() for t in texts] == ["audio:noise"]


def test_no_rows_still_draws_labels():
    fig = timeline_figure([], [("vision", "drop", 0, 2), ("audio", "noise", 1, 3)])
    assert_readable(fig, {"vision:drop", "audio:noise"})
