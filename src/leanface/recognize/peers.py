"""Adapters that run peer embedders inside our pipeline, as oracles and benchmarks (optional extras:
never runtime dependencies of leanface).

dlib's ResNet (`dlib-bin` + `face_recognition_models` from PyPI, the models face_recognition uses) was
trained on its own 150x150 chips, cut by its own five-point shape predictor (eye corners and the base of
the nose, not our five points). The adapter keeps that: our detector's box goes to dlib's shape
predictor, dlib cuts the chip (padding 0.25, as face_recognition does) and its network embeds it.
The shape predictor was fitted to boxes of dlib's HOG detector, which are squares larger and lower than
ours: the box is first mapped to that convention (calibrated on 567 CelebA photos, not LFW; see
docs/LAB_NOTES.md).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..boxes import box_iou
from ..errors import LeanfaceError

DLIB_MODELS = ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")
# dlib's HOG box relative to our detector's: a square of side 1.088 x our width, centred 0.085 x our
# width lower (medians over 567 CelebA-wild photos where both found the face; x offset -0.017, ignored).
HOG_BOX_SIDE, HOG_BOX_DROP = 1.088, 0.085


def to_hog_box(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x1y1x2y2 boxes of our detector -> the square boxes dlib's HOG detector draws on the same faces."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = b[:, 2] - b[:, 0]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2 + HOG_BOX_DROP * w
    half = HOG_BOX_SIDE * w / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


def _dlib_model_dir() -> Path:
    # face_recognition_models' own __init__ needs pkg_resources; its files are found without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise LeanfaceError("dlib's face models are not installed: pip install face_recognition_models")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    missing = [m for m in DLIB_MODELS if not (folder / m).is_file()]
    if missing:
        raise LeanfaceError(f"{folder}: {missing[0]} is missing (reinstall face_recognition_models)")
    return folder


class DlibEmbedder:
    """dlib's 128-d face descriptor, L2-normalised so similarity is a cosine like every leanface embedder.
    jitters: dlib's num_jitters (0: one pass). box: which box the shape predictor gets, "mapped" (ours mapped
    to the HOG convention, default), "ours" (as detected), or "detector" (dlib's own HOG detection that
    overlaps ours most, upsampled once as face_recognition does; the mapped box where HOG finds none)."""

    BOXES = ("mapped", "ours", "detector")

    input_size = 150
    dim = 128
    flip = False
    threshold = None
    boxes_only = True  # dlib finds its own landmarks in the box

    def __init__(self, jitters: int = 0, padding: float = 0.25, box: str = "mapped"):
        if box not in self.BOXES:
            raise LeanfaceError(f"box must be one of {', '.join(self.BOXES)}, got {box!r}")
        try:
            import dlib
        except ImportError:
            raise LeanfaceError("dlib is not installed: pip install dlib-bin face_recognition_models") from None
        folder = _dlib_model_dir()
        self._dlib = dlib
        self._net = dlib.face_recognition_model_v1(str(folder / DLIB_MODELS[0]))
        self._shape = dlib.shape_predictor(str(folder / DLIB_MODELS[1]))
        self.jitters, self.padding, self.box = int(jitters), float(padding), box
        self._hog = dlib.get_frontal_face_detector() if box == "detector" else None
        self.name = "dlib_resnet_v1"
        self.weights = str(folder / DLIB_MODELS[0])

    def _descriptors(self, chips: list[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, self.dim), np.float32)
        d = np.asarray(self._net.compute_face_descriptor(chips, self.jitters), np.float32).reshape(len(chips), -1)
        return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(K, 150, 150, 3) uint8 RGB chips (any face crop, resized) -> (K, 128)."""
        import cv2

        chips = [np.ascontiguousarray(c if c.shape[:2] == (150, 150) else cv2.resize(c, (150, 150)))
                 for c in np.asarray(crops)]
        return self._descriptors(chips)

    def _boxes(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if self.box == "ours":
            return np.asarray(boxes, np.float64).reshape(-1, 4)
        mapped = to_hog_box(boxes)
        if self.box == "mapped" or not len(mapped):
            return mapped
        found = np.array([[d.left(), d.top(), d.right(), d.bottom()] for d in self._hog(image, 1)], np.float64)
        if not len(found):
            return mapped
        iou = box_iou(mapped, found)
        best = iou.argmax(1)
        return np.where((iou.max(1) >= 0.3)[:, None], found[best], mapped)

    def embed_faces(self, image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        image = np.ascontiguousarray(image)
        chips = []
        for x1, y1, x2, y2 in self._boxes(image, boxes):
            rect = self._dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
            shape = self._shape(image, rect)
            chips.append(np.asarray(self._dlib.get_face_chip(image, shape, 150, self.padding)))
        return self._descriptors(chips)
