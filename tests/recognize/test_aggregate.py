"""Set aggregation against hand-computed cases, including the QAN++ edge cases the authors' code gets wrong."""
import numpy as np
import pytest

from leanface.errors import LeanfaceError
from leanface.recognize.aggregate import aggregate, qan_weights


def test_qan_weights_by_hand():
    # qualities 1, 2, 4: rescaled 0, 1/3, 1 -> normalised 0, 1/4, 3/4
    np.testing.assert_allclose(qan_weights([1.0, 2.0, 4.0]), [0.0, 0.25, 0.75])
    np.testing.assert_allclose(qan_weights([-3.0, -1.0, -2.0]), [0.0, 2 / 3, 1 / 3])  # negative scores fine
    np.testing.assert_allclose(qan_weights([0.7, 0.7, 0.7]), [1 / 3] * 3)  # all equal: the mean, no 0/0
    np.testing.assert_allclose(qan_weights([5.0, -1.0]), [0.5, 0.5])  # two frames: the mean
    np.testing.assert_allclose(qan_weights([9.0]), [1.0])


def test_aggregators_by_hand():
    e = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 2]], np.float32)  # the last is not unit length
    q = np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(aggregate(e, method="mean"), np.ones(3) / np.sqrt(3), atol=1e-6)
    np.testing.assert_allclose(aggregate(e, q, "best"), [0, 0, 1])
    w = np.array([0.0, 0.25, 0.75])
    np.testing.assert_allclose(aggregate(e, q, "qan"), w / np.linalg.norm(w), atol=1e-6)
    np.testing.assert_allclose(aggregate(e, np.full(3, 0.5), "qan"), aggregate(e, method="mean"), atol=1e-6)


def test_aggregate_errors():
    e = np.eye(3, dtype=np.float32)
    with pytest.raises(LeanfaceError, match="needs frame qualities"):
        aggregate(e, method="qan")
    with pytest.raises(LeanfaceError, match="2 qualities for 3 frames"):
        aggregate(e, [1, 2], "qan")
    with pytest.raises(LeanfaceError, match="finite"):
        aggregate(e, [1, np.nan, 2], "qan")
    with pytest.raises(LeanfaceError, match="aggregator"):
        aggregate(e, method="max")
    with pytest.raises(LeanfaceError, match="K >= 1"):
        aggregate(np.zeros((0, 3)), method="mean")
