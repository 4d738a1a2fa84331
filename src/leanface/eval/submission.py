"""WIDER FACE submission files: `<event>/<image>.txt` = image name, box count, then `x y w h score` lines.

Also runs any detector over the validation images and writes such a folder.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import LeanfaceError
from ..files import atomic_write

Key = tuple[str, str]  # (event, image name without .jpg)


def _bad_line(path: Path, lines: list[str]) -> LeanfaceError:
    """The error for the first box line that is not five finite numbers (line numbers are 1-based)."""
    for no, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(v) for v in parts]
        except ValueError:
            values = []
        if len(values) != 5 or not all(np.isfinite(values)):
            return LeanfaceError(f"{path}:{no}: expected five numbers 'x y w h score', got {line.strip()[:60]!r}")
    return LeanfaceError(f"{path}: unreadable box lines")


def read_prediction_file(path: str | os.PathLike) -> tuple[str, np.ndarray]:
    """Read one submission file -> (image name from line 1, (N, 5) float64 x, y, w, h, score in file order)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise LeanfaceError(f"{path}: not a text file") from None
    except OSError as exc:
        raise LeanfaceError(f"{path}: cannot read ({exc.strerror})") from None
    if len(lines) < 2:
        raise LeanfaceError(f"{path}: expected the image name on line 1 and the box count on line 2")
    name = lines[0].strip().replace("\\", "/").split("/")[-1]
    if name.removesuffix(".jpg") != path.stem:
        raise LeanfaceError(f"{path}:1: names image {lines[0].strip()!r}, but the file is for {path.stem!r}")
    try:
        count = int(lines[1].strip())
    except ValueError:
        raise LeanfaceError(f"{path}:2: expected the number of boxes, got {lines[1].strip()[:60]!r}") from None
    body = [line for line in lines[2:] if line.strip()]
    if not body:
        boxes = np.zeros((0, 5))
    else:
        try:
            boxes = np.loadtxt(body, dtype=np.float64, ndmin=2, comments=None)
        except ValueError:
            raise _bad_line(path, lines) from None
        if boxes.shape[1] != 5 or not np.isfinite(boxes).all():
            raise _bad_line(path, lines)
    if count != len(boxes):
        raise LeanfaceError(f"{path}:2: says {count} boxes, but {len(boxes)} box lines follow")
    return name, boxes


def read_predictions(folder: str | os.PathLike) -> dict[Key, np.ndarray]:
    """Read every `<event>/<image>.txt` under `folder` -> (event, image) -> (N, 5) x, y, w, h, score."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LeanfaceError(f"{folder}: no such prediction folder")
    return {(p.parent.name, p.stem): read_prediction_file(p)[1] for p in sorted(folder.glob("*/*.txt"))}


def write_prediction_file(path: str | os.PathLike, name: str, boxes: np.ndarray, scores: np.ndarray) -> None:
    """Write one submission file. boxes: (N, 4) x1y1x2y2 original-image pixels; scores: (N,).

    Rows are written by descending score, as the protocol expects; w = x2 - x1 (no +1).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    rows = [f"{x1:.5f} {y1:.5f} {x2 - x1:.5f} {y2 - y1:.5f} {s:.9g}\n"
            for (x1, y1, x2, y2), s in zip(boxes[order].tolist(), scores[order].tolist())]
    with atomic_write(path) as f:
        f.write(f"{name}\n{len(rows)}\n")
        f.writelines(rows)


def predict_images(detector: Callable[[list[np.ndarray]], Sequence], images: Iterable[tuple[Key, Path]],
                   out_dir: str | os.PathLike, batch_size: int = 8,
                   read_image: Callable[[Path], np.ndarray] | None = None, progress: bool = True) -> float:
    """Run `detector` over `images` in batches and write `<out_dir>/<event>/<name>.txt` for each.

    detector(list of RGB uint8 HxWx3 images) -> one object per image with `.boxes` (N, 4) x1y1x2y2
    original-image pixels and `.scores` (N,). Returns the seconds spent inside `detector`.
    """
    from tqdm import tqdm

    if read_image is None:
        from ..infer import read_image
    if batch_size < 1:
        raise LeanfaceError(f"batch_size must be at least 1, got {batch_size}")
    images = list(images)
    out_dir = Path(out_dir)
    seconds = 0.0
    with tqdm(total=len(images), desc="WIDER val", unit="img", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            pixels = [read_image(path) for _, path in batch]
            t0 = time.perf_counter()
            faces = list(detector(pixels))
            seconds += time.perf_counter() - t0
            if len(faces) != len(batch):
                raise ValueError(f"detector returned {len(faces)} results for {len(batch)} images")
            for ((event, name), _), det in zip(batch, faces):
                write_prediction_file(out_dir / event / f"{name}.txt", name, det.boxes, det.scores)
            bar.update(len(batch))
    return seconds
