"""The embed task's losses against values worked out element by element from their definitions
(RECOGNITION_FACTS 2), including ArcFace's fallback past pi and ArcNegFace's gradient-free weights."""
from __future__ import annotations

import math

import pytest
import torch

from leanface.train import MarginLoss, exclusive_regularizer, margin_logits
from leanface.train.margin import margin_loss

S, M = 64.0, 0.5


def _arc_target(c: float) -> float:
    if c > math.cos(math.pi - M):
        return math.cos(math.acos(c) + M)
    return c - M * math.sin(math.pi - M)


def test_arcface_target_and_fallback_branch():
    cos = torch.tensor([[0.5, 0.2, -0.1], [-0.95, 0.3, 0.1]], dtype=torch.float64)
    labels = torch.tensor([0, 0])
    got = margin_logits(cos, labels, MarginLoss(kind="arcface"))
    # Row 0: theta = pi/3, cos(pi/3 + 0.5) = sin(0.0235988) = 0.0235966; row 1 lies past pi - m: the linear fallback.
    assert got[0, 0].item() == pytest.approx(S * 0.0235966, abs=1e-6)
    assert got[1, 0].item() == pytest.approx(S * (-0.95 - 0.5 * 0.4794255), abs=1e-4)
    assert got[1, 0].item() == pytest.approx(S * _arc_target(-0.95), abs=1e-9)
    torch.testing.assert_close(got[:, 1:], S * cos[:, 1:])  # negatives unchanged


def test_cosface_subtracts_the_margin_from_the_target_only():
    cos = torch.tensor([[0.1, 0.7]], dtype=torch.float64)
    got = margin_logits(cos, torch.tensor([1]), MarginLoss(kind="cosface", scale=30, margin=0.35))
    torch.testing.assert_close(got, torch.tensor([[3.0, 30 * 0.35]], dtype=torch.float64))


def test_arcnegface_reweights_negatives_by_their_distance_to_the_margined_positive():
    cfg = MarginLoss(kind="arcnegface")
    rows = [[0.5, 0.2, -0.3, 0.9], [-0.95, 0.1, -0.9, 0.0]]
    cos = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0])
    got = margin_logits(cos, labels, cfg)
    for r, row in enumerate(rows):
        a = _arc_target(row[0])
        assert got[r, 0].item() == pytest.approx(S * a, abs=1e-9)
        for j in range(1, 4):
            t = 1.2 * math.exp(-(row[j] - a) ** 2 / 2.0)
            assert got[r, j].item() == pytest.approx(S * (t * (1 + row[j]) - 1), abs=1e-9)
    # Worked by hand for row 0, column 1: a = 0.0235966, t = 1.2 exp(-0.17640^2 / 2) = 1.181473.
    assert got[0, 1].item() == pytest.approx(S * (1.181473 * 1.2 - 1), abs=1e-4)
    # t carries no gradient: d logit_j / d cos_j = s * t_j exactly, and nothing flows to the target
    # column through the negatives' weights.
    got[0, 1].backward()
    t01 = 1.2 * math.exp(-(0.2 - _arc_target(0.5)) ** 2 / 2.0)
    assert cos.grad[0, 1].item() == pytest.approx(S * t01, abs=1e-9)
    assert cos.grad[0, 0].item() == 0.0


def test_far_negatives_and_ones_far_above_the_positive_weigh_less():
    cfg = MarginLoss(kind="arcnegface")
    cos = torch.tensor([[0.3, 0.3 - 0.47, -0.9, 0.99]], dtype=torch.float64)
    got = margin_logits(cos, torch.tensor([0]), cfg)
    a = _arc_target(0.3)
    t = [1.2 * math.exp(-(c - a) ** 2 / 2) for c in cos[0, 1:].tolist()]
    assert t[0] > t[1] and t[0] > t[2]  # the negative next to the margined positive weighs most
    assert got.shape == (1, 4)


def test_regularface_is_the_mean_largest_cosine_to_another_class():
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # unnormalised on purpose
    assert exclusive_regularizer(w).item() == pytest.approx(math.sqrt(0.5), abs=1e-6)
    w = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert exclusive_regularizer(w).item() == pytest.approx(-1.0, abs=1e-6)


def test_margin_warmup_ramps_linearly_and_the_loss_adds_its_terms():
    cfg = MarginLoss(kind="arcface", margin_warmup=2.0, label_smoothing=0.1, regularface=0.5, distill=2.0,
                     teacher="t.onnx")
    assert [cfg.margin_at(e) for e in (0, 1, 2, 5)] == [0.0, 0.25, 0.5, 0.5]
    torch.manual_seed(0)
    emb, w = torch.randn(4, 8), torch.randn(3, 8)
    cos = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(w, dim=1).T
    labels, teacher = torch.tensor([0, 1, 2, 0]), torch.randn(4, 8)
    out = margin_loss({"embedding": emb, "scores": cos, "weight": w}, labels, cfg, 1.0, w, teacher)
    ce = torch.nn.functional.cross_entropy(margin_logits(cos, labels, cfg, 0.25), labels, label_smoothing=0.1)
    distill = (1 - torch.nn.functional.cosine_similarity(emb, teacher)).mean()
    assert out["ce"].item() == pytest.approx(ce.item(), rel=1e-6)
    assert out["distill"].item() == pytest.approx(distill.item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx((ce + 0.5 * exclusive_regularizer(w) + 2.0 * distill).item(), rel=1e-6)
    assert out["margin"].item() == 0.25


def test_bad_loss_settings_are_one_line_errors():
    from leanface.errors import LeanfaceError

    with pytest.raises(LeanfaceError, match="margin.kind"):
        MarginLoss(kind="sphereface")
    with pytest.raises(LeanfaceError, match="scale"):
        MarginLoss(scale=0)
