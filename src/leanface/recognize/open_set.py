"""Open-set identification thresholds that know the gallery's size.

A stranger's probe is compared with every one of the gallery's N embeddings; it is wrongly named when the
best of those N impostor scores passes the threshold. With one-to-one impostor scores s exceeding t with
probability q(t), the false-positive identification rate is FPIR(t, N) = 1 - (1 - q(t))^N (ISO/IEC 19795-1's
open-set model, scores taken as independent), so the threshold for a target FPIR solves
q(t) = 1 - (1 - FPIR)^(1/N): the bigger the gallery, the further into the impostor tail it must sit.

q(t) comes from an embedder's impostor scores on a dev set (never LFW): empirical where the sample is dense,
and past its top 1% an exponential tail fitted by peaks over threshold (q(t) = p0 exp(-(t - t0) / beta), beta
the mean excess), which is what lets a 10^5-face gallery ask for quantiles beyond the sample.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import serial
from ..errors import LeanfaceError

TAIL_SHARE = 0.01  # the top share of impostor scores the exponential tail is fitted to


@dataclasses.dataclass(frozen=True)
class ImpostorTail:
    """An embedder's one-to-one impostor score distribution: `levels` (descending exceedance probabilities)
    with their score quantiles for the body, and the exponential tail above t0 = the (1 - p0) quantile."""

    levels: tuple[float, ...]
    quantiles: tuple[float, ...]
    t0: float
    p0: float
    beta: float
    pairs: int
    source: str = ""

    @classmethod
    def fit(cls, scores: np.ndarray, source: str = "", tail: float = TAIL_SHARE) -> "ImpostorTail":
        s = np.sort(np.asarray(scores, np.float64).ravel())
        if len(s) < 1000:
            raise LeanfaceError(f"{len(s)} impostor scores: too few to model the tail (need at least 1,000)")
        t0 = float(np.quantile(s, 1 - tail))
        excess = s[s > t0] - t0
        beta = float(excess.mean()) if len(excess) else 1e-3
        levels = tuple(float(v) for v in np.geomspace(0.5, tail, 40))
        quantiles = tuple(float(np.quantile(s, 1 - p)) for p in levels)
        return cls(levels, quantiles, t0, tail, max(beta, 1e-6), int(len(s)), source)

    def exceed(self, t: float) -> float:
        """q(t): the probability that one impostor score exceeds t."""
        if t >= self.t0:
            return self.p0 * math.exp(-(t - self.t0) / self.beta)
        q = np.interp(t, self.quantiles[::-1], self.levels[::-1], left=1.0, right=self.p0)
        return float(q)

    def score_at(self, q: float) -> float:
        """The inverse: the score t with q(t) = q."""
        if q <= self.p0:
            return self.t0 + self.beta * math.log(self.p0 / q)
        return float(np.interp(q, self.levels[::-1], self.quantiles[::-1]))

    def threshold(self, fpir: float, gallery_size: int) -> float:
        """The score above which a stranger is named with probability `fpir` in a gallery of `gallery_size`."""
        if not 0 < fpir < 1:
            raise LeanfaceError(f"fpir must be in (0, 1), got {fpir}")
        if gallery_size < 1:
            raise LeanfaceError(f"gallery_size must be at least 1, got {gallery_size}")
        q = -math.expm1(math.log1p(-fpir) / gallery_size)  # 1 - (1 - fpir)^(1/N), exact for tiny values
        return self.score_at(q)

    def fpir(self, threshold: float, gallery_size: int) -> float:
        return -math.expm1(gallery_size * math.log1p(-min(self.exceed(threshold), 1 - 1e-16)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ImpostorTail":
        return serial.from_dict(cls, d)


def impostor_scores(embeddings: np.ndarray, labels: np.ndarray, max_pairs: int = 2_000_000,
                    seed: int = 0) -> np.ndarray:
    """Cosine scores of random pairs of different identities (labels >= 0), at most `max_pairs`."""
    x = np.asarray(embeddings, np.float32)
    labels = np.asarray(labels)
    keep = labels >= 0
    x, labels = x[keep], labels[keep]
    if len(np.unique(labels)) < 2:
        raise LeanfaceError("impostor scores need at least two identities")
    rng = np.random.default_rng(seed)
    out, total = [], 0
    while total < max_pairs:
        a = rng.integers(0, len(x), 200_000)
        b = rng.integers(0, len(x), 200_000)
        diff = labels[a] != labels[b]
        s = np.einsum("ij,ij->i", x[a[diff]], x[b[diff]])
        out.append(s)
        total += len(s)
    return np.concatenate(out)[:max_pairs]
