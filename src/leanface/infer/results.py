"""Typed results: detections, and the same record with embeddings and identities from the recognition
stage (one result type for both, not a parallel structure)."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import LeanfaceError
from ..images import read_image


@dataclass(frozen=True)
class Face:
    """One detection: box (4,) x1y1x2y2 and landmarks (5, 2) or None in original-image pixels; from the
    recognition stage, embedding (D,) L2-normalised, and identity / similarity against a gallery."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray | None
    embedding: np.ndarray | None = None
    identity: str | None = None
    similarity: float | None = None
    track: int | None = None
    quality: float | None = None


@dataclass(frozen=True)
class Faces:
    """Faces found in one image.

    boxes: (N, 4) float32, x1y1x2y2 in original-image pixels; scores: (N,) float32 in [0, 1],
    descending; landmarks: (N, 5, 2) float32 (left eye, right eye, nose, left mouth corner,
    right mouth corner) in original-image pixels, or None for models without landmarks.
    From a Recognizer: embeddings (N, D) float32, L2-normalised; from identification, identities
    (N names, "unknown" below the threshold) and similarities (N,) to the best gallery match.
    From a Tracker (video): track_ids (N,) int64, stable through the video (-1: not a track yet).
    From a Recognizer with a quality net: qualities (N,) float32 in (0, 1).
    image: the (H, W, 3) uint8 RGB image they were found in (from a Detector or Recognizer; None when read
    back from JSON), so that `plot()` and `crops()` need no argument.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None
    width: int
    height: int
    source: str | None = None
    embeddings: np.ndarray | None = None
    identities: tuple[str, ...] | None = None
    similarities: np.ndarray | None = None
    track_ids: np.ndarray | None = None
    qualities: np.ndarray | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index):
        """faces[i] -> Face; faces[1:3], faces[mask], faces[[0, 2]] -> Faces of the same image."""
        def pick(field):
            return None if field is None else field[index]

        if isinstance(index, (int, np.integer)):
            sim = pick(self.similarities)
            track, quality = pick(self.track_ids), pick(self.qualities)
            return Face(self.boxes[index], float(self.scores[index]), pick(self.landmarks), pick(self.embeddings),
                        pick(self.identities), None if sim is None else float(sim),
                        None if track is None else int(track), None if quality is None else float(quality))
        index = np.arange(len(self))[index]
        names = None if self.identities is None else tuple(self.identities[i] for i in index)
        return Faces(self.boxes[index], self.scores[index], pick(self.landmarks), self.width, self.height,
                     self.source, pick(self.embeddings), names, pick(self.similarities), pick(self.track_ids),
                     pick(self.qualities), self.image)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def to_dict(self) -> dict:
        """The `leanface detect --json-out` record for this image."""
        faces = []
        for i in range(len(self)):
            faces.append({
                "box": [round(float(v), 2) for v in self.boxes[i]],
                "score": round(float(self.scores[i]), 5),
                "landmarks": None if self.landmarks is None else
                [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks[i]],
            })
            if self.embeddings is not None:
                faces[-1]["embedding"] = [round(float(v), 6) for v in self.embeddings[i]]
            if self.identities is not None:
                faces[-1]["identity"] = self.identities[i]
                faces[-1]["similarity"] = round(float(self.similarities[i]), 5)
            if self.track_ids is not None:
                faces[-1]["track"] = int(self.track_ids[i])
            if self.qualities is not None:
                faces[-1]["quality"] = round(float(self.qualities[i]), 5)
        return {"image": self.source, "width": self.width, "height": self.height, "faces": faces}

    @classmethod
    def from_dict(cls, record: dict) -> "Faces":
        """The inverse of `to_dict`: a `--json-out` record (or a bulk shard's line) back to Faces."""
        faces = record.get("faces") or []
        n = len(faces)

        def column(key, dtype, shape):
            if n and all(f.get(key) is not None for f in faces):
                return np.asarray([f[key] for f in faces], dtype).reshape(n, *shape)
            return None

        boxes = column("box", np.float32, (4,))
        return cls(np.zeros((0, 4), np.float32) if boxes is None else boxes,
                   np.asarray([f.get("score", 0.0) for f in faces], np.float32), column("landmarks", np.float32, (5, 2)),
                   int(record.get("width", 0)), int(record.get("height", 0)), record.get("image"),
                   column("embedding", np.float32, (-1,)),
                   tuple(f["identity"] for f in faces) if n and all("identity" in f for f in faces) else None,
                   column("similarity", np.float32, ()), column("track", np.int64, ()),
                   column("quality", np.float32, ()))

    def _image(self, image: np.ndarray | None) -> np.ndarray:
        if image is not None:
            return image
        if self.image is not None:
            return self.image
        if self.source is not None:
            return read_image(self.source)
        raise LeanfaceError("these faces keep no image and name no file: pass the image")

    def plot(self, image: np.ndarray | None = None) -> np.ndarray:
        """A copy of the RGB image (default: the one they were found in) with boxes, scores and landmarks drawn."""
        out = np.ascontiguousarray(self._image(image).copy())
        thick = max(1, round(max(self.width, self.height) / 500))
        colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]
        for i in range(len(self)):
            x1, y1, x2, y2 = (int(round(v)) for v in self.boxes[i])
            cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thick)
            label = f"{self.scores[i]:.2f}" if self.identities is None else \
                f"{self.identities[i]} {self.similarities[i]:.2f}"
            if self.track_ids is not None and self.track_ids[i] >= 0:
                label = f"#{self.track_ids[i]} {label}"
            cv2.putText(out, label, (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, (0, 255, 0), thick)
            if self.landmarks is not None:
                for (x, y), c in zip(self.landmarks[i], colours):
                    cv2.circle(out, (int(round(x)), int(round(y))), thick + 1, c, -1)
        return out

    def crops(self, image: np.ndarray | None = None, margin: float = 0.2) -> list[np.ndarray]:
        """Face crops (RGB) of the image (default: the one they were found in), each box grown by `margin` x its
        size on every side, clipped to the image."""
        image = self._image(image)
        out = []
        for x1, y1, x2, y2 in self.boxes:
            mw, mh = (x2 - x1) * margin, (y2 - y1) * margin
            a, b = max(int(x1 - mw), 0), max(int(y1 - mh), 0)
            c, d = min(int(np.ceil(x2 + mw)), self.width), min(int(np.ceil(y2 + mh)), self.height)
            if c > a and d > b:
                out.append(image[b:d, a:c].copy())
        return out
