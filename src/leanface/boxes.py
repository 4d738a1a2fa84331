"""Box maths for every family and task: IoU, DIoU, the box codecs, clipping and NMS.

Boxes are x1y1x2y2 rows. Every function takes NumPy arrays or torch tensors alike (the result has
the input's type), so training (torch), inference and evaluation (NumPy) share one definition.
`offset=1` is the "+1 pixel" convention of the official WIDER FACE tools (a box covers x1..x2
inclusive); 0 is mmcv's and the default.
"""
from __future__ import annotations

import sys

import numpy as np


def _xp(x):
    """torch for tensors, NumPy otherwise. torch is never imported here: a caller holding a tensor has it
    loaded already, and inference on ONNX Runtime starts faster without it."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(x, torch.Tensor) else np


def _iou(a, b, offset: float, eps: float):
    """IoU of a[..., 4] with b[..., 4], broadcast over the leading dims."""
    xp = _xp(a)
    wh = (xp.minimum(a[..., 2:], b[..., 2:]) - xp.maximum(a[..., :2], b[..., :2]) + offset).clip(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0] + offset) * (a[..., 3] - a[..., 1] + offset)
    area_b = (b[..., 2] - b[..., 0] + offset) * (b[..., 3] - b[..., 1] + offset)
    # 0/0 from degenerate boxes is 0, not NaN.
    return inter / (area_a + area_b - inter).clip(min=eps)


def box_iou(a, b, *, offset: float = 0.0, eps: float = 1e-6):
    """IoU of every box in a (M, 4) with every box in b (N, 4) -> (M, N)."""
    return _iou(a[:, None, :], b[None, :, :], offset, eps)


def aligned_iou(a, b, *, offset: float = 0.0, eps: float = 1e-6):
    """IoU of row i of a with row i of b (both (..., 4)) -> (...)."""
    return _iou(a, b, offset, eps)


def aligned_diou(a, b, eps: float = 1e-7):
    """Distance-IoU of aligned boxes: IoU - squared centre distance / squared enclosing diagonal."""
    xp = _xp(a)
    enclose = (xp.maximum(a[..., 2:], b[..., 2:]) - xp.minimum(a[..., :2], b[..., :2])).clip(min=0)
    diag2 = (enclose ** 2).sum(-1) + eps
    centre2 = (((a[..., :2] + a[..., 2:]) - (b[..., :2] + b[..., 2:])) ** 2).sum(-1) / 4
    return _iou(a, b, 0.0, eps) - centre2 / diag2


def distance_to_boxes(centres, dist):
    """SCRFD's codec: anchor centres (N, 2) and distances (N, 4) to the left, top, right, bottom sides."""
    xp = _xp(centres)
    cat = np.concatenate if xp is np else xp.cat
    return cat([centres - dist[..., :2], centres + dist[..., 2:]], -1)


def ssd_decode(loc: np.ndarray, priors: np.ndarray, variances: tuple[float, float]) -> np.ndarray:
    """SSD decoding in float32, in the official operation order: offsets (N, 4) and priors (N, 4) cx,cy,w,h
    -> (N, 4) x1y1x2y2, normalised like the priors."""
    v0, v1 = np.float32(variances[0]), np.float32(variances[1])
    centre = priors[:, :2] + loc[:, :2] * v0 * priors[:, 2:]
    size = priors[:, 2:] * np.exp(loc[:, 2:] * v1)
    top_left = centre - size / np.float32(2)
    return np.concatenate([top_left, top_left + size], axis=1)


def ssd_encode(boxes, priors, variances: tuple[float, float]):
    """Inverse of `ssd_decode` for training targets: boxes (N, 4) x1y1x2y2 and priors (N, 4) cx,cy,w,h,
    both normalised, tensors -> (N, 4) regression targets."""
    torch = _xp(boxes)
    centre = ((boxes[:, :2] + boxes[:, 2:]) / 2 - priors[:, :2]) / (variances[0] * priors[:, 2:])
    size = torch.log((boxes[:, 2:] - boxes[:, :2]).clamp_min(1e-6) / priors[:, 2:]) / variances[1]
    return torch.cat([centre, size], dim=1)


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> None:
    """Clip (N, 4) boxes in place to [0, width] x [0, height]."""
    np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float, offset: float = 0.0) -> np.ndarray:
    """Greedy NMS: indices kept, by descending score (ties by index); a box is dropped if its IoU with a
    kept one exceeds iou_thr."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iou = _iou(boxes[i][None], boxes[rest], offset, 1e-12)
        order = rest[iou <= iou_thr]
    return np.asarray(keep, dtype=np.int64)
