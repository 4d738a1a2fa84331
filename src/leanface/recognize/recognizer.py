"""The Recognizer: photo in, the detector's Faces with embeddings out; comparison of two faces.

detect -> five-point alignment -> embed, in the shape of the Detector's API: `rec(img)` gives the same
typed `Faces`, with `.embeddings` (N, D) float32, L2-normalised. Similarity is the cosine of two
embeddings (their dot product).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import LeanfaceError
from ..infer import Detector, Faces, read_image
from ..infer.image import as_rgb
from ..infer.track import SceneCuts, Tracker, score_floor, video_tracker
from .embedder import Embedder
from .align import align_faces


@dataclass(frozen=True)
class Verification:
    """`rec.verify(a, b)`: cosine similarity, the threshold it was compared with, and the decision."""

    similarity: float
    threshold: float
    same: bool

    def to_dict(self) -> dict:
        return {"similarity": round(self.similarity, 6), "threshold": self.threshold, "same": self.same}


@dataclass(frozen=True)
class TrackedFrame:
    """One frame from `Recognizer.track`: all its faces with track ids (`faces.embeddings` is None: not every
    face is embedded), and `embedded`, the faces embedded this frame with embeddings, qualities, track ids."""

    faces: Faces
    embedded: Faces


def primary_face(faces: Faces) -> int | None:
    """Index of the face a single-subject photo is about: among faces at least half the area of the
    largest, the one nearest the image centre (a big bystander at the edge and a small face in the
    background both lose). None when there is no face."""
    if not len(faces):
        return None
    wh = faces.boxes[:, 2:] - faces.boxes[:, :2]
    area = wh[:, 0] * wh[:, 1]
    centre = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
    dist = ((centre - [faces.width / 2, faces.height / 2]) ** 2).sum(1)
    dist[area < 0.5 * area.max()] = np.inf
    return int(np.argmin(dist))


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The fallback when no face is found: the central square of half the shorter side, resized."""
    h, w = image.shape[:2]
    side = max(min(h, w) // 2, 1)
    y, x = (h - side) // 2, (w - side) // 2
    return cv2.resize(image[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)


def require_threshold(rec: "Recognizer", threshold: float | None = None) -> float:
    """The decision threshold: the one given, else the recognizer's; a one-line error when there is none."""
    t = threshold if threshold is not None else rec.threshold
    if t is None:
        raise LeanfaceError(f"no decision threshold for {rec.embedder.name}: pass threshold= (--threshold); "
                            f"`leanface eval --data LFW_DIR --weights ...` prints the one calibrated on LFW")
    return float(t)


class Recognizer:
    """Face recognition.

    weights, or embedder=: the embedder, as a leanface .pt, any 112x112 ONNX embedder or the name of trained
    weights (`leanface models`: "mobilefacenet", the bundled default; "sface"), or an object (an `Embedder`,
    a peer adapter from leanface.recognize.peers).
    mean, std, flip: the embedder's input normalisation and flip-averaging (see Embedder).
    threshold: cosine similarity above which two faces are the same person (None: the one stored
    in the embedder's file, calibrated on LFW; verify() needs one).
    detector: a Detector (default: the bundled one, built with det_weights, size, score_thr, threads; what is
    not given comes from its family's detect preset).
    quality: a face-quality net for `Faces.qualities` (True: the bundled one; a path: its weights; None: none).
    """

    def __init__(self, weights: str | os.PathLike | None = None, *, model=None, embedder=None, mean=None,
                 std=None, flip: bool = False, threshold: float | None = None, detector: Detector | None = None,
                 det_weights: str | os.PathLike | None = None, size: int | None | str = "preset",
                 score_thr: float | None = None,
                 batch_size: int = 8, threads: int | None = None, quality: str | os.PathLike | bool | None = None):
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not -1.0 <= threshold <= 1.0):
            raise LeanfaceError(f"threshold must be a cosine similarity in [-1, 1], got {threshold!r}")
        if isinstance(embedder, (str, os.PathLike)):
            weights, embedder = embedder, None
        self.embedder = embedder if embedder is not None else Embedder(
            weights, model=model, mean=mean, std=std, flip=flip, threads=threads)
        self.detector = detector if detector is not None else Detector(
            weights=det_weights, size=size, score_thr=score_thr, batch_size=batch_size, threads=threads)
        if self.detector.config.has_landmarks is False and not getattr(self.embedder, "boxes_only", False):
            raise LeanfaceError(f"{self.detector.config.name} gives no landmarks, and alignment needs them; "
                                f"use a detector with landmarks (e.g. scrfd_500m_kps)")
        self.threshold = float(threshold) if threshold is not None else getattr(self.embedder, "threshold", None)
        self.batch_size = self.detector.batch_size
        self.quality = None
        if quality is not None and quality is not False:
            from .quality import QualityScorer

            self.quality = QualityScorer(None if quality is True else quality, threads=threads)

    def __call__(self, images):
        """Faces with embeddings of an image (RGB array, PIL image or path), or a list of them."""
        if isinstance(images, (list, tuple)):
            return self.detect(list(images))
        return self.detect([images])[0]

    def detect(self, images: Sequence) -> list[Faces]:
        loaded = [read_image(im) if isinstance(im, (str, os.PathLike)) else as_rgb(im, name=f"image {i}")
                  for i, im in enumerate(images)]
        found = self.detector.detect(loaded)
        out = []
        for im, src, faces in zip(loaded, images, found):
            if isinstance(src, (str, os.PathLike)):
                faces = dataclasses.replace(faces, source=os.fspath(src))
            out.append(self.add_embeddings(im, faces))
        return out

    def stream(self, frames: Iterable[np.ndarray]) -> Iterable[Faces]:
        """Faces with embeddings frame by frame over an iterable of RGB frames (e.g. a video)."""
        kept: list[np.ndarray] = []

        def remember(it):
            for frame in it:
                kept.append(frame)
                yield frame

        for faces in self.detector.stream(remember(frames)):
            yield self.add_embeddings(kept.pop(0), faces)

    def track(self, frames: Iterable[np.ndarray], tracker: Tracker | None = None, embed_every: int = 10,
              cuts: bool = True, reid_cos: float | None = None) -> Iterator[TrackedFrame]:
        """Faces tracked through consecutive RGB frames (a video), embedded lazily: only faces whose track
        the boxes cannot settle, and one face per track every `embed_every` frames (see Tracker). Lost
        tracks are re-identified at the verification threshold; cuts: start every track afresh at scene
        cuts. tracker: a Tracker of your own (default: `video_tracker` of this recognizer's detector)."""
        floor = None
        if tracker is None:
            tracker, floor = video_tracker(self.detector, reid_cos=self.threshold, embed_every=embed_every)
        shots = SceneCuts() if cuts else None
        kept: list[np.ndarray] = []

        def remember(it):
            for frame in it:
                kept.append(frame)
                yield frame

        with score_floor(self.detector, floor if floor is not None else self.detector.postprocess.score_thr):
            for faces in self.detector.stream(remember(frames)):
                image = kept.pop(0)
                done: dict[str, np.ndarray] = {"idx": np.zeros(0, np.int64)}

                def embed(idx: np.ndarray) -> np.ndarray:
                    done["idx"] = idx
                    done["faces"] = self.add_embeddings(image, faces[idx])
                    return done["faces"].embeddings

                faces = tracker(faces, embed=embed, cut=shots is not None and shots(image))
                idx = done["idx"]
                embedded = done["faces"] if "faces" in done else self.add_embeddings(image, faces[idx])
                yield TrackedFrame(faces, dataclasses.replace(embedded, track_ids=faces.track_ids[idx]))

    def add_embeddings(self, image: np.ndarray, faces: Faces) -> Faces:
        emb = self.embedder.embed_faces(image, faces.boxes, faces.landmarks) if len(faces) else \
            np.zeros((0, self.embedder.dim), np.float32)
        qualities = None
        if self.quality is not None:
            qualities = self.quality.score(align_faces(image, faces.landmarks, self.quality.config.input_size)) \
                if len(faces) and faces.landmarks is not None else np.zeros(len(faces), np.float32)
        return dataclasses.replace(faces, embeddings=emb, qualities=qualities)

    def embed_primary(self, image) -> tuple[np.ndarray, bool]:
        """(embedding (D,), found) of the photo's main face (`primary_face`); when no face is found, the
        centre crop's embedding and found=False."""
        rgb = read_image(image) if isinstance(image, (str, os.PathLike)) else as_rgb(image)
        faces = self.detector(rgb)
        k = primary_face(faces)
        if k is None:
            return self.embedder.embed(centre_crop(rgb, self.embedder.input_size)[None])[0], False
        return self.embedder.embed_faces(rgb, faces.boxes[k:k + 1],
                                         None if faces.landmarks is None else faces.landmarks[k:k + 1])[0], True

    def compare(self, a, b) -> float:
        """Cosine similarity of the main faces of two photos (or of two embeddings). A photo without a
        detected face is an error here: say so rather than compare background."""
        return float(self._vector(a, "first") @ self._vector(b, "second"))

    def verify(self, a, b, threshold: float | None = None) -> Verification:
        t = require_threshold(self, threshold)
        s = self.compare(a, b)
        return Verification(s, float(t), bool(s > t))

    def _vector(self, x, which: str) -> np.ndarray:
        if isinstance(x, np.ndarray) and x.ndim == 1:
            return x / max(float(np.linalg.norm(x)), 1e-12)
        emb, found = self.embed_primary(x)
        if not found:
            name = os.fspath(x) if isinstance(x, (str, os.PathLike)) else f"the {which} image"
            raise LeanfaceError(f"{name}: no face found")
        return emb

