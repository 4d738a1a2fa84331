"""The verification protocol against a literal re-implementation and hand-computed cases."""
import numpy as np
import pytest

from leanface.errors import LeanfaceError
from leanface.eval.verification import best_threshold, roc_curve, tar_at_far, verification_protocol


def _reference_threshold(scores, same):
    """Every midpoint between sorted distinct scores, and one below all: the first with the best accuracy."""
    values = np.unique(scores)
    candidates = [values[0] - 1.0] + [(a + b) / 2 for a, b in zip(values[:-1], values[1:])] + [values[-1] + 1.0]
    accs = [((scores > t) == same).mean() for t in candidates]
    return candidates[int(np.argmax(accs))], max(accs)


@pytest.mark.parametrize("seed", range(5))
def test_threshold_matches_the_literal_search(seed):
    rng = np.random.default_rng(seed)
    same = rng.random(300) < 0.5
    scores = np.round(rng.normal(same * 1.0, 0.8), 1)  # rounded: many ties
    t, acc = _reference_threshold(scores, same)
    ours = best_threshold(scores, same)
    assert ((scores > ours) == same).mean() == acc
    assert ours == pytest.approx(t)


def test_protocol_by_hand():
    # Two folds; each separable at its own threshold; the other fold's threshold is applied.
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.6, 0.7, 0.5, 0.55])
    same = np.array([1, 1, 0, 0, 1, 1, 0, 0], bool)
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    r = verification_protocol(scores, same, folds)
    # Fold 1's best threshold is 0.575 (0.55 < t < 0.6): on fold 0 it is perfect. Fold 0's is 0.5
    # (between 0.2 and 0.8): on fold 1 it calls 0.55 "same": 3 of 4 right.
    assert r.fold_thresholds == pytest.approx((0.575, 0.5))
    assert r.fold_accuracies == pytest.approx((1.0, 0.75))
    assert r.accuracy == pytest.approx(0.875) and r.accuracy_std == pytest.approx(0.125)
    assert r.pairs == 8 and r.folds == 2
    assert set(r.to_dict()) >= {"accuracy", "accuracy_std", "tar_at_far_1e-3", "tar_at_far_1e-2", "pairs", "folds"}


def test_tar_at_far_by_hand():
    neg = np.arange(1000) / 1000.0  # different pairs score 0.000 ... 0.999
    pos = np.array([0.9975, 0.9985, 0.5, 0.99])
    scores, same = np.r_[neg, pos], np.r_[np.zeros(1000, bool), np.ones(4, bool)]
    # FAR 1e-3: one different pair may pass, so the threshold is 0.998: only 0.9985 passes it.
    assert tar_at_far(scores, same, 1e-3) == pytest.approx(0.25)
    # FAR 1e-2: ten may pass: threshold 0.989: 0.9975, 0.9985 and 0.99 pass.
    assert tar_at_far(scores, same, 1e-2) == pytest.approx(0.75)
    fpr, tpr = roc_curve(scores, same)
    assert fpr[0] == 0 and tpr[-1] == 1 and np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_bad_inputs():
    with pytest.raises(LeanfaceError, match="as many"):
        verification_protocol(np.zeros(3), np.zeros(2, bool), np.zeros(3))
    with pytest.raises(LeanfaceError, match="NaN"):
        verification_protocol(np.array([np.nan, 1.0]), np.array([True, False]), np.array([0, 1]))
    with pytest.raises(LeanfaceError, match="two folds"):
        verification_protocol(np.ones(2), np.array([True, False]), np.zeros(2))
