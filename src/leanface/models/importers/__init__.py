"""Import official weights into leanface checkpoints (`leanface convert`).

Each importer module registers `(name, accepts(path) -> bool, load(path, model) -> (config, state_dict))`.
`model` is a zoo name or None (infer it from the file). Importers raise LeanfaceError naming
what did not match.
"""
from __future__ import annotations

import os

from ...errors import LeanfaceError
from .base import _IMPORTERS

# Importing a module registers its importer; files are tried in this order.
from . import mmdet, onnx  # noqa: E402,F401,I001
from . import ncnn, ssd  # noqa: E402,F401


def import_weights(src: str | os.PathLike, model: str | None = None):
    """Read official weights from `src` -> (config, state_dict) for a leanface model."""
    src = os.fspath(src)
    if not os.path.exists(src):
        raise LeanfaceError(f"{src}: file not found")
    for name, accepts, load in _IMPORTERS:
        if accepts(src):
            return load(src, model)
    kinds = ", ".join(n for n, _, _ in _IMPORTERS)
    raise LeanfaceError(f"{src}: unrecognised weights file (known kinds: {kinds})")

