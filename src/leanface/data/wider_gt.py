"""The WIDER FACE validation ground truth: the official .mat files (boxes, and the easy / medium / hard keep-lists),
and which of its images are present on disk. Read here; scored by leanface.eval."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..errors import LeanfaceError

SETTINGS = ("easy", "medium", "hard")
Key = tuple[str, str]  # (event, image name without .jpg)


@dataclass(frozen=True)
class WiderGroundTruth:
    """Official validation ground truth, one entry per image in .mat order.

    keys: (event, image name without extension) per image.
    boxes: per image (G, 4) float64 x, y, w, h in pixels, every annotated face.
    keep: setting -> per image (G,) bool, True for faces that count in that setting.
    """
    keys: tuple[Key, ...]
    boxes: tuple[np.ndarray, ...]
    keep: Mapping[str, tuple[np.ndarray, ...]]

    @property
    def events(self) -> int:
        return len({event for event, _ in self.keys})

    def faces(self, setting: str) -> int:
        return int(sum(k.sum() for k in self.keep[setting]))

    def subset(self, keys: Iterable[Key]) -> "WiderGroundTruth":
        """The images in `keys` (all must exist), in .mat order."""
        wanted = set(keys)
        idx = [i for i, k in enumerate(self.keys) if k in wanted]
        if len(idx) != len(wanted):
            unknown = sorted(wanted - set(self.keys))
            raise KeyError(f"not in the ground truth: {unknown[:5]}")
        return WiderGroundTruth(
            keys=tuple(self.keys[i] for i in idx),
            boxes=tuple(self.boxes[i] for i in idx),
            keep={s: tuple(self.keep[s][i] for i in idx) for s in SETTINGS},
        )


def _loadmat(path: Path, keys: tuple[str, ...]) -> dict:
    import scipy.io

    try:
        mat = scipy.io.loadmat(os.fspath(path))
    except FileNotFoundError:
        raise LeanfaceError(f"{path}: file not found") from None
    except Exception as exc:  # scipy raises ValueError, TypeError, NotImplementedError (v7.3) ...
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LeanfaceError(f"{path}: not a readable MATLAB .mat file ({first})") from None
    missing = [k for k in keys if k not in mat]
    if missing:
        raise LeanfaceError(f"{path}: not a WIDER FACE ground-truth file (no {', '.join(missing)})")
    return mat


def _ground_truth_dir(data: Path) -> Path:
    for cand in (data / "ground_truth", data / "eval_tools" / "ground_truth", data):
        if (cand / "wider_hard_val.mat").is_file():
            return cand
    raise LeanfaceError(f"{data}: no WIDER FACE ground truth (expected ground_truth/wider_hard_val.mat)")


def load_ground_truth(data: str | os.PathLike) -> WiderGroundTruth:
    """Read the official .mat ground truth from a WIDER FACE root (or its ground_truth/ folder)."""
    gt_dir = _ground_truth_dir(Path(data))
    face_path = gt_dir / "wider_face_val.mat"
    if not face_path.is_file() and (gt_dir.parent / "wider_face_split" / "wider_face_val.mat").is_file():
        face_path = gt_dir.parent / "wider_face_split" / "wider_face_val.mat"
    face_mat = _loadmat(face_path, ("face_bbx_list", "event_list", "file_list"))
    try:
        events = [str(e[0][0]) for e in face_mat["event_list"]]
        files = [[str(f[0][0]) for f in face_mat["file_list"][i][0]] for i in range(len(events))]
        boxes = [np.asarray(b[0], dtype=np.float64).reshape(-1, 4)
                 for i in range(len(events)) for b in face_mat["face_bbx_list"][i][0]]
    except (IndexError, TypeError, ValueError):
        raise LeanfaceError(f"{face_path}: unexpected layout for wider_face_val.mat") from None
    keys = tuple((event, name) for event, names in zip(events, files) for name in names)
    if len(boxes) != len(keys):
        raise LeanfaceError(f"{face_path}: {len(keys)} files but {len(boxes)} box lists")

    keep = {}
    for setting in SETTINGS:
        path = gt_dir / f"wider_{setting}_val.mat"
        mat = _loadmat(path, ("gt_list", "event_list"))
        try:
            same_events = [str(e[0][0]) for e in mat["event_list"]] == events
            lists = [np.asarray(g[0]).astype(np.int64).ravel()
                     for i in range(len(events)) for g in mat["gt_list"][i][0]]
        except (IndexError, TypeError, ValueError):
            raise LeanfaceError(f"{path}: unexpected layout for a keep-list .mat") from None
        if not same_events or len(lists) != len(keys):
            raise LeanfaceError(f"{path}: does not list the same events and images as {face_path}")
        masks = []
        for (event, name), idx, b in zip(keys, lists, boxes):
            if idx.size and (idx.min() < 1 or idx.max() > len(b)):
                raise LeanfaceError(f"{path}: face index out of range for {event}/{name}")
            mask = np.zeros(len(b), dtype=bool)
            mask[idx - 1] = True
            masks.append(mask)
        keep[setting] = tuple(masks)
    return WiderGroundTruth(keys=keys, boxes=tuple(boxes), keep=keep)


def find_val_images(data: str | os.PathLike) -> dict[Key, Path]:
    """The validation images present on disk: (event, name) -> path of WIDER_val/images/<event>/<name>.jpg."""
    root = Path(data) / "WIDER_val" / "images"
    if not root.is_dir():
        raise LeanfaceError(f"{root}: no such folder (expected the WIDER FACE layout WIDER_val/images/<event>/)")
    images = {(p.parent.name, p.stem): p for p in sorted(root.glob("*/*.jpg"))}
    if not images:
        raise LeanfaceError(f"{root}: no validation images (*/*.jpg)")
    return images


def present_images(gt: WiderGroundTruth, data: str | os.PathLike) -> list[tuple[Key, Path]]:
    """The ground-truth images present on disk under `data`, in .mat order, with their paths."""
    on_disk = find_val_images(data)
    present = [(k, on_disk[k]) for k in gt.keys if k in on_disk]
    if not present:
        raise LeanfaceError(f"{Path(data) / 'WIDER_val' / 'images'}: none of the {len(on_disk)} images is in the "
                            f"validation ground truth")
    return present
