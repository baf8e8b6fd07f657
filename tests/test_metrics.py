"""Metrics against values computed by hand (see the comments)."""

import numpy as np
import pytest

from models.training import metrics

TRUTH = np.array([2.0, -1.0, 0.0, 0.5, -2.5])
PRED = np.array([1.5, 0.5, -0.2, 0.4, -3.4])


def test_mmsa_regression_hand_computed():
    m = metrics.mmsa_regression(PRED, TRUTH)
    # has-0: truth>=0 TFTTF, pred>=0 TTFTF -> 3 of 5 agree
    assert m["acc2_has0"] == pytest.approx(0.6)
    # non-0: the 0.0 sample dropped; truth>0 TFTF, pred>0 TTTF -> 3 of 4
    assert m["acc2_non0"] == pytest.approx(0.75)
    # weighted F1 non-0: class T F1 0.8, class F F1 2/3, 2 samples each
    assert m["f1_non0"] == pytest.approx((0.8 + 2 / 3) / 2)
    # weighted F1 has-0: class T (3 samples) F1 2/3, class F (2 samples) F1 0.5
    assert m["f1_has0"] == pytest.approx((3 * 2 / 3 + 2 * 0.5) / 5)
    # Acc-7: rounded pred 2,0,-0,0,-3 vs truth 2,-1,0,0,-2 (half to even) -> 3 of 5
    assert m["acc7"] == pytest.approx(0.6)
    # Acc-5: pred clipped to -2 -> 2,0,0,0,-2 vs 2,-1,0,0,-2 -> 4 of 5
    assert m["acc5"] == pytest.approx(0.8)
    assert m["mae"] == pytest.approx(3.2 / 5)
    # Pearson by hand: 10.96 / sqrt(11.3 * 13.972)
    assert m["corr"] == pytest.approx(10.96 / np.sqrt(11.3 * 13.972))


def test_mmsa_rejects_bad_input():
    with pytest.raises(ValueError):
        metrics.mmsa_regression([0.1, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError):
        metrics.mmsa_regression([], [])
    with pytest.raises(ValueError):
        metrics.mmsa_regression([1.0, 2.0], [1.0])


def test_expected_calibration_error_hand_computed():
    conf = np.array([0.9, 0.9, 0.62, 0.62, 0.3])
    correct = np.array([1, 0, 1, 1, 0])
    # bins: {0.9, 0.9}: |0.5 - 0.9| * 2/5; {0.62, 0.62}: |1 - 0.62| * 2/5; {0.3}: |0 - 0.3| * 1/5
    assert metrics.expected_calibration_error(conf, correct) == pytest.approx(0.16 + 0.152 + 0.06)
    assert metrics.expected_calibration_error([1.0, 1.0], [1, 1]) == pytest.approx(0.0)


def test_classification_and_temperature():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    truth = np.array([0, 1, 0, 1])
    c = metrics.classification(probs, truth)
    assert c["acc"] == pytest.approx(0.5)
    assert c["n"] == 4
    # over-confident logits on noisy labels want a temperature above 1
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    logits = np.eye(3)[np.where(rng.random(2000) < 0.6, y, rng.integers(0, 3, 2000))] * 10
    assert metrics.fit_temperature(logits, y) > 2
