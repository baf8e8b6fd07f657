"""The three fusion models (LNLN, DashFusion, HME): export equality, batch independence, no
NaN with every modality missing, their training hooks, and the run-time switch
(``SentimentModel.load(fusion=)``, ``with_fusion``, the engine's clients, live sessions,
the app and ``streaming.simulate --fusion``)."""

import numpy as np
import pytest
import torch

from models.fusion import FUSIONS, fusion_spec
from models.fusion.base import FusionInference
from models.training.export import export_fusion, max_difference, random_fusion_inputs
from models.types import FusionInputs, WindowFeatures

NAMES = list(FUSIONS)


def _tensors(feed):
    return [torch.from_numpy(feed[k]) for k in FusionInputs._fields]


def _fresh(name, seed=0):
    """A freshly initialised model; HME with a bank built from random complete windows."""
    torch.manual_seed(seed)
    spec = FUSIONS[name]
    m = spec.model(spec.config()).eval()
    if name == "hme":
        rng = np.random.default_rng(seed)
        batches = []
        for _ in range(8):
            feed = random_fusion_inputs(64, 10, 30, 8, rng)
            feed["present"][:] = True
            batches.append(_tensors(feed))
        m.finish_training(batches)
        assert bool(m.bank_filled.all())
    return m


def _shipped():
    from models.paths import assets_dir

    a = assets_dir()
    return [n for n, s in FUSIONS.items() if (a / "weights" / f"{s.stem}.safetensors").is_file()]


@pytest.mark.parametrize("name", NAMES)
def test_one_window_alone_equals_it_in_a_batch(name):
    m = _fresh(name)
    feed = random_fusion_inputs(6, 14, 40, 9, np.random.default_rng(3))
    x = _tensors(feed)
    with torch.no_grad():
        batch = m(*x)
        for i in range(6):
            one = m(*[t[i : i + 1] for t in x])
            for k in ("score", "spread", "logits", "completeness"):
                np.testing.assert_allclose(one[k][0].numpy(), batch[k][i].numpy(), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_every_modality_missing_gives_finite_outputs(name):
    m = _fresh(name)
    feed = random_fusion_inputs(3, 5, 7, 4, np.random.default_rng(0))
    feed["present"][:] = False
    for k in ("text_valid", "audio_valid", "vision_valid"):
        feed[k][:] = False
    feed["evidence"][:] = 0
    with torch.no_grad():
        out = m(*_tensors(feed))
    for k in ("score", "spread", "logits", "completeness"):
        assert torch.isfinite(out[k]).all(), k
    assert (out["score"].abs() < 3).all() and (out["spread"] > 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_export_equals_torch(name, tmp_path):
    m = _fresh(name, seed=1)
    export_fusion(m, tmp_path / "f.onnx")
    rng = np.random.default_rng(2)
    feeds = [random_fusion_inputs(b, lt, la, lv, rng) for b, lt, la, lv in ((2, 9, 30, 6), (1, 40, 3, 20), (1, 1, 1, 1))]
    feeds[1]["present"][:] = False
    assert max_difference(FusionInference(m).eval(), tmp_path / "f.onnx", feeds) < 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_training_hooks_give_a_finite_loss_that_trains(name):
    """One optimiser step through the shared task loss and the model's own losses: finite,
    every trainable parameter but LNLN's discriminator-only ones reached, and HME's bank
    filled from the clean batch by ``after_step``."""
    torch.manual_seed(0)
    spec = FUSIONS[name]
    m = spec.model(spec.config()).train()
    rng = np.random.default_rng(0)
    noisy, clean = random_fusion_inputs(8, 10, 30, 8, rng), random_fusion_inputs(8, 10, 30, 8, rng)
    clean["present"][:] = True
    x, c = _tensors(noisy), _tensors(clean)
    out = m(*x)
    y = torch.linspace(-2, 2, 8)
    cls = torch.tensor([0, 0, 1, 1, 2, 2, 0, 2])
    loss = (out["score"] - y).abs().mean() + m.auxiliary_loss(out, c, y, cls, torch.full((8,), 0.3), x[7])
    assert torch.isfinite(loss)
    loss.backward()
    reached = [p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters()]
    assert np.mean(reached) > 0.8
    m.after_step(c)
    if name == "hme":
        assert int(m.bank_filled.sum()) == 8


def test_hme_bank_is_part_of_the_weights(tmp_path):
    from models import checkpoint
    from models.fusion.hme import HME, HMEConfig

    m = _fresh("hme")
    checkpoint.save(tmp_path / "h.safetensors", m, m.cfg)
    back, _ = checkpoint.load(tmp_path / "h.safetensors", HME, HMEConfig)
    assert torch.equal(back.bank, m.bank) and torch.equal(back.bank_filled, m.bank_filled)
    feed = _tensors(random_fusion_inputs(2, 5, 10, 4, np.random.default_rng(1)))
    with torch.no_grad():
        assert torch.allclose(back(*feed)["score"], m(*feed)["score"])


def test_unknown_fusion_is_a_clear_error():
    from models.runtime import SentimentModel

    with pytest.raises(ValueError, match="lnln, dashfusion, hme"):
        fusion_spec("mult")
    with pytest.raises(ValueError, match="unknown fusion"):
        SentimentModel.load(fusion="mult")


# ---------------------------------------------------------------- the shipped models
@pytest.fixture(scope="module")
def text_window(model):
    return WindowFeatures(text=model.text_features("i really loved this movie, it was wonderful"))


@pytest.mark.parametrize("name", NAMES)
def test_shipped_fusion_onnx_equals_torch(name):
    from models import checkpoint
    from models.paths import assets_dir

    if name not in _shipped():
        pytest.skip(f"{name} is not shipped")
    spec = FUSIONS[name]
    a = assets_dir()
    fusion, _ = checkpoint.load(a / "weights" / f"{spec.stem}.safetensors", spec.model, spec.config)
    rng = np.random.default_rng(5)
    feeds = [random_fusion_inputs(b, lt, la, lv, rng) for b, lt, la, lv in ((1, 20, 75, 15), (4, 3, 150, 1), (1, 1, 1, 1))]
    assert max_difference(FusionInference(fusion).eval(), a / "onnx" / f"{spec.stem}.onnx", feeds) < 1e-4


def test_every_shipped_fusion_loads_and_answers(model, text_window):
    from models.runtime import SentimentModel

    shipped = _shipped()
    assert "lnln" in shipped and model.fusions_available == shipped
    for name in shipped:
        m = SentimentModel.load(fusion=name)
        assert m.fusion_name == name and m.backend == "onnxruntime"
        r = m.predict(text_window)
        assert np.isfinite(r.score) and abs(sum(r.probs) - 1) < 1e-6
        v = model.with_fusion(name)
        assert v is model.with_fusion(name)  # made once
        assert v.stack is model.stack and v._text_cache is model._text_cache  # the encoders are shared
        rv = v.predict(text_window)
        assert rv.score == pytest.approx(r.score, abs=1e-5)


def test_engine_client_switches_fusion(model, text_window):
    from models.engine import InferenceEngine

    shipped = _shipped()
    engine = InferenceEngine(model)
    try:
        client = engine.client()
        assert client.fusion_name == "lnln"
        for name in shipped:
            client.set_fusion(name)
            got = client.predict(text_window)
            want = model.with_fusion(name).predict(text_window)
            assert got.score == pytest.approx(want.score, abs=1e-5)
        with pytest.raises(ValueError):
            client.set_fusion("mult")
        assert client.fusion_name == shipped[-1]  # a refused name changes nothing
        assert any(k.startswith("engine-fusion") for k in engine.stats())
    finally:
        engine.close()


def test_live_session_and_app_switch_fusion(model):
    from app.sessions import App
    from streaming.session import LiveSession

    shipped = _shipped()
    s = LiveSession(model, None, worker=False)
    try:
        for name in shipped:
            s.set_fusion(name)
            assert s.fusion_name == name and s.pipeline.model.fusion_name == name
        with pytest.raises(ValueError):
            s.set_fusion("mult")
    finally:
        s.close()
    app = App(model=model, asr=False, reap_every_s=None)
    try:
        assert app.fusions[0] == "lnln" and set(app.fusions) == set(shipped)
        live = app.live_session("tab-1")
        app.set_fusion("tab-1", live, shipped[-1])
        assert live.fusion_name == shipped[-1]
        live.close()
        again = app.live_session("tab-1")  # the tab's next session keeps its choice
        assert again.fusion_name == shipped[-1]
        with pytest.raises(ValueError, match="not offered"):
            app.set_fusion("tab-1", again, "mult")
    finally:
        app.close()


def test_simulate_takes_the_fusion(tmp_path, capsys):
    from streaming import simulate

    with pytest.raises(SystemExit):
        simulate.main(["x.mp4", "--out", str(tmp_path / "o.jsonl"), "--fusion", "mult"])
    assert "invalid choice" in capsys.readouterr().err
