"""Anchors, ATSS assignment and the SCRFD losses against hand-computed cases."""
from __future__ import annotations

import math

import pytest
import torch

from leanface.train import (LossWeights, WarmupStepSchedule, atss_assign, diou_loss, make_anchors,
                            quality_focal_loss, scrfd_loss, smooth_l1)

LN2 = math.log(2.0)


def test_anchor_layout():
    a = make_anchors(64, 64)
    # 64x64 input: 8x8, 4x4, 2x2 cells, 2 anchors each.
    assert a.level_counts == (128, 32, 8)
    assert a.boxes.shape == (168, 4)
    # Location-major, anchor-minor; centre of cell (i, j) is (j*s, i*s); sizes 16/32, 64/128, 256/512.
    torch.testing.assert_close(a.boxes[0], torch.tensor([-8.0, -8, 8, 8]))
    torch.testing.assert_close(a.boxes[1], torch.tensor([-16.0, -16, 16, 16]))
    torch.testing.assert_close(a.centers[2], torch.tensor([8.0, 0]))
    torch.testing.assert_close(a.centers[16], torch.tensor([0.0, 8]))  # second row
    torch.testing.assert_close(a.boxes[128], torch.tensor([-32.0, -32, 32, 32]))
    assert a.strides[127] == 8 and a.strides[128] == 16 and a.strides[160] == 32
    assert a.sizes[161] == 512
    assert make_anchors(640, 640).boxes.shape[0] == 16800  # 12800 + 3200 + 800, as the official model


def test_atss_single_face_by_hand():
    # Face [16,16,48,48] centred on a location of every level. With topk=2 the candidates are the 6
    # anchors at (32,32), sizes 16..512, IoUs 1/4, 1, 1/4, 1/16, 1/64, 1/256: mean 0.2637, unbiased
    # std 0.3774, threshold 0.6410 -> only the 32 px anchor of level 0 (index (4*8+4)*2+1 = 73).
    a = make_anchors(64, 64)
    assigned = atss_assign(a, torch.tensor([[16.0, 16, 48, 48]]), topk=2)
    assert torch.nonzero(assigned >= 0).flatten().tolist() == [73]
    # Face [0,0,64,64]: IoUs 1/16, 1/4, 1, 1/4, 1/16, 1/64 -> only the 64 px anchor of level 1:
    # index 128 + (2*4+2)*2 + 0 = 148.
    assigned = atss_assign(a, torch.tensor([[0.0, 0, 64, 64]]), topk=2)
    assert torch.nonzero(assigned >= 0).flatten().tolist() == [148]


def test_atss_conflict_goes_to_highest_iou():
    # Both faces want anchor 73 ([16,16,48,48]): IoU 1 with face 1, 1024/1088 with face 0.
    a = make_anchors(64, 64)
    faces = torch.tensor([[16.0, 16, 48, 50], [16.0, 16, 48, 48]])
    assigned = atss_assign(a, faces, topk=2)
    assert assigned[73] == 1
    assert torch.nonzero(assigned >= 0).flatten().tolist() == [73]


def test_atss_centre_must_be_inside():
    # Face [39,24,46,40] (7x16, centre (42.5, 32)): with topk=2 its best candidate is the 16 px anchor at
    # (40, 32) (index (4*8+5)*2 = 74, IoU 112/256 = 0.44 against a threshold near 0.27) -> positive.
    a = make_anchors(64, 64)
    assigned = atss_assign(a, torch.tensor([[39.0, 24, 46, 40]]), topk=2)
    assert torch.nonzero(assigned >= 0).flatten().tolist() == [74]
    # Shifted 1 px right, the same anchor has the same IoU but its centre lies on the face's left
    # edge (distance 0 / sqrt(area) is not > 0.001): no positive at all.
    assigned = atss_assign(a, torch.tensor([[40.0, 24, 47, 40]]), topk=2)
    assert (assigned == -1).all()


def test_atss_no_faces_and_real_scale():
    a = make_anchors(640, 640)
    assert (atss_assign(a, torch.zeros((0, 4))) == -1).all()
    # topk=9 over 3 levels: at most 27 candidates per face, positives inside the face.
    faces = torch.tensor([[100.0, 100, 140, 150], [300, 200, 500, 420], [10, 600, 18, 610]])
    assigned = atss_assign(a, faces)
    for k in range(3):
        pos = torch.nonzero(assigned == k).flatten()
        assert 1 <= len(pos) <= 27
        c = a.centers[pos]
        f = faces[k]
        assert ((c[:, 0] > f[0]) & (c[:, 0] < f[2]) & (c[:, 1] > f[1]) & (c[:, 1] < f[3])).all()


def test_quality_focal_loss_by_hand():
    logits = torch.zeros(3)
    q = torch.tensor([0.0, 1.0, 0.5])
    # BCE(0, q) = ln 2 for any q; factor |q - 0.5|^2 = 0.25, 0.25, 0.
    torch.testing.assert_close(quality_focal_loss(logits, q), torch.tensor([LN2 / 4, LN2 / 4, 0.0]))
    # logit ln 3 -> p = 0.75; target 0: BCE = -ln(0.25) = ln 4, factor 0.75^2.
    torch.testing.assert_close(quality_focal_loss(torch.tensor([math.log(3.0)]), torch.tensor([0.0])),
                               torch.tensor([math.log(4.0) * 0.5625]))


def test_diou_loss_by_hand():
    pred = torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 2]])
    target = torch.tensor([[1.0, 1, 3, 3], [0, 0, 2, 2]])
    # IoU 1/7; enclosing 3x3 -> diagonal^2 18; centre distance^2 2 -> DIoU 1/7 - 1/9.
    torch.testing.assert_close(diou_loss(pred, target), torch.tensor([1 - (1 / 7 - 2 / 18), 0.0]),
                               atol=1e-6, rtol=0)


def test_smooth_l1_by_hand():
    out = smooth_l1(torch.tensor([0.05, 1.0, -2.0]), torch.zeros(3))
    torch.testing.assert_close(out, torch.tensor([0.5 * 0.0025 * 9, 1 - 1 / 18, 2 - 1 / 18]))


def _outputs(kps: bool):
    """Raw head maps for a 64x64 input, batch 1, all logits -30 (background)."""
    levels = []
    for s in (8, 16, 32):
        n = 64 // s
        levels.append((torch.full((1, 2, n, n), -30.0), torch.zeros((1, 8, n, n)),
                       torch.zeros((1, 20, n, n)) if kps else None))
    return levels


def test_scrfd_loss_by_hand():
    # Face [16,16,48,48]: with topk=2 its only positive is anchor 73 = level 0, cell (4, 4), anchor 1.
    out = _outputs(kps=True)
    cls, reg, kps = out[0]
    cls[0, 1, 4, 4] = 0.0  # p = 0.5 -> box/landmark weight 0.5
    reg[0, 4:8, 4, 4] = torch.tensor([1.0, 2, 2, 2])  # l t r b in strides; the truth is 2 2 2 2
    face = torch.tensor([[16.0, 16, 48, 48]])
    lm = torch.tensor([[[40.0, 32], [40, 32], [40, 32], [40, 32], [40, 32]]])  # 1 stride right of the centre
    valid = torch.tensor([[True, True, True, False, False]])
    loss = scrfd_loss(out, [face], [lm], [valid], make_anchors(64, 64), LossWeights(topk=2))
    # Prediction [3,2,6,6] vs truth [2,2,6,6] (stride units): IoU 12/16; DIoU = 0.75 - 0.25/32.
    diou = 1 - (0.75 - 0.25 / 32)
    qfl_pos = LN2 * (0.75 - 0.5) ** 2  # BCE at logit 0 is ln 2 for any target; quality target = IoU 0.75
    qfl_neg = 167 * math.log1p(math.exp(-30.0)) * (1 / (1 + math.exp(30.0))) ** 2  # negligible
    assert loss["num_pos"] == 1
    # Normalisers: one positive for QFL; weight sum 0.5 clamped to 1 for box and landmarks.
    assert loss["cls"].item() == pytest.approx(qfl_pos + qfl_neg, rel=1e-5)
    assert loss["box"].item() == pytest.approx(2.0 * 0.5 * diou, rel=1e-5)
    # Landmark targets (1, 0) per point vs prediction 0: smooth-L1 (1 - 1/18) on the 5 x-offsets;
    # weight = mean visibility 3/5 x score 0.5.
    assert loss["kps"].item() == pytest.approx(0.1 * 5 * (1 - 1 / 18) * 0.6 * 0.5, rel=1e-5)
    assert loss["loss"].item() == pytest.approx((loss["cls"] + loss["box"] + loss["kps"]).item())


def test_scrfd_loss_without_faces_or_landmark_head():
    out = _outputs(kps=False)
    loss = scrfd_loss(out, [torch.zeros((0, 4))], [torch.zeros((0, 5, 2))], [torch.zeros((0, 5), dtype=torch.bool)],
                      make_anchors(64, 64))
    assert loss["num_pos"] == 0 and loss["box"] == 0 and loss["kps"] == 0
    # Every anchor is a negative: 168 x BCE(-30, 0) p^2, divided by max(num_pos, 1).
    p = 1 / (1 + math.exp(30.0))
    assert loss["cls"].item() == pytest.approx(168 * math.log1p(math.exp(-30.0)) * p * p, rel=1e-4)


def test_gradients_reach_every_output():
    out = _outputs(kps=True)
    tensors = [t.requires_grad_() for level in out for t in level]
    loss = scrfd_loss(out, [torch.tensor([[16.0, 16, 48, 48]])], [torch.full((1, 5, 2), 32.0)],
                      [torch.ones((1, 5), dtype=torch.bool)], make_anchors(64, 64), LossWeights(topk=2))
    loss["loss"].backward()
    assert tensors[1].grad[0, 4:8, 4, 4].abs().sum() == 0  # exact box: DIoU gradient is zero at the optimum
    assert tensors[0].grad[0, 1, 4, 4] != 0 and tensors[2].grad is not None


def test_warmup_step_schedule():
    s = WarmupStepSchedule(iters_per_epoch=10, warmup_iters=100, warmup_ratio=0.001, steps=(44, 54))
    assert s(0) == pytest.approx(0.001)
    assert s(50) == pytest.approx(1 - 0.5 * 0.999)  # mmcv linear warm-up
    assert s(100) == 1.0 and s(439) == 1.0
    assert s(440) == pytest.approx(0.1) and s(540) == pytest.approx(0.01)
