"""Official SCRFD ncnn files import into zoo models that reproduce ncnn's own inference."""
import struct

import cv2
import numpy as np
import pytest
import torch

from leanface import LeanfaceError, create_model, read_image
from leanface.cli import main
from leanface.models.importers import import_weights
from leanface.models.importers.match import GroupNormParams
from leanface.models.importers.ncnn import TAG_FP16, TAG_FP32, read_graph

from ..conftest import SHARED, need

NCNN_DIR = SHARED / "models" / "scrfd_ncnn"
FILES = {
    "scrfd_500m": "scrfd_500m-opt2",
    "scrfd_500m_kps": "scrfd_500m_kps-opt2",
    "scrfd_1g": "scrfd_1g-opt2",
    "scrfd_2.5g": "scrfd_2.5g-opt2",
    "scrfd_2.5g_kps": "scrfd_2.5g_kps-opt2",
}
SIZES = [(480, 640), (256, 320)]  # (H, W)


def _param(model: str):
    return need(NCNN_DIR / f"{FILES[model]}.param")


@pytest.fixture(scope="module")
def imported():
    """{zoo name: (config, state_dict)} from the .param paths, imported once."""
    return {m: import_weights(_param(m)) for m in FILES}


@pytest.mark.parametrize("model", FILES)
def test_file_imports_as_its_zoo_model(imported, model):
    cfg, state = imported[model]
    assert cfg.name == model
    net = create_model(model)
    net.load_state_dict(state, strict=True)
    # The .bin path is accepted too and gives the same tensors.
    cfg_bin, state_bin = import_weights(_param(model).with_suffix(".bin"))
    assert cfg_bin.name == model
    assert all(torch.equal(state[k], state_bin[k]) for k in state)


def _ncnn_net(param):
    ncnn = pytest.importorskip("ncnn", reason="the ncnn package (parity oracle) is not installed")
    net = ncnn.Net()
    # Plain fp32 CPU arithmetic: the file's fp16 weights widen exactly, so only summation order differs.
    for flag in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic",
                 "use_bf16_storage", "use_winograd_convolution"):
        setattr(net.opt, flag, False)
    net.opt.num_threads = 1
    assert net.load_param(str(param)) == 0
    assert net.load_model(str(param.with_suffix(".bin"))) == 0
    return ncnn, net


@pytest.mark.parametrize("model", FILES)
def test_raw_outputs_match_ncnn(imported, val_images, model):
    ncnn, ref = _ncnn_net(_param(model))
    cfg, state = imported[model]
    net = create_model(model)
    net.load_state_dict(state)
    net.eval()
    for img_path, (h, w) in zip(val_images[::150], SIZES):
        x = ((cv2.resize(read_image(img_path), (w, h)).astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)
        x = np.ascontiguousarray(x)
        ex = ref.create_extractor()
        ex.input("input.1", ncnn.Mat(x))
        with torch.no_grad():
            levels = net(torch.from_numpy(x)[None])
        for stride, (cls, reg, kps) in zip(cfg.head.strides, levels):
            ours = {"score": cls.sigmoid(), "bbox": reg, "kps": kps}
            for kind, t in ours.items():
                if t is None:
                    continue
                ret, out = ex.extract(f"{kind}_{stride}")
                assert ret == 0
                out = np.array(out)
                assert out.shape == tuple(t.shape[1:])
                assert np.abs(out - t[0].numpy()).max() < 1e-4, (kind, stride, (h, w))


def test_convert_cli_writes_a_checkpoint(imported, tmp_path):
    out = tmp_path / "scrfd_1g.pt"
    assert main(["convert", str(_param("scrfd_1g")), "-o", str(out)]) == 0
    net = create_model(None, out)
    assert net.cfg.name == "scrfd_1g"
    state = imported["scrfd_1g"][1]
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def _copy_pair(tmp_path, model, bin_bytes=None):
    src = _param(model)
    param = tmp_path / src.name
    param.write_text(src.read_text())
    data = src.with_suffix(".bin").read_bytes()
    param.with_suffix(".bin").write_bytes(data if bin_bytes is None else bin_bytes(data))
    return param


def _error(path, model=None) -> str:
    with pytest.raises(LeanfaceError) as exc:
        import_weights(path, model)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_truncated_bin_names_the_layer(tmp_path):
    param = _copy_pair(tmp_path, "scrfd_500m", lambda d: d[: len(d) // 2])
    msg = _error(param)
    assert "truncated" in msg and str(param.with_suffix(".bin")) in msg and ".param line" in msg


def test_bin_with_extra_bytes_is_refused(tmp_path):
    param = _copy_pair(tmp_path, "scrfd_500m", lambda d: d + bytes(8))
    assert "8 bytes left" in _error(param)


def test_corrupt_storage_tag_is_refused(tmp_path):
    param = _copy_pair(tmp_path, "scrfd_1g", lambda d: struct.pack("<I", 0xDEADBEEF) + d[4:])
    msg = _error(param)
    assert "0xDEADBEEF" in msg and "Conv_0" in msg


def test_bin_of_another_model_is_refused(tmp_path):
    param = _copy_pair(tmp_path, "scrfd_1g", lambda d: _param("scrfd_500m").with_suffix(".bin").read_bytes())
    assert str(param.with_suffix(".bin")) in _error(param)


def test_wrong_model_names_the_first_difference():
    msg = _error(_param("scrfd_500m"), "scrfd_1g")
    assert "does not match scrfd_1g" in msg and "conv #0" in msg
    # Same backbone, but GroupNorm heads shared across levels vs BatchNorm heads with landmarks.
    assert "does not match scrfd_500m_kps" in _error(_param("scrfd_500m"), "scrfd_500m_kps")
    assert "supports SCRFD models, not extd_32" in _error(_param("scrfd_500m"), "extd_32")


def test_malformed_param_names_the_line(tmp_path):
    src = _param("scrfd_500m")
    lines = src.read_text().splitlines()
    bad = tmp_path / "bad.param"
    bad.write_text("\n".join(["7767518"] + lines[1:]))
    assert f"{bad}:1:" in _error(bad)
    bad.with_suffix(".bin").write_bytes(src.with_suffix(".bin").read_bytes())
    assert lines[4].startswith("ConvolutionDepthWise")
    bad.write_text("\n".join(lines[:4] + [lines[4].replace("ConvolutionDepthWise", "Deconvolution")] + lines[5:]))
    assert f"{bad}:5:" in _error(bad) and "Deconvolution" in _error(bad)
    bad.write_text("\n".join(lines[:-1]))
    assert "header says 103 layers, the file has 102" in _error(bad)
    (tmp_path / "lonely.param").write_text(src.read_text())  # no .bin beside it
    assert "not found" in _error(tmp_path / "lonely.param")


def test_reader_decodes_hand_written_weights(tmp_path):
    # 3x3 conv 1->1 in float16 (9 values: 18 bytes + 2 padding) with a bias, then a 1x1 conv 1->2
    # in float32 followed by an affine GroupNorm; read back exactly.
    w1 = np.array([0.5, -1.25, 2.0, 0.0, 3.5, -0.125, 1.0, 0.75, -2.5], np.float16)
    b1 = np.array([0.1], np.float32)
    w2 = np.array([1.5, -0.5], np.float32)
    gamma, beta = np.array([2.0, 3.0], np.float32), np.array([-1.0, 0.25], np.float32)
    param = tmp_path / "toy.param"
    param.write_text("7767517\n4 4\n"
                     "Input in 0 1 data\n"
                     "Convolution c1 1 1 data a 0=1 1=3 4=1 5=1 6=9\n"
                     "Convolution c2 1 1 a b 0=2 1=1 6=2\n"
                     "GroupNorm g 1 1 b c 0=1 1=2 2=1.000000e-05\n")
    blob = (struct.pack("<I", TAG_FP16) + w1.tobytes() + bytes(2) + b1.tobytes()
            + struct.pack("<I", TAG_FP32) + w2.tobytes() + gamma.tobytes() + beta.tobytes())
    param.with_suffix(".bin").write_bytes(blob)
    convs, scales = read_graph(str(param), str(param.with_suffix(".bin")))
    assert scales == []
    c1, c2 = convs
    assert c1.weight.shape == (1, 1, 3, 3) and np.array_equal(c1.weight.ravel(), w1.astype(np.float32))
    assert np.array_equal(c1.bias, b1) and c1.padding == (1, 1) and c1.norm is None
    assert c2.weight.shape == (2, 1, 1, 1) and np.array_equal(c2.weight.ravel(), w2) and c2.bias is None
    assert isinstance(c2.norm, GroupNormParams) and c2.norm.groups == 1
    assert np.array_equal(c2.norm.gamma, gamma) and np.array_equal(c2.norm.beta, beta)
