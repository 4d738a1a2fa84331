"""Face alignment: the detector's five landmarks onto the standard 112x112 template, by the least-squares
similarity transform (Umeyama 1991) and one cv2.warpAffine per face.

Landmarks are in the detector's order (RECOGNITION_FACTS 5): left eye, right eye, nose, left mouth
corner, right mouth corner, as seen in the image, in pixels (x, y).
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import LeanfaceError

# ArcFace / insightface template for 112x112 crops (RECOGNITION_FACTS 5).
ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The (2, 3) matrix M of the rotation + uniform scale + translation that maps src (N, 2) onto dst (N, 2)
    with least squared error (Umeyama's closed form; no reflection). dst ~= src @ M[:, :2].T + M[:, 2]."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise LeanfaceError(f"similarity_transform needs two (N, 2) point sets, N >= 2; got {src.shape}, {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s ** 2).sum() / len(src)
    if var_s < 1e-12:
        raise LeanfaceError("similarity_transform: the source points coincide")
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    flip = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ flip @ vt
    scale = (sigma * np.diag(flip)).sum() / var_s
    m = np.empty((2, 3))
    m[:, :2] = scale * rotation
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def align_faces(image: np.ndarray, landmarks: np.ndarray | None, size: int = 112,
                template: np.ndarray = ARCFACE_TEMPLATE_112) -> np.ndarray:
    """Crops (K, size, size, C) of `image` (H, W, C) uint8, one per face of `landmarks` (K, 5, 2), each warped
    so its landmarks land on `template` (given for 112x112, scaled to `size`)."""
    if landmarks is None:
        raise LeanfaceError("alignment needs the 5 landmarks of each face; this detector gives none "
                            "(use a model with landmarks, e.g. scrfd_500m_kps)")
    landmarks = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    target = np.asarray(template, np.float64) * (size / 112.0)
    crops = [cv2.warpAffine(image, similarity_transform(pts, target), (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0) for pts in landmarks]
    return np.stack(crops) if crops else np.zeros((0, size, size) + image.shape[2:], image.dtype)
