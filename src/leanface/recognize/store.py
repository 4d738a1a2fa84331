"""A gallery store: enrolled faces in one SQLite file, grown and shrunk without re-embedding the rest.

Tables: `meta` (format, the recognition setup that made the embeddings, their dimension, a change counter,
the embedder's impostor-score calibration) and `faces` (identity, source photo, its SHA-1, the embedding as
float32 bytes). Every write is one SQLite transaction: an interrupted enrolment loses at most the batch in
progress and a reader never sees half a write. A store made with one setup (embedder, detector, alignment)
refuses queries made with another: their embeddings would not be comparable.

Search: exact below `search_index.EXACT_MAX` faces, past it an approximate index (faiss) cached beside
the store (`<store>.index`) and rebuilt when the store changes.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np

from ..errors import LeanfaceError
from ..files import atomic_write
from ..outputs import GALLERY_FORMAT, is_gallery_store
from .open_set import ImpostorTail
from .search_index import SearchIndex, faiss_or_none, resolve_kind


class GalleryStore:
    """Open (or with create=True, make) the store at `path`. setup: the recognition setup of the caller
    (`gallery.setup_of(recognizer)`); a store made with another one is refused."""

    def __init__(self, path: str | os.PathLike, *, create: bool = False, setup: dict | None = None):
        self.path = Path(path)
        exists = self.path.is_file() and self.path.stat().st_size > 0
        if not exists and not create:
            raise LeanfaceError(f"{self.path}: no gallery store here (`leanface gallery add` makes one)")
        if exists and not is_gallery_store(self.path):
            raise LeanfaceError(f"{self.path}: not a leanface gallery store (or a damaged one)")
        if not exists:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = sqlite3.connect(self.path, timeout=30)
            self.con.execute("PRAGMA foreign_keys = ON")
            if not exists:
                with self.con:
                    self.con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                    self.con.execute("CREATE TABLE faces (id INTEGER PRIMARY KEY AUTOINCREMENT, identity TEXT NOT NULL, "
                                     "source TEXT, sha1 TEXT, embedding BLOB NOT NULL)")
                    self.con.execute("CREATE INDEX faces_identity ON faces (identity)")
                    self.con.executemany("INSERT INTO meta VALUES (?, ?)", [
                        ("format", GALLERY_FORMAT), ("setup", json.dumps(setup or {}, sort_keys=True)), ("version", "0"),
                        ("created", time.strftime("%Y-%m-%dT%H:%M:%S"))])
            self.meta = dict(self.con.execute("SELECT key, value FROM meta").fetchall())
            self.con.execute("SELECT count(*) FROM faces").fetchone()
        except sqlite3.DatabaseError as exc:
            raise LeanfaceError(f"{self.path}: not a usable gallery store ({exc})") from None
        self.setup = json.loads(self.meta.get("setup", "{}"))
        if setup is not None and self.setup and setup != self.setup:
            diff = sorted(k for k in set(setup) | set(self.setup) if setup.get(k) != self.setup.get(k))
            raise LeanfaceError(f"{self.path}: made with another recognition setup (differs in: {', '.join(diff)}); "
                                f"its embeddings are not comparable with this one's")

    def close(self) -> None:
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- reading ---
    @property
    def dim(self) -> int | None:
        return int(self.meta["dim"]) if "dim" in self.meta else None

    @property
    def version(self) -> int:
        return int(self.con.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])

    def identities(self) -> list[tuple[str, int]]:
        return [tuple(r) for r in self.con.execute(
            "SELECT identity, count(*) FROM faces GROUP BY identity ORDER BY identity")]

    def __len__(self) -> int:
        return self.con.execute("SELECT count(*) FROM faces").fetchone()[0]

    def enrolled(self, identity: str) -> set[str]:
        """SHA-1s of the photos of `identity` already enrolled (a rerun skips them)."""
        return {r[0] for r in self.con.execute("SELECT sha1 FROM faces WHERE identity = ?", (identity,)) if r[0]}

    def info(self) -> dict:
        ids = self.identities()
        cal = self.calibration()
        return {"store": str(self.path), "format": self.meta.get("format"), "faces": sum(n for _, n in ids),
                "identities": len(ids), "dim": self.dim, "setup": self.setup, "created": self.meta.get("created"),
                "bytes": self.path.stat().st_size, "calibration": None if cal is None else
                {"pairs": cal.pairs, "source": cal.source}}

    def calibration(self) -> ImpostorTail | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = 'calibration'").fetchone()
        return None if row is None else ImpostorTail.from_dict(json.loads(row[0]))

    def load(self) -> tuple[list[str], np.ndarray, list[str]]:
        """(identity per face, embeddings (N, D) float32, source per face), in enrolment order."""
        rows = self.con.execute("SELECT identity, source, embedding FROM faces ORDER BY id").fetchall()
        dim = self.dim or 0
        emb = np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(len(rows), dim) if rows else \
            np.zeros((0, dim), np.float32)
        return [r[0] for r in rows], emb, [r[1] or "" for r in rows]

    def index(self, embeddings: np.ndarray, kind: str = "auto") -> SearchIndex:
        """The search index of `embeddings` (this store's `load()`): an approximate index is cached beside the
        store (`<store>.index`) and reused while the store is unchanged."""
        faiss = faiss_or_none()
        cache = self.path.with_name(self.path.name + ".index")
        kind = resolve_kind(kind, len(embeddings))  # the stamp names the kind built: a new default rebuilds
        stamp = f"{self.version}:{len(embeddings)}:{kind}"
        if faiss is not None and kind != "exact" and cache.is_file() and self.meta.get("index_stamp") == stamp:
            try:
                loaded = faiss.read_index(str(cache))
            except RuntimeError:  # a damaged cache is rebuilt
                loaded = None
            if loaded is not None and loaded.ntotal == len(embeddings):
                return SearchIndex.from_faiss(loaded)
        index = SearchIndex(embeddings, kind)
        if index.kind != "exact":
            with atomic_write(cache, binary=True) as f:
                f.write(index.to_bytes())
            with self.con:
                self.con.execute("INSERT OR REPLACE INTO meta VALUES ('index_stamp', ?)", (stamp,))
            self.meta["index_stamp"] = stamp
        return index

    # --- writing: one transaction each ---
    def add(self, identity: str, embeddings: np.ndarray, sources=None, sha1s=None) -> int:
        """Enrol faces of one identity; returns how many."""
        return self.add_many([identity] * len(embeddings), embeddings, sources, sha1s)

    def add_many(self, identities, embeddings: np.ndarray, sources=None, sha1s=None) -> int:
        emb = np.ascontiguousarray(embeddings, np.float32)
        if emb.ndim != 2 or len(emb) != len(identities):
            raise LeanfaceError(f"expected one embedding per identity, got {emb.shape} for {len(identities)}")
        if not np.isfinite(emb).all():
            raise LeanfaceError("embeddings must be finite numbers")
        if any(not isinstance(n, str) or not n.strip() for n in identities):
            raise LeanfaceError("identity names must be non-empty text")
        if self.dim is not None and emb.shape[1] != self.dim:
            raise LeanfaceError(f"{self.path}: holds {self.dim}-d embeddings; these are {emb.shape[1]}-d")
        n = len(emb)
        sources = list(sources) if sources is not None else [None] * n
        sha1s = list(sha1s) if sha1s is not None else [None] * n
        with self.con:  # one transaction: all of it or nothing
            if self.dim is None:
                self.con.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(emb.shape[1]),))
                self.meta["dim"] = str(emb.shape[1])
            self.con.executemany("INSERT INTO faces (identity, source, sha1, embedding) VALUES (?, ?, ?, ?)",
                                 zip(identities, sources, sha1s, (row.tobytes() for row in emb)))
            self._bump()
        return n

    def remove(self, identity: str) -> int:
        with self.con:
            n = self.con.execute("DELETE FROM faces WHERE identity = ?", (identity,)).rowcount
            self._bump()
        return n

    def set_calibration(self, tail: ImpostorTail) -> None:
        with self.con:
            self.con.execute("INSERT OR REPLACE INTO meta VALUES ('calibration', ?)", (json.dumps(tail.to_dict()),))

    def _bump(self) -> None:
        self.con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
