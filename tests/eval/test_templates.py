"""The set-to-set protocol: degradations, template construction, and aggregation that helps exactly
when the qualities tell good frames from bad (a constructed case with a known answer)."""
import numpy as np
import pytest

from leanface.errors import LeanfaceError
from leanface.eval.templates import DEGRADATIONS, build_templates, degrade, evaluate_templates
from leanface.recognize.identities import IdentityFaces


def _faces(ids=12, per=12, seed=0):
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, (ids * per, 112, 112, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(ids), per)
    return IdentityFaces(crops, labels, tuple(f"p{i}" for i in range(ids)), tuple(f"f{i}" for i in range(ids * per)),
                         np.ones(ids * per, bool))


def test_degradations_change_the_face_but_not_its_shape():
    img = np.tile(np.linspace(0, 255, 112, dtype=np.uint8)[None, :, None], (112, 1, 3))
    img[40:70, 30:80] = 255
    rng = np.random.default_rng(0)
    for kind in DEGRADATIONS:
        out = degrade(img, kind, rng)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - img).mean() > 1.0, kind
    with pytest.raises(LeanfaceError, match="degradation"):
        degrade(img, "rain", rng)


def test_templates_are_disjoint_and_degraded_as_stated():
    faces = _faces()
    ts = build_templates(faces, k=4, share=0.5, max_templates=3, seed=1)
    assert len(ts) == 12 * 3 and len(ts.crops) == 12 * 3 * 4
    per = np.bincount(ts.template)
    assert (per == 4).all()
    assert all(ts.degraded[ts.template == t].sum() == 2 for t in range(len(ts)))
    again = build_templates(faces, k=4, share=0.5, max_templates=3, seed=1)
    assert np.array_equal(ts.crops, again.crops)  # a seed is one fixed draw
    with pytest.raises(LeanfaceError, match="two identities"):
        build_templates(_faces(ids=1), k=4)


def test_quality_weighting_recovers_what_the_mean_loses():
    """Each identity has a direction; clean frames lie near it, degraded frames are pure noise. With
    qualities that mark the clean frames, QAN++ and best-frame beat the mean; with no signal they equal it."""
    rng = np.random.default_rng(0)
    faces = _faces(ids=40, per=8)
    ts = build_templates(faces, k=4, share=0.75, max_templates=2, seed=0)
    d = 64
    centres = rng.normal(size=(len(ts.identities), d))
    ident = ts.labels[ts.template]
    emb = np.where(ts.degraded[:, None], rng.normal(size=(len(ts.crops), d)) * 3,
                   centres[ident] + rng.normal(size=(len(ts.crops), d)) * 0.8)
    good = np.where(ts.degraded, 0.1, 0.9) + rng.uniform(0, 0.05, len(ts.crops))
    mean = evaluate_templates(emb, None, ts, "mean").accuracy
    qan = evaluate_templates(emb, good, ts, "qan").accuracy
    best = evaluate_templates(emb, good, ts, "best").accuracy
    flat = evaluate_templates(emb, np.full(len(ts.crops), 0.5), ts, "qan").accuracy
    assert qan > mean + 0.1 and best > mean + 0.1
    assert flat == pytest.approx(mean)
