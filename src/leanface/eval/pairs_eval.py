"""End-to-end verification runs: photos of a pairs set -> the Recognizer's embeddings -> the 10-fold
protocol, saved as a JSON record and a ROC-curve PNG.

Raw photos go detect -> align -> embed, by each photo's main face (`primary_face`); a photo where the
detector finds no face is embedded from its centre crop and counted (`no_face`: pairs with such a
photo). `aligned=True` takes already-aligned crops of the embedder's input size. Every distinct image is
embedded once; scoring all pairs is a vectorised dot product (milliseconds for LFW's 6,000).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from ..data import Pairs
from ..errors import LeanfaceError
from ..files import atomic_write
from ..infer import read_image
from ..recognize import Recognizer, centre_crop, primary_face
from .plots import plot_roc
from .verification import best_threshold, roc_curve, verification_protocol

RECORD_NAME = "verification_eval.json"
ROC_NAME = "verification_roc.png"
# Detection settings of the protocol: every LFW photo holds its subject, so a low score threshold only
# adds candidates for `primary_face` to choose among.
VERIFY_SCORE_THR = 0.3


def _embed_images(rec: Recognizer, paths: list[Path], aligned: bool, progress: bool,
                  report: Callable[[Path, str], None]) -> tuple[dict[Path, np.ndarray], set[Path]]:
    """{image: embedding} for the readable images, and the set embedded from the centre crop."""
    size = rec.embedder.input_size
    embeddings, fallback = {}, set()
    step = 32 if aligned else rec.detector.batch_size
    bar = tqdm(total=len(paths), desc="embed", unit="img", disable=not progress, file=sys.stderr)
    for start in range(0, len(paths), step):
        chunk, arrays = [], []
        for p in paths[start:start + step]:
            try:
                arrays.append(read_image(p))
                chunk.append(p)
            except LeanfaceError as exc:
                report(p, str(exc))
        if aligned:
            crops = [a if a.shape[:2] == (size, size) else cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA)
                     for a in arrays]
            if crops:
                for p, e in zip(chunk, rec.embedder.embed(np.stack(crops))):
                    embeddings[p] = e
        else:
            for p, rgb, faces in zip(chunk, arrays, rec.detector.detect(arrays)):
                k = primary_face(faces)
                if k is None:
                    fallback.add(p)
                    embeddings[p] = rec.embedder.embed(centre_crop(rgb, size)[None])[0]
                else:
                    embeddings[p] = rec.embedder.embed_faces(
                        rgb, faces.boxes[k:k + 1], None if faces.landmarks is None else faces.landmarks[k:k + 1])[0]
        bar.update(len(paths[start:start + step]))
    bar.close()
    return embeddings, fallback


def evaluate_pairs(rec: Recognizer, pairs: Pairs, aligned: bool = False, progress: bool = True,
                   report: Callable[[str], None] | None = None) -> tuple[dict, dict]:
    """Score `pairs` with `rec`. Returns (record, curves): the JSON record (accuracy, accuracy_std,
    tar_at_far_1e-3/1e-2, pairs, folds, no_face, threshold, ...) and {"far", "tar"} for the ROC plot.
    An image that cannot be read is reported once (with the first pairs line that uses it) and its
    pairs are left out and counted (`skipped_pairs`)."""
    report = report or (lambda message: tqdm.write(f"leanface eval: error: {message}", file=sys.stderr))
    first_line: dict[Path, str] = {}
    for k, (a, b) in enumerate(zip(pairs.left, pairs.right)):
        first_line.setdefault(a, pairs.where(k))
        first_line.setdefault(b, pairs.where(k))
    start = time.perf_counter()
    embeddings, fallback = _embed_images(rec, pairs.images, aligned, progress,
                                         lambda p, msg: report(f"{first_line[p]}: {msg}"))
    seconds = time.perf_counter() - start
    usable = np.array([a in embeddings and b in embeddings for a, b in zip(pairs.left, pairs.right)], bool)
    if not usable.any():
        raise LeanfaceError("no pair could be scored: every pair has an unreadable image")
    t = time.perf_counter()
    index = {p: i for i, p in enumerate(embeddings)}
    table = np.stack(list(embeddings.values()))
    left = np.array([index[a] for a, ok in zip(pairs.left, usable) if ok])
    right = np.array([index[b] for b, ok in zip(pairs.right, usable) if ok])
    scores = np.einsum("ij,ij->i", table[left], table[right])
    same, folds = pairs.same[usable], pairs.fold[usable]
    result = verification_protocol(scores, same, folds)
    far, tar = roc_curve(scores, same)
    scoring = time.perf_counter() - t
    no_face = sum(1 for a, b, ok in zip(pairs.left, pairs.right, usable) if ok and (a in fallback or b in fallback))
    record = {
        **result.to_dict(),
        "threshold": best_threshold(scores, same),  # on all pairs: the one `verify` should use
        "no_face": no_face, "no_face_images": len(fallback), "skipped_pairs": int((~usable).sum()),
        "images": len(embeddings), "embed_seconds": round(seconds, 2),
        "ms_per_image": round(1000 * seconds / max(len(embeddings), 1), 2), "scoring_ms": round(1000 * scoring, 2),
    }
    return record, {"far": far, "tar": tar}


def write_verification_report(record: dict, curves: dict, out_dir: str | os.PathLike, title: str = "") -> dict:
    """Write <out_dir>/verification_eval.json and verification_roc.png (atomically); returns the record."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {**record, "record": str(out / RECORD_NAME), "roc_plot": str(out / ROC_NAME)}
    acc = f"accuracy {100 * record['accuracy']:.2f}% +- {100 * record['accuracy_std']:.2f}"
    plot_roc(curves["far"], curves["tar"], out / ROC_NAME, f"{title}\n{record['pairs']} pairs, {acc}".strip())
    with atomic_write(out / RECORD_NAME) as f:
        f.write(json.dumps(record, indent=2) + "\n")
    return record
