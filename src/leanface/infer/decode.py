"""Decoding raw model outputs into candidate boxes, and the one NMS every backend shares."""
from __future__ import annotations

from functools import lru_cache

import numpy as np


class DistanceDecoder:
    """SCRFD outputs (official ONNX layout) -> candidates in network-input pixels.

    outputs: score_s (B, N_s, 1) probabilities, bbox_s (B, N_s, 4) l,t,r,b in stride units,
    kps_s (B, N_s, 10) in stride units, for s in strides; N_s = H/s * W/s * anchors, location-major.
    Official ONNX files without a batch dim ((N_s, C)) are accepted too.
    """

    nms_offset = 0.0  # mmcv NMS (the WIDER protocol) uses no +1 pixel convention
    clip_before_nms = True  # the mmdet test path clips decoded boxes to the image before NMS
    keep_top_k = None  # max_per_img -1: keep every detection that survives NMS

    def __init__(self, strides: tuple[int, ...], num_anchors: int, has_landmarks: bool):
        self.strides = tuple(strides)
        self.num_anchors = num_anchors
        self.has_landmarks = has_landmarks

    def __call__(self, outputs: list[np.ndarray], input_hw: tuple[int, int], score_thr: float):
        n = len(self.strides)
        outputs = [o[None] if o.ndim == 2 else o for o in outputs]
        results = []
        for b in range(outputs[0].shape[0]):
            boxes, scores, kps = [], [], []
            for lvl, s in enumerate(self.strides):
                score = outputs[lvl][b, :, 0]
                idx = np.flatnonzero(score >= score_thr)
                centres = _centres(-(-input_hw[0] // s), -(-input_hw[1] // s), s, self.num_anchors)[idx]
                dist = outputs[n + lvl][b, idx] * s
                boxes.append(np.concatenate([centres - dist[:, :2], centres + dist[:, 2:]], axis=1))
                scores.append(score[idx])
                if self.has_landmarks:
                    offs = outputs[2 * n + lvl][b, idx].reshape(-1, 5, 2) * s
                    kps.append(centres[:, None, :] + offs)
            results.append((np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32),
                            np.concatenate(kps).astype(np.float32) if self.has_landmarks else None))
        return results


@lru_cache(maxsize=64)
def _centres(h: int, w: int, stride: int, anchors: int) -> np.ndarray:
    """Anchor centres (h*w*anchors, 2) as (x, y): cell corners j*s, i*s, row-major, anchor-minor."""
    ys, xs = np.mgrid[:h, :w]
    c = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) * stride
    c = np.repeat(c, anchors, axis=0)
    c.setflags(write=False)
    return c


def decoder_for(cfg):
    """The decoder for a model config (dispatch on family)."""
    if cfg.family == "scrfd":
        return DistanceDecoder(cfg.head.strides, cfg.head.num_anchors, cfg.head.use_kps)
    from ..models.registry import decoder_factory

    return decoder_factory(cfg.family)(cfg)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float, offset: float = 0.0) -> np.ndarray:
    """Greedy NMS: indices kept, by descending score; a box is dropped if IoU > iou_thr with a kept one.

    offset=1 gives the "+1 pixel" area convention of some official tools; 0 is mmcv's.
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + offset) * (y2 - y1 + offset)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + offset)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + offset)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[iou <= iou_thr]
    return np.asarray(keep, dtype=np.int64)
