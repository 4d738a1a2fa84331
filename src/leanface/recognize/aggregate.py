"""One embedding for a set of frames of one face (a video track, a template): mean, QAN++, best frame.

QAN++ (Song et al. 2019; RECOGNITION_FACTS.md §4): per set, the frame qualities are min-max rescaled to
[0, 1] (the worst frame gets weight 0), normalised to sum 1, and the set embedding is the weighted sum
of the frame embeddings. Where the authors' code breaks we decide: all qualities equal (their code
divides by zero) -> the mean; two or fewer frames (their code uses the raw, possibly negative scores)
-> the mean, since rescaling two frames would throw one away entirely; one frame -> that frame.
Every result is L2-normalised, as frame embeddings are.
"""
from __future__ import annotations

import numpy as np

from ..errors import LeanfaceError

AGGREGATORS = ("mean", "qan", "best")


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def qan_weights(qualities: np.ndarray) -> np.ndarray:
    """QAN++ frame weights (sum 1) for one set's quality scores, with the edge cases above."""
    q = np.asarray(qualities, np.float64).reshape(-1)
    if not len(q):
        raise LeanfaceError("cannot aggregate an empty set of frames")
    if not np.isfinite(q).all():
        raise LeanfaceError("frame qualities must be finite numbers")
    span = q.max() - q.min()
    if len(q) <= 2 or span <= 1e-12 * max(1.0, abs(q.max())):
        return np.full(len(q), 1.0 / len(q))
    w = (q - q.min()) / span
    return w / w.sum()


def aggregate(embeddings: np.ndarray, qualities: np.ndarray | None = None, method: str = "qan") -> np.ndarray:
    """(K, D) frame embeddings (+ (K,) qualities for "qan" and "best") -> (D,) L2-normalised set embedding."""
    if method not in AGGREGATORS:
        raise LeanfaceError(f"aggregator must be one of {', '.join(AGGREGATORS)}, got {method!r}")
    e = np.asarray(embeddings, np.float32)
    if e.ndim != 2 or not len(e):
        raise LeanfaceError(f"need (K, D) frame embeddings with K >= 1, got shape {e.shape}")
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    if method == "mean":
        return _unit(e.mean(0))
    if qualities is None:
        raise LeanfaceError(f"the {method!r} aggregator needs frame qualities")
    q = np.asarray(qualities, np.float64).reshape(-1)
    if len(q) != len(e):
        raise LeanfaceError(f"{len(q)} qualities for {len(e)} frames")
    if method == "best":
        if not np.isfinite(q).all():
            raise LeanfaceError("frame qualities must be finite numbers")
        return _unit(e[int(np.argmax(q))])
    return _unit((qan_weights(q)[:, None] * e).sum(0))
