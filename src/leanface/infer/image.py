"""Robust image and video reading. Every reader returns RGB uint8 (H, W, 3) arrays.

Decoding is OpenCV's (fast; applies EXIF orientation; turns grayscale, RGBA and 16-bit into 8-bit
3-channel), with Pillow as a fallback for formats OpenCV lacks.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..errors import LeanfaceError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); LeanfaceError naming the file if it cannot be read."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise LeanfaceError(f"{path}: image not found")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise LeanfaceError(f"{path}: empty file")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is not None:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return _read_with_pillow(path)


def _read_with_pillow(path: str) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32)
                arr = (arr / max(float(arr.max()), 1.0) * 255.0).astype(np.uint8)
                return np.repeat(arr[:, :, None], 3, axis=2)
            return np.asarray(im.convert("RGB")).copy()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise LeanfaceError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def as_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate/convert an in-memory image to RGB uint8 (H, W, 3): gray, RGBA and 16-bit accepted."""
    if not isinstance(image, np.ndarray):
        raise LeanfaceError(f"{name}: expected a numpy array or a path, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or min(image.shape[:2]) < 1:
        raise LeanfaceError(f"{name}: expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and float(image.max()) <= 1.0:
            image = image * 255.0
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def list_images(path: str | os.PathLike) -> list[Path]:
    """Images in a folder (recursive, sorted) or the file itself."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS and f.is_file())
        if not files:
            raise LeanfaceError(f"{p}: folder contains no images ({', '.join(IMAGE_EXTS)})")
        return files
    if not p.exists():
        raise LeanfaceError(f"{p}: no such file or folder")
    return [p]


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def video_frames(path: str | os.PathLike) -> tuple[Iterator[np.ndarray], int, float]:
    """(RGB frame iterator, frame count or 0 if unknown, fps) for a video file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise LeanfaceError(f"{path}: video not found")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise LeanfaceError(f"{path}: not a readable video")
    count = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    return frames(), count, fps
