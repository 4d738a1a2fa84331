"""Alignment recovers known similarity transforms and puts landmarks on the template."""
import cv2
import numpy as np
import pytest

from leanface.errors import LeanfaceError
from leanface.recognize import ARCFACE_TEMPLATE_112, align_faces, similarity_transform


def _similarity(scale, angle, tx, ty):
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


@pytest.mark.parametrize("params", [(1.0, 0.0, 0.0, 0.0), (2.3, 0.4, -15.0, 40.0), (0.37, -2.9, 300.5, 12.25)])
def test_a_known_similarity_is_recovered(params):
    m = _similarity(*params)
    src = np.random.default_rng(0).uniform(0, 200, (5, 2))
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(similarity_transform(src, dst), m, atol=1e-6)


def test_least_squares_with_noise_and_no_reflection():
    src = ARCFACE_TEMPLATE_112
    mirrored = src * [-1, 1]  # a reflection is not a similarity: the best proper one is returned
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0
    noisy = src @ _similarity(1.5, 0.2, 3, 4)[:, :2].T + [3, 4] + np.random.default_rng(1).normal(0, 0.5, (5, 2))
    m = similarity_transform(src, noisy)
    assert abs(np.hypot(*m[:, 0]) - 1.5) < 0.05


def test_warped_landmarks_land_on_the_template():
    # Five bright dots at a rotated, scaled, shifted copy of the template in a 400x300 image.
    m = _similarity(2.0, 0.3, 120.0, 40.0)
    points = ARCFACE_TEMPLATE_112 @ m[:, :2].T + m[:, 2]
    image = np.zeros((300, 400, 3), np.uint8)
    for x, y in points:
        cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    crops = align_faces(image, points[None])
    assert crops.shape == (1, 112, 112, 3)
    for x, y in ARCFACE_TEMPLATE_112:
        assert crops[0, int(round(y)), int(round(x))].min() > 200
    assert align_faces(image, points[None], size=224).shape == (1, 224, 224, 3)
    assert align_faces(image, np.zeros((0, 5, 2))).shape == (0, 112, 112, 3)


def test_no_landmarks_is_a_clear_error():
    with pytest.raises(LeanfaceError, match="needs the 5 landmarks"):
        align_faces(np.zeros((10, 10, 3), np.uint8), None)
