"""Identity folders, the layout of every face set leanface reads for recognition (training pools, galleries,
the dev splits): root/<identity>/<image> (any depth below the identity), hidden entries skipped."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..errors import LeanfaceError
from ..images import IMAGE_EXTS


def _images(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_EXTS and f.is_file()
                  and not any(part.startswith(".") for part in f.relative_to(folder).parts))


def identity_folder(root: str | os.PathLike, loose: str, report: Callable[[str], None] | None = None,
                    what: str = "face set") -> list[tuple[str | None, Path]]:
    """(identity, image) for every image under root/<identity>/, sorted by identity then path.

    loose: what images lying directly in root are. "stem": one identity each, named by the file's stem (a
    gallery of single photos, `Ada Lovelace.jpg`). "unlabelled": faces without identity (None), read only when
    no identity folder holds an image (a flat pool of crops). report: called with a line for each identity
    folder without images (left out); None: such folders are skipped silently. what: the folder's role in
    error messages ("gallery", ...).
    """
    root = Path(root)
    if loose not in ("stem", "unlabelled"):
        raise ValueError(f"loose must be 'stem' or 'unlabelled', got {loose!r}")
    if not root.is_dir():
        raise LeanfaceError(f"{root}: {what} folder not found (expected {root}/<identity>/<image>)")
    out: list[tuple[str | None, Path]] = []
    files = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            images = _images(entry)
            if not images and report is not None:
                report(f"{entry}: folder contains no images ({', '.join(IMAGE_EXTS)}); identity {entry.name!r} left out")
            out.extend((entry.name, f) for f in images)
        elif entry.is_file() and entry.suffix.lower() in IMAGE_EXTS:
            files.append(entry)
    if loose == "stem":
        out.extend((f.stem, f) for f in files)
        out.sort(key=lambda item: (item[0], str(item[1])))
    elif not out:
        out = [(None, f) for f in files]
    if not out:
        raise LeanfaceError(f"{root}: no images in the {what} (expected {root}/<identity>/<image>"
                            f"{' or images named by identity' if loose == 'stem' else ' or a folder of photos'})")
    return out
