"""Torch dataset of augmented training samples and its collate function.

Augmentation randomness is a pure function of (seed, epoch, image index), so a sample is the
same whichever DataLoader worker makes it, and a resumed run sees the same data as an
uninterrupted one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import images
from .augment import AugmentConfig, augment, augment_targets
from .readers import ImageFaces


def image_size(faces: ImageFaces | Path) -> tuple[int, int]:
    """(width, height) from the annotation when it states it, else from the image header (no decoding)."""
    if isinstance(faces, ImageFaces) and faces.size is not None:
        return faces.size
    return images.image_size(faces.path if isinstance(faces, ImageFaces) else faces)


def training_faces(faces: ImageFaces) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces used as targets: not ignored and of positive size.

    Returns boxes (N, 4), landmarks (N, 5, 2), landmark_valid (N, 5) bool (all False without landmarks).
    """
    b = faces.boxes
    keep = ~faces.ignore & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    if faces.landmarks is None:
        n = int(keep.sum())
        return b[keep], np.zeros((n, 5, 2), np.float32), np.zeros((n, 5), bool)
    return b[keep], faces.landmarks[keep], faces.landmark_valid[keep]


class FaceDataset(torch.utils.data.Dataset):
    """Augmented samples of `images`. Index with `(epoch, i)` (or `i`, meaning epoch 0).

    A sample is a dict: image (3, S, S) float32 RGB normalised as (pixel - mean) / std per channel
    (the model config's; SCRFD's 127.5 / 128 by default); boxes (N, 4) float32 x1y1x2y2 pixels of the
    S x S image; landmarks (N, 5, 2) float32; landmark_valid (N, 5) bool.
    """

    def __init__(self, images: list[ImageFaces], cfg: AugmentConfig = AugmentConfig(), seed: int = 0,
                 mean: tuple[float, float, float] = (127.5, 127.5, 127.5),
                 std: tuple[float, float, float] = (128.0, 128.0, 128.0)):
        self.images = images
        self.cfg = cfg
        self.seed = seed
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.inv_std = (1.0 / np.asarray(std, np.float32)).reshape(3, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, index])

    def __getitem__(self, key) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        faces = self.images[index]
        image = images.read_bgr(faces.path)
        image, t = augment(image, *training_faces(faces), self.cfg, self.rng(epoch, index))
        chw = np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1))
        chw -= self.mean
        chw *= self.inv_std
        return {
            "image": torch.from_numpy(chw),
            "boxes": torch.from_numpy(t.boxes),
            "landmarks": torch.from_numpy(t.landmarks),
            "landmark_valid": torch.from_numpy(t.landmark_valid),
        }

    def targets_only(self, epoch: int, index: int):
        """The augmented faces of a sample without decoding its image (same draw as __getitem__)."""
        faces = self.images[index]
        w, h = image_size(faces)
        return augment_targets(*training_faces(faces), w, h, self.cfg, self.rng(epoch, index))[2]


def collate(samples: list[dict]) -> dict:
    """Stack images to (B, 3, S, S); per-image targets stay lists (face counts differ)."""
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "boxes": [s["boxes"] for s in samples],
        "landmarks": [s["landmarks"] for s in samples],
        "landmark_valid": [s["landmark_valid"] for s in samples],
    }
