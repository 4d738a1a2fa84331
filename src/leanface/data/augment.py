"""Training augmentation of SCRFD: sample redistribution (random square crop), resize, flip, colour.

Order as in the official pipeline (SCRFD_FACTS 4.3): RandomSquareCrop -> resize to `img_size` x
`img_size` -> horizontal flip (p 0.5) -> photometric distortion. The geometry (crop, resize, flip) is
one affine map, applied to the pixels with a single `cv2.warpAffine` whose sampling grid equals
crop-then-`cv2.resize`; it can also run without pixels (`augment_targets`) for data statistics.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..flags import option

# Scales of the short side for the square crop. The paper's sample redistribution enlarges the
# range from [0.3, 1.0] to [0.3, 2.0]: crops larger than the image shrink the faces in them.
CROP_CHOICES_SCRFD = (0.3, 0.45, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
CROP_CHOICES_BASELINE = (0.3, 0.45, 0.6, 0.8, 1.0)
# Smallest face (longer side, pixels of the original) a close-up crop is drawn around: smaller ones would be
# blown up into blur.
CLOSE_UP_MIN_SIDE = 48
# Landmark order after a horizontal flip: eyes swap, nose stays, mouth corners swap.
FLIP_ORDER = (1, 0, 2, 4, 3)


@dataclass(frozen=True)
class AugmentConfig:
    """How training samples are drawn: `TrainConfig.augment`, each field a `leanface train` flag of its own name
    (`enabled` is `--no-augment`). The detect task reads every field; the embed and quality tasks read `enabled`
    (their crops are aligned already: flips and mild distortions, see their datasets).

    The square crops of sample redistribution make few faces that fill the frame from WIDER (0.9% of faces fill
    >= 40% of the crop), and a detector trained on them misses such faces: `close_ups` draws some crops around
    one face (at least CLOSE_UP_MIN_SIDE px) the way close-up photos, webcam frames and ID photos show faces.
    """

    img_size: int = option(640, "square training input side, a multiple of 32 (detect)")
    crop_choices: tuple[float, ...] = option(
        CROP_CHOICES_SCRFD, "sample redistribution: crop side / short side choices (the paper's [0.3, 1.0] "
        "baseline: 0.3,0.45,0.6,0.8,1.0)")
    clip_border: bool = option(True, "clip boxes and landmarks to the crop (off: the 2.5g/10g configs)")
    close_ups: float = option(0.0, "share of the crops drawn around one face so it fills 40-90% of the crop: faces "
                              "that fill the frame, which sample redistribution's crops rarely make (0: the official "
                              "recipe)")
    enabled: bool = option(True, "random crops, flips and colour (off: whole images letterboxed, for overfitting "
                           "checks; the embed and quality tasks: their crops as they are)", flag="augment")
    flip: bool = option(True, "horizontal flips, half of the samples (with enabled)", flag=False)
    photometric: bool = option(True, "brightness, contrast, saturation and hue distortion (with enabled)", flag=False)
    fill: int = option(128, "pixel value outside the image", flag=False)
    max_tries: int = option(250, "crop positions tried per drawn scale", flag=False)


@dataclass(frozen=True)
class Targets:
    """Faces in the augmented image (pixels of the `img_size` x `img_size` output).

    boxes: (N, 4) float32 x1y1x2y2. landmarks: (N, 5, 2) float32. landmark_valid: (N, 5) bool.
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    landmark_valid: np.ndarray


def sample_square_crop(rng: np.random.Generator, width: int, height: int, centers: np.ndarray,
                       choices: tuple[float, ...], max_tries: int = 250) -> tuple[int, int, int]:
    """Draw (left, top, side) of a square crop that contains at least one of `centers` (N, 2).

    The crop may extend past the image (side > short side, or negative left/top); the caller
    fills that area. With no centres any crop is accepted.
    """
    short = min(width, height)
    max_scale = max(choices)
    scale = float(rng.choice(choices))
    for attempt in range(20):
        if attempt and max_scale > 1.0:
            scale = float(rng.choice(choices))
        elif attempt:
            scale *= 1.2  # all choices are small crops: grow until a face fits
        side = max(int(scale * short), 1)
        lefts = _positions(rng, width, side, max_tries)
        tops = _positions(rng, height, side, max_tries)
        if len(centers) == 0:
            return int(lefts[0]), int(tops[0]), side
        cx, cy = centers[:, 0], centers[:, 1]
        inside = ((cx[None] > lefts[:, None]) & (cx[None] < lefts[:, None] + side)
                  & (cy[None] > tops[:, None]) & (cy[None] < tops[:, None] + side)).any(1)
        hit = np.flatnonzero(inside)
        if len(hit):
            return int(lefts[hit[0]]), int(tops[hit[0]]), side
    # Practically unreachable (centres strictly inside the image always fit some crop).
    side = max(width, height)
    return 0, 0, side


def close_up_crop(rng: np.random.Generator, box: np.ndarray) -> tuple[int, int, int]:
    """(left, top, side) of a square crop around `box` (x1y1x2y2) in which the face's longer side fills 40-90%
    of the crop side, placed at random with the face inside (the crop may extend past the image)."""
    face = float(max(box[2] - box[0], box[3] - box[1]))
    side = max(int(round(face / rng.uniform(0.4, 0.9))), 1)
    left = rng.uniform(box[2] - side, box[0]) if side > box[2] - box[0] else box[0]
    top = rng.uniform(box[3] - side, box[1]) if side > box[3] - box[1] else box[1]
    return int(np.floor(left)), int(np.floor(top)), side


def _positions(rng: np.random.Generator, extent: int, side: int, n: int) -> np.ndarray:
    """`n` crop offsets: in [0, extent - side] for a small crop, [extent - side, 0] for a large one."""
    lo, hi = sorted((0, extent - side))
    return rng.integers(lo, hi + 1, size=n)


def crop_and_resize_targets(boxes: np.ndarray, landmarks: np.ndarray, valid: np.ndarray, crop: tuple[int, int, int],
                            size: int, flip: bool, clip_border: bool) -> Targets:
    """Keep faces whose centre is strictly inside the crop; map them into the `size` output."""
    left, top, side = crop
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    keep = ((centers[:, 0] > left) & (centers[:, 0] < left + side)
            & (centers[:, 1] > top) & (centers[:, 1] < top + side))
    boxes, landmarks, valid = boxes[keep].copy(), landmarks[keep].copy(), valid[keep].copy()
    origin = np.array([left, top], np.float32)
    if clip_border:
        boxes = np.clip(boxes, np.tile(origin, 2), np.tile(origin + side, 2))
        landmarks = np.clip(landmarks, origin, origin + side)
    f = size / side
    boxes = (boxes - np.tile(origin, 2)) * f
    landmarks = (landmarks - origin) * f
    if flip:
        boxes = np.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], axis=1)
        landmarks[:, :, 0] = size - landmarks[:, :, 0]
        landmarks, valid = landmarks[:, FLIP_ORDER], valid[:, FLIP_ORDER]
    landmarks[~valid] = 0.0
    return Targets(boxes.astype(np.float32), landmarks.astype(np.float32), valid)


def warp_image(image: np.ndarray, crop: tuple[int, int, int], size: int, flip: bool, fill: int) -> np.ndarray:
    """Crop (padding with `fill`), resize to `size` x `size` bilinearly and optionally flip, in one warp.

    The map uses cv2.resize's pixel-centre convention: src = (dst + 0.5) * side / size - 0.5 + left.
    """
    left, top, side = crop
    s = side / size
    if flip:
        m = np.array([[-s, 0.0, left + (size - 0.5) * s - 0.5], [0.0, s, top + 0.5 * s - 0.5]])
    else:
        m = np.array([[s, 0.0, left + 0.5 * s - 0.5], [0.0, s, top + 0.5 * s - 0.5]])
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(fill, fill, fill))


def photometric_distortion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mmdet PhotoMetricDistortion on a BGR image -> float32 (values may leave [0, 255], as there).

    Brightness +-32, contrast x[0.5, 1.5] (before or after the HSV part), saturation x[0.5, 1.5],
    hue +-18 degrees, random channel order; each with probability 0.5.
    """
    img = image.astype(np.float32)
    if rng.random() < 0.5:
        img += rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        img *= rng.uniform(0.5, 1.5)
    saturation = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
    hue = rng.uniform(-18, 18) if rng.random() < 0.5 else None
    if saturation is not None or hue is not None:
        h, sat, v = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))  # float32: H in degrees [0, 360)
        if saturation is not None:
            sat *= saturation
        if hue is not None:
            h += hue
            h[h >= 360] -= 360
            h[h < 0] += 360
        img = cv2.cvtColor(cv2.merge([h, sat, v]), cv2.COLOR_HSV2BGR)
    if not contrast_first and rng.random() < 0.5:
        img *= rng.uniform(0.5, 1.5)
    if rng.random() < 0.5:
        channels = cv2.split(img)
        img = cv2.merge([channels[i] for i in rng.permutation(3)])
    return img


def augment_targets(boxes: np.ndarray, landmarks: np.ndarray, valid: np.ndarray, width: int, height: int,
                    cfg: AugmentConfig, rng: np.random.Generator) -> tuple[tuple[int, int, int], bool, Targets]:
    """Draw the geometry for one image and map its faces. Returns (crop, flipped, targets).

    boxes (N, 4), landmarks (N, 5, 2), valid (N, 5) in original-image pixels.
    """
    close_up = cfg.enabled and cfg.close_ups > 0 and rng.random() < cfg.close_ups  # drawn only when on
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) if len(boxes) else np.zeros(0)
    big = np.flatnonzero(sides >= CLOSE_UP_MIN_SIDE)
    if close_up and len(big):
        crop = close_up_crop(rng, boxes[rng.choice(big)])
    elif cfg.enabled:
        crop = sample_square_crop(rng, width, height, (boxes[:, :2] + boxes[:, 2:]) / 2, cfg.crop_choices,
                                  cfg.max_tries)
    else:
        crop = (0, 0, max(width, height))
    flip = cfg.enabled and cfg.flip and rng.random() < 0.5
    return crop, flip, crop_and_resize_targets(boxes, landmarks, valid, crop, cfg.img_size, flip, cfg.clip_border)


def augment(image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray, valid: np.ndarray,
            cfg: AugmentConfig, rng: np.random.Generator) -> tuple[np.ndarray, Targets]:
    """Full training augmentation of a BGR uint8 image (H, W, 3) -> (float32 BGR (size, size, 3), targets)."""
    height, width = image.shape[:2]
    crop, flip, targets = augment_targets(boxes, landmarks, valid, width, height, cfg, rng)
    out = warp_image(image, crop, cfg.img_size, flip, cfg.fill)
    out = photometric_distortion(out, rng) if cfg.enabled and cfg.photometric else out.astype(np.float32)
    return out, targets
