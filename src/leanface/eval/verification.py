"""The face-verification protocol (LFW View 2, RECOGNITION_FACTS 6) on pair similarities.

Accuracy: for each fold, the threshold that maximises accuracy on the other folds is applied to this
fold; the result is the mean and standard deviation over folds. The threshold is chosen exactly
(every distinct score is a candidate, the midpoint to the next one is used), not on a fixed grid.
TAR at FAR: over all pairs, the share of same-person pairs scoring above the threshold that lets
through at most that share of different-person pairs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import LeanfaceError

FARS = (1e-3, 1e-2)


@dataclass(frozen=True)
class VerificationResult:
    accuracy: float
    accuracy_std: float
    fold_accuracies: tuple[float, ...]
    fold_thresholds: tuple[float, ...]
    tar_at_far: dict = field(default_factory=dict)
    pairs: int = 0
    folds: int = 0

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "accuracy_std": self.accuracy_std,
                **{f"tar_at_far_{far:.0e}".replace("e-0", "e-"): tar for far, tar in self.tar_at_far.items()},
                "pairs": self.pairs, "folds": self.folds, "fold_accuracies": list(self.fold_accuracies),
                "fold_thresholds": list(self.fold_thresholds)}


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold t maximising the accuracy of "same iff score > t" (ties: the lowest such t)."""
    order = np.argsort(scores, kind="stable")
    s, y = np.asarray(scores, np.float64)[order], np.asarray(same, bool)[order]
    # Threshold just below s[0], then just above each distinct score: "same" = everything above it.
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # last index of each distinct score
    neg_below = np.r_[0, np.cumsum(~y)[last]]  # different pairs at or below each candidate
    pos_above = np.r_[y.sum(), y.sum() - np.cumsum(y)[last]]  # same pairs above it
    k = int(np.argmax(neg_below + pos_above))
    if k == 0:
        return float(s[0] - 1.0)
    upper = s[last[k - 1] + 1] if last[k - 1] + 1 < len(s) else s[-1] + 1.0
    return float((s[last[k - 1]] + upper) / 2)


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """Share of same pairs scoring above the lowest threshold at which at most `far` of the different pairs
    score above it."""
    scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
    neg = np.sort(scores[~same])[::-1]
    allowed = int(np.floor(far * len(neg)))
    threshold = neg[allowed] if allowed < len(neg) else -np.inf
    return float((scores[same] > threshold).mean())


def verification_protocol(scores: np.ndarray, same: np.ndarray, folds: np.ndarray,
                          fars: tuple[float, ...] = FARS) -> VerificationResult:
    scores, same, folds = np.asarray(scores, np.float64), np.asarray(same, bool), np.asarray(folds)
    if not (len(scores) == len(same) == len(folds)) or len(scores) == 0:
        raise LeanfaceError(f"verification needs as many scores, labels and folds, got "
                            f"{len(scores)}, {len(same)}, {len(folds)}")
    if not np.isfinite(scores).all():
        raise LeanfaceError("verification scores contain NaN or infinity")
    ids = np.unique(folds)
    if len(ids) < 2:
        raise LeanfaceError("the protocol needs at least two folds")
    accs, thresholds = [], []
    for f in ids:
        test = folds == f
        t = best_threshold(scores[~test], same[~test])
        accs.append(float(((scores[test] > t) == same[test]).mean()))
        thresholds.append(t)
    return VerificationResult(float(np.mean(accs)), float(np.std(accs)), tuple(accs), tuple(thresholds),
                              {far: tar_at_far(scores, same, far) for far in fars}, len(scores), len(ids))


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false accept rate, true accept rate) at every distinct threshold, from the strictest."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    y = np.asarray(same, bool)[order]
    return np.r_[0.0, np.cumsum(~y) / max((~y).sum(), 1)], np.r_[0.0, np.cumsum(y) / max(y.sum(), 1)]
