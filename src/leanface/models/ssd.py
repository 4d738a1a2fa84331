"""Shared pieces of the SSD-style detectors (EResFD, EXTD): anchors, multibox heads, decoding, training loss.

Both detectors predict on six maps at strides 4..128 with one square-ish anchor per location
(S3FD-style sizes 16..512 px) and SSD box encoding with variances (0.1, 0.2). Anchor order is
level-major (fine to coarse), then row-major (y outer, x inner), as the official code flattens.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SSDAnchorConfig:
    """One anchor per location on each level: `sizes[k]` px wide, `height_ratio` x that tall.

    `maxout_bg`: the stride-4 classifier predicts this many background logits and keeps their max
    (S3FD's max-out background label), the other levels predict (background, face).
    """

    strides: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    sizes: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    height_ratio: float = 1.0
    variances: tuple[float, float] = (0.1, 0.2)
    maxout_bg: int = 3

    @classmethod
    def from_dict(cls, d: dict) -> "SSDAnchorConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class SSDFamilyConfig:
    """What EResFD and EXTD configs share (mixed into their frozen dataclasses, which define `anchors`)."""

    @property
    def has_landmarks(self) -> bool:
        return False

    @property
    def strides(self) -> tuple[int, ...]:
        return self.anchors.strides

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        d = dict(d)
        d["anchors"] = SSDAnchorConfig.from_dict(d["anchors"])
        return cls(**{k: _tuples(v) for k, v in d.items()})


def _tuples(value):
    """JSON lists back to (nested) tuples, as the frozen configs hold them."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def feature_sizes(input_hw: tuple[int, int], num_levels: int = 6) -> list[tuple[int, int]]:
    """Map sizes (rows, cols) of both backbones: ceil(H/4) x ceil(W/4), then halved (rounding up) per level."""
    h, w = math.ceil(input_hw[0] / 4), math.ceil(input_hw[1] / 4)
    sizes = [(h, w)]
    for _ in range(num_levels - 1):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        sizes.append((h, w))
    return sizes


def ssd_priors(input_hw: tuple[int, int], anchors: SSDAnchorConfig) -> np.ndarray:
    """Anchors (N, 4) float32 (cx, cy, w, h) normalised by the input width/height.

    As the official code: centres (j + 0.5) / (W / stride) (the divisor is not the map size, so
    at 480 rows the last centres of coarse levels reach 1.0), computed in float64, no clipping.
    """
    in_h, in_w = input_hw
    out = []
    for (fh, fw), stride, size in zip(feature_sizes(input_hw, len(anchors.strides)), anchors.strides, anchors.sizes):
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) / (in_h / stride), (np.arange(fw) + 0.5) / (in_w / stride),
                             indexing="ij")
        wh = np.broadcast_to([size / in_w, size / in_h * anchors.height_ratio], (fh * fw, 2))
        out.append(np.concatenate([cx.reshape(-1, 1), cy.reshape(-1, 1), wh], axis=1))
    return np.concatenate(out).astype(np.float32)


def decode_boxes(loc: np.ndarray, priors: np.ndarray, variances: tuple[float, float]) -> np.ndarray:
    """SSD decoding in float32, in the official operation order: loc (N, 4) -> (N, 4) x1y1x2y2 normalised."""
    v0, v1 = np.float32(variances[0]), np.float32(variances[1])
    centre = priors[:, :2] + loc[:, :2] * v0 * priors[:, 2:]
    size = priors[:, 2:] * np.exp(loc[:, 2:] * v1)
    top_left = centre - size / np.float32(2)
    return np.concatenate([top_left, top_left + size], axis=1)


def encode_boxes(boxes: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """Inverse of `decode_boxes` for training targets: boxes (N, 4) x1y1x2y2 and priors (N, 4) cx,cy,w,h, both
    normalised -> (N, 4) regression targets."""
    centre = ((boxes[:, :2] + boxes[:, 2:]) / 2 - priors[:, :2]) / (variances[0] * priors[:, 2:])
    size = torch.log((boxes[:, 2:] - boxes[:, :2]).clamp_min(1e-6) / priors[:, 2:]) / variances[1]
    return torch.cat([centre, size], dim=1)


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU (A, B) of x1y1x2y2 boxes, without the "+1" pixel convention."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


class SSDLoss:
    """The official EXTD training loss (S3FD matching, hard negative mining), for EResFD and EXTD alike.

    Matching per image: every face gets its best anchor; anchors with IoU >= 0.35 are positive; then
    S3FD's scale compensation adds as positives the N best remaining anchors with IoU in (0.1, 0.35),
    N = (#faces whose best IoU >= 0.35 + #faces whose best IoU >= 0.5) // 2. Classification: cross-entropy
    over the positives and the 3x as many hardest negatives; regression: smooth L1 (beta 1) on the SSD
    encoding of the positives. Both are summed and divided by the number of positives.
    """

    def __init__(self, anchors: SSDAnchorConfig, input_hw: tuple[int, int], device: torch.device | str = "cpu",
                 neg_pos: int = 3, thresholds: tuple[float, float, float] = (0.1, 0.35, 0.5)):
        self.variances = anchors.variances
        self.neg_pos = neg_pos
        self.thresholds = thresholds
        self.priors = torch.from_numpy(ssd_priors(input_hw, anchors)).to(device)
        self.prior_boxes = torch.cat([self.priors[:, :2] - self.priors[:, 2:] / 2,
                                      self.priors[:, :2] + self.priors[:, 2:] / 2], 1)
        self.scale = torch.tensor([input_hw[1], input_hw[0]] * 2, dtype=torch.float32, device=device)

    def match(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """boxes (G, 4) x1y1x2y2 input pixels -> labels (N,) 0/1 and regression targets (N, 4)."""
        n = len(self.priors)
        if len(boxes) == 0:
            return torch.zeros(n, dtype=torch.long, device=self.priors.device), self.priors.new_zeros(n, 4)
        low, positive, high = self.thresholds
        gt = boxes.float() / self.scale
        iou = _box_iou(gt, self.prior_boxes)
        best_prior_iou, best_prior = iou.max(1)
        best_iou, best_gt = iou.max(0)
        best_iou[best_prior] = 2.0
        for j, p in enumerate(best_prior.tolist()):  # in order, so a later face wins a shared anchor
            best_gt[p] = j
        labels = (best_iou >= positive).long()
        extra = (int((best_prior_iou >= positive).sum()) + int((best_prior_iou >= high).sum())) // 2
        pool = torch.where((best_iou > low) & (best_iou < positive), best_iou, torch.zeros_like(best_iou))
        top = pool.topk(min(extra, n)).indices if extra else best_iou.new_zeros(0, dtype=torch.long)
        labels[top[pool[top] > low]] = 1
        return labels, encode_boxes(gt[best_gt], self.priors, self.variances)

    def __call__(self, outputs: tuple[torch.Tensor, torch.Tensor], boxes: list[torch.Tensor],
                 landmarks=None, landmark_valid=None) -> dict[str, torch.Tensor]:
        """outputs: `forward(x)` of the model; boxes[b]: (G_b, 4) x1y1x2y2 input pixels (landmarks are unused).

        Returns scalars loss (to minimise), cls, box, kps (always 0) and num_pos.
        """
        loc, conf = (o.float() for o in outputs)
        matched = [self.match(b.to(self.priors.device)) for b in boxes]
        labels = torch.stack([m[0] for m in matched])
        targets = torch.stack([m[1] for m in matched])
        pos = labels > 0
        num_pos = pos.sum(1)
        ce = F.cross_entropy(conf.reshape(-1, 2), labels.reshape(-1), reduction="none").view_as(labels).float()
        mining = ce.detach().masked_fill(pos, 0.0)
        rank = mining.argsort(1, descending=True).argsort(1)
        neg = rank < (self.neg_pos * num_pos).clamp(max=labels.shape[1] - 1)[:, None]
        total = num_pos.sum().clamp(min=1).float()
        if dist.is_available() and dist.is_initialized():
            # DDP averages gradients over ranks: dividing by the mean positive count makes that the
            # whole batch's sum over its positives, as the official (DataParallel) runs compute it.
            dist.all_reduce(total)
            total = total / dist.get_world_size()
        loss_cls = ce[pos | neg].sum() / total
        loss_box = F.smooth_l1_loss(loc[pos], targets[pos], reduction="sum", beta=1.0) / total
        return {"loss": loss_cls + loss_box, "cls": loss_cls, "box": loss_box, "kps": loss_cls.new_zeros(()),
                "num_pos": num_pos.sum().float()}


def ssd_loss(cfg, input_hw: tuple[int, int], device: torch.device | str = "cpu", weights=None) -> SSDLoss:
    """The training-loss hook of the SSD families (see `register_family`). The official loss has no
    weights to tune, so the trainer's LossWeights (SCRFD's) do not apply."""
    return SSDLoss(cfg.anchors, input_hw, device)


class SSDDecoder:
    """Raw SSD outputs -> candidate boxes per image, before NMS (the Detector's shared path does NMS).

    outputs: [loc (B, N, 4), score (B, N) face probability], as `forward_export` returns them.
    Returns per image (boxes (K, 4) float32 x1y1x2y2 in network-input pixels, unclipped, scores (K,) float32,
    None): the anchors with score strictly above `score_thr` (the official `gt`), at most the
    `pre_nms_top_k` best, by descending score. The official test path then runs greedy NMS at
    IoU 0.3 without the "+1" pixel convention on unclipped boxes and keeps at most 750.
    """

    nms_offset = 0.0  # the official NMS computes areas without the "+1" pixel convention
    clip_before_nms = False  # the official path runs NMS on unclipped boxes
    keep_top_k = 750  # at most this many detections per image after NMS
    pre_nms_top_k = 5000

    def __init__(self, cfg):
        self.anchors: SSDAnchorConfig = cfg.anchors
        self._priors: dict[tuple[int, int], np.ndarray] = {}

    def priors(self, input_hw: tuple[int, int]) -> np.ndarray:
        key = (int(input_hw[0]), int(input_hw[1]))
        if key not in self._priors:
            self._priors[key] = ssd_priors(key, self.anchors)
        return self._priors[key]

    def __call__(self, outputs, input_hw: tuple[int, int], score_thr: float):
        loc, score = (np.asarray(o, dtype=np.float32) for o in outputs)
        priors = self.priors(input_hw)
        if loc.shape[1] != len(priors):
            raise ValueError(f"{loc.shape[1]} anchors in the outputs, {len(priors)} expected at input {input_hw}")
        scale = np.array([input_hw[1], input_hw[0]] * 2, dtype=np.float32)
        results = []
        for img_loc, img_score in zip(loc, score):
            keep = np.flatnonzero(img_score > score_thr)
            keep = keep[np.argsort(-img_score[keep], kind="stable")[: self.pre_nms_top_k]]
            boxes = decode_boxes(img_loc[keep], priors[keep], self.anchors.variances) * scale
            results.append((boxes.astype(np.float32), img_score[keep], None))
        return results


class SSDDetector(nn.Module):
    """Six feature maps -> per-level loc/conf convs -> flat outputs in the official anchor order.

    Subclasses build `features(x) -> [6 maps (B, C, H_k, W_k)]`, fine to coarse.
    forward(x) -> (loc (B, N, 4) encoded offsets, conf (B, N, 2) logits (background, face)), the
    level-0 background logit being the max-out over `maxout_bg` logits.
    x: (B, 3, H, W) float32 RGB, (pixel - mean) / std; any H, W.
    """

    def __init__(self, anchors: SSDAnchorConfig, channels: int, head_kernel: int):
        super().__init__()
        self.anchors = anchors
        pad = head_kernel // 2
        levels = range(len(anchors.strides))
        self.loc = nn.ModuleList(nn.Conv2d(channels, 4, head_kernel, padding=pad) for _ in levels)
        self.conf = nn.ModuleList(
            nn.Conv2d(channels, anchors.maxout_bg + 1 if k == 0 else 2, head_kernel, padding=pad) for k in levels)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        locs, confs = [], []
        for k, f in enumerate(self.features(x)):
            conf = self.conf[k](f)
            if k == 0:
                bg = conf[:, : self.anchors.maxout_bg].amax(dim=1, keepdim=True)
                conf = torch.cat([bg, conf[:, self.anchors.maxout_bg:]], dim=1)
            locs.append(self.loc[k](f).permute(0, 2, 3, 1).reshape(b, -1, 4))
            confs.append(conf.permute(0, 2, 3, 1).reshape(b, -1, 2))
        return torch.cat(locs, 1), torch.cat(confs, 1)

    @property
    def output_names(self) -> list[str]:
        return ["loc", "score"]

    def forward_export(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc (B, N, 4) encoded offsets, score (B, N) softmax face probability)."""
        loc, conf = self(x)
        return loc, torch.softmax(conf, dim=-1)[..., 1]
