"""Set-to-set verification: templates of k face images per identity, some degraded the way video
degrades, compared by one aggregated embedding per template (leanface.recognize.aggregate).

Templates come from identities with many images (`template_split`: people the quality net never trains
on). A stated share of each template's frames is degraded, one degradation per frame drawn at random:
motion blur (a line kernel of 7-15 px at a random angle), downscaling to 20-40% of the side and back,
JPEG at quality 8-25, or an occluding block over 25-45% of the face; off-pose frames come from the
data itself. Pairs: every same-identity template pair, and as many different-identity pairs, in 10
identity-disjoint folds (the LFW protocol's threshold-per-fold accuracy and TAR at FAR 1e-3 / 1e-2).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import LeanfaceError
from ..recognize.aggregate import aggregate
from ..recognize.identities import IdentityFaces, dev_pairs
from .verification import VerificationResult, verification_protocol

DEGRADATIONS = ("motion_blur", "downscale", "jpeg", "occlusion")


def degrade(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One degraded copy of an aligned RGB uint8 crop."""
    size = img.shape[0]
    if kind == "motion_blur":
        n = int(rng.integers(7, 16))
        kernel = np.zeros((n, n), np.float32)
        kernel[n // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (n, n))
        return cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6), borderType=cv2.BORDER_REFLECT)
    if kind == "downscale":
        side = max(8, int(size * rng.uniform(0.2, 0.4)))
        small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    if kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(8, 26))])
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else img.copy()
    if kind == "occlusion":
        area = rng.uniform(0.25, 0.45) * size * size
        w = int(np.clip(np.sqrt(area * rng.uniform(0.6, 1.6)), 8, size))
        h = int(np.clip(area / w, 8, size))
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        out = img.copy()
        out[y:y + h, x:x + w] = rng.integers(0, 256, 3, dtype=np.uint8)
        return out
    raise LeanfaceError(f"degradation must be one of {', '.join(DEGRADATIONS)}, got {kind!r}")


@dataclass(frozen=True)
class TemplateSet:
    """crops (M, S, S, 3): every frame, degraded where `degraded`; template (M,) its template's index;
    labels (T,) the identity (index into `identities`) of each template."""

    crops: np.ndarray
    degraded: np.ndarray
    template: np.ndarray
    labels: np.ndarray
    identities: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def build_templates(faces: IdentityFaces, k: int = 5, share: float = 0.5, max_templates: int = 6,
                    seed: int = 0) -> TemplateSet:
    """Templates of `k` faces (disjoint, at most `max_templates` per identity, identities with at least 2k
    faces), `share` of each template's frames degraded; seeded, so a seed is one draw of the protocol."""
    if k < 1 or not 0 <= share <= 1 or max_templates < 2:
        raise LeanfaceError(f"templates need k >= 1, share in [0, 1] and max_templates >= 2; got {k}, {share}, "
                            f"{max_templates}")
    rng = np.random.default_rng(seed)
    crops, degraded, template, labels, names = [], [], [], [], []
    for ident in range(len(faces.identities)):
        idx = np.flatnonzero(faces.labels == ident)
        n = min(len(idx) // k, max_templates)
        if n < 2:
            continue
        idx = rng.permutation(idx)[: n * k]
        names.append(faces.identities[ident])
        for t in range(n):
            frames = idx[t * k:(t + 1) * k]
            bad = np.zeros(k, bool)
            bad[rng.permutation(k)[: int(round(share * k))]] = True
            for f, b in zip(frames, bad):
                img = faces.crops[f]
                crops.append(degrade(img, DEGRADATIONS[int(rng.integers(len(DEGRADATIONS)))], rng) if b else img)
                degraded.append(b)
                template.append(len(labels))
            labels.append(len(names) - 1)
    if len(names) < 2:
        raise LeanfaceError(f"templates need at least two identities with {2 * k} or more faces")
    return TemplateSet(np.stack(crops), np.array(degraded), np.array(template), np.array(labels), tuple(names))


def template_embeddings(frame_embeddings: np.ndarray, qualities: np.ndarray | None, ts: TemplateSet,
                        method: str) -> np.ndarray:
    """(T, D) one aggregated embedding per template."""
    return np.stack([aggregate(frame_embeddings[ts.template == t],
                               None if qualities is None else qualities[ts.template == t], method)
                     for t in range(len(ts))])


def evaluate_templates(frame_embeddings: np.ndarray, qualities: np.ndarray | None, ts: TemplateSet,
                       method: str, seed: int = 0) -> VerificationResult:
    """The 10-fold protocol over template pairs (every same-identity pair and as many different ones)."""
    e = template_embeddings(frame_embeddings, qualities, ts, method)
    left, right, same, folds = dev_pairs(ts.labels, seed=seed)
    return verification_protocol(np.einsum("ij,ij->i", e[left], e[right]), same, folds)
