"""The real-recordings evaluation, end to end on the real clips (and a few RAVDESS test
clips): the live code path gives every clip at least one window, no window's label lies
outside its score's interval, and the document holds the table."""

import json

import pytest

from models.paths import data_root


def test_evaluate_real_writes_the_table(tmp_path):
    if not (data_root() / "real" / "labels.csv").is_file():
        pytest.skip("no real clips in the data folder")
    from streaming import evaluate_real

    assert evaluate_real.main(["--ravdess-limit", "3", "--no-demo", "--docs", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "real-recordings.json").read_text())
    clips = report["real_clips"]
    assert len(clips) == 8 and all(c["windows"] for c in clips)
    assert report["coherence"]["real_and_ravdess"]["incoherent"] == 0
    assert report["coherence"]["real_and_ravdess"]["estimates_incoherent"] == 0
    short = [c for c in clips if c["duration_s"] < 3.0]
    assert short and all(len(c["windows"]) == 1 and c["windows"][0]["t_end"] < 3.0 for c in short)
    meld = next(c for c in clips if c["corpus"] == "MELD")
    assert meld["faces"]["with_fallback"] > 50 and meld["leakage"]
    assert len(report["ravdess"]) == 3 and all(c["statement"] for c in report["ravdess"])
    text = (tmp_path / "real-recordings.md").read_text()
    assert "| real clips" in text and "late fusion" in text and "meld_train_dia0_utt0.mp4" in text
