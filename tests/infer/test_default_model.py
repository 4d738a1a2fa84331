"""The bundled model runs on ONNX Runtime from an export of the bundled weights: the two must agree, so a
retrained .pt without a fresh export fails here."""
from __future__ import annotations

import json

import numpy as np

from leanface import Detector
from leanface.infer import DEFAULT_ONNX, DEFAULT_WEIGHTS, onnx_session, sample_image
from leanface.models import config_from_dict, read_checkpoint
from leanface.models.registry import ONNX_CONFIG_KEY


def test_the_bundled_onnx_is_an_export_of_the_bundled_weights(val_images):
    meta = onnx_session(DEFAULT_ONNX, threads=1).get_modelmeta().custom_metadata_map
    assert config_from_dict(json.loads(meta[ONNX_CONFIG_KEY])) == read_checkpoint(DEFAULT_WEIGHTS)[0]
    default, torch_model = Detector(score_thr=0.2), Detector(weights=DEFAULT_WEIGHTS, score_thr=0.2)
    assert type(default.backend).__name__ == "OnnxBackend" and default.weights == str(DEFAULT_ONNX)
    for image in (sample_image(), str(val_images[0])):
        a, b = default(image), torch_model(image)
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.5)
