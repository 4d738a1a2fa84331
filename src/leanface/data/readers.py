"""Annotation readers: WIDER FACE `*_bbx_gt.txt`, insightface `label(v2).txt`, leanface JSON-lines.

Every reader returns a list of `ImageFaces`, one per image, in file order. Coordinates are in
original-image pixels, boxes x1y1x2y2 with x2 = x1 + w (the WIDER width, no +1).

Custom data (`.jsonl`), one JSON object per line, paths relative to the file's folder:

    {"image": "imgs/a.jpg", "faces": [{"box": [x1, y1, x2, y2]},
                                      {"box": [...], "landmarks": [[x, y], ...5 points], "ignore": false}]}

`landmarks` (optional) lists left eye, right eye, nose, left and right mouth corner; a point
written as null is missing. `ignore: true` keeps a face out of the training targets.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LeanfaceError

WIDER_ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")


@dataclass(frozen=True, eq=False)
class ImageFaces:
    """The faces of one image.

    path: image file. size: (width, height) when the annotation states it, else None.
    boxes: (N, 4) float32, x1y1x2y2 in original-image pixels.
    landmarks: (N, 5, 2) float32 in original-image pixels, or None when the format has none.
    landmark_valid: (N, 5) bool, False where a point is not annotated (None with landmarks).
    ignore: (N,) bool, faces left out of training targets.
    attributes: (N, 6) int8 WIDER flags in WIDER_ATTRIBUTES order, or None.
    """

    path: Path
    boxes: np.ndarray
    landmarks: np.ndarray | None = None
    landmark_valid: np.ndarray | None = None
    ignore: np.ndarray | None = None
    size: tuple[int, int] | None = None
    attributes: np.ndarray | None = None

    def __post_init__(self):
        if self.ignore is None:
            object.__setattr__(self, "ignore", np.zeros(len(self.boxes), bool))

    def __len__(self) -> int:
        return len(self.boxes)


def _floats(text: str, where: str, counts: tuple[int, ...]) -> list[float]:
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        raise LeanfaceError(f"{where}: expected numbers, got {text.strip()[:60]!r}") from None
    if len(values) not in counts:
        want = " or ".join(str(c) for c in counts)
        raise LeanfaceError(f"{where}: expected {want} numbers, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise LeanfaceError(f"{where}: expected finite numbers, got {text.strip()[:60]!r}")
    return values


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise LeanfaceError(f"{path}: annotation file not found")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise LeanfaceError(f"{path}: not a text file ({exc.reason})") from None


def read_wider_bbx_gt(path: str | os.PathLike, image_root: str | os.PathLike) -> list[ImageFaces]:
    """Read `wider_face_{train,val}_bbx_gt.txt`: name, count, then `x y w h blur expr illum invalid occl pose`.

    An image with no face is written as count 0 (or 1) followed by one line of ten zeros; both
    give an empty image (the line of zeros may be missing after a count of 0). Boxes of zero width or height are kept as listed (their positions are
    what the evaluation keep-lists index); the training dataset drops them.
    """
    path, root = Path(path), Path(image_root)
    lines = _read_lines(path)
    images: list[ImageFaces] = []
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        if i + 1 >= len(lines):
            raise LeanfaceError(f"{path}:{i + 2}: missing face count after {name!r}")
        try:
            count = int(lines[i + 1])
        except ValueError:
            raise LeanfaceError(f"{path}:{i + 2}: expected a face count, got {lines[i + 1].strip()[:60]!r}") from None
        if count < 0:
            raise LeanfaceError(f"{path}:{i + 2}: negative face count {count}")
        # The placeholder line of an empty image is optional for count 0 (some copies omit it).
        placeholder = count == 0 and i + 2 < len(lines) and len(lines[i + 2].split()) == 10
        n_rows = count + placeholder
        rows = []
        for j in range(n_rows):
            lineno = i + 3 + j
            if lineno > len(lines):
                raise LeanfaceError(f"{path}:{lineno}: file ends inside the faces of {name!r}")
            rows.append(_floats(lines[lineno - 1], f"{path}:{lineno}", (10,)))
        i += 2 + n_rows
        table = np.asarray(rows, np.float32).reshape(-1, 10)
        if count <= 1 and not table.any():
            table = table[:0]
        boxes = np.concatenate([table[:, :2], table[:, :2] + table[:, 2:4]], axis=1)
        images.append(ImageFaces(root / name, boxes, attributes=table[:, 4:10].astype(np.int8)))
    return images


def read_retinaface_labels(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> list[ImageFaces]:
    """Read insightface `label.txt`/`labelv2.txt`: `# rel/path.jpg [w h]`, then one face per line.

    A face line is `x1 y1 x2 y2` [`ignore`] or `x1 y1 x2 y2` followed by five `x y flag`
    triplets (19 numbers). A triplet with flag -1 is a missing point; any flag >= 0 is annotated,
    even when the coordinate lies just outside the image. A 20-number line is the older RetinaFace
    `label.txt` layout: `x y w h`, five triplets, then a quality value (ignored).
    `image_root` defaults to an `images` folder next to the file.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent / "images"
    lines = _read_lines(path)
    records: list[tuple[Path, tuple[int, int] | None, list]] = []
    for lineno, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            parts = text[1:].split()
            if not parts:
                raise LeanfaceError(f"{path}:{lineno}: '#' line without an image path")
            size = None
            if len(parts) >= 3:
                try:
                    size = (int(parts[1]), int(parts[2]))
                except ValueError:
                    raise LeanfaceError(f"{path}:{lineno}: image size must be two integers, got "
                                        f"{' '.join(parts[1:3])!r}") from None
            elif len(parts) == 2:
                raise LeanfaceError(f"{path}:{lineno}: expected '# path' or '# path width height'")
            records.append((root / parts[0], size, []))
            continue
        if not records:
            raise LeanfaceError(f"{path}:{lineno}: face line before the first '# image' line")
        values = _floats(text, f"{path}:{lineno}", (4, 5, 19, 20))
        if len(values) == 20:
            values = [values[0], values[1], values[0] + values[2], values[1] + values[3]] + values[4:19]
        records[-1][2].append(values)
    # Landmarks are a property of the file: in a labelv2 file a face line without them has none.
    with_kps = any(len(r) == 19 for _, _, rows in records for r in rows)
    images = []
    for img_path, size, rows in records:
        n = len(rows)
        boxes = np.asarray([r[:4] for r in rows], np.float32).reshape(n, 4)
        ignore = np.asarray([len(r) == 5 and r[4] == 1 for r in rows], bool)
        landmarks = valid = None
        if with_kps:
            trip = np.asarray([r[4:] if len(r) == 19 else [-1.0] * 15 for r in rows], np.float32).reshape(n, 5, 3)
            landmarks = trip[:, :, :2].copy()
            valid = trip[:, :, 2] >= 0
            landmarks[~valid] = 0.0
        images.append(ImageFaces(img_path, boxes, landmarks, valid, ignore, size))
    return images


def read_jsonl(path: str | os.PathLike) -> list[ImageFaces]:
    """Read the leanface JSON-lines format described in the module docstring."""
    path = Path(path)
    images: list[ImageFaces] = []
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LeanfaceError(f"{where}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("image"), str):
            raise LeanfaceError(f"{where}: expected an object with an \"image\" path")
        faces = record.get("faces", [])
        if not isinstance(faces, list):
            raise LeanfaceError(f"{where}: \"faces\" must be a list")
        boxes = np.zeros((len(faces), 4), np.float32)
        landmarks = np.zeros((len(faces), 5, 2), np.float32)
        valid = np.zeros((len(faces), 5), bool)
        ignore = np.zeros(len(faces), bool)
        any_kps = False
        for k, face in enumerate(faces):
            box = face.get("box") if isinstance(face, dict) else None
            if not _is_numbers(box, 4):
                raise LeanfaceError(f"{where}: face {k}: \"box\" must be [x1, y1, x2, y2], finite numbers")
            boxes[k] = box
            if boxes[k, 2] < boxes[k, 0] or boxes[k, 3] < boxes[k, 1]:
                raise LeanfaceError(f"{where}: face {k}: box has x2 < x1 or y2 < y1")
            ignore[k] = bool(face.get("ignore", False))
            points = face.get("landmarks")
            if points is None:
                continue
            if not isinstance(points, list) or len(points) != 5:
                raise LeanfaceError(f"{where}: face {k}: \"landmarks\" must list 5 points")
            any_kps = True
            for p, point in enumerate(points):
                if point is None:
                    continue
                if not _is_numbers(point, 2):
                    raise LeanfaceError(f"{where}: face {k}: landmark {p} must be [x, y] or null")
                landmarks[k, p] = point
                valid[k, p] = True
        size = record.get("size")
        if size is not None and not _is_numbers(size, 2):
            raise LeanfaceError(f"{where}: \"size\" must be [width, height]")
        images.append(ImageFaces(
            path.parent / record["image"], boxes, landmarks if any_kps else None, valid if any_kps else None,
            ignore, tuple(int(v) for v in size) if size is not None else None))
    return images


def _is_numbers(value, n: int) -> bool:
    return (isinstance(value, list) and len(value) == n
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def read_annotations(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> list[ImageFaces]:
    """Pick the reader from the file name: `*bbx_gt.txt` WIDER, `*.jsonl` leanface, other `.txt` labelv2."""
    path = Path(path)
    if path.name.endswith("bbx_gt.txt"):
        if image_root is None:
            raise LeanfaceError(f"{path}: WIDER annotations need the images folder (image_root)")
        return read_wider_bbx_gt(path, image_root)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    if path.suffix == ".txt":
        return read_retinaface_labels(path, image_root)
    raise LeanfaceError(f"{path}: unknown annotation format (expected *_bbx_gt.txt, label*.txt or .jsonl)")


def load_wider_split(root: str | os.PathLike, split: str = "train", absent: list | None = None) -> list[ImageFaces]:
    """Annotations of a WIDER-layout root (`WIDER_<split>/images`, `wider_face_split/`).

    Uses the 5-point landmarks of `wider_face_split/wider_<split>_labelv2.txt` when present,
    else the boxes of `wider_face_<split>_bbx_gt.txt`. Only images present on disk are kept,
    so a partial copy of WIDER FACE works as is; `absent` (a list) receives the paths of the others.
    """
    root = Path(root)
    images_dir = root / f"WIDER_{split}" / "images"
    labelv2 = root / "wider_face_split" / f"wider_{split}_labelv2.txt"
    bbx_gt = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
    if labelv2.is_file():
        images = read_retinaface_labels(labelv2, images_dir)
    elif bbx_gt.is_file():
        images = read_wider_bbx_gt(bbx_gt, images_dir)
    else:
        raise LeanfaceError(f"{root}: no {labelv2.relative_to(root)} or {bbx_gt.relative_to(root)} "
                            f"(expected a WIDER FACE layout)")
    present = [im for im in images if im.path.is_file()]
    if absent is not None:  # the caller wants to say how many listed images a partial copy lacks
        absent.extend(im.path for im in images if not im.path.is_file())
    if not present:
        raise LeanfaceError(f"{images_dir}: none of the {len(images)} annotated images exist")
    return present


def load_training_data(data: str | os.PathLike, absent: list | None = None) -> list[ImageFaces]:
    """Training annotations from a WIDER-layout root (train split) or an annotation file.

    For a file, every listed image must exist (a WIDER root may be a partial copy instead).
    A `*_bbx_gt.txt` file finds its images in `../WIDER_<split>/images` as in the WIDER layout.
    """
    data = Path(data)
    if data.is_dir():
        return load_wider_split(data, "train", absent)
    if not data.is_file():
        raise LeanfaceError(f"{data}: no such file or folder")
    image_root = None
    if data.name.endswith("bbx_gt.txt"):
        split = "val" if "_val_" in data.name else "train"
        image_root = data.parent.parent / f"WIDER_{split}" / "images"
    images = read_annotations(data, image_root)
    missing = [im.path for im in images if not im.path.is_file()]
    if missing:
        raise LeanfaceError(f"{data}: {len(missing)} of {len(images)} listed images do not exist "
                            f"(first: {missing[0]})")
    return images
