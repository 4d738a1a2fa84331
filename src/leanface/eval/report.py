"""End-to-end WIDER FACE runs: detector -> submission folder -> APs, saved as JSON + PR-curve PNG."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import LeanfaceError
from ..files import atomic_write
from .plots import plot_pr_curves
from .submission import predict_images
from ..data.wider_gt import WiderGroundTruth, load_ground_truth, present_images
from .widerface import FolderEvaluation, evaluate_folder

RECORD_NAME = "widerface_eval.json"
PLOT_NAME = "widerface_pr.png"


def evaluate_detector(detector: Callable[[list[np.ndarray]], Sequence], data: str | os.PathLike,
                      out_dir: str | os.PathLike, batch_size: int = 8,
                      read_image: Callable[[Path], np.ndarray] | None = None, progress: bool = True,
                      ground_truth: WiderGroundTruth | None = None) -> tuple[FolderEvaluation, dict]:
    """Run `detector` (see `predict_images`) on the val images present, write the submission folder, score it.

    Returns the evaluation and timings {"detector_seconds", "ms_per_image"}. Scoring reads the
    written files back, so the numbers equal `evaluate_folder(out_dir, data)`.
    """
    gt = ground_truth if ground_truth is not None else load_ground_truth(data)
    images = present_images(gt, data)
    seconds = predict_images(detector, images, out_dir, batch_size=batch_size, read_image=read_image,
                             progress=progress)
    evaluation = evaluate_folder(out_dir, data, ground_truth=gt)
    return evaluation, {"detector_seconds": round(seconds, 3), "ms_per_image": round(1000 * seconds / len(images), 2)}


def write_report(evaluation: FolderEvaluation, out_dir: str | os.PathLike, settings: dict, title: str = "") -> dict:
    """Save `<out_dir>/widerface_eval.json` (APs + `settings`) and `<out_dir>/widerface_pr.png`; return the record."""
    out_dir = Path(out_dir)
    record = {**evaluation.summary(), **settings}
    try:
        with atomic_write(out_dir / RECORD_NAME) as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        plot_pr_curves(evaluation.result, out_dir / PLOT_NAME, title=title)
    except PermissionError:
        raise LeanfaceError(f"{out_dir}: not writable; choose another output folder") from None
    return record
