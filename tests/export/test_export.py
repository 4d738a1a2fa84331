"""ONNX export of official weights runs in the Detector alone (parity of every registered model:
tests/models/test_registry_contract.py)."""
import numpy as np

from leanface import Detector, create_model
from leanface.export import export_onnx


def test_exported_file_runs_in_detector_alone(official, val_images, tmp_path):
    _, weights = official["scrfd_500m_kps"]
    path = tmp_path / "ours.onnx"
    export_onnx(create_model(None, weights), path)
    a = Detector(weights=path)(val_images[0])  # config comes from the file's metadata
    b = Detector(weights=weights)(val_images[0])
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
