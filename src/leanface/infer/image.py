"""Inputs of inference: image folders, videos (RGB uint8 frames), the bundled sample image.

Single images are read by leanface.images (shared with training), re-exported here.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..errors import LeanfaceError
from ..images import IMAGE_EXTS, as_rgb, read_image  # noqa: F401  (re-exported: the inference API reads images)

# FFmpeg's own log lines ("moov atom not found") would reach the terminal beside our one-line errors;
# quiet unless the user asks for them (OpenCV reads this when it first opens a video).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


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


def video_frame_count(path: str | os.PathLike) -> int:
    """The frame count a video's container states (0 if unknown or unreadable)."""
    cap = cv2.VideoCapture(os.fspath(path))
    try:
        return _stated_frames(cap) if cap.isOpened() else 0
    finally:
        cap.release()


def _stated_frames(cap: cv2.VideoCapture) -> int:
    return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)


def video_frames(path: str | os.PathLike) -> tuple[Iterator[np.ndarray], int, float]:
    """(RGB frame iterator, frame count or 0 if unknown, fps) for a video file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise LeanfaceError(f"{path}: video not found")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise LeanfaceError(f"{path}: not a readable video")
    count = _stated_frames(cap)
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


def sample_image() -> np.ndarray:
    """The bundled sample: the public-domain NASA astronaut portrait shipped in scikit-image (RGB, 512x512)."""
    try:
        from skimage import data
    except ImportError:
        raise LeanfaceError("the sample image needs scikit-image (pip install scikit-image)") from None
    return data.astronaut()
