"""Empirical bootstrap of where the best models lie (RegNet, Radosavovic et al. 2020; SCRFD section 4.2).

Given n (statistic x_i, score s_i) pairs from sampled models: draw 25% of the pairs with replacement,
keep the x of the pair with the highest score, repeat 10^4 times. The central 95% of those x values
is the range where the best model likely lies; their median is the most likely best value.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BootstrapResult:
    """low/high: the `level` interval of the best model's statistic; median: its median.
    samples: (n_boot,) the statistic of the best pair in each resample."""

    low: float
    median: float
    high: float
    level: float
    n_pairs: int
    resample_size: int
    samples: np.ndarray

    def to_dict(self) -> dict:
        return {"low": self.low, "median": self.median, "high": self.high, "level": self.level,
                "n_pairs": self.n_pairs, "resample_size": self.resample_size, "n_boot": len(self.samples)}


def bootstrap_best(x, score, *, n_boot: int = 10_000, fraction: float = 0.25, level: float = 0.95,
                   seed: int = 0) -> BootstrapResult:
    """x, score: (n,) statistic (e.g. a component's FLOPs share) and quality (e.g. hard-set AP, higher is
    better) of n models. Resamples have max(1, round(fraction * n)) pairs; ties go to the first drawn."""
    x = np.asarray(x, dtype=np.float64).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    if x.shape != score.shape or x.size == 0:
        raise ValueError(f"x and score must be equal-length, non-empty (got {x.shape} and {score.shape})")
    if not np.isfinite(score).all():
        raise ValueError("score has non-finite values")
    k = max(1, int(round(fraction * x.size)))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, x.size, size=(n_boot, k))
    best = picks[np.arange(n_boot), np.argmax(score[picks], axis=1)]
    samples = x[best]
    tail = 100 * (1 - level) / 2
    low, median, high = np.percentile(samples, [tail, 50, 100 - tail])
    return BootstrapResult(float(low), float(median), float(high), level, int(x.size), k, samples)
