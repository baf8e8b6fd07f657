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


def test_no_data_headline_has_no_label(make_window):
    states = {m: "DROPPED" for m in ("vision", "audio", "text")}
    row = make_window(8.0, no_data=True, states=states, reasons={m: "no data for 3.0 s" for m in states})
    html = score_html(row)
    assert "no data" in html and "data-state='no-data'" in html
    assert not any(k in html for k in ("negative", "neutral", "positive"))
    assert "window 5-8 s" in html and "vision no data for 3.0 s" in html


class _Session:
    """What status_md reads of a LiveSession."""

    def __init__(self, window, skipped: int = 0, errors: dict | None = None) -> None:
        self.results = [window]
        self.frames_skipped, self.errors = skipped, errors or {}

    def latency(self) -> dict:
        return {"last": 40.0, "p50": 40.0, "p95": 40.0}

    def latest(self):
        return self.results[-1]


def test_status_line_names_each_stage_of_lag_apart_from_the_sensors(make_window):
    md = status_md(
        _Session(
            make_window(4.0, lag={"transport": 1.7, "server": 0.2, "recogniser": 1.1}), skipped=3, errors={"audio": "bad *rate*"}
        )
    )
    assert (
        "lag (delivery and processing, not the sensors): input arriving 1.7 s late, server 0.2 s behind, "
        "recogniser 1.1 s behind, 3 camera frames skipped to keep up" in md
    )
    assert "audio: bad \\*rate\\*" in md  # input errors cannot inject markdown
    assert "arriving" not in status_md(
        _Session(make_window(4.0, lag={"transport": 0.02, "server": 0.0}))
    )  # on time: not mentioned


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


def test_csv_and_json_lines_say_the_same(make_window):
    """The two export formats are written from the same WindowResults: every CSV cell
    equals the JSON Lines field it flattens (empty where the JSON has null)."""
    import csv
    import io
    import json

    from streaming import export

    windows = [
        make_window(3.0, 1.23456, (0.1, 0.2, 0.7), lag={"transport": 0.4, "server": 0.1}),
        make_window(4.0, no_data=True, states={"vision": "DROPPED", "audio": "DROPPED", "text": "DROPPED"}),
        make_window(5.0, -0.5, (0.4, 0.5, 0.1), states={"audio": "DEGRADED"}, reasons={"audio": "noise, SNR 2 dB"}),
    ]
    table = list(csv.DictReader(io.StringIO(export.csv_text(windows))))
    lines = [json.loads(x) for x in export.jsonl(windows).splitlines()]
    assert list(table[0]) == export.CSV_COLUMNS and len(table) == len(lines) == 3

    def cell(x):
        return "" if x is None else str(x)

    for row, js in zip(table, lines):
        for k in ("t_start", "t_end", "score", "label", "confidence", "smoothed_score", "smoothed_label", "latency_ms"):
            assert row[k] == cell(js[k]), k
        assert row["no_data"] == str(int(js["no_data"]))
        for c, p in js["confidences"].items():
            assert row[f"p_{c}"] == cell(p)
        for m, d in js["modalities"].items():
            assert (row[f"{m}_state"], row[f"{m}_reason"], row[f"{m}_score"]) == (d["state"], d["reason"], cell(d["score"]))
        for stage in export.LAG_STAGES:
            assert row[f"{stage}_lag_s"] == cell(js["lag"].get(stage))
    assert table[0]["score"] == "1.2346" and table[1]["label"] == "" and table[2]["audio_state"] == "DEGRADED"
