"""The quality task: targets by hand (leave-one-out cosine to the identity centre), and `leanface train
--model qualitynet` on real identity folders, its scorer on PyTorch and ONNX agreeing."""
from __future__ import annotations

import numpy as np
import pytest

from leanface.cli import main
from leanface.errors import LeanfaceError
from leanface.export import export_onnx
from leanface.models import create_model
from leanface.recognize import QualityScorer
from leanface.recognize.embedder import DEFAULT_EMBEDDER
from leanface.train.quality import quality_targets, spearman

from ..conftest import SHARED, need


def test_quality_targets_by_hand():
    e = np.array([[1, 0], [0, 1], [1, 1], [3, 4]], np.float32)  # faces 0-2: identity 0; face 3: alone
    labels = np.array([0, 0, 0, 1])
    t = quality_targets(e, labels)
    s = 1 / np.sqrt(2)
    # face 0 against the mean of (0, 1) and (s, s): direction (s, 1 + s)
    expect0 = s / np.hypot(s, 1 + s)
    np.testing.assert_allclose(t[0], expect0, rtol=1e-6)
    np.testing.assert_allclose(t[1], expect0, rtol=1e-6)  # symmetric
    np.testing.assert_allclose(t[2], 1.0, rtol=1e-6)  # (1, 1) against (1, 1)/2: cosine 1
    assert np.isnan(t[3])
    assert quality_targets(np.array([[1, 0], [-1, 0]], np.float32), np.array([0, 0])).tolist() == [0.0, 0.0]  # clipped
    assert spearman(np.array([1, 2, 3.0]), np.array([10, 30, 20.0])) == pytest.approx(0.5)


def test_train_qualitynet_and_score(tmp_path, sface):
    data = need(SHARED / "data" / "recog_train" / "glint_sample")
    out = tmp_path / "q"
    rc = main(["train", "--model", "qualitynet", "--data", str(data), "--out-dir", str(out), "--epochs", "1",
               "--batch-size", "64", "--lr", "0.05", "--warmup-iters", "2", "--workers", "0", "--procs", "1",
               "--quiet", "--set", f"margin.teacher={sface}"])
    assert rc == 0 and (out / "model.pt").is_file()
    pt = QualityScorer(out / "model.pt", threads=1)
    export_onnx(create_model(None, out / "model.pt"), tmp_path / "q.onnx")
    ox = QualityScorer(tmp_path / "q.onnx", threads=1)
    import cv2

    crops = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(data.rglob("*.jpg"))[:8]])
    a, b = pt.score(crops), ox.score(crops)
    assert a.shape == (8,) and ((a > 0) & (a < 1)).all()
    np.testing.assert_allclose(a, b, atol=1e-4)
    with pytest.raises(LeanfaceError, match="aligned crops"):
        pt.score(crops[:, :64])
    with pytest.raises(LeanfaceError, match="not a face-quality network"):
        QualityScorer(DEFAULT_EMBEDDER)


def test_bundled_quality_net_scores_degraded_faces_lower():
    """The shipped net, on real aligned faces it never trained on the degraded versions of: a blurred,
    downscaled, occluded or JPEG-crushed copy scores below its clean original (measured: 100/100/96/86%)."""
    import cv2

    from leanface.eval.templates import degrade

    files = sorted(need(SHARED / "data" / "recog_train" / "glint_sample").rglob("*.jpg"))[::12]
    crops = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in files])
    scorer = QualityScorer(threads=1)
    clean = scorer.score(crops)
    rng = np.random.default_rng(0)
    for kind, share in (("motion_blur", 0.9), ("downscale", 0.9), ("occlusion", 0.8), ("jpeg", 0.65)):
        worse = scorer.score(np.stack([degrade(c, kind, rng) for c in crops]))
        assert (worse < clean).mean() >= share, kind
