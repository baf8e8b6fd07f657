"""Coherent output by construction: the label is the class whose interval holds the score,
the probabilities rank that class first and the confidence is that class's probability,
for any input. Checked as properties over random inputs (hypothesis), on the ordinal
functions, on a randomly initialised LNLN and on the shipped model end to end."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.ordinal import fit_spread, interval_distance, ordinal_logits, ordinal_probs_np
from models.types import SENTIMENT_CLASSES, SequenceFeatures, WindowFeatures, is_coherent, score_to_class

scores = st.floats(-3.0, 3.0, allow_nan=False)
spreads = st.floats(1e-3, 50.0, allow_nan=False)


@given(scores, spreads)
@settings(max_examples=300, deadline=None)
def test_ordinal_probabilities_rank_the_score_class_first(s, tau):
    p = ordinal_probs_np(s, tau)
    k = score_to_class(s)
    assert abs(p.sum() - 1) < 1e-9
    assert p[k] >= p.max() - 1e-12
    if abs(abs(s) - 0.5) > 1e-9:  # away from a boundary the order is strict
        assert p[k] > np.delete(p, k).max()
    assert is_coherent(s, p)
    # unimodal over the ordered classes: the far class never outweighs the middle one
    assert p[1] >= min(p[0], p[2]) - 1e-12


@given(st.lists(scores, min_size=1, max_size=20), spreads)
@settings(max_examples=100, deadline=None)
def test_torch_and_numpy_agree(ss, tau):
    s = torch.tensor(ss, dtype=torch.float64)
    p = ordinal_logits(s, torch.full_like(s, tau)).softmax(-1).numpy()
    assert np.allclose(p, ordinal_probs_np(np.array(ss), np.full(len(ss), tau)), atol=1e-9)
    assert (interval_distance(s) >= 0).all()


def test_temperature_keeps_the_order():
    s = np.linspace(-3, 3, 601)
    for t in (0.3, 1.0, 4.0):
        p = ordinal_probs_np(s, np.full_like(s, 0.4 * t))
        assert all(is_coherent(a, b) for a, b in zip(s, p))


def test_fit_spread_recovers_a_sharp_and_a_blurred_estimate():
    rng = np.random.default_rng(0)
    truth = rng.uniform(-3, 3, 4000)
    cls = score_to_class(truth)
    sharp = fit_spread(truth + rng.normal(0, 0.05, truth.shape), cls)
    blurred = fit_spread(truth + rng.normal(0, 1.0, truth.shape), cls)
    assert sharp < blurred
    with pytest.raises(ValueError):
        fit_spread([], [])


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=25, deadline=None)
def test_random_lnln_is_coherent(seed):
    from models.fusion.lnln import LNLN, LNLNConfig
    from models.training.export import random_fusion_inputs

    torch.manual_seed(seed % 1000)
    rng = np.random.default_rng(seed)
    model = LNLN(LNLNConfig()).eval()
    feed = random_fusion_inputs(4, int(rng.integers(1, 30)), int(rng.integers(1, 90)), int(rng.integers(1, 16)), rng)
    feed["audio"] *= rng.uniform(0.1, 30)  # large inputs too
    with torch.no_grad():
        out = model(*(torch.from_numpy(feed[k]) for k in feed))
    score = out["score"].numpy().astype(np.float64)
    probs = out["logits"].softmax(-1).numpy().astype(np.float64)
    assert np.all(np.abs(score) < 3.0)
    for s, p in zip(score, probs):
        assert is_coherent(s, p / p.sum(), tol=1e-6)


def test_upgrade_of_an_earlier_checkpoint_keeps_the_trunk():
    from models.fusion.lnln import LNLN, LNLNConfig, upgrade_state_dict

    model = LNLN(LNLNConfig())
    sd = model.state_dict()
    old = {k: v for k, v in sd.items() if not k.startswith("head.")}
    old["score_head.1.weight"] = torch.randn(1, model.cfg.dim)
    old["score_head.1.bias"] = torch.randn(1)
    old["class_head.1.weight"] = torch.randn(3, model.cfg.dim)
    old["class_head.1.bias"] = torch.randn(3)
    new = upgrade_state_dict(old)
    model.load_state_dict(new, strict=True)
    assert torch.equal(model.head[1].weight[0], old["score_head.1.weight"][0])
    assert upgrade_state_dict(sd) is sd
    with pytest.raises(KeyError):
        upgrade_state_dict({"x": torch.zeros(1)})


@pytest.fixture(scope="module")
def shipped():
    from models.runtime import SentimentModel

    return SentimentModel.load()


@given(
    st.integers(0, 2**31 - 1),
    st.tuples(st.booleans(), st.booleans(), st.booleans()),
    st.floats(0.01, 20.0),
)
@settings(max_examples=40, deadline=None)
def test_shipped_model_results_are_coherent(shipped, seed, present, scale):
    """Random features of any size and validity pattern, any subset of modalities (none
    included): the fused result and every per-modality estimate agree with their scores."""
    rng = np.random.default_rng(seed)

    def seq(dim, n):
        valid = rng.random(n) < rng.uniform(0.0, 1.0)
        return SequenceFeatures(rng.normal(0, scale, (n, dim)).astype(np.float32), valid)

    feats = WindowFeatures(
        text=seq(384, int(rng.integers(1, 40))) if present[0] else None,
        audio=seq(387, int(rng.integers(1, 200))) if present[1] else None,
        vision=seq(135, int(rng.integers(1, 16))) if present[2] else None,
    )
    r = shipped.predict(feats)
    assert r.coherent, (r.score, r.probs)
    assert r.label == SENTIMENT_CLASSES[score_to_class(r.score)]
    assert r.confidence == pytest.approx(float(r.probs[score_to_class(r.score)]))
    assert r.probs[SENTIMENT_CLASSES.index(r.label)] >= r.probs.max() - 1e-9
    for est in r.per_modality.values():
        assert est.coherent, (est.score, est.probs)
