"""ONNX export: official layout, dynamic batch/size, PyTorch vs ONNX Runtime parity."""
import numpy as np
import onnxruntime as ort
import pytest
import torch

from leanface import Detector, create_model
from leanface.export import export_onnx


@pytest.mark.parametrize("model", ["scrfd_500m_kps", "scrfd_2.5g"])
def test_export_parity_batches_and_sizes(tmp_path, model):
    torch.manual_seed(0)
    net = create_model(model)
    # Random (non-default) BN statistics and biases so the check is not trivially satisfied.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
        if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
            m.bias.data.uniform_(-1, 1)
    net.eval()
    path = tmp_path / "m.onnx"
    export_onnx(net, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == net.output_names
    assert sess.get_inputs()[0].name == "input.1"
    for batch, (h, w) in ((1, (480, 640)), (4, (320, 256))):
        x = torch.randn(batch, 3, h, w)
        with torch.no_grad():
            ref = [t.numpy() for t in net.forward_export(x)]
        outs = sess.run(None, {"input.1": x.numpy()})
        for a, b in zip(ref, outs):
            assert a.shape == b.shape
            assert np.abs(a - b).max() < 1e-4


def test_exported_file_runs_in_detector_alone(official, val_images, tmp_path):
    _, weights = official["scrfd_500m_kps"]
    path = tmp_path / "ours.onnx"
    export_onnx(create_model(None, weights), path)
    a = Detector(weights=path)(val_images[0])  # config comes from the file's metadata
    b = Detector(weights=weights)(val_images[0])
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
