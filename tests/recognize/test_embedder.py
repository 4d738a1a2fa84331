"""Embedders: our MobileFaceNet through ONNX matches PyTorch; normalisation travels in the file; foreign
and wrong files are told apart."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from leanface import LeanfaceError
from leanface.export import export_onnx
from leanface.models import create_model, save_checkpoint
from leanface.recognize import Embedder

from ..conftest import SHARED, need

GLINT = SHARED / "data" / "recog_train" / "glint_sample"


@pytest.fixture(scope="module")
def mobilefacenet(tmp_path_factory):
    """A seeded, untrained MobileFaceNet: its checkpoint and its ONNX export (BN statistics randomised so
    the export is not an identity-like network)."""
    torch.manual_seed(0)
    net = create_model("mobilefacenet")
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    out = tmp_path_factory.mktemp("mfn")
    save_checkpoint(out / "mfn.pt", net.cfg, net.state_dict())
    export_onnx(net, out / "mfn.onnx")
    return out / "mfn.pt", out / "mfn.onnx"


def _crops(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


def test_export_parity_and_dynamic_batch(mobilefacenet):
    pt, onnx_file = mobilefacenet
    torch_emb, ort_emb = Embedder(pt), Embedder(onnx_file, threads=1)
    assert ort_emb.name == "mobilefacenet" and ort_emb.dim == 128
    assert np.allclose(ort_emb.mean, 127.5) and np.allclose(ort_emb.std, 127.5)  # read from the file
    for n in (1, 5, 33):  # 33 > the embedder's batch of 32: two calls
        a, b = torch_emb.embed(_crops(n)), ort_emb.embed(_crops(n))
        assert a.shape == (n, 128) and a.dtype == np.float32
        assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
        assert np.abs(a - b).max() < 1e-4


def test_flip_is_the_normalised_mean_of_both_views(mobilefacenet):
    pt, _ = mobilefacenet
    x = _crops(3, seed=1)
    plain, flipped = Embedder(pt).embed(x), Embedder(pt).embed(x[:, :, ::-1].copy())
    both = Embedder(pt, flip=True).embed(x)
    manual = plain + flipped
    manual /= np.linalg.norm(manual, axis=1, keepdims=True)
    assert np.abs(both - manual).max() < 1e-5


def test_given_normalisation_overrides_the_file(mobilefacenet, monkeypatch):
    _, onnx_file = mobilefacenet
    x = _crops(2, seed=2)
    seen = []
    for kwargs in ({}, dict(mean="127.5,127.5,127.5", std=127.5), dict(mean="0,10,20", std=255)):
        emb = Embedder(onnx_file, **kwargs)
        run = emb._run
        monkeypatch.setattr(emb, "_run", lambda batch, run=run: (seen.append(batch.copy()), run(batch))[1])
        emb.embed(x)
    rgb = x.astype(np.float32).transpose(0, 3, 1, 2)
    assert np.allclose(seen[0], (rgb - 127.5) / 127.5) and np.allclose(seen[1], seen[0])
    assert np.allclose(seen[2], (rgb - np.array([0, 10, 20], np.float32)[:, None, None]) / 255)


def test_foreign_file_without_normalisation_assumes_raw_pixels(sface, capsys):
    emb = Embedder(sface)
    assert "does not say its input normalisation" in capsys.readouterr().err
    assert np.all(emb.mean == 0) and np.all(emb.std == 1) and emb.dim == 128
    assert not emb.batched  # SFace has a fixed batch of one: crops run one at a time
    out = emb.embed(_crops(3))
    assert out.shape == (3, 128)


@pytest.mark.parametrize("bad", [dict(mean="1,2"), dict(std=0), dict(std="a,b,c"), dict(batch_size=0)])
def test_bad_settings_are_one_line_errors(mobilefacenet, bad):
    with pytest.raises(LeanfaceError) as err:
        Embedder(mobilefacenet[0], **bad)
    assert "\n" not in str(err.value)


def test_files_that_are_not_embedders(tmp_path, official):
    with pytest.raises(LeanfaceError, match="not a 112x112 face embedder|not a face embedder"):
        Embedder(official["scrfd_500m_kps"][0])  # a detector's ONNX file (dynamic 640 input, 9 outputs)
    with pytest.raises(LeanfaceError, match="not a face embedder"):
        Embedder(official["scrfd_500m_kps"][1])  # a detector's leanface checkpoint
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(LeanfaceError, match="cannot load"):
        Embedder(junk)
    with pytest.raises(LeanfaceError, match="not found"):
        Embedder(tmp_path / "none.onnx")


def test_bundled_embedder_is_the_export_of_its_weights():
    """Embedder() runs the bundled ONNX file: the export of the bundled .pt (same embeddings on real faces),
    with its LFW-calibrated threshold in the metadata."""
    from leanface.recognize.embedder import DEFAULT_EMBEDDER, DEFAULT_EMBEDDER_ONNX

    crops = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
                      for p in sorted(need(GLINT).glob("*/*.jpg"))[:16]])
    default = Embedder()
    assert default.weights == str(DEFAULT_EMBEDDER_ONNX) and default.name == "mobilefacenet"
    assert default.threshold is not None and 0.0 < default.threshold < 1.0
    a, b = default.embed(crops), Embedder(DEFAULT_EMBEDDER).embed(crops)
    assert np.einsum("ij,ij->i", a, b).min() > 0.9999
