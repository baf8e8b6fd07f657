"""The shipped model: weights load, outputs are well formed under every subset of
modalities, all-missing gives the prior (never NaN), and ONNX equals torch."""

import json

import numpy as np
import pytest
import torch

from models.paths import assets_dir
from models.types import MODALITIES, SENTIMENT_CLASSES, SequenceFeatures, WindowFeatures


@pytest.fixture(scope="module")
def model():
    from models.runtime import SentimentModel

    return SentimentModel.load()


@pytest.fixture(scope="module")
def window(model, face_frame, speech_clip):
    from models.features.vision import FaceAnalyzer

    obs = FaceAnalyzer()(face_frame)
    assert obs.has_face
    return WindowFeatures(
        text=model.text_features("i really loved this movie, it was wonderful"),
        audio=model.audio_features(speech_clip[:48000]),
        vision=model.face_features([obs.crop] * 10 + [None] * 5),
    )


def test_assets_are_small_and_safe():
    a = assets_dir()
    total = sum(p.stat().st_size for p in a.rglob("*") if p.is_file())
    assert total < 50 * 2**20
    assert not list(a.rglob("*.pt")) and not list(a.rglob("*.pkl")) and not list(a.rglob("*.bin"))
    cfg = json.loads((a / "runtime.json").read_text())
    assert abs(sum(cfg["prior_probs"]) - 1) < 1e-6
    assert (a / "MODEL_CARD.md").is_file()


def test_shipped_weights_load_strictly():
    from models import checkpoint
    from models.runtime import SHIPPED

    for name, classes in SHIPPED.items():
        m, meta = checkpoint.load(assets_dir() / "weights" / f"{name}.safetensors", *classes)
        assert all(torch.isfinite(p).all() for p in m.parameters())
        assert "config" in meta


def _check(result, used):
    assert -3.0 <= result.score <= 3.0 and np.isfinite(result.score)
    assert result.probs.shape == (3,) and np.isfinite(result.probs).all()
    assert result.probs.sum() == pytest.approx(1.0, abs=1e-6)
    assert 1 / 3 - 1e-6 <= result.confidence <= 1.0
    assert result.label in SENTIMENT_CLASSES
    # the modalities that reached the fusion: those given, less any out-of-domain voice or
    # face (below models.domain.GATE); each given one reports its own estimate
    assert set(result.used) <= set(used)
    assert {m for m in used if result.per_modality[m].in_domain >= 0.25} <= set(result.used)
    assert set(result.per_modality) == set(used)
    for e in result.per_modality.values():
        assert e.probs.sum() == pytest.approx(1.0, abs=1e-5) and -3 <= e.score <= 3


@pytest.mark.parametrize("subset", [s for s in __import__("itertools").product((True, False), repeat=3) if any(s)])
def test_every_subset(model, window, subset):
    used = [m for m, on in zip(MODALITIES, subset) if on]
    w = WindowFeatures(*(window.get(m) if m in used else None for m in MODALITIES))
    _check(model.predict(w), used)


def test_single_modality_fallback_follows_runtime_json(model, window):
    """Where runtime.json names a modality (chosen on validation windows), that modality
    alone gives its encoder's estimate; with others present the fusion answers."""
    from models.types import Modality

    names = json.loads((assets_dir() / "runtime.json").read_text())["single_modality_fallback"]
    assert set(names) <= {m.value for m in MODALITIES}
    for m in MODALITIES:
        alone = model.predict(WindowFeatures(**{m.value: window.get(m)}))
        own = alone.per_modality[m]
        same = np.allclose(alone.probs, own.probs, atol=1e-6) and alone.score == pytest.approx(own.score, abs=1e-6)
        assert same == (m.value in names), m
    both = model.predict(WindowFeatures(text=window.text, audio=window.audio))
    assert not np.allclose(both.probs, both.per_modality[Modality.TEXT].probs, atol=1e-4)


def test_all_missing_returns_prior(model, window):
    for w in (
        WindowFeatures(),
        WindowFeatures(
            text=None,
            audio=SequenceFeatures(window.audio.values, np.zeros(len(window.audio.values), bool)),
            vision=model.face_features([None] * 15),
        ),
    ):
        r = model.predict(w)
        assert r.used == ()
        np.testing.assert_allclose(r.probs, model.prior_probs)
        assert r.confidence == pytest.approx(model.prior_probs.max())
        assert np.isfinite(r.score)


def test_fusion_network_is_finite_with_nothing_present(model):
    """Below the runtime's short cut: the network itself stays finite on empty input."""
    from models.training.export import random_fusion_inputs
    from models.types import FusionInputs

    feed = random_fusion_inputs(3, 5, 7, 4, np.random.default_rng(0))
    feed["present"][:] = False
    for k in ("text_valid", "audio_valid", "vision_valid"):
        feed[k][:] = False
    feed["evidence"][:] = 0
    with torch.no_grad():
        out = model.fusion(*(torch.from_numpy(feed[k]) for k in FusionInputs._fields))
    assert torch.isfinite(out["score"]).all() and torch.isfinite(out["logits"]).all()


def test_sentiment_direction(model):
    pos = model.predict(WindowFeatures(text=model.text_features("this is wonderful, i absolutely love it, best day ever")))
    neg = model.predict(WindowFeatures(text=model.text_features("this is awful, i hate it, a terrible waste of time")))
    assert pos.label == "positive" and pos.score > 1
    assert neg.label == "negative" and neg.score < -1


def test_bad_features_are_refused():
    with pytest.raises(ValueError):
        SequenceFeatures(np.array([[np.nan, 1.0]]), np.array([True]))
    with pytest.raises(ValueError):
        SequenceFeatures(np.zeros((3, 4)), np.ones(2, bool))
    # NaN at a step marked missing is allowed and zeroed
    f = SequenceFeatures(np.array([[np.nan, 1.0], [1.0, 2.0]]), np.array([False, True]))
    assert np.isfinite(f.values).all()


def test_onnx_equals_torch():
    from models import checkpoint
    from models.fusion.lnln import LNLN, LNLNConfig, LNLNInference
    from models.training.export import max_difference, random_fusion_inputs

    path = assets_dir() / "onnx" / "fusion.onnx"
    assert path.is_file(), "run python -m models.training.export"
    fusion, _ = checkpoint.load(assets_dir() / "weights" / "fusion.safetensors", LNLN, LNLNConfig)
    rng = np.random.default_rng(5)
    feeds = [random_fusion_inputs(b, lt, la, lv, rng) for b, lt, la, lv in ((1, 20, 75, 15), (4, 3, 150, 1), (1, 1, 1, 1))]
    assert max_difference(LNLNInference(fusion).eval(), path, feeds) < 1e-4


def test_onnx_runtime_backend_matches_torch_backend(window):
    from models.runtime import SentimentModel

    a = SentimentModel.load(use_onnx=True)
    b = SentimentModel.load(use_onnx=False)
    assert a.backend == "onnxruntime" and b.backend == "torch"
    ra, rb = a.predict(window), b.predict(window)
    assert ra.score == pytest.approx(rb.score, abs=1e-4)
    np.testing.assert_allclose(ra.probs, rb.probs, atol=1e-4)


def test_export_round_trip(tmp_path):
    """The exporter itself, on a freshly initialised model: dynamic lengths, missing data."""
    from models.fusion.lnln import LNLN, LNLNInference
    from models.training.export import export_fusion, max_difference, random_fusion_inputs

    torch.manual_seed(0)
    m = LNLN().eval()
    export_fusion(m, tmp_path / "f.onnx")
    rng = np.random.default_rng(2)
    feeds = [random_fusion_inputs(b, lt, la, lv, rng) for b, lt, la, lv in ((2, 9, 30, 6), (1, 40, 3, 20))]
    feeds[1]["present"][:] = False
    assert max_difference(LNLNInference(m).eval(), tmp_path / "f.onnx", feeds) < 1e-4
