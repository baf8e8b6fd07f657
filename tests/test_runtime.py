"""The shipped model: weights load, outputs are well formed under every subset of
modalities, all-missing gives the prior (never NaN), and ONNX equals torch."""

import json

import numpy as np
import pytest
import torch

from models.paths import assets_dir
from models.types import MODALITIES, SENTIMENT_CLASSES, SequenceFeatures, WindowFeatures


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
        m, meta = checkpoint.load(checkpoint.weights_path(assets_dir(), name), *classes)
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
    from models.fusion.base import FusionInference
    from models.fusion.lnln import LNLN, LNLNConfig
    from models.training.export import max_difference, random_fusion_inputs

    path = assets_dir() / "onnx" / "fusion.onnx"
    assert path.is_file(), "run python -m models.training.export"
    fusion, _ = checkpoint.load(assets_dir() / "weights" / "fusion.safetensors", LNLN, LNLNConfig)
    rng = np.random.default_rng(5)
    feeds = [random_fusion_inputs(b, lt, la, lv, rng) for b, lt, la, lv in ((1, 20, 75, 15), (4, 3, 150, 1), (1, 1, 1, 1))]
    assert max_difference(FusionInference(fusion).eval(), path, feeds) < 1e-4


def test_onnx_runtime_backend_matches_torch_backend(window):
    from models.runtime import SentimentModel

    a = SentimentModel.load(use_onnx=True)
    b = SentimentModel.load(use_onnx=False)
    assert a.backend == "onnxruntime" and b.backend == "torch"
    for w in (
        window,
        WindowFeatures(text=window.text, vision=window.vision),  # no audio: stack.onnx's padded batch
        WindowFeatures(audio=window.audio),
    ):
        ra, rb = a.predict(w), b.predict(w)
        assert ra.used == rb.used
        assert ra.score == pytest.approx(rb.score, abs=1e-4)
        np.testing.assert_allclose(ra.probs, rb.probs, atol=1e-4)
        for m in rb.per_modality:
            assert ra.per_modality[m].score == pytest.approx(rb.per_modality[m].score, abs=1e-4)


def test_export_round_trip(tmp_path):
    """The exporter itself, on a freshly initialised model: dynamic lengths, missing data."""
    from models.fusion.base import FusionInference
    from models.fusion.lnln import LNLN
    from models.training.export import export_fusion, max_difference, random_fusion_inputs

    torch.manual_seed(0)
    m = LNLN().eval()
    export_fusion(m, tmp_path / "f.onnx")
    rng = np.random.default_rng(2)
    feeds = [random_fusion_inputs(b, lt, la, lv, rng) for b, lt, la, lv in ((2, 9, 30, 6), (1, 40, 3, 20))]
    feeds[1]["present"][:] = False
    assert max_difference(FusionInference(m).eval(), tmp_path / "f.onnx", feeds) < 1e-4


def test_stack_onnx_equals_torch_and_runs_in_the_runtime(window):
    """stack.onnx (the text and audio encoders, estimates, in-domain scores) against the
    torch stack: random batches with missing steps and modalities, batch 1, length 1, and a
    batch without audio (padded by StackGraph.feeds); and the runtime really runs it."""
    from models.runtime import SentimentModel
    from models.training.export import max_difference, random_stack_batch
    from models.unimodal import StackGraph, StackOutput, stack_batch

    a = SentimentModel.load(use_onnx=True)
    assert a._stack_session is not None, "run python -m models.training.export"
    rng = np.random.default_rng(7)
    feeds = [random_stack_batch(b, lt, la, lv, rng) for b, lt, la, lv in ((1, 1, 3, 1), (3, 17, 150, 15), (2, 4, 151, 2))]
    assert max_difference(StackGraph(a.stack).eval(), assets_dir() / "onnx" / "stack.onnx", feeds) < 1e-4

    no_audio = stack_batch([window.text.values], [None], [window.vision], reliability=[[1.0, 1.0, 0.5]])
    assert no_audio.audio.shape[1] == 1
    got = StackOutput.from_flat(a._stack_session.run(None, StackGraph.feeds(no_audio)))
    ref = a.stack(no_audio)
    for x, y in zip(got.flat(), ref.flat()):
        if x.dtype == torch.bool or x.shape != y.shape:  # the padded audio states of an absent voice
            assert x.shape == y.shape or not got.fusion.audio_valid.any()
            continue
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-4)
    np.testing.assert_array_equal(got.present.numpy(), ref.present.numpy())

    calls = []
    run = a._stack_session.run
    a._stack_session = type("Spy", (), {"run": lambda self, *args: calls.append(1) or run(*args)})()
    a.predict(window)
    assert calls, "predict did not run stack.onnx"


def test_stale_stack_onnx_is_not_run(tmp_path, caplog):
    """A stack.onnx exported before the weights or calibration changed is refused (logged),
    and the torch stack answers."""
    import shutil

    from models.runtime import SentimentModel

    shutil.copytree(assets_dir(), tmp_path / "assets")
    rt = json.loads((tmp_path / "assets" / "runtime.json").read_text())
    rt["unimodal_spread"] = [x * 1.01 for x in rt["unimodal_spread"]]
    (tmp_path / "assets" / "runtime.json").write_text(json.dumps(rt))
    with caplog.at_level("WARNING"):
        m = SentimentModel.load(tmp_path / "assets")
    assert m._stack_session is None and "stack.onnx was exported from other weights" in caplog.text
    assert m._session is not None  # the fusion still runs in onnxruntime


def test_float16_storage_is_lossless(tmp_path):
    """halve_storage keeps float16-exact weights as float16 (cast back in the graph) and
    leaves the others; the graph's outputs do not change at all."""
    import onnxruntime as ort

    from models.training.export import _export, halve_storage

    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 8)).eval()
    with torch.no_grad():
        lin[0].weight.copy_(lin[0].weight.half().float())  # exact in float16, as the shipped weights
    x = torch.randn(3, 64)
    _export(lin, (x,), tmp_path / "m.onnx", ["x"], ["y"], ({0: torch.export.Dim("b", min=1, max=64)},))
    ref = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    before, after = halve_storage(tmp_path / "m.onnx")
    assert after < before - 64 * 64 * 2 + 1024  # the exact matrix halved, the other kept
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    np.testing.assert_array_equal(got, ref)


def test_text_features_are_cached_read_only_and_bounded(model, monkeypatch):
    """A transcript seen before skips MiniLM (live windows often repeat their text); the
    cached arrays cannot be changed by a caller, and the cache keeps TEXT_CACHE texts."""
    import models.runtime as rt

    monkeypatch.setattr(rt, "TEXT_CACHE", 3)
    model._text_cache.clear()
    calls = []
    real = model._text()
    monkeypatch.setattr(model, "_text", lambda: lambda texts: calls.append(list(texts)) or real(texts))
    a = model.text_features("i love it")
    b, c = model.text_features_many(["i love it", "not at all"])
    assert b is a and calls == [["i love it"], ["not at all"]]
    assert not a.values.flags.writeable and not a.valid.flags.writeable
    with pytest.raises(ValueError):
        a.values[0, 0] = 1.0
    for t in ("one", "two", "three"):
        model.text_features(t)
    assert list(model._text_cache) == ["one", "two", "three"]  # the oldest went first
    model.text_features("i love it")
    assert calls[-1] == ["i love it"]
    np.testing.assert_array_equal(model.text_features("i love it").values, a.values)
    model._text_cache.clear()
