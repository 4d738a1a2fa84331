"""Nearest-neighbour search over a gallery's embeddings (cosine = inner product of unit vectors).

Exact (one NumPy product) while that is fast; past `EXACT_MAX` embeddings an approximate index from faiss,
the field's standard library for this (`pip install leanface[gallery]`). The default, "ivfpq": k-means cells
(IVF) whose members are scanned as 4-bit product-quantised codes with SIMD (faiss's FastScan), and the best
`REFINE` x k candidates re-scored exactly against the full vectors: at 1 M faces with a real embedder's
statistics, recall@1 0.997 at 1.6 ms per query on one loaded core, built in 22 s (`bench/bench_gallery.py`).
Also "hnsw" (a navigable graph: slow to build, 13 min at 1 M) and "ivf" (IVF-Flat: exact scan of the cells,
~10x slower per query than ivfpq at the same recall). Without faiss the search stays exact (and linear in
the size).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import LeanfaceError

EXACT_MAX = 50_000  # below this an exact product answers a query in about a millisecond on one core
NPROBE_SHARE = 1 / 4  # IVF-Flat: share of the cells a query scans (the recall / time curve: bench/bench_gallery.py)
# ivfpq: half the cells (recall@1 0.99 at a third, 1.00 at a half, 1 M faces), 64 sub-quantisers of 4 bits,
# the best 16 x k codes re-scored exactly.
PQ_NPROBE_SHARE, PQ_SUBQUANTIZERS, REFINE = 1 / 2, 64, 16
HNSW_M, HNSW_EF_BUILD, HNSW_EF_SEARCH = 32, 64, 256  # graph degree, build and search beam widths


def faiss_or_none():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def resolve_kind(kind: str, size: int) -> str:
    """"auto": ivfpq past EXACT_MAX embeddings when faiss is installed, else exact."""
    if kind not in ("auto", "exact", "ivfpq", "hnsw", "ivf"):
        raise LeanfaceError(f"index kind must be auto, exact, ivfpq, hnsw or ivf, got {kind!r}")
    if kind == "auto":
        return "ivfpq" if faiss_or_none() is not None and size > EXACT_MAX else "exact"
    if faiss_or_none() is None and kind != "exact":
        raise LeanfaceError("an approximate index needs faiss: pip install 'leanface[gallery]'")
    return kind


class SearchIndex:
    """Top-k search over (N, D) unit vectors. kind: "exact", "ivfpq", "hnsw" or "ivf" (faiss), or "auto"
    (ivfpq past EXACT_MAX when faiss is installed). threads: faiss threads (None: faiss's default)."""

    def __init__(self, embeddings: np.ndarray, kind: str = "auto", threads: int | None = 1, seed: int = 0):
        x = np.ascontiguousarray(embeddings, np.float32)
        if x.ndim != 2:
            raise LeanfaceError(f"embeddings must be (N, D), got shape {x.shape}")
        faiss = faiss_or_none()
        self.size, self.dim = x.shape
        self.kind, self.cells = resolve_kind(kind, self.size), None
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
        if self.kind in ("ivf", "ivfpq"):
            # sqrt(N) cells (the low end of faiss's guideline: k-means and the assignment of a million
            # vectors stay within a minute on one core), trained on 40 points per cell.
            cells = max(1, min(self.size // 39, int(math.sqrt(self.size))))
            quantizer = faiss.IndexFlatIP(self.dim)
            if self.kind == "ivf":
                index = faiss.IndexIVFFlat(quantizer, self.dim, cells, faiss.METRIC_INNER_PRODUCT)
            else:
                if self.dim % PQ_SUBQUANTIZERS:
                    raise LeanfaceError(f"ivfpq needs a dimension divisible by {PQ_SUBQUANTIZERS}, got {self.dim}")
                index = faiss.IndexIVFPQFastScan(quantizer, self.dim, cells, PQ_SUBQUANTIZERS, 4,
                                                 faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            index.train(x[rng.choice(self.size, min(self.size, 40 * cells), replace=False)])
            if self.kind == "ivfpq":
                index = faiss.IndexRefineFlat(index)  # keeps the full vectors for the exact re-scoring
            index.add(x)
            self._index, self.cells = index, cells
            self.effort = self._default_effort()

    @classmethod
    def from_faiss(cls, index) -> "SearchIndex":
        """Wrap a built faiss HNSW or IVF index (e.g. read back from a store's cache)."""
        out = cls.__new__(cls)
        out.size, out.dim, out._x, out._index = index.ntotal, index.d, None, index
        out.kind = "hnsw" if hasattr(index, "hnsw") else "ivfpq" if hasattr(index, "base_index") else "ivf"
        out.cells = None if out.kind == "hnsw" else out._ivf().nlist
        out.effort = out._default_effort()  # faiss saves the structure, not the search settings
        return out

    def _ivf(self):
        import faiss

        return faiss.downcast_index(self._index.base_index) if self.kind == "ivfpq" else self._index

    def _default_effort(self) -> int:
        if self.kind == "hnsw":
            return HNSW_EF_SEARCH
        return max(1, int(round(self.cells * (PQ_NPROBE_SHARE if self.kind == "ivfpq" else NPROBE_SHARE))))

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
        return self._index.hnsw.efSearch if self.kind == "hnsw" else self._ivf().nprobe

    @effort.setter
    def effort(self, value: int) -> None:
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = int(value)
        elif self.kind in ("ivf", "ivfpq"):
            self._ivf().nprobe = int(value)
            if self.kind == "ivfpq":
                self._index.k_factor = REFINE

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
