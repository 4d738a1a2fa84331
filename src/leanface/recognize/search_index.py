"""Nearest-neighbour search over a gallery's embeddings (cosine = inner product of unit vectors).

Exact (one NumPy product) while that is fast; past `EXACT_MAX` embeddings an approximate index from faiss,
the field's standard library for this (`pip install leanface[gallery]`): HNSW (a navigable graph; the
default: more recall per millisecond of query than IVF-Flat on embeddings with a real face embedder's
statistics), or IVF-Flat (k-means cells: twenty times faster to build). Neither reaches recall@1 0.99 at
1 M faces within 5 ms here; the measured curves are in `bench/bench_gallery.py` and the README. Without
faiss the search stays exact (and linear in the size).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import LeanfaceError

EXACT_MAX = 50_000  # below this an exact product answers a query in about a millisecond on one core
NPROBE_SHARE = 1 / 4  # IVF: share of the cells a query scans (the recall / time curve: bench/bench_gallery.py)
HNSW_M, HNSW_EF_BUILD, HNSW_EF_SEARCH = 32, 64, 256  # graph degree, build and search beam widths


def faiss_or_none():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


class SearchIndex:
    """Top-k search over (N, D) unit vectors. kind: "exact", "hnsw" or "ivf" (faiss), or "auto" (hnsw past
    EXACT_MAX when faiss is installed). threads: faiss threads (None: faiss's default)."""

    def __init__(self, embeddings: np.ndarray, kind: str = "auto", threads: int | None = 1, seed: int = 0):
        x = np.ascontiguousarray(embeddings, np.float32)
        if x.ndim != 2:
            raise LeanfaceError(f"embeddings must be (N, D), got shape {x.shape}")
        if kind not in ("auto", "exact", "hnsw", "ivf"):
            raise LeanfaceError(f"index kind must be auto, exact, hnsw or ivf, got {kind!r}")
        faiss = faiss_or_none()
        if kind in ("hnsw", "ivf") and faiss is None:
            raise LeanfaceError("an approximate index needs faiss: pip install 'leanface[gallery]'")
        self.size, self.dim = x.shape
        if kind == "auto":
            kind = "hnsw" if faiss is not None and self.size > EXACT_MAX else "exact"
        self.kind, self.cells = kind, None
        self._x = x if self.kind == "exact" else None
        self._index = None
        if threads and faiss is not None:
            faiss.omp_set_num_threads(threads)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_BUILD
            index.add(x)
            index.hnsw.efSearch = HNSW_EF_SEARCH
            self._index = index
        if self.kind == "ivf":
            # sqrt(N) cells (the low end of faiss's guideline: k-means and the assignment of a million
            # vectors stay within a minute on one core), trained on 40 points per cell.
            cells = max(1, min(self.size // 39, int(math.sqrt(self.size))))
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, cells, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            sample = x[rng.choice(self.size, min(self.size, 40 * cells), replace=False)]
            index.train(sample)
            index.add(x)
            index.nprobe = max(1, int(round(cells * NPROBE_SHARE)))
            self._index, self.cells = index, cells

    @classmethod
    def from_faiss(cls, index) -> "SearchIndex":
        """Wrap a built faiss HNSW or IVF index (e.g. read back from a store's cache)."""
        out = cls.__new__(cls)
        out.size, out.dim, out._x, out._index = index.ntotal, index.d, None, index
        out.kind = "hnsw" if hasattr(index, "hnsw") else "ivf"
        out.cells = getattr(index, "nlist", None)
        out.effort = HNSW_EF_SEARCH if out.kind == "hnsw" else max(1, int(round(out.cells * NPROBE_SHARE)))
        return out

    def to_bytes(self) -> bytes:
        faiss = faiss_or_none()
        if self._index is None or faiss is None:
            raise LeanfaceError("only an approximate index is saved (an exact one is the embeddings themselves)")
        return faiss.serialize_index(self._index).tobytes()

    @property
    def effort(self) -> int | None:
        """How hard a query searches: cells scanned (IVF nprobe) or the search beam (HNSW efSearch)."""
        if self._index is None:
            return None
        return self._index.hnsw.efSearch if self.kind == "hnsw" else self._index.nprobe

    @effort.setter
    def effort(self, value: int) -> None:
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = int(value)
        elif self.kind == "ivf":
            self._index.nprobe = int(value)

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(similarities (Q, k), indices (Q, k)) of the k most similar embeddings, best first; index -1 (and
        similarity -inf) where fewer than k exist."""
        q = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        if q.shape[1] != self.dim:
            raise LeanfaceError(f"queries have {q.shape[1]} dimensions, the gallery {self.dim}")
        if self._index is not None:
            sims, idx = self._index.search(q, k)
            return sims, idx
        k_eff = min(k, self.size)
        sims = q @ self._x.T
        if k_eff < self.size:
            part = np.argpartition(-sims, k_eff - 1, axis=1)[:, :k_eff]
        else:
            part = np.tile(np.arange(self.size), (len(q), 1))
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1)
        idx = np.take_along_axis(part, order, 1)
        out_s = np.take_along_axis(sims, idx, 1)
        if k_eff < k:  # faiss's convention for missing neighbours
            pad = k - k_eff
            idx = np.concatenate([idx, np.full((len(q), pad), -1)], 1)
            out_s = np.concatenate([out_s, np.full((len(q), pad), -np.inf, np.float32)], 1)
        return out_s.astype(np.float32), idx
