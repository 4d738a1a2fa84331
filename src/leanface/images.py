"""Reading images: one decoder for inference, training and statistics. RGB uint8 (H, W, 3) out.

Decoding is OpenCV's (fast; applies EXIF orientation; turns grayscale, RGBA and 16-bit into 8-bit
3-channel), with Pillow as a fallback for formats OpenCV lacks. `image_size` reads only the header
and reports the size after the same EXIF rotation, so it always agrees with the decoded image.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from .errors import LeanfaceError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm")
# EXIF orientations 5-8 rotate by 90 degrees: width and height swap when the image is decoded.
_EXIF_ORIENTATION = 0x0112


def read_bgr(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as BGR uint8 (H, W, 3), OpenCV's order (the training augmentation works in it);
    LeanfaceError naming the file if it cannot be read."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise LeanfaceError(f"{path}: image not found")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise LeanfaceError(f"{path}: empty file")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is not None:
        return bgr
    return cv2.cvtColor(_read_with_pillow(path), cv2.COLOR_RGB2BGR)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); LeanfaceError naming the file if it cannot be read."""
    return cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB)


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


def as_rgb(image, name: str = "image") -> np.ndarray:
    """Validate/convert an in-memory image to RGB uint8 (H, W, 3): gray, RGBA, 16-bit and PIL images accepted."""
    if image is None:
        raise LeanfaceError(f"{name}: got None instead of an image (cv2.imread returns None for a file it cannot read)")
    if isinstance(image, (bytes, bytearray, memoryview)):
        raise LeanfaceError(f"{name}: got encoded bytes; pass the file's path, or decode it first (cv2.imdecode)")
    if hasattr(image, "convert") and hasattr(image, "getexif"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise LeanfaceError(f"{name}: expected a numpy array, a PIL image or a path, got {type(image).__name__}")
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


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the decoded image from the file header (no decoding), EXIF rotation applied."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, ValueError) as exc:
        raise LeanfaceError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
