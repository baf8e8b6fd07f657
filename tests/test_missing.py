"""Missing-data masks: LNLN's random drops, whole-modality drops, [UNK] text drops."""

import numpy as np
import pytest

from models.training.missing import SUBSETS, draw_presence, draw_rates, drop_steps


def test_drop_steps_rate_and_never_revives():
    rng = np.random.default_rng(0)
    valid = np.ones(20000, bool)
    valid[:5000] = False
    for rate in (0.0, 0.3, 0.9):
        out = drop_steps(valid, rate, rng)
        assert not out[:5000].any()  # a missing step stays missing
        kept = out[5000:].mean()
        assert kept == pytest.approx(1 - rate, abs=0.02)
    assert drop_steps(valid, 1.0, rng).sum() == 0
    with pytest.raises(ValueError):
        drop_steps(valid, 1.5, rng)


def test_draw_rates_half_complete():
    r = draw_rates(20000, np.random.default_rng(1))
    assert r.shape == (20000, 3)
    complete = (r == 0).all(1).mean()
    assert complete == pytest.approx(0.5, abs=0.02)
    rest = r[(r > 0).any(1)]
    assert rest.min() >= 0 and rest.max() <= 1
    assert rest.mean() == pytest.approx(0.5, abs=0.02)


def test_draw_presence_subsets():
    p = draw_presence(50000, np.random.default_rng(2), p_partial=0.4, p_none=0.02)
    assert p.all(1).mean() == pytest.approx(0.58, abs=0.01)
    assert (~p.any(1)).mean() == pytest.approx(0.02, abs=0.005)
    seen = {tuple(row) for row in p}
    assert set(SUBSETS) <= seen  # every non-empty subset occurs
    assert len(SUBSETS) == 7 and (True, True, True) == SUBSETS[0]


def test_text_drop_tokens_keeps_specials():
    from models.features.text import TextFeatureExtractor

    ex = TextFeatureExtractor()
    ids = ex.tokenize(["this movie was absolutely wonderful and i loved every minute of it"])[0]
    rng = np.random.default_rng(3)
    dropped = ex.drop_tokens(ids, 1.0, rng)
    assert dropped[0] == ids[0] and dropped[-1] == ids[-1]  # [CLS], [SEP] kept
    assert all(t == ex.unk_id for t in dropped[1:-1])
    assert ex.drop_tokens(ids, 0.0, rng) == ids
    half = [ex.drop_tokens(ids, 0.5, rng) for _ in range(400)]
    share = np.mean([np.mean(np.array(d[1:-1]) == ex.unk_id) for d in half])
    assert share == pytest.approx(0.5, abs=0.05)
    feats = ex.embed_ids([ids, dropped])
    assert feats[0].shape == (len(ids), 384) and feats[1].shape == (len(ids), 384)
    assert not np.allclose(feats[0], feats[1])
