"""The official WIDER FACE validation protocol (easy / medium / hard AP), exact and vectorised.

Step for step what the official MATLAB code and its Python ports do (SCRFD_FACTS §5):
- ground truth from `wider_face_val.mat`; a face counts in a setting iff it is on that setting's
  keep-list (`wider_{easy,medium,hard}_val.mat`, 1-based indices); other faces are "ignored";
- scores are min-max normalised over every prediction of the evaluated images;
- boxes are x, y, w, h with x2 = x + w and the +1-pixel IoU convention; a match needs IoU >= 0.5;
- per image, predictions are taken in file order: each is matched to its max-IoU face (first on
  ties); a match to an ignored face makes the prediction neither true nor false positive, the first
  match to a counted face recalls it, any later match to it is a false positive;
- images without ground-truth faces or without predictions are skipped, but their counted faces
  still enter the recall denominator;
- 1000 thresholds 1 - (k+1)/1000; at each, an image contributes its predictions up to the *last*
  one scoring >= the threshold (so an unsorted file behaves exactly as in the official code);
- AP is the VOC all-point area under the resulting precision/recall curve.
Only the images present on disk are evaluated; outputs say how many. Two corner cases where the
official code yields NaN are defined here: a prediction set with a single distinct score counts at
every threshold, and a setting without counted faces has AP 0.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..boxes import box_iou
from ..data.wider_gt import SETTINGS, Key, WiderGroundTruth, load_ground_truth, present_images
from ..errors import LeanfaceError

THRESH_NUM = 1000
IOU_THR = 0.5


@dataclass(frozen=True)
class SettingResult:
    """One setting: AP and the curve at the 1000 thresholds (index k <-> score >= 1 - (k+1)/1000).

    precision: (1000,) float64, 0 where nothing counts yet; recall: (1000,) float64.
    """
    ap: float
    faces: int
    precision: np.ndarray
    recall: np.ndarray


@dataclass(frozen=True)
class WiderResult:
    """The three settings evaluated on `images` images of `events` events."""
    settings: Mapping[str, SettingResult]
    images: int
    events: int
    predictions: int

    @property
    def aps(self) -> dict[str, float]:
        return {s: self.settings[s].ap for s in SETTINGS}


def _best_match(pred: np.ndarray, gt: np.ndarray, iou_thr: float) -> tuple[np.ndarray, np.ndarray]:
    """For each prediction (x, y, w, h rows): index of its max-IoU face and whether that IoU >= iou_thr."""
    p = pred[:, :4].copy()
    p[:, 2:] += p[:, :2]
    g = gt.copy()
    g[:, 2:] += g[:, :2]
    best = np.empty(len(p), dtype=np.int64)
    hit = np.empty(len(p), dtype=bool)
    rows = max(1, 4_000_000 // max(len(g), 1))  # bounds the (N, G) temporaries in crowded images
    for s in range(0, len(p), rows):
        iou = box_iou(p[s:s + rows], g, offset=1.0, eps=1e-12)  # the official "+1 pixel" convention
        best[s:s + rows] = iou.argmax(axis=1)
        hit[s:s + rows] = iou[np.arange(len(iou)), best[s:s + rows]] >= iou_thr
    return best, hit


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point AP: area under the precision envelope, summed where recall changes."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def evaluate(gt: WiderGroundTruth, predictions: Mapping[Key, np.ndarray], iou_thr: float = IOU_THR,
             thresh_num: int = THRESH_NUM) -> WiderResult:
    """Score predictions on every image of `gt` (use `gt.subset(...)` for the images present).

    predictions: (event, name) -> (N, 5) x, y, w, h in pixels and score, in file order; an image
    without an entry has no detections. Entries for images not in `gt` are not used (nor normalised).
    """
    preds = [np.asarray(predictions.get(k, np.zeros((0, 5))), dtype=np.float64).reshape(-1, 5) for k in gt.keys]
    n_pred = sum(len(p) for p in preds)
    scores = [p[:, 4] for p in preds]
    if n_pred:
        lo = min(float(s.min()) for s in scores if len(s))
        hi = max(float(s.max()) for s in scores if len(s))
        # One distinct score cannot be min-max normalised; it then counts at every threshold.
        scores = [(s - lo) / (hi - lo) if hi > lo else np.ones_like(s) for s in scores]

    # Matching does not depend on the setting: do it once, concatenated over the dataset.
    gt_offset = np.cumsum([0] + [len(b) for b in gt.boxes])
    match, hit, eff = [], [], []
    for i, (p, b) in enumerate(zip(preds, gt.boxes)):
        if len(p) == 0 or len(b) == 0:
            continue
        best, h = _best_match(p, b, iou_thr)
        match.append(best + gt_offset[i])
        hit.append(h)
        # Prediction j counts at threshold t iff some prediction at or after j in the file scores >= t.
        eff.append(np.maximum.accumulate(scores[i][::-1])[::-1])
    match = np.concatenate(match) if match else np.zeros(0, np.int64)
    hit = np.concatenate(hit) if hit else np.zeros(0, bool)
    eff = np.concatenate(eff) if eff else np.zeros(0)

    thresholds = 1.0 - (np.arange(thresh_num) + 1) / thresh_num  # descending, as the official loop
    first_k = thresh_num - np.searchsorted(thresholds[::-1], eff, side="right")  # first threshold index counting it

    settings = {}
    for setting in SETTINGS:
        keep = np.concatenate(gt.keep[setting]) if gt.keys else np.zeros(0, bool)
        kept = keep[match]
        on_kept = hit & kept
        proposal = ~(hit & ~kept)
        # Only the first prediction matching a counted face recalls it.
        recalled = np.zeros(len(match), dtype=bool)
        _, first = np.unique(np.where(on_kept, match, -1), return_index=True)
        recalled[first] = True
        recalled &= on_kept
        n_prop = np.cumsum(np.bincount(first_k, weights=proposal, minlength=thresh_num + 1))[:thresh_num]
        n_tp = np.cumsum(np.bincount(first_k, weights=recalled, minlength=thresh_num + 1))[:thresh_num]
        faces = int(keep.sum())
        precision = np.divide(n_tp, n_prop, out=np.zeros(thresh_num), where=n_prop > 0)
        recall = n_tp / faces if faces else np.zeros(thresh_num)
        settings[setting] = SettingResult(ap=voc_ap(recall, precision), faces=faces, precision=precision,
                                          recall=recall)
    return WiderResult(settings=settings, images=len(gt.keys), events=gt.events, predictions=n_pred)


@dataclass(frozen=True)
class FolderEvaluation:
    """A prediction folder scored on the validation images present on disk.

    missing: "<event>/<name>" of evaluated images with no prediction file (scored as no detections).
    extra: prediction files that match no evaluated image (not used).
    """
    result: WiderResult
    total_images: int
    total_events: int
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    seconds: float

    def summary(self) -> dict:
        """JSON-ready: APs as fractions, what was evaluated, and what did not match."""
        r = self.result
        return {
            **{s: r.settings[s].ap for s in SETTINGS},
            "images": r.images,
            "events": r.events,
            "subset": r.images < self.total_images,
            "protocol_images": self.total_images,
            "protocol_events": self.total_events,
            "faces": {s: r.settings[s].faces for s in SETTINGS},
            "predictions": r.predictions,
            "missing_predictions": len(self.missing),
            "extra_predictions": len(self.extra),
            "missing_examples": list(self.missing[:10]),
            "extra_examples": list(self.extra[:10]),
            "eval_seconds": round(self.seconds, 3),
        }


def evaluate_folder(preds: str | os.PathLike, data: str | os.PathLike,
                    ground_truth: WiderGroundTruth | None = None) -> FolderEvaluation:
    """Score a WIDER submission folder (<event>/<name>.txt) on the val images present under `data`."""
    from .submission import read_predictions

    t0 = time.perf_counter()
    gt = ground_truth if ground_truth is not None else load_ground_truth(data)
    present = [k for k, _ in present_images(gt, data)]
    predictions = read_predictions(preds)
    present_set = set(present)
    if not present_set & set(predictions):
        raise LeanfaceError(f"{preds}: no prediction file matches any of the {len(present)} validation images "
                            f"present (expected <event>/<image>.txt)")
    sub = gt.subset(present)
    result = evaluate(sub, predictions)
    return FolderEvaluation(
        result=result,
        total_images=len(gt.keys),
        total_events=gt.events,
        missing=tuple(f"{e}/{n}" for e, n in sub.keys if (e, n) not in predictions),
        extra=tuple(sorted(f"{e}/{n}" for e, n in predictions if (e, n) not in present_set)),
        seconds=time.perf_counter() - t0,
    )
