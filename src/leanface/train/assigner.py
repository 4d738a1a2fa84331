"""Anchors and the ATSS assigner (Zhang et al. 2020) as used by SCRFD (SCRFD_FACTS 4.1).

Anchor order matches the head's flattened outputs: levels (strides 8, 16, 32) in turn, each
row-major over the grid (y then x), the anchors of a location consecutive. The centre of cell
(row i, col j) is (j*s, i*s): the cell's top-left corner, no half-cell offset.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..boxes import aligned_iou


@dataclass(frozen=True)
class Anchors:
    """All anchors of one input size. boxes: (M, 4) x1y1x2y2 pixels; centers: (M, 2);
    strides: (M,) the level stride of each anchor; sizes: (M,) side in pixels;
    level_counts: anchors per level."""

    boxes: torch.Tensor
    centers: torch.Tensor
    strides: torch.Tensor
    sizes: torch.Tensor
    level_counts: tuple[int, ...]


def make_anchors(height: int, width: int, strides=(8, 16, 32), base_sizes=(16, 64, 256), scales=(1.0, 2.0),
                 device: torch.device | str = "cpu") -> Anchors:
    """Square anchors of side base_size * scale at every cell of every level of an H x W input."""
    centers, sizes, level_strides, counts = [], [], [], []
    for stride, base in zip(strides, base_sizes):
        h, w = -(-height // stride), -(-width // stride)
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        c = torch.stack([xs, ys], -1).reshape(-1, 1, 2).float() * stride
        c = c.expand(-1, len(scales), 2).reshape(-1, 2)
        s = torch.tensor([base * k for k in scales], device=device, dtype=torch.float32).repeat(h * w)
        centers.append(c)
        sizes.append(s)
        level_strides.append(torch.full_like(s, float(stride)))
        counts.append(len(s))
    centers, sizes = torch.cat(centers), torch.cat(sizes)
    boxes = torch.cat([centers - sizes[:, None] / 2, centers + sizes[:, None] / 2], 1)
    return Anchors(boxes, centers, torch.cat(level_strides), sizes, tuple(counts))


def atss_assign(anchors: Anchors, gt_boxes: torch.Tensor, topk: int = 9) -> torch.Tensor:
    """Assign each anchor a ground-truth index or -1 (negative).

    gt_boxes: (N, 4) x1y1x2y2 pixels. Per level the `topk` anchors whose centres are nearest to a
    face's centre are its candidates; those with IoU >= mean + std (unbiased) of the candidates'
    IoUs whose centre lies inside the face (min distance to a side / sqrt(area) > 0.001, the
    SCRFD fork's mode 0) are positive. An anchor positive for several faces takes the one with
    the highest IoU. Returns (M,) int64.
    """
    m, n = anchors.boxes.shape[0], gt_boxes.shape[0]
    assigned = torch.full((m,), -1, dtype=torch.long, device=gt_boxes.device)
    if n == 0:
        return assigned
    gt_centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    candidates, start = [], 0
    for count in anchors.level_counts:
        dist = torch.cdist(anchors.centers[start:start + count], gt_centers)
        candidates.append(dist.topk(min(topk, count), dim=0, largest=False).indices + start)
        start += count
    cand = torch.cat(candidates)  # (K, N) anchor indices; positives are always candidates
    cand_ious = aligned_iou(anchors.boxes[cand], gt_boxes.expand_as(anchors.boxes[cand]))
    threshold = cand_ious.mean(0) + cand_ious.std(0)
    c = anchors.centers[cand]  # (K, N, 2)
    sides = torch.stack([c[..., 0] - gt_boxes[:, 0], c[..., 1] - gt_boxes[:, 1],
                         gt_boxes[:, 2] - c[..., 0], gt_boxes[:, 3] - c[..., 1]], -1)
    wh = gt_boxes[:, 2:] - gt_boxes[:, :2]
    inside = sides.min(-1).values / (wh[:, 0] * wh[:, 1]).clamp(min=1e-4).sqrt() > 0.001
    positive = (cand_ious >= threshold) & inside
    pos_anchor = cand[positive]
    pos_gt = torch.arange(n, device=gt_boxes.device).expand_as(cand)[positive]
    pos_iou = cand_ious[positive]
    best = torch.full((m,), -1.0, device=gt_boxes.device).scatter_reduce(0, pos_anchor, pos_iou, "amax")
    wins = pos_iou == best[pos_anchor]
    assigned[pos_anchor[wins]] = pos_gt[wins]
    return assigned

