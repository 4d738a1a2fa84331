"""The one post-processing path of every detector family and backend: candidates -> Faces.

A family's decoder (leanface.models) turns the network's outputs into candidates in network-input
pixels; here the family's `Postprocess` settings cut them to the best k, run NMS, cap the count,
clip and map them back to the original image.
"""
from __future__ import annotations

import numpy as np

from ..boxes import clip_boxes, nms
from ..models.registry import Postprocess
from .preprocess import Placement
from .results import Faces


def postprocess(candidates, p: Placement, settings: Postprocess, source: str | None = None) -> Faces:
    """candidates: (boxes (K, 4), scores (K,), landmarks (K, 5, 2) or None) from a family's decoder."""
    boxes, scores, kps = candidates
    k = settings.pre_nms_topk
    if k is not None and len(scores) > k:
        # The k best by score (ties by index), kept in the decoder's order so NMS breaks ties as without the cut.
        top = np.sort(np.argsort(-scores, kind="stable")[:k])
        boxes, scores, kps = boxes[top], scores[top], None if kps is None else kps[top]
    if settings.clip_before_nms:
        clip_boxes(boxes, p.new_w, p.new_h)
    keep = nms(boxes, scores, settings.nms_thr, settings.nms_offset)
    if settings.max_faces is not None:
        keep = keep[:settings.max_faces]
    boxes = boxes[keep]
    clip_boxes(boxes, p.new_w, p.new_h)  # returned boxes always lie inside the image (not the padding)
    scale = np.array([p.scale_x, p.scale_y], np.float32)
    boxes /= np.tile(scale, 2)
    landmarks = None if kps is None else kps[keep] / scale
    return Faces(boxes, scores[keep], landmarks, p.width, p.height, source)
