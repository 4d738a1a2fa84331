"""The importer table: `(name, accepts(path) -> bool, load(path, model) -> (config, state_dict))`, tried in order."""
from __future__ import annotations

from typing import Callable

_IMPORTERS: list[tuple[str, Callable[[str], bool], Callable]] = []


def register_importer(name: str, accepts: Callable[[str], bool]):
    def deco(load):
        _IMPORTERS.append((name, accepts, load))
        return load
    return deco
