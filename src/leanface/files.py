"""Atomic file writes (outputs, checkpoints, figures): a crash or Ctrl-C never leaves a half-written file."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, binary: bool = False):
    """Yield a file object; on success it replaces `path` in one rename, on error it vanishes."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give outputs the usual permissions
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_figure(fig, path: str | os.PathLike, dpi: float = 110) -> str | os.PathLike:
    """Save a matplotlib figure (pyplot's or a bare Figure) as PNG atomically and close it."""
    import io

    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    with atomic_write(path, binary=True) as f:
        f.write(buf.getvalue())
    return path


def check_writable_folder(folder: str | os.PathLike, flag: str, shown: str | os.PathLike | None = None) -> None:
    """Raise a one-line LeanfaceError unless `folder` (or, if it does not exist yet, its nearest existing
    parent) is a folder we can create files in. Tried, not read off permission bits (root, read-only mounts)."""
    from pathlib import Path

    from .errors import LeanfaceError

    shown = folder if shown is None else shown
    probe = Path(folder).resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise LeanfaceError(f"{shown}: {flag} cannot be written ({probe} is not a folder)")
    try:
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as e:
        raise LeanfaceError(f"{shown}: {flag} cannot be written ({e.strerror} in {probe})") from None


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MB blocks (weights files, gallery photos, model records)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
