"""SCRFD training losses (SCRFD_FACTS 4.1): quality focal loss, DIoU box loss, smooth-L1 landmarks.

Boxes and landmarks are compared in stride units (pixels / anchor stride), as the head predicts.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..boxes import aligned_diou, aligned_iou, distance_to_boxes
from ..errors import LeanfaceError
from .assigner import Anchors, atss_assign, make_anchors

# family -> factory(cfg, input_hw, device, weights) -> loss(net(x), boxes, landmarks, landmark_valid)
# returning {"loss", "cls", "box", "kps", "num_pos"}: scalar tensors.
_LOSSES: dict[str, Callable] = {}


def register_loss(family: str, factory: Callable) -> None:
    """Make a model family trainable: `factory(cfg, input_hw, device, weights)` builds its loss for (H, W)
    inputs; `weights` is the trainer's LossWeights."""
    _LOSSES[family] = factory


def loss_for(family: str) -> Callable:
    if family not in _LOSSES:
        raise LeanfaceError(f"model family {family!r} has no training loss, so it cannot be trained")
    return _LOSSES[family]


def quality_focal_loss(logits: torch.Tensor, quality: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Elementwise QFL: BCE(logit, q) * |q - sigmoid(logit)|^beta; q = IoU for positives, 0 else.

    The modulating factor is not detached (as in mmdet's GFL implementation).
    """
    bce = F.binary_cross_entropy_with_logits(logits, quality, reduction="none")
    return bce * (quality - logits.sigmoid()).abs().pow(beta)


def diou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - DIoU of aligned boxes (P, 4) x1y1x2y2 -> (P,)."""
    return 1 - aligned_diou(pred, target)


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0 / 9) -> torch.Tensor:
    """Elementwise smooth L1: 0.5 d^2 / beta for |d| < beta, else |d| - 0.5 beta."""
    d = (pred - target).abs()
    return torch.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)


@dataclass(frozen=True)
class LossWeights:
    """SCRFD's loss weights, and dense distillation from a teacher detector with the same anchor grid
    (strides 8/16/32, two anchors per cell, the official ONNX layout), run on exactly the student's view:
    kd_cls: QFL against the teacher's per-anchor scores as soft targets over all anchors; kd_box (DIoU) and
    kd_kps (smooth L1): the teacher's boxes and landmarks on anchors where its score is at least kd_conf,
    weighted by that score. kd_gt_floor: on anchors assigned to an annotated face the score target is at least
    the ground truth's (the IoU target of QFL): the teacher may raise an annotated face's score, never lower it
    (the official 2.5 GF scores faces that fill the frame low, and a student taught on close-ups learns that)."""

    cls: float = 1.0
    box: float = 2.0
    kps: float = 0.1
    qfl_beta: float = 2.0
    topk: int = 9
    teacher: str | None = None
    kd_cls: float = 1.0
    kd_box: float = 1.0
    kd_kps: float = 0.1
    kd_conf: float = 0.3
    kd_gt_floor: bool = False

    def __post_init__(self):
        if min(self.cls, self.box, self.kps, self.kd_cls, self.kd_box, self.kd_kps) < 0 or not 0 < self.kd_conf <= 1:
            raise LeanfaceError(f"loss: weights must be at least 0 and kd_conf in (0, 1], got {self}")


def _flatten(levels: list[tuple], index: int, channels: int) -> torch.Tensor | None:
    maps = [lv[index] for lv in levels]
    if maps[0] is None:
        return None
    b = maps[0].shape[0]
    return torch.cat([m.permute(0, 2, 3, 1).reshape(b, -1, channels) for m in maps], 1).float()


def _mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def scrfd_loss(outputs: list[tuple], boxes: list[torch.Tensor], landmarks: list[torch.Tensor],
               landmark_valid: list[torch.Tensor], anchors: Anchors,
               weights: LossWeights = LossWeights(), teacher: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Losses of one batch from the raw head outputs (see `leanface.models.scrfd.SCRFD.forward`).

    boxes[b]: (N_b, 4) x1y1x2y2 pixels of the input; landmarks[b]: (N_b, 5, 2); landmark_valid[b]:
    (N_b, 5) bool. teacher: (B, M, 15) the teacher's score, l t r b and ten landmark offsets (stride units)
    per anchor, in the student's anchor order, for the distillation terms (zero without it).
    Returns scalars loss (the sum to minimise), cls, box, kps, kd_cls, kd_box, kd_kps and num_pos.
    Normalisers are averaged over data-parallel ranks, as in mmdet.
    """
    cls = _flatten(outputs, 0, 1)[..., 0]  # (B, M) logits
    reg = _flatten(outputs, 1, 4)  # (B, M, 4) l, t, r, b in stride units
    kps = _flatten(outputs, 2, 10)  # (B, M, 10) or None
    batch, device = cls.shape[0], cls.device

    img_idx, anc_idx, gt_rows = [], [], []
    offset = 0
    for b in range(batch):
        assigned = atss_assign(anchors, boxes[b], weights.topk)
        pos = torch.nonzero(assigned >= 0).squeeze(1)
        img_idx.append(torch.full_like(pos, b))
        anc_idx.append(pos)
        gt_rows.append(assigned[pos] + offset)
        offset += len(boxes[b])
    img_idx, anc_idx, gt_rows = torch.cat(img_idx), torch.cat(anc_idx), torch.cat(gt_rows)
    all_boxes = torch.cat(boxes).to(device)

    stride = anchors.strides[anc_idx][:, None]
    centre = anchors.centers[anc_idx] / stride
    d = reg[img_idx, anc_idx]
    pred_box = distance_to_boxes(centre, d)
    target_box = all_boxes[gt_rows] / stride
    quality = torch.zeros_like(cls)
    quality[img_idx, anc_idx] = aligned_iou(pred_box.detach(), target_box)

    num_pos = _mean_over_ranks(torch.tensor(float(len(anc_idx)), device=device)).clamp(min=1.0)
    loss_cls = weights.cls * quality_focal_loss(cls, quality, weights.qfl_beta).sum() / num_pos

    # Positives are weighted by the predicted score, so confident anchors dominate the regression.
    score = cls[img_idx, anc_idx].detach().sigmoid()
    weight_sum = _mean_over_ranks(score.sum()).clamp(min=1.0)
    loss_box = weights.box * (score * diou_loss(pred_box, target_box)).sum() / weight_sum
    if kps is not None:
        visibility = torch.cat(landmark_valid).to(device).float()[gt_rows].mean(1)
        target_kps = (torch.cat(landmarks).to(device)[gt_rows] / stride[:, :, None] - centre[:, None, :]).reshape(-1, 10)
        per_anchor = smooth_l1(kps[img_idx, anc_idx], target_kps).sum(1)
        loss_kps = weights.kps * (per_anchor * visibility * score).sum() / weight_sum
    else:
        loss_kps = cls.new_zeros(())
    if teacher is not None:
        floor = quality if weights.kd_gt_floor else None
        kd = _distill_terms(cls, reg, kps, teacher.to(device).float(), anchors, weights, num_pos, floor)
    else:
        kd = dict.fromkeys(("kd_cls", "kd_box", "kd_kps"), cls.new_zeros(()))
    total = loss_cls + loss_box + loss_kps + kd["kd_cls"] + kd["kd_box"] + kd["kd_kps"]
    return {"loss": total, "cls": loss_cls, "box": loss_box, "kps": loss_kps, **kd,
            "num_pos": torch.tensor(float(len(anc_idx)))}


def _distill_terms(cls, reg, kps, teacher, anchors: Anchors, weights: LossWeights, num_pos,
                   floor: torch.Tensor | None = None) -> dict:
    """The weighted distillation terms (see LossWeights) of student maps against a teacher's (B, M, 15); floor:
    (B, M) least score targets (the ground truth's on its anchors, 0 elsewhere)."""
    t_score = teacher[..., 0] if floor is None else torch.maximum(teacher[..., 0], floor)
    kd_cls = weights.kd_cls * quality_focal_loss(cls, t_score, weights.qfl_beta).sum() / num_pos
    img_idx, anc_idx = torch.nonzero(t_score >= weights.kd_conf, as_tuple=True)
    w = t_score[img_idx, anc_idx]
    w_sum = _mean_over_ranks(w.sum()).clamp(min=1.0)
    stride = anchors.strides[anc_idx][:, None]
    centre = anchors.centers[anc_idx] / stride
    pred = distance_to_boxes(centre, reg[img_idx, anc_idx])
    target = distance_to_boxes(centre, teacher[img_idx, anc_idx, 1:5])
    kd_box = weights.kd_box * (w * diou_loss(pred, target)).sum() / w_sum
    if kps is not None:
        per_anchor = smooth_l1(kps[img_idx, anc_idx], teacher[img_idx, anc_idx, 5:15]).sum(1)
        kd_kps = weights.kd_kps * (w * per_anchor).sum() / w_sum
    else:
        kd_kps = cls.new_zeros(())
    return {"kd_cls": kd_cls, "kd_box": kd_box, "kd_kps": kd_kps}


def _scrfd_loss_factory(cfg, input_hw: tuple[int, int], device, weights: LossWeights):
    """SCRFD's training loss (ATSS, QFL, DIoU, landmarks) on the anchors of (H, W) inputs."""
    anchors = make_anchors(*input_hw, cfg.head.strides, cfg.head.base_sizes, cfg.head.anchor_scales, device)
    return functools.partial(scrfd_loss, anchors=anchors, weights=weights)


register_loss("scrfd", _scrfd_loss_factory)
