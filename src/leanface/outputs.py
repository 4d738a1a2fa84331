"""The one guard every output of every verb goes through, checked before any work starts.

An output may never be an input of the same run (an image, a video, weights, an annotation or pairs
file, a gallery photo) nor lie inside an input folder (a gallery, a data root, a folder being
processed: what is written there would be read back as input by the next run). An existing file is
replaced only when it is this verb's own kind of output (`Kind.owns`) and the user said so
(`exist_ok`), or continued with `resume`. A file leanface did not write is never replaced.
"""
from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Callable, Iterable

from .errors import LeanfaceError
from .files import check_writable_folder

STDOUT = "-"  # `--json-out -`: JSON lines on standard output
# The tags that mark leanface's own files (written by models.registry and export.onnx, read here).
CHECKPOINT_FORMAT = "leanface-checkpoint-v1"
ONNX_CONFIG_KEY = "leanface_config"
GALLERY_FORMAT = "leanface-gallery-v1"  # the `format` row of a gallery store's meta table


@dataclasses.dataclass(frozen=True)
class Kind:
    """What a verb writes to one output. suffixes: the names it may have (empty: any);
    owns(path): whether an existing file is this kind (None: any file of the right suffix)."""

    name: str
    suffixes: tuple[str, ...] = ()
    owns: Callable[[Path], bool] | None = None


def _tail(path: Path, size: int = 1 << 20) -> bytes:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read()


def _is_checkpoint(path: Path) -> bool:
    """A leanface weights file: torch's zip format with our format tag in its pickle."""
    try:
        with zipfile.ZipFile(path) as z:
            pickles = [n for n in z.namelist() if n.endswith("data.pkl")]
            return bool(pickles) and CHECKPOINT_FORMAT.encode() in z.read(pickles[0])
    except (OSError, zipfile.BadZipFile):
        return False


def _is_leanface_onnx(path: Path) -> bool:
    """An ONNX file leanface exported: its metadata (serialised last) holds our config key."""
    try:
        return ONNX_CONFIG_KEY.encode() in _tail(path)
    except OSError:
        return False


def is_gallery_store(path: str | os.PathLike) -> bool:
    """An SQLite file whose meta table carries our gallery format tag (read-only look)."""
    import sqlite3

    try:
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                return False
        con = sqlite3.connect(f"file:{os.fspath(path)}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        finally:
            con.close()
        return row is not None and row[0] == GALLERY_FORMAT
    except (OSError, sqlite3.Error):
        return False


def _is_npz(*keys: str) -> Callable[[Path], bool]:
    def owns(path: Path) -> bool:
        try:
            with zipfile.ZipFile(path) as z:
                return {f"{k}.npy" for k in keys} <= set(z.namelist())
        except (OSError, zipfile.BadZipFile):
            return False
    return owns


def results_verb(path: Path) -> str | None:
    """Which verb wrote a JSON-lines results file: "detect", "embed", "identify", "" (results, but no record
    tells which: e.g. only images without faces), or None (not a results file)."""
    found = ""
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f):
                if n >= 1000 or not line.endswith("\n"):
                    break
                try:
                    rec = json.loads(line)
                except ValueError:
                    return None
                if not isinstance(rec, dict) or not ("image" in rec or "track" in rec):
                    return None
                if "track" in rec:
                    return "identify"
                faces = rec.get("faces") or []
                if faces and isinstance(faces[0], dict):
                    face = faces[0]
                    return "identify" if "identity" in face else "embed" if "embedding" in face else "detect"
    except (OSError, UnicodeDecodeError):
        return None
    return found


def results_kind(verb: str) -> Kind:
    return Kind(f"`leanface {verb}` results", owns=lambda p: results_verb(p) in (verb, ""))


def _is_json_record(*keys: str) -> Callable[[Path], bool]:
    def owns(path: Path) -> bool:
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return False
        return isinstance(rec, dict) and all(k in rec for k in keys)
    return owns


def _is_png(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


CHECKPOINT = Kind("leanface weights", (".pt", ".pth"), _is_checkpoint)
ONNX = Kind("a leanface ONNX export", (".onnx",), _is_leanface_onnx)
GALLERY_CACHE = Kind("a gallery embedding cache", (".npz",), _is_npz("keys", "embeddings"))
PLOT = Kind("a plot", (".png",), _is_png)
GALLERY_STORE = Kind("a leanface gallery store", (".db",), is_gallery_store)


def json_record(*keys: str) -> Kind:
    return Kind("a leanface JSON record", (".json",), _is_json_record(*keys))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class OutputGuard:
    """The outputs of one command, checked against its inputs and what already exists, before any work.

    guard = OutputGuard("identify", exist_ok=args.exist_ok)
    guard.inputs(*args.paths); guard.input_folder(args.gallery, "the gallery")
    guard.file(args.json_out, "--json-out", results_kind("identify"))
    """

    def __init__(self, verb: str, *, exist_ok: bool = False, resume: bool = False):
        self.verb, self.exist_ok, self.resume = verb, exist_ok, resume
        self._files: dict[Path, str] = {}  # resolved input file -> what it is
        self._folders: dict[Path, str] = {}  # resolved input folder -> what it is
        self._claimed: dict[Path, str] = {}  # resolved output -> flag

    # --- inputs ---
    def inputs(self, *paths: str | os.PathLike | None, what: str = "an input") -> None:
        """Files and folders this run reads; a folder's whole content counts as input."""
        for p in paths:
            if p is None or str(p) == STDOUT:
                continue
            r = Path(p).resolve()
            if r.is_dir():
                self._folders.setdefault(r, what)
            else:
                self._files.setdefault(r, what)

    def input_folder(self, path: str | os.PathLike | None, what: str) -> None:
        if path is not None:
            self._folders[Path(path).resolve()] = what

    def _not_an_input(self, shown: Path, flag: str) -> Path:
        r = shown.resolve()
        if r in self._files:
            what = "" if self._files[r] == "an input" else f" ({self._files[r]})"
            raise LeanfaceError(f"{shown}: {flag} would overwrite an input of this run{what}; choose another "
                                f"output location")
        for folder, what in self._folders.items():
            if _inside(r, folder):
                raise LeanfaceError(f"{shown}: {flag} lies inside {what} ({folder}); outputs there would be read "
                                    f"back as inputs; choose another output location")
        if r in self._claimed:
            raise LeanfaceError(f"{shown}: {flag} and {self._claimed[r]} name the same file")
        return r

    # --- outputs ---
    def file(self, path: str | os.PathLike | None, flag: str, kind: Kind, *, resumable: bool = False,
             replaceable: bool = True) -> Path | None:
        """Check one output file; returns it (None when not asked for, or STDOUT). replaceable=False: an
        existing file of this kind is updated in place (a cache), so exist_ok is not needed."""
        if path is None or str(path) == STDOUT:
            return None
        shown = Path(path)
        if shown.is_dir():
            raise LeanfaceError(f"{shown}: {flag} names a folder, not a file")
        r = self._not_an_input(shown, flag)
        if kind.suffixes and shown.suffix.lower() not in kind.suffixes:
            raise LeanfaceError(f"{shown}: {flag} writes {kind.name} ({' or '.join(kind.suffixes)}), not a "
                                f"{shown.suffix or 'file without an extension'}")
        check_writable_folder(shown.parent, flag, shown=shown)
        if shown.exists() and (not shown.is_file() or shown.stat().st_size):
            if not shown.is_file() or (kind.owns is not None and not kind.owns(shown)):
                raise LeanfaceError(f"{shown}: {flag} would replace a file that is not {kind.name}; leanface only "
                                    f"replaces its own outputs: choose another name")
            if replaceable and not (self.exist_ok or (self.resume and resumable)):
                hint = "--resume continues it, --exist-ok replaces it" if resumable else "--exist-ok replaces it"
                raise LeanfaceError(f"{shown}: {flag} already holds {kind.name}; {hint}")
        self._claimed[r] = flag
        return shown

    def folder(self, path: str | os.PathLike | None, flag: str, *, writes: Iterable[str] = (),
               kinds: dict[str, Kind] | None = None, resumable: bool = False) -> Path | None:
        """Check an output folder and the files it will get (relative names); existing ones are replaced only
        with exist_ok (or kept for resume). kinds: file name -> Kind, for files with a known format."""
        if path is None:
            return None
        shown = Path(path)
        if shown.exists() and not shown.is_dir():
            raise LeanfaceError(f"{shown}: {flag} names a file, not a folder")
        self._not_an_input(shown, flag)
        check_writable_folder(shown, flag)
        kinds = kinds or {}
        for name in writes:
            target = shown / name
            self._not_an_input(target, flag)
            if target.exists():
                kind = kinds.get(name)
                if target.is_dir() or (kind is not None and kind.owns is not None and not kind.owns(target)):
                    raise LeanfaceError(f"{target}: {flag} would replace something leanface did not write; "
                                        f"choose another folder")
                if not (self.exist_ok or (self.resume and resumable)):
                    hint = "--resume continues it, --exist-ok replaces it" if resumable else "--exist-ok replaces it"
                    raise LeanfaceError(f"{target}: already exists in {flag}; {hint}")
        self._claimed[shown.resolve()] = flag
        return shown
