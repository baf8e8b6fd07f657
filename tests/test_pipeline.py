"""The whole pipeline on a clip built at test time from real data (FER-2013 faces animated
into video, espeak-ng speech): windows come out with confidences, the transcript holds the
spoken words, a window with every modality dropped is no data rather than a reading, and the
simulator CLI writes what it promises. Every fault kind on every modality, its health state
inside the fault and its recovery after it: ``tests/test_fault_matrix.py``."""

import json
import math
import re
import shutil

import numpy as np
import pytest

from models.types import SENTIMENT_CLASSES

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def run(clip, model, spec="", asr=None):
    from streaming.simulate import build_pipeline, replay

    if asr is not None:
        asr.reset()
    pipe = build_pipeline(spec, asr_mode="sync" if asr is not None else "off", model=model, asr=asr)
    try:
        return [w.to_json() for w in replay(pipe, clip["path"], progress=False)]
    finally:
        pipe.close()


def words(text):
    return set(re.findall(r"[a-z']+", text.lower()))


def test_clean_replay_windows_and_transcript(clip, model, asr):
    rows = run(clip, model, asr=asr)
    assert len(rows) >= 17  # a 20 s clip, 3 s windows, 1 s hop
    for r in rows:
        assert -3 <= r["score"] <= 3 and math.isfinite(r["score"])
        assert abs(sum(r["confidences"].values()) - 1) < 1e-3
        assert set(r["confidences"]) == set(SENTIMENT_CLASSES)
        assert r["label"] in SENTIMENT_CLASSES and 0 < r["confidence"] <= 1
    # with the sensors healthy, the camera and microphone are read (allow a settling window)
    steady = rows[1:]
    assert np.mean([r["modalities"]["vision"]["state"] == "OK" for r in steady]) >= 0.9
    assert np.mean([r["modalities"]["audio"]["state"] != "DROPPED" for r in steady]) >= 0.8
    # the transcript holds the spoken words
    heard = set()
    for r in rows:
        heard |= words(r["transcript"])
    spoken = set()
    for _, _, text, _ in clip["lines"]:
        spoken |= {w for w in words(text) if len(w) > 3}
    assert len(heard & spoken) / len(spoken) >= 0.5, (sorted(heard), sorted(spoken))

    # the fused score follows the script: happy lines above the angry and sad ones
    def mean_score(a, b):
        return np.mean([r["score"] for r in rows if a <= r["t_end"] - 1.5 < b])

    assert mean_score(0, 4) > mean_score(4, 8)


def test_all_dropped_is_no_data_not_a_reading(clip, model):
    """With every modality dropped the windows say so (no_data) and carry no estimate: the
    model's prior is not shown as a result; before the faults the same clip has estimates."""
    rows = run(clip, model, "vision:drop@4-,audio:drop@4-")
    early = [r for r in rows if r["t_end"] <= 4]
    assert early and not any(r["no_data"] for r in early)
    assert all(isinstance(r["label"], str) and math.isfinite(r["score"]) for r in early)
    late = [r for r in rows if r["t_end"] >= 8]
    assert late
    for r in late:
        assert all(r["modalities"][m]["score"] is None for m in ("vision", "audio", "text"))
        assert r["no_data"] is True
        assert r["score"] is None and r["label"] is None and r["confidence"] is None
        assert r["smoothed_label"] is None and all(v is None for v in r["confidences"].values())


def test_simulate_cli(clip, tmp_path):
    from streaming.simulate import main

    out, png = tmp_path / "out.jsonl", tmp_path / "out.png"
    assert (
        main(
            [
                clip["path"],
                "--faults",
                "vision:drop@2-5,audio:noise:snr=0@4-8,text:outage@6-9",
                "--out",
                str(out),
                "--plot",
                str(png),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) >= 17
    need = {"t_start", "t_end", "score", "label", "confidences", "modalities", "transcript", "latency_ms"}
    assert need <= set(rows[0])
    assert set(rows[0]["modalities"]) == {"vision", "audio", "text"}
    assert {"state", "reason", "score"} <= set(rows[0]["modalities"]["vision"])
    assert png.stat().st_size > 10_000
    with pytest.raises(SystemExit):
        main([clip["path"], "--faults", "vision:explode@1-2", "--out", str(out)])
