"""Face tracking through video: stable track ids, ByteTrack's two association stages, optional embeddings.

Per frame: every track predicts its box (constant-velocity Kalman filter on centre and size); stage
one matches the high-score detections to all live tracks by a cost of 1 - IoU, fused with the
cosine distance of embeddings when both sides have one (faces that cross keep their ids); stage two
matches the low-score detections (ByteTrack's idea: a blurred or occluded face scores low but is
still the same face) to the tracks stage one left, by IoU alone. Unmatched high-score detections
start tracks; a track survives `max_age` frames without a match, its box coasting on its velocity.

Why our own and not a library: the well-kept ByteTrack implementations we looked at (e.g. Roboflow
supervision's) associate by IoU only; faces need the embedding term. Hungarian matching is scipy's.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..boxes import box_iou
from ..errors import LeanfaceError
from .results import Faces


@dataclass(frozen=True)
class TrackerConfig:
    """high_thr: detections from this score start and match tracks in stage one; low_thr: the floor of
    stage two's detections (run the detector at this score threshold). match_iou / low_match_iou: the least
    IoU for a match in each stage; appearance: weight of the embedding term in stage one's cost (0: IoU
    only); min_cos: embeddings less similar than this never match; max_age: frames a track survives
    unmatched; min_hits: matches before a new track is reported (1: at once)."""

    high_thr: float = 0.5
    low_thr: float = 0.1
    match_iou: float = 0.2
    low_match_iou: float = 0.4
    appearance: float = 0.5
    min_cos: float = 0.3
    max_age: int = 30
    min_hits: int = 1

    def __post_init__(self):
        if not 0 <= self.low_thr <= self.high_thr <= 1:
            raise LeanfaceError(f"tracker thresholds need 0 <= low_thr <= high_thr <= 1, got {self.low_thr}, "
                                f"{self.high_thr}")
        if not 0 <= self.appearance <= 1:
            raise LeanfaceError(f"appearance weight must be in [0, 1], got {self.appearance}")
        if self.max_age < 0 or self.min_hits < 1:
            raise LeanfaceError(f"max_age must be >= 0 and min_hits >= 1, got {self.max_age}, {self.min_hits}")


class _Kalman:
    """Constant velocity on (cx, cy, w, h); noise scaled by the box size (as SORT/ByteTrack do)."""

    def __init__(self, box: np.ndarray):
        z = _to_z(box)
        self.x = np.concatenate([z, np.zeros(4)])
        s = max(z[2], z[3])
        self.P = np.diag(np.r_[(0.1 * s) ** 2 * np.ones(4), (0.5 * s) ** 2 * np.ones(4)])
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)
        self.H = np.eye(4, 8)

    def predict(self) -> None:
        s = max(self.x[2], self.x[3], 1.0)
        Q = np.diag(np.r_[(0.05 * s) ** 2 * np.ones(4), (0.01 * s) ** 2 * np.ones(4)])
        self.x = self.F @ self.x
        self.x[2:4] = np.maximum(self.x[2:4], 1.0)
        self.P = self.F @ self.P @ self.F.T + Q

    def update(self, box: np.ndarray) -> None:
        z = _to_z(box)
        s = max(z[2], z[3], 1.0)
        R = np.diag((0.05 * s) ** 2 * np.ones(4))
        S = self.H @ self.P @ self.H.T + R
        K = self.P @ self.H.T @ np.linalg.inv(S)
        self.x = self.x + K @ (z - self.H @ self.x)
        self.P = (np.eye(8) - K @ self.H) @ self.P

    @property
    def box(self) -> np.ndarray:
        cx, cy, w, h = self.x[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


def _to_z(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1.0), max(y2 - y1, 1.0)])


@dataclass
class Track:
    id: int
    kalman: _Kalman
    embedding: np.ndarray | None
    hits: int = 1
    missed: int = 0
    first_frame: int = 0
    last_frame: int = 0
    history: list = field(default_factory=list)  # frame indices with a match

    def add_embedding(self, e: np.ndarray | None, momentum: float = 0.9) -> None:
        """An exponential average of the matched embeddings (robust to one bad frame), kept unit length."""
        if e is None:
            return
        m = e if self.embedding is None else momentum * self.embedding + (1 - momentum) * e
        self.embedding = m / max(float(np.linalg.norm(m)), 1e-12)


class Tracker:
    """Feed it the Faces of consecutive frames; each call returns those Faces with `track_ids` (-1: a face
    not (yet) reported as a track: a new track before min_hits, or a low-score face no track claimed)."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.tracks: list[Track] = []
        self.frame = -1
        self._next_id = 1

    def __call__(self, faces: Faces) -> Faces:
        cfg = self.config
        self.frame += 1
        for t in self.tracks:
            t.kalman.predict()
        n = len(faces)
        ids = np.full(n, -1, np.int64)
        emb = faces.embeddings
        high = np.flatnonzero(faces.scores >= cfg.high_thr)
        low = np.flatnonzero((faces.scores >= cfg.low_thr) & (faces.scores < cfg.high_thr))
        pool = list(range(len(self.tracks)))
        matches, left_tracks, left_high = self._match(pool, high, faces.boxes, emb, cfg.match_iou, cfg.appearance)
        recent = [k for k in left_tracks if self.tracks[k].missed == 0]  # stage two: tracks seen last frame
        # IoU decides stage two (ByteTrack); embeddings, when there are any, only veto (a scene cut's stranger).
        low_matches, _, _ = self._match(recent, low, faces.boxes, emb, cfg.low_match_iou, 0.0)
        for k, d in matches + low_matches:
            t = self.tracks[k]
            t.kalman.update(faces.boxes[d])
            t.add_embedding(None if emb is None or d in low else emb[d])
            t.hits += 1
            t.missed = 0
            t.last_frame = self.frame
            t.history.append(self.frame)
            if t.hits >= cfg.min_hits:
                ids[d] = t.id
        matched = {k for k, _ in matches + low_matches}
        for k, t in enumerate(self.tracks):
            if k not in matched:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= cfg.max_age]
        for d in left_high:
            t = Track(self._next_id, _Kalman(faces.boxes[d]), None, first_frame=self.frame, last_frame=self.frame,
                      history=[self.frame])
            t.add_embedding(None if emb is None else emb[d])
            self._next_id += 1
            self.tracks.append(t)
            if cfg.min_hits <= 1:
                ids[d] = t.id
        return replace(faces, track_ids=ids)

    def _match(self, tracks: list[int], dets: np.ndarray, boxes: np.ndarray, emb: np.ndarray | None,
               min_iou: float, appearance: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
        if not tracks or not len(dets):
            return [], list(tracks), [int(d) for d in dets]
        predicted = np.stack([self.tracks[k].kalman.box for k in tracks])
        iou = box_iou(predicted, boxes[dets])
        cost = 1.0 - iou
        allowed = iou >= min_iou
        if emb is not None:
            have = np.array([self.tracks[k].embedding is not None for k in tracks])
            if have.any():
                te = np.stack([self.tracks[k].embedding if h else np.zeros(emb.shape[1], np.float32)
                               for k, h in zip(tracks, have)])
                cos = te @ emb[dets].T
                if appearance:
                    fused = (1 - appearance) * (1.0 - iou) + appearance * (1.0 - cos)
                    cost = np.where(have[:, None], fused, cost)
                allowed &= ~have[:, None] | (cos >= self.config.min_cos)
        cost = np.where(allowed, cost, 1e6)
        rows, cols = linear_sum_assignment(cost)
        pairs = [(tracks[r], int(dets[c])) for r, c in zip(rows, cols) if allowed[r, c]]
        used_t = {k for k, _ in pairs}
        used_d = {d for _, d in pairs}
        return pairs, [k for k in tracks if k not in used_t], [int(d) for d in dets if int(d) not in used_d]
