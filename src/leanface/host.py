"""What this machine offers every layer: the cores this process may use, and leanface's cache folder."""
from __future__ import annotations

import os
from pathlib import Path


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or `taskset`'s share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cache_dir(kind: str) -> Path:
    """$XDG_CACHE_HOME/leanface/<kind> (default ~/.cache): derived data that can always be rebuilt (aligned
    crops, gallery embeddings, teacher embeddings)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "leanface" / kind
