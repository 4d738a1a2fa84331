"""Import official weights into leanface checkpoints (`leanface convert`).

Each importer module registers `(name, accepts(path) -> bool, load(path, model) -> (config, state_dict))`.
`model` is a zoo name or None (infer it from the file). Importers raise LeanfaceError naming
what did not match.
"""
from __future__ import annotations

import os
from typing import Callable

from ...errors import LeanfaceError

_IMPORTERS: list[tuple[str, Callable[[str], bool], Callable]] = []


def register_importer(name: str, accepts: Callable[[str], bool]):
    def deco(load):
        _IMPORTERS.append((name, accepts, load))
        return load
    return deco


def import_weights(src: str | os.PathLike, model: str | None = None):
    """Read official weights from `src` -> (config, state_dict) for a leanface model."""
    from . import mmdet, onnx  # noqa: F401  (registration)
    _import_optional()
    src = os.fspath(src)
    if not os.path.exists(src):
        raise LeanfaceError(f"{src}: file not found")
    for name, accepts, load in _IMPORTERS:
        if accepts(src):
            return load(src, model)
    kinds = ", ".join(n for n, _, _ in _IMPORTERS)
    raise LeanfaceError(f"{src}: unrecognised weights file (known kinds: {kinds})")


def _import_optional() -> None:
    # Importers for other families live beside their models; importing registers them.
    import importlib

    for mod in ("ncnn", "ssd"):
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{mod}":
                raise
