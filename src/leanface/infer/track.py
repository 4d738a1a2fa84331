"""Face tracking through video: stable track ids, ByteTrack's two association stages, optional embeddings.

Per frame: every track predicts its box (constant-velocity Kalman filter on centre and size); stage
one matches the high-score detections to all live tracks by a cost of 1 - IoU, fused with the
cosine distance of embeddings when both sides have one (faces that cross keep their ids); stage two
matches the low-score detections (ByteTrack's idea: a blurred or occluded face scores low but is
still the same face) to the tracks stage one left, by IoU alone. Stage three re-identifies by appearance
alone: high-score detections still unmatched against tracks that lost their face (a miss: an occlusion, a
turn of the head, a jump), at a cosine of at least `reid_cos`. Unmatched high-score detections
start tracks; a track survives `max_age` frames without a match, its box coasting on its velocity.

Embeddings may be given for every face or computed lazily: with `embed=` the tracker asks only for the
faces whose match the boxes cannot settle (two tracks or two faces overlapping, a face no track claims, every
face in a new shot) and, every `embed_every` frames, one face per track, so the track's appearance and its
frames for aggregation stay current. A face costs ~10 ms to embed on one thread; a frame's boxes ~1 ms to
match; that is what makes real time with recognition possible.

Scene cuts (`SceneCuts`): a jump in the colour histogram between consecutive frames. A cut ends every track:
IoU across a cut matches strangers who happen to stand where someone stood, and appearance alone at the
verification threshold did the same on the Hamilton clip with the bundled embedder (an audience member at
cosine 0.52 to the performer's track); naming a person across shots is the gallery's job.

Why our own and not a library: the well-kept ByteTrack implementations we looked at (e.g. Roboflow
supervision's) associate by IoU only; faces need the embedding term. Hungarian matching is scipy's.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ..boxes import box_iou
from ..errors import LeanfaceError
from .results import Faces


def _hungarian(cost: np.ndarray):
    # scipy.optimize takes a third of a second to import: only a video run pays for it.
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(cost)


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
    reid_cos: float | None = None
    embed_every: int = 10

    def __post_init__(self):
        if not 0 <= self.low_thr <= self.high_thr <= 1:
            raise LeanfaceError(f"tracker thresholds need 0 <= low_thr <= high_thr <= 1, got {self.low_thr}, "
                                f"{self.high_thr}")
        if not 0 <= self.appearance <= 1:
            raise LeanfaceError(f"appearance weight must be in [0, 1], got {self.appearance}")
        if self.max_age < 0 or self.min_hits < 1 or self.embed_every < 1:
            raise LeanfaceError(f"max_age must be >= 0, min_hits and embed_every >= 1, got {self.max_age}, "
                                f"{self.min_hits}, {self.embed_every}")
        if self.reid_cos is not None and not -1 <= self.reid_cos <= 1:
            raise LeanfaceError(f"reid_cos must be a cosine in [-1, 1] or None, got {self.reid_cos}")


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
    embedded_frame: int = -1  # the last frame whose embedding joined `embedding`

    def add_embedding(self, e: np.ndarray | None, frame: int, momentum: float = 0.9) -> None:
        """An exponential average of the matched embeddings (robust to one bad frame), kept unit length."""
        if e is None:
            return
        m = e if self.embedding is None else momentum * self.embedding + (1 - momentum) * e
        self.embedding = m / max(float(np.linalg.norm(m)), 1e-12)
        self.embedded_frame = frame


class SceneCuts:
    """`cuts(frame) -> bool`: True when an RGB frame starts a new shot. The Bhattacharyya distance between
    hue-saturation histograms of consecutive frames (at 64x36: ~0.2 ms); on the real clips cuts score
    0.41-0.57 and camera motion, lighting and gestures at most 0.16 (docs/LAB_NOTES.md), hence 0.3."""

    def __init__(self, threshold: float = 0.3):
        if not 0 < threshold <= 1:
            raise LeanfaceError(f"scene-cut threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._prev: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> bool:
        small = cv2.resize(frame, (64, 36), interpolation=cv2.INTER_AREA)
        hist = cv2.calcHist([cv2.cvtColor(small, cv2.COLOR_RGB2HSV)], [0, 1], None, [16, 8], [0, 180, 0, 256])
        hist = (hist / max(float(hist.sum()), 1.0)).astype(np.float32)
        prev, self._prev = self._prev, hist
        return prev is not None and cv2.compareHist(prev, hist, cv2.HISTCMP_BHATTACHARYYA) > self.threshold


class Tracker:
    """Feed it the Faces of consecutive frames; each call returns those Faces with `track_ids` (-1: a face
    not (yet) reported as a track: a new track before min_hits, or a low-score face no track claimed).

    embed: computes embeddings lazily, `embed(indices) -> (K, D)` for the faces at those indices (used when
    `faces.embeddings` is None); cut: this frame starts a new shot (see SceneCuts)."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.tracks: list[Track] = []
        self.frame = -1
        self._next_id = 1

    def __call__(self, faces: Faces, embed: Callable[[np.ndarray], np.ndarray] | None = None,
                 cut: bool = False) -> Faces:
        cfg = self.config
        self.frame += 1
        if cut:
            self.tracks = []
        for t in self.tracks:
            t.kalman.predict()
        n = len(faces)
        ids = np.full(n, -1, np.int64)
        high = np.flatnonzero(faces.scores >= cfg.high_thr)
        low = np.flatnonzero((faces.scores >= cfg.low_thr) & (faces.scores < cfg.high_thr))
        pool = list(range(len(self.tracks)))
        emb, has = faces.embeddings, None
        if emb is None and embed is not None and n:
            need = self._needs_embedding(pool, high, low, faces.boxes)
            if len(need):
                got = np.asarray(embed(need), np.float32)
                emb = np.zeros((n, got.shape[1]), np.float32)
                emb[need] = got
                has = np.zeros(n, bool)
                has[need] = True
        elif emb is not None:
            has = np.ones(n, bool)
        matches, left_tracks, left_high = self._match(pool, high, faces.boxes, emb, has, cfg.match_iou,
                                                      cfg.appearance)
        recent = [k for k in left_tracks if self.tracks[k].missed == 0]  # stage two: tracks seen last frame
        # IoU decides stage two (ByteTrack); embeddings, when there are any, only veto (a scene cut's stranger).
        low_matches, _, _ = self._match(recent, low, faces.boxes, emb, has, cfg.low_match_iou, 0.0)
        reid = self._reidentify([k for k in range(len(self.tracks)) if k not in {m for m, _ in matches}
                                 and k not in {m for m, _ in low_matches}], left_high, faces.boxes, emb, has)
        left_high = [d for d in left_high if d not in {d2 for _, d2 in reid}]
        for k, d in reid:  # found again after a miss elsewhere: the old box and velocity mean nothing
            self.tracks[k].kalman = _Kalman(faces.boxes[d])
        for k, d in matches + low_matches + reid:
            t = self.tracks[k]
            if (k, d) not in reid:
                t.kalman.update(faces.boxes[d])
            if has is not None and has[d] and d not in low:
                t.add_embedding(emb[d], self.frame)
            t.hits += 1
            t.missed = 0
            t.last_frame = self.frame
            t.history.append(self.frame)
            if t.hits >= cfg.min_hits:
                ids[d] = t.id
        matched = {k for k, _ in matches + low_matches + reid}
        for k, t in enumerate(self.tracks):
            if k not in matched:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= cfg.max_age]
        for d in left_high:
            t = Track(self._next_id, _Kalman(faces.boxes[d]), None, first_frame=self.frame, last_frame=self.frame,
                      history=[self.frame])
            if has is not None and has[d]:
                t.add_embedding(emb[d], self.frame)
            self._next_id += 1
            self.tracks.append(t)
            if cfg.min_hits <= 1:
                ids[d] = t.id
        return replace(faces, track_ids=ids)

    def _needs_embedding(self, pool: list[int], high: np.ndarray, low: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """The faces whose match the boxes cannot settle, plus one face per track every embed_every frames."""
        cfg = self.config
        need = set()
        dets = np.concatenate([high, low]).astype(np.int64)
        if not pool:
            need.update(int(d) for d in high)
        elif len(dets):
            iou = box_iou(np.stack([self.tracks[k].kalman.box for k in pool]), boxes[dets])
            floor = np.where(np.isin(dets, high), cfg.match_iou, cfg.low_match_iou)
            near = iou >= floor[None, :]
            crowded_t = near.sum(1) >= 2
            for j, d in enumerate(dets):
                claims = near[:, j].sum()
                if (claims == 0 and d in high) or claims >= 2 or (near[:, j] & crowded_t).any():
                    need.add(int(d))
            for i, k in enumerate(pool):
                t = self.tracks[k]
                js = np.flatnonzero(near[i] & np.isin(dets, high))
                if len(js) and self.frame - t.embedded_frame >= cfg.embed_every:
                    need.add(int(dets[js[np.argmax(iou[i, js])]]))
        return np.array(sorted(need), np.int64)

    def _reidentify(self, tracks: list[int], dets: list[int], boxes: np.ndarray, emb: np.ndarray | None,
                    has: np.ndarray | None) -> list[tuple[int, int]]:
        """Stage three: unmatched high-score faces against unmatched tracks by appearance alone."""
        if self.config.reid_cos is None or emb is None or not tracks or not dets:
            return []
        tracks = [k for k in tracks if self.tracks[k].embedding is not None]
        dets = [d for d in dets if has[d]]
        if not tracks or not dets:
            return []
        cos = np.stack([self.tracks[k].embedding for k in tracks]) @ emb[dets].T
        # Within a shot a face does not change its size by 2x in a few frames; on the Hamilton clip this
        # gate stops a close-up's track jumping to a small face in the background at cosine 0.75.
        side = lambda b: np.sqrt(np.maximum(b[..., 2] - b[..., 0], 1) * np.maximum(b[..., 3] - b[..., 1], 1))
        ratio = side(np.stack([self.tracks[k].kalman.box for k in tracks]))[:, None] / side(boxes[dets])[None, :]
        allowed = (cos >= self.config.reid_cos) & (ratio < 2) & (ratio > 0.5)
        rows, cols = _hungarian(np.where(allowed, 1.0 - cos, 1e6))
        return [(tracks[r], dets[c]) for r, c in zip(rows, cols) if allowed[r, c]]

    def _match(self, tracks: list[int], dets: np.ndarray, boxes: np.ndarray, emb: np.ndarray | None,
               has: np.ndarray | None, min_iou: float, appearance: float
               ) -> tuple[list[tuple[int, int]], list[int], list[int]]:
        if not tracks or not len(dets):
            return [], list(tracks), [int(d) for d in dets]
        predicted = np.stack([self.tracks[k].kalman.box for k in tracks])
        iou = box_iou(predicted, boxes[dets])
        cost = 1.0 - iou
        allowed = iou >= min_iou
        if emb is not None:
            t_has = np.array([self.tracks[k].embedding is not None for k in tracks])
            both = t_has[:, None] & has[dets][None, :]
            if both.any():
                te = np.stack([self.tracks[k].embedding if h else np.zeros(emb.shape[1], np.float32)
                               for k, h in zip(tracks, t_has)])
                cos = te @ emb[dets].T
                if appearance:
                    fused = (1 - appearance) * (1.0 - iou) + appearance * (1.0 - cos)
                    cost = np.where(both, fused, cost)
                allowed &= ~both | (cos >= self.config.min_cos)
        cost = np.where(allowed, cost, 1e6)
        rows, cols = _hungarian(cost)
        pairs = [(tracks[r], int(dets[c])) for r, c in zip(rows, cols) if allowed[r, c]]
        used_t = {k for k, _ in pairs}
        used_d = {d for _, d in pairs}
        return pairs, [k for k in tracks if k not in used_t], [int(d) for d in dets if int(d) not in used_d]


def video_tracker(detector, **config) -> tuple[Tracker, float]:
    """A Tracker for the faces of `detector` and stage two's score floor. The tracker's high threshold is the
    detector's (the user's), so the faces reported are the ones a plain run reports, plus low-score ones
    that continue a track; run the detector at the floor meanwhile (`score_floor`)."""
    user = float(detector.postprocess.score_thr)
    low = min(TrackerConfig.low_thr, user)
    return Tracker(TrackerConfig(high_thr=user, low_thr=low, **config)), low


@contextmanager
def score_floor(detector, threshold: float) -> Iterator[None]:
    """The detector's score threshold lowered for a while (stage two of the tracker wants low-score faces)."""
    before = detector.postprocess
    detector.postprocess = before.replace(score_thr=threshold)
    try:
        yield
    finally:
        detector.postprocess = before
