"""End to end on a tiny copy of the data: every training stage, export, evaluation.

The copy is built at test time from ../shared/data (a few rows, clips and faces per
split), so the whole pipeline runs in about a minute; the figures it produces mean
nothing, the test checks that the commands work together and write what they promise.
"""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from models.paths import data_root
from models.training.data import SPEECH_SPLITS


def _tiny_data(dst):
    src = data_root()
    (dst / "text").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("mosi", "mosei", "sims", "simsv2", "meld"):
        df = pd.read_csv(src / "text" / f"{name}.csv")
        parts = [g.sample(min(len(g), 40), random_state=0) for _, g in df.groupby("split")]
        pd.concat(parts).to_csv(dst / "text" / f"{name}.csv", index=False)
    for corpus, pattern, speaker_of, emotion_of in (
        ("ravdess", "Actor_*/*.flac", lambda p: int(p.stem.split("-")[6]), lambda p: p.stem.split("-")[2]),
        ("emodb", "*.flac", lambda p: int(p.stem[:2]), lambda p: p.stem[5]),
    ):
        files = sorted((src / "audio" / corpus).glob(pattern))
        held = SPEECH_SPLITS[corpus]["valid"] | SPEECH_SPLITS[corpus]["test"]
        train_spk = sorted({speaker_of(p) for p in files} - held)[:2]
        for spk in sorted(held) + train_spk:
            mine = [p for p in files if speaker_of(p) == spk]
            # one clip of each emotion the speaker has
            for p in {emotion_of(p): p for p in mine}.values():
                out = dst / "audio" / corpus / p.relative_to(src / "audio" / corpus)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, out)
    (dst / "vision").mkdir()
    for split, n in (("train", 420), ("test", 70)):
        d = np.load(src / "vision" / f"fer2013_{split}.npz")
        idx = np.concatenate([rng.choice(np.flatnonzero(d["labels"] == c), n // 7, replace=False) for c in range(7)])
        np.savez(
            dst / "vision" / f"fer2013_{split}.npz",
            images=d["images"][idx],
            labels=d["labels"][idx],
            names=d["names"][idx],
            classes=d["classes"],
        )


@pytest.mark.timeout(900)
def test_train_export_evaluate_tiny(tmp_path, monkeypatch):
    from models.training import evaluate, export, train

    data = tmp_path / "data"
    _tiny_data(data)
    monkeypatch.setenv("MSA_DATA_ROOT", str(data))
    cache, assets, docs = tmp_path / "cache", tmp_path / "assets", tmp_path / "docs"
    train.main(["--cache", str(cache), "--assets", str(assets), "--epochs-scale", "0.05"])
    for name in ("text_encoder", "audio_encoder", "face_encoder", "fusion", "domain"):
        assert (assets / "weights" / f"{name}.safetensors").is_file()
    runtime = json.loads((assets / "runtime.json").read_text())
    assert len(runtime["unimodal_temperature"]) == 3 and runtime["fusion_temperature"] > 0
    assert len(runtime["unimodal_spread"]) == 3 and min(runtime["unimodal_spread"]) > 0
    assert runtime["conflict_gain"] >= 0
    # the head-only stage on the trained trunk: only the ordinal head changes
    from models import checkpoint

    before, _ = checkpoint.read(cache / "run" / "fusion.safetensors")
    train.main(
        [
            "--cache",
            str(cache),
            "--assets",
            str(assets),
            "--stages",
            "fusion_head,select,package",
            "--set",
            "fusion_head_epochs=1",
        ]
    )
    after, meta = checkpoint.read(cache / "run" / "fusion.safetensors")
    assert set(before) == set(after) and "head" in meta
    changed = {k for k in before if not np.array_equal(before[k].numpy(), after[k].numpy())}
    assert changed <= {"head.1.weight", "head.1.bias"}

    # the other two fusion models: the same command, their own weights and calibration
    for name in ("dashfusion", "hme"):
        train.main(
            ["--cache", str(cache), "--assets", str(assets), "--stages", "fusion,select", "--epochs-scale", "0.05"]
            + ["--set", f"fusion_model={name}"]
        )
    train.main(["--cache", str(cache), "--assets", str(assets), "--stages", "package"])
    runtime = json.loads((assets / "runtime.json").read_text())
    assert set(runtime["fusions"]) == {"lnln", "dashfusion", "hme"}
    assert runtime["fusion_temperature"] == runtime["fusions"]["lnln"]["fusion_temperature"]
    timings = json.loads((cache / "run" / "timings.json").read_text())
    assert {"fusion", "fusion:dashfusion", "fusion:hme"} <= set(timings)

    export.main(["--assets", str(assets)])
    for stem in ("fusion", "fusion_dashfusion", "fusion_hme"):
        assert (assets / "onnx" / f"{stem}.onnx").is_file()
    from models.runtime import SentimentModel

    base = SentimentModel.load(assets)
    assert base.fusions_available == ["lnln", "dashfusion", "hme"]
    from models.training import compare

    compare.main(
        ["--cache", str(cache), "--assets", str(assets), "--out", str(docs / "fusion-comparison")]
        + ["--sections", "text,protocol,composed,speed"]
    )
    cmp = json.loads((docs / "fusion-comparison.json").read_text())
    assert cmp["models"] == ["lnln", "dashfusion", "hme"] and set(cmp["floors"]) == set(cmp["models"])
    for name in cmp["models"]:
        assert set(cmp["composed"][name]["subsets"]) == {"T+A+V", "T+A", "T+V", "T", "A+V", "A", "V"}
        assert cmp["speed"][name]["batch1"]["p50_ms"] > 0 and cmp["sizes"][name]["parameters"] > 0
        by_length = cmp["speed"][name]["by_text_length"]
        assert list(by_length) == ["5", "12", "20", "40"] and min(by_length.values()) > 0
    md = (docs / "fusion-comparison.md").read_text()
    assert "p50 ms by the window's text word pieces" in md
    assert "DashFusion" in md and "HME" in md and "late fusion" in md

    evaluate.main(["--cache", str(cache), "--assets", str(assets), "--docs", str(docs), "--no-live-faces"])
    report = json.loads((docs / "evaluation.json").read_text())
    assert set(report["lnln_protocol"]["per_rate"]) == {str(r / 10) for r in range(10)}
    assert set(report["composed"]["subsets"]) == {"T+A+V", "T+A", "T+V", "T", "A+V", "A", "V"}
    for row in report["composed"]["rates"].values():
        assert set(row) == {"fusion", "text", "audio", "vision", "late_fusion"}
    assert set(report["composed_class_matched"]["subsets"]) == set(report["composed"]["subsets"])
    assert (
        report["composed"]["composition"]["audio_agree"] < 1
        and report["composed_class_matched"]["composition"]["audio_agree"] == 1
    )
    assert (
        report["composed"]["agreement"]["n_agree"] + report["composed"]["agreement"]["n_conflict"]
        == report["composed"]["n_windows"]
    )
    coh = report["composed"]["coherence"]
    assert coh["fused_windows"] > 0 and coh["fused_incoherent"] == 0 and coh["estimates_incoherent"] == 0
    text = (docs / "evaluation.md").read_text()
    assert "LNLN" in text and "Composed trimodal" in text
    assert (docs / "figures" / "composed_rates.png").stat().st_size > 1000
