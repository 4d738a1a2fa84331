"""Shared pieces of the SSD-style detectors (EResFD, EXTD): anchors, multibox heads, decoding
(their training loss is leanface.train.ssd_loss).

Both detectors predict on six maps at strides 4..128 with one square-ish anchor per location
(S3FD-style sizes 16..512 px) and SSD box encoding with variances (0.1, 0.2). Anchor order is
level-major (fine to coarse), then row-major (y outer, x inner), as the official code flattens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..boxes import ssd_decode
from .registry import ModelConfig, Postprocess, Preset


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


class SSDFamilyConfig(ModelConfig):
    """What EResFD and EXTD configs share (mixed into their frozen dataclasses, which define `anchors`)."""

    @property
    def has_landmarks(self) -> bool:
        return False

    @property
    def strides(self) -> tuple[int, ...]:
        return self.anchors.strides


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


class SSDDecoder:
    """Raw SSD outputs -> candidate boxes per image, before NMS (the Detector's shared path does NMS).

    outputs: [loc (B, N, 4), score (B, N) face probability], as `forward_export` returns them.
    Returns per image (boxes (K, 4) float32 x1y1x2y2 in network-input pixels, unclipped, scores (K,) float32,
    None): the anchors with score strictly above `score_thr` (the official `gt`), in anchor order.
    """

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
            boxes = ssd_decode(img_loc[keep], priors[keep], self.anchors.variances) * scale
            results.append((boxes.astype(np.float32), img_score[keep], None))
        return results


# The official test path: the 5000 best candidates above 0.05, greedy NMS at IoU 0.3 without the "+1"
# pixel convention on unclipped boxes, at most 750 detections per image.
# detect: the same path at the confident threshold every family's detect preset uses (0.5).
_OFFICIAL = Postprocess(score_thr=0.05, nms_thr=0.3, pre_nms_topk=5000, max_faces=750, clip_before_nms=False)
SSD_PRESETS = {"detect": Preset(_OFFICIAL.replace(score_thr=0.5)), "eval": Preset(_OFFICIAL)}


