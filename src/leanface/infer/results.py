"""Typed detection results."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Face:
    """One detection: box (4,) x1y1x2y2 and landmarks (5, 2) or None in original-image pixels."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray | None


@dataclass(frozen=True)
class Faces:
    """Faces found in one image.

    boxes: (N, 4) float32, x1y1x2y2 in original-image pixels; scores: (N,) float32 in [0, 1],
    descending; landmarks: (N, 5, 2) float32 (left eye, right eye, nose, left mouth corner,
    right mouth corner) in original-image pixels, or None for models without landmarks.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None
    width: int
    height: int
    source: str | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index):
        """faces[i] -> Face; faces[1:3], faces[mask], faces[[0, 2]] -> Faces of the same image."""
        if isinstance(index, (int, np.integer)):
            return Face(self.boxes[index], float(self.scores[index]),
                        None if self.landmarks is None else self.landmarks[index])
        index = np.arange(len(self))[index]
        return Faces(self.boxes[index], self.scores[index], None if self.landmarks is None else self.landmarks[index],
                     self.width, self.height, self.source)

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
        return {"image": self.source, "width": self.width, "height": self.height, "faces": faces}

    def plot(self, image: np.ndarray) -> np.ndarray:
        """A copy of the RGB image with boxes, scores and landmarks drawn."""
        out = np.ascontiguousarray(image.copy())
        thick = max(1, round(max(self.width, self.height) / 500))
        colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]
        for i in range(len(self)):
            x1, y1, x2, y2 = (int(round(v)) for v in self.boxes[i])
            cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thick)
            cv2.putText(out, f"{self.scores[i]:.2f}", (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * thick, (0, 255, 0), thick)
            if self.landmarks is not None:
                for (x, y), c in zip(self.landmarks[i], colours):
                    cv2.circle(out, (int(round(x)), int(round(y))), thick + 1, c, -1)
        return out

    def crops(self, image: np.ndarray, margin: float = 0.2) -> list[np.ndarray]:
        """Face crops (RGB), each box grown by `margin` x its size on every side, clipped to the image."""
        out = []
        for x1, y1, x2, y2 in self.boxes:
            mw, mh = (x2 - x1) * margin, (y2 - y1) * margin
            a, b = max(int(x1 - mw), 0), max(int(y1 - mh), 0)
            c, d = min(int(np.ceil(x2 + mw)), self.width), min(int(np.ceil(y2 + mh)), self.height)
            if c > a and d > b:
                out.append(image[b:d, a:c].copy())
        return out
