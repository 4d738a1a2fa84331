"""End-to-end verification runs: photos of a pairs set -> the Recognizer's embeddings -> the 10-fold
protocol, saved as a JSON record and a ROC-curve PNG.

Raw photos go detect -> align -> embed, by each photo's main face (`primary_face`); a photo where the
detector finds no face is embedded from its centre crop and counted (`no_face`: pairs with such a
photo). `aligned=True` takes already-aligned crops of the embedder's input size. Every distinct image is
embedded once; scoring all pairs is a vectorised dot product (milliseconds for LFW's 6,000).

A template side (a folder or `a;b;c` in a generic pairs file) is one aggregated embedding of its readable
images (`aggregator`: mean, or QAN++ / best frame by the recognizer's quality net), as video tracks are.
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
from ..recognize import Recognizer, aggregate, align_faces, centre_crop, primary_face
from .plots import plot_roc
from .verification import best_threshold, roc_curve, verification_protocol

RECORD_NAME = "verification_eval.json"
ROC_NAME = "verification_roc.png"
# Detection settings of the protocol: every LFW photo holds its subject, so a low score threshold only
# adds candidates for `primary_face` to choose among.
VERIFY_SCORE_THR = 0.3


def _embed_images(rec: Recognizer, paths: list[Path], aligned: bool, progress: bool,
                  report: Callable[[Path, str], None],
                  qualities: dict[Path, float] | None = None) -> tuple[dict[Path, np.ndarray], set[Path]]:
    """{image: embedding} for the readable images, and the set embedded from the centre crop; with
    `qualities` (a dict to fill) each image's face quality by `rec.quality` too."""
    size = rec.embedder.input_size
    embeddings, fallback = {}, set()

    def score(p: Path, crop: np.ndarray) -> None:
        if qualities is not None:
            q = rec.quality.config.input_size
            crop = crop if crop.shape[0] == q else cv2.resize(crop, (q, q), interpolation=cv2.INTER_AREA)
            qualities[p] = float(rec.quality.score(crop[None])[0])

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
                for p, c, e in zip(chunk, crops, rec.embedder.embed(np.stack(crops))):
                    embeddings[p] = e
                    score(p, c)
        else:
            for p, rgb, faces in zip(chunk, arrays, rec.detector.detect(arrays)):
                k = primary_face(faces)
                if k is None:
                    fallback.add(p)
                    crop = centre_crop(rgb, size)
                    embeddings[p] = rec.embedder.embed(crop[None])[0]
                    score(p, crop)
                else:
                    marks = None if faces.landmarks is None else faces.landmarks[k:k + 1]
                    embeddings[p] = rec.embedder.embed_faces(rgb, faces.boxes[k:k + 1], marks)[0]
                    if qualities is not None:
                        score(p, align_faces(rgb, marks, rec.quality.config.input_size)[0] if marks is not None
                              else centre_crop(rgb, size))
        bar.update(len(paths[start:start + step]))
    bar.close()
    return embeddings, fallback


def evaluate_pairs(rec: Recognizer, pairs: Pairs, aligned: bool = False, progress: bool = True,
                   report: Callable[[str], None] | None = None, aggregator: str = "mean") -> tuple[dict, dict]:
    """Score `pairs` with `rec`. Returns (record, curves): the JSON record (accuracy, accuracy_std,
    tar_at_far_1e-3/1e-2, pairs, folds, no_face, threshold, ...) and the curves: {"far", "tar"} for the
    ROC plot, "scores" of the usable pairs and "usable" (P,) bool.
    An image that cannot be read is reported once (with the first pairs line that uses it) and left out:
    of its template, or with its pairs (counted in `skipped_pairs`). Template sides are aggregated by
    `aggregator` ("mean"; "qan" and "best" need `rec.quality`)."""
    report = report or (lambda message: tqdm.write(f"leanface eval: error: {message}", file=sys.stderr))
    if aggregator != "mean" and pairs.templates and rec.quality is None:
        raise LeanfaceError(f"the {aggregator!r} aggregator needs a quality net (Recognizer(quality=True))")
    first_line: dict[Path, str] = {}
    for k, (a, b) in enumerate(zip(pairs.left, pairs.right)):
        for side in (a, b):
            for m in pairs.members(side):
                first_line.setdefault(m, pairs.where(k))
    start = time.perf_counter()
    qualities = {} if pairs.templates and aggregator != "mean" else None
    embeddings, fallback = _embed_images(rec, pairs.images, aligned, progress,
                                         lambda p, msg: report(f"{first_line[p]}: {msg}"), qualities)
    seconds = time.perf_counter() - start
    images, no_face_images = len(embeddings), len(fallback)
    for key, members in pairs.templates.items():
        ok = [m for m in members if m in embeddings]
        if ok:
            embeddings[key] = aggregate(np.stack([embeddings[m] for m in ok]),
                                        None if qualities is None else np.array([qualities[m] for m in ok]),
                                        aggregator)
            if all(m in fallback for m in ok):
                fallback.add(key)
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
        "no_face": no_face, "no_face_images": no_face_images, "skipped_pairs": int((~usable).sum()),
        "images": images, "embed_seconds": round(seconds, 2),
        "ms_per_image": round(1000 * seconds / max(images, 1), 2), "scoring_ms": round(1000 * scoring, 2),
    }
    if pairs.templates:
        record.update(templates=len(pairs.templates), aggregator=aggregator)
    return record, {"far": far, "tar": tar, "scores": scores, "usable": usable}


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
