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


def _perturbed(module, seed):
    """Every parameter moved by noise: LayerNorm scales away from 1 and biases away from 0,
    so folding them into the products that follow is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return module


def _dashfusion_one_modality_at_a_time(model, text, text_valid, audio, audio_valid, vision, vision_valid, evidence, present):
    """DashFusion as its module docstring reads, each module called on its own modality
    (``StepProjection``, ``CrossUpdate``, ``ModalityEncoder``, ``Block``): the reference for
    ``DashFusion.forward``'s stacked form."""
    from models.fusion.base import ordinal_outputs, pool_audio, split_evidence
    from models.fusion.dashfusion import _halving
    from models.layers import key_bias, masked_mean

    c = model.cfg
    audio, audio_valid = pool_audio(audio, audio_valid, c.audio_pool)
    evs = split_evidence(evidence)
    xs, vs = (text, audio, vision), (text_valid, audio_valid, vision_valid)
    streams, valids = [], []
    for m in range(3):
        h, v = model.steps[m](xs[m], vs[m], evs[m], present[:, m])
        streams.append(h)
        valids.append(v)
    gates = torch.tanh(model.align_gate)
    for j, m in enumerate((1, 2)):
        seen = valids[m].any(1, keepdim=True).unsqueeze(-1).float()
        aligned = model.align[j](streams[0], streams[m], valids[m])
        streams[0] = streams[0] + gates[j] * seen * aligned
    sem = torch.stack([model.summary[m](xs[m], vs[m], evs[m], present[:, m]).mean(1) for m in range(3)], 1)
    pres = present.float()
    weight = pres / pres.sum(1, keepdim=True).clamp_min(1.0)
    alone = (pres.sum(1) == 0).float()[:, None, None]
    b = model.bottleneck + model.bottleneck_in((sem * weight.unsqueeze(-1)).sum(1)).unsqueeze(1)
    n_b = c.n_bottleneck
    for layer in model.fuse:
        update = alone * b
        for m in range(3):
            h = layer[m](torch.cat([b, streams[m]], 1), bias=key_bias(valids[m], lead=n_b))
            streams[m] = h[:, n_b:]
            update = update + weight[:, m, None, None] * h[:, :n_b]
        b = _halving(n_b, b.dtype, b.device) @ update
        n_b //= 2
    z = model.out_norm(b.mean(1) + masked_mean(streams[0], valids[0]))
    out = ordinal_outputs(model.head, z)
    out.update(z=z, semantic=sem, completeness=valids[0].float().sum(1) / text_valid.float().sum(1).clamp_min(1.0))
    return out


@pytest.mark.parametrize("lengths", [(20, 75, 15), (6, 40, 15), (3, 12, 30), (33, 80, 2), (1, 1, 1)])
def test_dashfusion_stacked_forward_equals_its_modules_one_at_a_time(lengths):
    """The stacked, padded form (audio and vision side by side, norms folded into products,
    heads made by the weights, only the rows read computed) is the same function as the
    modules run one modality at a time: outputs and gradients, with missing modalities,
    rows with no valid step, audio longer or shorter than vision."""
    m = _perturbed(_fresh("dashfusion", seed=4), seed=5)
    feed = random_fusion_inputs(5, *lengths, np.random.default_rng(sum(lengths)))
    feed["present"][0] = True
    feed["present"][1] = False
    feed["audio_valid"][2] = False
    x = _tensors(feed)
    got = m(*x)
    ref = _dashfusion_one_modality_at_a_time(m, *x)
    for k in ("score", "spread", "logits", "completeness", "z", "semantic"):
        torch.testing.assert_close(got[k], ref[k], atol=2e-5, rtol=1e-4, msg=k)
    params = [p for p in m.parameters() if p.requires_grad]
    g1 = torch.autograd.grad((got["score"] * torch.arange(5.0)).sum() + got["semantic"].square().sum(), params, allow_unused=True)
    g2 = torch.autograd.grad((ref["score"] * torch.arange(5.0)).sum() + ref["semantic"].square().sum(), params, allow_unused=True)
    for a, b in zip(g1, g2):
        if a is None or b is None:
            assert a is None and b is None or float((a if b is None else b).abs().max()) == 0.0
        else:
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_stacked_blocks_equal_each_block_on_its_slice():
    from models.layers import Block, key_bias, stacked_blocks

    torch.manual_seed(0)
    blocks = [_perturbed(Block(16, 4, 32, 0.1), seed=i).eval() for i in range(3)]
    x = torch.randn(3, 2, 7, 16)
    valid = torch.rand(3, 2, 5) > 0.4
    valid[1, 0] = False  # a row with no valid step: only the two leading tokens are keys
    bias = key_bias(valid, lead=2)
    out = stacked_blocks(blocks, x, bias)
    first = stacked_blocks(blocks, x, bias, rows=2)
    for i, blk in enumerate(blocks):
        ref = blk(x[i], bias=bias[i])
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(first[i], ref[:, :2], atol=1e-5, rtol=1e-4)


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
