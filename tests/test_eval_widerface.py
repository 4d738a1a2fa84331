"""WIDER FACE protocol: the fast evaluator against hand-computed APs and a slow literal reference."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from leanface.cli import main
from leanface.errors import LeanfaceError
from leanface.eval import (SETTINGS, WiderGroundTruth, evaluate, evaluate_detector, evaluate_folder,
                           load_ground_truth, present_images, read_prediction_file, write_prediction_file)

WIDER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "widerface"


# --- an independent, deliberately literal reference ---------------------------------------------
def _ref_iou(p, g):
    """Official convention on x, y, w, h boxes: x2 = x + w, and a box covers x1..x2 inclusive."""
    px2, py2, gx2, gy2 = p[0] + p[2], p[1] + p[3], g[0] + g[2], g[1] + g[3]
    iw = min(px2, gx2) - max(p[0], g[0]) + 1
    ih = min(py2, gy2) - max(p[1], g[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((gx2 - g[0] + 1) * (gy2 - g[1] + 1) + (px2 - p[0] + 1) * (py2 - p[1] + 1) - inter)


def reference_ap(images, thresh_num=1000):
    """images: list of (gt boxes, keep flags, predictions [x, y, w, h, score] in file order).

    Per prediction, per threshold Python loops, as the official MATLAB code is written.
    """
    scores = [p[4] for _, _, preds in images for p in preds]
    lo, hi = min(scores), max(scores)
    faces = sum(sum(bool(k) for k in keep) for _, keep, _ in images)
    proposals, true_pos = [0] * thresh_num, [0] * thresh_num
    for gt, keep, preds in images:
        if len(gt) == 0 or len(preds) == 0:
            continue
        norm = [(p[4] - lo) / (hi - lo) for p in preds]
        state = [0] * len(gt)  # 0 unmatched, 1 recalled, -1 hit while ignored
        counts = [True] * len(preds)
        recalled_upto = []
        for h, p in enumerate(preds):
            ious = [_ref_iou(p, g) for g in gt]
            best = 0
            for j in range(1, len(gt)):
                if ious[j] > ious[best]:
                    best = j
            if ious[best] >= 0.5:
                if not keep[best]:
                    state[best] = -1
                    counts[h] = False
                elif state[best] == 0:
                    state[best] = 1
            recalled_upto.append(state.count(1))
        for t in range(thresh_num):
            thr = 1 - (t + 1) / thresh_num
            above = [h for h in range(len(preds)) if norm[h] >= thr]
            if above:
                last = above[-1]
                proposals[t] += sum(counts[: last + 1])
                true_pos[t] += recalled_upto[last]
    precision = [tp / n if n else 0.0 for tp, n in zip(true_pos, proposals)]
    recall = [tp / faces for tp in true_pos]
    mrec, mpre = [0.0] + recall + [1.0], [0.0] + precision + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def make_gt(images) -> WiderGroundTruth:
    """images: list of (boxes, {setting: keep flags}) -> ground truth with keys ('ev', 'img<i>')."""
    return WiderGroundTruth(
        keys=tuple(("ev", f"img{i}") for i in range(len(images))),
        boxes=tuple(np.asarray(b, np.float64).reshape(-1, 4) for b, _ in images),
        keep={s: tuple(np.asarray(k[s], bool) for _, k in images) for s in SETTINGS},
    )


def fast_aps(gt_images, preds):
    gt = make_gt(gt_images)
    return evaluate(gt, {("ev", f"img{i}"): np.asarray(p, np.float64).reshape(-1, 5) for i, p in enumerate(preds)}).aps


def ref_aps(gt_images, preds):
    return {s: reference_ap([(b, k[s], p) for (b, k), p in zip(gt_images, preds)]) for s in SETTINGS}


# --- hand-made cases ---------------------------------------------------------------------------
A, B, C, D, E = [0, 0, 10, 10], [100, 0, 10, 10], [200, 0, 10, 10], [0, 0, 20, 20], [50, 50, 30, 30]
FP1, FP2 = [300, 300, 10, 10], [400, 400, 12, 12]

# Image 0: faces A, B, C; image 1: face D. Easy counts A, D; medium A, B, C, D; hard A, B, D.
CASE1_GT = [([A, B, C], {"easy": [1, 0, 0], "medium": [1, 1, 1], "hard": [1, 1, 0]}),
            ([D], {"easy": [1], "medium": [1], "hard": [1]})]
# Scores already span [0, 1], so normalisation leaves them alone. A is detected twice (tie at 0.8).
CASE1_PRED = [[C + [1.0], A + [0.8], A + [0.8], B + [0.2]],
              [FP1 + [0.9], D + [0.5], FP2 + [0.0]]]


def test_hand_case_ignored_duplicates_ties():
    # Cumulative (proposals, true positives) by score: hard (A, B, D count; C ignored):
    #   1.0 C->ignored (0,0); 0.9 FP (1,0); 0.8 A + dup (3,1); 0.5 D (4,2); 0.2 B (5,3); 0.0 FP (6,3)
    #   P/R: 0/0, 1/3 @ 1/3, 1/2 @ 2/3, 3/5 @ 1, 1/2 @ 1 -> envelope 3/5 everywhere -> AP = 0.6
    # easy (A, D count; B, C ignored): (0,0) (1,0) (3,1) (4,2) B ignored (4,2) (5,2)
    #   P/R: 1/3 @ 1/2, 1/2 @ 1, 2/5 @ 1 -> AP = 1/2 * 1/2 + 1/2 * 1/2 = 0.5
    # medium (all count): (1,1) (2,1) (4,2) (5,3) (6,4) (7,4)
    #   P/R: 1 @ 1/4, 1/2 @ 1/4, 1/2 @ 1/2, 3/5 @ 3/4, 2/3 @ 1 -> AP = 1/4 + 3/4 * 2/3 = 0.75
    fast = fast_aps(CASE1_GT, CASE1_PRED)
    assert fast == pytest.approx({"easy": 0.5, "medium": 0.75, "hard": 0.6}, abs=1e-12)
    assert fast == pytest.approx(ref_aps(CASE1_GT, CASE1_PRED), abs=1e-12)


def test_hand_case_empty_images():
    # Image 2 has face E and no detections: E still counts (hard: 4 faces). Image 3 has no faces:
    # the official code skips it, so its 0.95 detection is not a false positive.
    # hard P/R: 1/3 @ 1/4, 1/2 @ 2/4, 3/5 @ 3/4, 1/2 @ 3/4 -> AP = 3/4 * 3/5 = 0.45
    gt = CASE1_GT + [([E], {"easy": [1], "medium": [1], "hard": [1]}), ([], {"easy": [], "medium": [], "hard": []})]
    preds = CASE1_PRED + [[], [FP1 + [0.95]]]
    fast = fast_aps(gt, preds)
    assert fast["hard"] == pytest.approx(0.45, abs=1e-12)
    assert fast == pytest.approx(ref_aps(gt, preds), abs=1e-12)


def test_thresholds_and_normalisation():
    gt = [([A, B], {s: [1, 1] for s in SETTINGS})]
    # A hit at 1.0 and a false positive at 0.9995 share the first threshold (0.999): P/R 1/2 @ 1/2,
    # then B at 0.0: 2/3 @ 1 -> AP = 2/3 (ranking each detection alone would give 5/6).
    binned = [[A + [1.0], FP1 + [0.9995], B + [0.0]]]
    assert fast_aps(gt, binned)["hard"] == pytest.approx(2 / 3, abs=1e-12)
    # Raw scores 0.5003 / 0.5002 / 0.5001 all fall between thresholds 0.500 and 0.501; only the
    # normalisation to 1 / 0.5 / 0 separates them: P/R 1 @ 1/2, 1/2 @ 1/2, 2/3 @ 1 -> AP = 5/6.
    narrow = [[A + [0.5003], FP1 + [0.5002], B + [0.5001]]]
    assert fast_aps(gt, narrow)["hard"] == pytest.approx(5 / 6, abs=1e-12)
    # File order is honoured as in the official code: an unsorted file counts everything up to the
    # last detection above a threshold. Scores 0.1, 0.9, 0.5 -> 0, 1, 0.5 after normalisation;
    # at 0.999 the FP and A count (P/R 1/2 @ 1/2), at 0.5 all (2/3 @ 1) -> AP = 2/3 (sorted: 1.0).
    unsorted = [[FP1 + [0.1], A + [0.9], B + [0.5]]]
    assert fast_aps(gt, unsorted)["hard"] == pytest.approx(2 / 3, abs=1e-12)
    for preds in (binned, narrow, unsorted):
        assert fast_aps(gt, preds) == pytest.approx(ref_aps(gt, preds), abs=1e-12)


def test_equal_iou_goes_to_first_face():
    # Two identical faces; a detection on them matches the first (as max() in the official code).
    ignored_first = [([A, A], {s: [0, 1] for s in SETTINGS})]
    counted_first = [([A, A], {s: [1, 0] for s in SETTINGS})]
    preds = [[A + [0.9], FP1 + [0.1]]]
    assert fast_aps(ignored_first, preds)["hard"] == 0.0
    assert fast_aps(counted_first, preds)["hard"] == pytest.approx(1.0)
    assert fast_aps(ignored_first, preds) == pytest.approx(ref_aps(ignored_first, preds), abs=1e-12)


def test_no_predictions_at_all():
    gt = make_gt([([A], {s: [1] for s in SETTINGS})])
    result = evaluate(gt, {})
    assert result.aps == {"easy": 0.0, "medium": 0.0, "hard": 0.0}
    assert result.settings["hard"].faces == 1 and result.predictions == 0


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_match_reference(seed):
    # Crowded integer boxes (IoU near and exactly at 0.5), coarse scores (many ties), some images
    # without faces or detections, shuffled files; each setting keeps a random subset of faces.
    rng = np.random.default_rng(seed)
    gt_images, preds = [], []
    for _ in range(12):
        n_gt = int(rng.integers(0, 8))
        boxes = np.c_[rng.integers(0, 60, (n_gt, 2)), rng.integers(4, 20, (n_gt, 2))].tolist()
        keep = {s: rng.random(n_gt) < 0.6 for s in SETTINGS}
        gt_images.append((boxes, keep))
        rows = []
        for b in boxes:
            for _ in range(int(rng.integers(0, 3))):
                rows.append([b[0] + int(rng.integers(-3, 4)), b[1] + int(rng.integers(-3, 4)), b[2], b[3]])
        n_fp = int(rng.integers(0, 4))
        rows += np.c_[rng.integers(0, 70, (n_fp, 2)), rng.integers(4, 20, (n_fp, 2))].tolist()
        scores = rng.integers(0, 12, len(rows)) / 11 * 0.7 + 0.2
        pred = [r + [float(s)] for r, s in zip(rows, scores)]
        if rng.random() < 0.7:
            pred.sort(key=lambda r: -r[4])
        else:
            rng.shuffle(pred)
        preds.append(pred)
    assert fast_aps(gt_images, preds) == pytest.approx(ref_aps(gt_images, preds), abs=1e-12)
