"""Speed of the WIDER FACE evaluator.

1. A real prediction folder (e.g. from `leanface eval --model ...`) on the validation images present:
   reading the files, and scoring them (median of repeats); extrapolated to the 3,226-image set by
   the number of predictions.
2. The full official set, measured: each of the 3,226 images gets as many detections per face as the
   real folder has (annotations jittered by 15% plus random false positives), scored in one call.
Needs ../shared; run: .venv/bin/python bench/bench_eval.py --preds runs/eval/scrfd_500m_kps-640
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from leanface.data import load_ground_truth, present_images
from leanface.eval import evaluate, read_predictions

WIDER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "widerface"


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def synthetic(gt, per_face: float, seed: int = 0) -> dict:
    """Predictions for every image: jittered annotations plus false positives, `per_face` rows per face."""
    rng = np.random.default_rng(seed)
    preds = {}
    for key, b in zip(gt.keys, gt.boxes):
        n_fp = max(1, int(round(per_face * len(b))) - len(b))
        jit = b + rng.normal(0, 0.15, b.shape) * np.c_[b[:, 2:], b[:, 2:]]
        fp = np.c_[rng.uniform(0, 1000, (n_fp, 2)), rng.uniform(4, 120, (n_fp, 2))]
        rows = np.r_[np.c_[jit, rng.uniform(0.2, 1, len(b))], np.c_[fp, rng.uniform(0.02, 0.7, n_fp)]]
        preds[key] = rows[np.argsort(-rows[:, 4], kind="stable")]
    return preds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preds", required=True, help="a WIDER submission folder for the present images")
    ap.add_argument("--data", default=str(WIDER))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    t_gt, gt = timed(lambda: load_ground_truth(args.data), 1)
    sub = gt.subset([k for k, _ in present_images(gt, args.data)])
    t_read, preds = timed(lambda: read_predictions(args.preds), args.repeats)
    t_score, result = timed(lambda: evaluate(sub, preds), args.repeats)
    n_pred = result.predictions
    n_faces = sum(len(b) for b in sub.boxes)
    all_faces = sum(len(b) for b in gt.boxes)
    print(f"ground truth (.mat x4): {t_gt:.2f} s")
    print(f"subset: {result.images} images, {n_pred} predictions ({n_pred / result.images:.0f}/image), "
          f"APs " + " / ".join(f"{100 * v:.2f}" for v in result.aps.values()))
    print(f"  read files {t_read:.3f} s, score {t_score:.3f} s (median of {args.repeats})")
    scale = all_faces / n_faces
    print(f"  extrapolated to {len(gt.keys)} images (x{scale:.1f} by faces): read {t_read * scale:.2f} s, "
          f"score {t_score * scale:.2f} s")
    full = synthetic(gt, per_face=n_pred / n_faces)
    t_full, full_result = timed(lambda: evaluate(gt, full), args.repeats)
    print(f"full set measured: {full_result.images} images, {full_result.predictions} synthetic predictions, "
          f"score {t_full:.3f} s (median of {args.repeats})")


if __name__ == "__main__":
    main()
