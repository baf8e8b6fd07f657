"""The page's pieces without a server: the transcript panel, the no-data headline, the
emotions behind a modality's label, the note on a text too long to read whole, the status
line's lag by stage."""

from __future__ import annotations

import pytest

from app.ui import emotion_summary, score_html, status_md, transcript_md
from streaming.types import Word


def test_transcript_panel_marks_partial_and_suppressed_words():
    committed = [Word("I", 0.0, 0.2), Word("like", 0.2, 0.5), Word("it.", 0.5, 0.8)]
    committed += [
        Word("interesting,", 1.0 + 0.01 * i, 1.005 + 0.01 * i, suspect="recogniser loop ('interesting' said 9 times in a row)")
        for i in range(8)
    ]
    partial = [Word("and_then", 2.0, 2.3)]
    md = transcript_md(committed, partial)
    assert md.count("~~interesting,~~") == 8  # struck out, not hidden
    assert "recogniser loop" in md and "(8 words)" in md
    assert "I like it\\." in md
    assert "_and\\_then_ *(partial, may still change)*" in md  # recognised text cannot inject markdown
    assert transcript_md([], []) == "*(no speech recognised yet)*"


def test_no_data_headline_has_no_label():
    row = {
        "t_start": 5.0,
        "t_end": 8.0,
        "no_data": True,
        "label": None,
        "score": None,
        "modalities": {m: {"state": "DROPPED", "reason": "no data for 3.0 s"} for m in ("vision", "audio", "text")},
    }
    html = score_html(row)
    assert "no data" in html and "data-state='no-data'" in html
    assert not any(k in html for k in ("negative", "neutral", "positive"))


class _Session:
    """What status_md reads of a LiveSession."""

    def __init__(self, lag: dict, skipped: int = 0, errors: dict | None = None) -> None:
        self.rows = [{"latency_ms": 40.0, "lag": lag}]
        self.frames_skipped, self.errors = skipped, errors or {}

    def latency(self) -> dict:
        return {"last": 40.0, "p50": 40.0, "p95": 40.0}

    def latest(self) -> dict:
        return self.rows[-1]


def test_status_line_names_each_stage_of_lag_apart_from_the_sensors():
    md = status_md(_Session({"transport": 1.7, "server": 0.2, "recogniser": 1.1}, skipped=3, errors={"audio": "bad *rate*"}))
    assert (
        "lag (delivery and processing, not the sensors): input arriving 1.7 s late, server 0.2 s behind, "
        "recogniser 1.1 s behind, 3 camera frames skipped to keep up" in md
    )
    assert "audio: bad \\*rate\\*" in md  # input errors cannot inject markdown
    assert "arriving" not in status_md(_Session({"transport": 0.02, "server": 0.0}))  # on time: not mentioned


def test_emotions_are_grouped_by_the_sentiment_they_count_for():
    """Happy is the top emotion, yet the negative ones together outweigh it: the label
    (negative) can be read off the summary."""
    detail = {"happy": 0.40, "sad": 0.30, "angry": 0.25, "neutral": 0.05}
    s = emotion_summary(detail)
    assert s.startswith("negative 0.55 (sad 0.30, angry 0.25)")
    assert "positive 0.40 (happy 0.40)" in s


@pytest.fixture(scope="module")
def analyser():
    from app.ui import WindowAnalyser

    return WindowAnalyser()


def test_a_long_text_is_not_cut_silently(analyser):
    text = "I really enjoyed the film and the acting was wonderful. " * 1800  # about 100 kB
    _, summary, _ = analyser(text, None, None)
    assert "only the first" in summary and f"{len(text):,} characters were read" in summary
    _, summary, _ = analyser("I really enjoyed the film.", None, None)
    assert "only the first" not in summary


def test_no_input_at_all_is_no_data(analyser):
    conf, summary, rows = analyser("", None, None)
    assert conf is None and summary.startswith("**no data**")
    assert [r[1] for r in rows] == ["absent"] * 3
