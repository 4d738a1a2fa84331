"""Face-verification pairs: LFW's View 2 `pairs.txt` and a generic tab-separated pairs file.

LFW (RECOGNITION_FACTS 6): a header "10 300", then 10 folds of 300 same-person lines `name i j` followed
by 300 different-person lines `name1 i name2 j`; image i of `name` is `<root>/name/name_<iiii>.jpg`.
Generic: one pair per line, `path1<TAB>path2<TAB>same<TAB>fold` (same: 1/0, true/false), paths relative
to the data folder; `#` starts a comment. A side may also be a *template* (set-to-set verification, e.g.
the frames of a video track): a folder, whose images form the template, or several paths joined by `;`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LeanfaceError
from ..images import IMAGE_EXTS

LFW_IMAGES = "lfw-deepfunneled"


@dataclass(frozen=True)
class Pairs:
    """left[k], right[k]: image paths (or template keys); same (P,) bool; fold (P,) int, 0-based; line (P,):
    the pair's 1-based line in `source`, the pairs file (for error messages). templates: key -> the images
    of a template side (a side not in it is one image)."""

    left: list[Path]
    right: list[Path]
    same: np.ndarray
    fold: np.ndarray
    line: np.ndarray | None = None
    source: Path | None = None
    templates: dict[Path, tuple[Path, ...]] = field(default_factory=dict)

    def where(self, k: int) -> str:
        """'pairs.txt:12' for pair k."""
        return f"{self.source}:{int(self.line[k])}" if self.line is not None else f"pair {k + 1}"

    def __len__(self) -> int:
        return len(self.same)

    def members(self, side: Path) -> tuple[Path, ...]:
        """The images of one side: a template's, or the image itself."""
        return self.templates.get(side, (side,))

    @property
    def images(self) -> list[Path]:
        """Every distinct image (templates expanded), in order of first use."""
        return list(dict.fromkeys(m for side in self.left + self.right for m in self.members(side)))


def read_lfw_pairs(path: str | os.PathLike, image_root: str | os.PathLike) -> Pairs:
    path, root = Path(path), Path(image_root)
    raw = _lines(path, keep_numbering=True)
    numbering = [i + 1 for i, ln in enumerate(raw) if ln.strip()]  # file line of each non-blank line
    lines = [ln for ln in raw if ln.strip()]
    numbers: list[int] = []
    head = lines[0].split() if lines else []
    if len(head) != 2 or not all(h.isdigit() for h in head):
        raise LeanfaceError(f"{path}:1: expected the header 'folds pairs_per_class' (LFW: '10 300')")
    folds, per_class = int(head[0]), int(head[1])
    body = lines[1:]
    if len(body) != folds * 2 * per_class:
        raise LeanfaceError(f"{path}: {len(body)} pair lines, the header promises {folds} x 2 x {per_class}")
    left, right, same, fold = [], [], [], []
    for k, line in enumerate(body):
        parts, where = line.split(), f"{path}:{numbering[k + 1]}"
        try:
            if len(parts) == 3:
                a, b = (parts[0], int(parts[1])), (parts[0], int(parts[2]))
            elif len(parts) == 4:
                a, b = (parts[0], int(parts[1])), (parts[2], int(parts[3]))
            else:
                raise ValueError
        except ValueError:
            raise LeanfaceError(f"{where}: expected 'name i j' or 'name1 i name2 j', got {line.strip()!r}") from None
        is_same = (k % (2 * per_class)) < per_class
        if is_same != (len(parts) == 3):
            raise LeanfaceError(f"{where}: a {'same' if is_same else 'different'}-person line was expected here")
        left.append(root / a[0] / f"{a[0]}_{a[1]:04d}.jpg")
        right.append(root / b[0] / f"{b[0]}_{b[1]:04d}.jpg")
        same.append(is_same)
        fold.append(k // (2 * per_class))
        numbers.append(numbering[k + 1])
    return Pairs(left, right, np.array(same), np.array(fold), np.array(numbers), path)


def _side(text: str, root: Path, templates: dict[Path, tuple[Path, ...]], where: str) -> Path:
    """One side of a generic pairs line: an image, a folder (template of its images) or `a;b;c` (template)."""
    key = root / text
    if key in templates:
        return key
    if ";" in text:
        parts = [t.strip() for t in text.split(";") if t.strip()]
        if not parts:
            raise LeanfaceError(f"{where}: empty template {text!r}")
        templates[key] = tuple(root / t for t in parts)
    elif key.is_dir():
        files = sorted(f for f in key.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file())
        if not files:
            raise LeanfaceError(f"{where}: {key}: template folder holds no images ({', '.join(IMAGE_EXTS)})")
        templates[key] = tuple(files)
    return key


def read_pairs_file(path: str | os.PathLike, root: str | os.PathLike) -> Pairs:
    path, root = Path(path), Path(root)
    left, right, same, fold, numbers = [], [], [], [], []
    templates: dict[Path, tuple[Path, ...]] = {}
    for k, line in enumerate(_lines(path, keep_numbering=True)):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        flag = parts[2].strip().lower() if len(parts) == 4 else ""
        if len(parts) != 4 or flag not in ("1", "0", "true", "false") or not parts[3].strip().lstrip("-").isdigit():
            raise LeanfaceError(f"{path}:{k + 1}: expected 'path1<TAB>path2<TAB>same (1/0)<TAB>fold', "
                                f"got {line.strip()!r}")
        left.append(_side(parts[0].strip(), root, templates, f"{path}:{k + 1}"))
        right.append(_side(parts[1].strip(), root, templates, f"{path}:{k + 1}"))
        same.append(flag in ("1", "true"))
        fold.append(int(parts[3]))
        numbers.append(k + 1)
    if not same:
        raise LeanfaceError(f"{path}: no pairs")
    _check_protocol(path, np.array(same), np.array(fold), numbers)
    return Pairs(left, right, np.array(same), np.array(fold), np.array(numbers), path, templates)


def _check_protocol(path: Path, same: np.ndarray, fold: np.ndarray, numbers: list[int]) -> None:
    """What would make the scores meaningless without an error: one class only (accuracy is then trivial
    and TAR@FAR undefined), a negative fold, or a stray fold number (one line of fold 99 among ten folds of
    600 pairs silently makes an eleventh fold whose threshold is chosen on everything else)."""
    if same.all() or not same.any():
        raise LeanfaceError(f"{path}: only {'same' if same.all() else 'different'}-person pairs; verification needs "
                            f"both (accuracy is trivial and TAR@FAR undefined with one class)")
    if (fold < 0).any():
        k = int(np.argmax(fold < 0))
        raise LeanfaceError(f"{path}:{numbers[k]}: fold {fold[k]} is negative (folds are 0, 1, 2, ...)")
    ids, counts = np.unique(fold, return_counts=True)
    typical = float(np.median(counts))
    for f, c in zip(ids, counts):
        if len(ids) > 1 and 10 * c <= typical:
            k = int(np.argmax(fold == f))
            raise LeanfaceError(f"{path}:{numbers[k]}: fold {f} holds {c} pair(s) where the others hold about "
                                f"{typical:.0f}: a stray fold number?")


def load_pairs(data: str | os.PathLike, pairs: str | os.PathLike | None = None) -> Pairs:
    """An LFW folder (`pairs.txt` and `lfw-deepfunneled/`), or `pairs` (a generic file) relative to `data`."""
    data = Path(data)
    if pairs is not None:
        return read_pairs_file(pairs, data)
    if not (data / "pairs.txt").is_file() or not (data / LFW_IMAGES).is_dir():
        raise LeanfaceError(f"{data}: not an LFW folder (expected pairs.txt and {LFW_IMAGES}/); "
                            f"for other data pass a pairs file")
    return read_lfw_pairs(data / "pairs.txt", data / LFW_IMAGES)


def _lines(path: Path, keep_numbering: bool = False) -> list[str]:
    if not path.is_file():
        raise LeanfaceError(f"{path}: pairs file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LeanfaceError(f"{path}: cannot read it ({type(exc).__name__})") from None
    lines = text.splitlines()
    return lines if keep_numbering else [ln for ln in lines if ln.strip()]
