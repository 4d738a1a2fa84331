"""The SCRFD zoo has the paper's size and compute and the official output layout (the contract every
registered model keeps is tests/models/test_registry_contract.py)."""
import pytest
import torch

from leanface.models import create_model, get_config, list_models
from leanface.models.flops import count_flops

SCRFD = list_models("scrfd_*")

# Paper (Table/README) figures at 640x480: GFLOPs and M params.
PAPER = {
    "scrfd_500m": (0.508, 0.57), "scrfd_1g": (None, 0.64), "scrfd_2.5g": (2.53, 0.67),
    "scrfd_2.5g_kps": (None, 0.82), "scrfd_10g": (9.98, 3.86), "scrfd_10g_kps": (None, 4.23),
    "scrfd_34g": (34.13, 9.80),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_matches_paper_complexity(name):
    report = count_flops(create_model(name), (3, 480, 640))
    gflops, mparams = PAPER[name]
    if gflops is not None:
        assert abs(report.gflops - gflops) / gflops < 0.02, report.gflops
    assert abs(report.params / 1e6 - mparams) / mparams < 0.02 + 0.005 / mparams, report.params


def test_flops_counts_conv_by_hand():
    # 3x3 conv 3->8 stride 2 on 32x32 (no bias) + BN(8, affine) + ReLU on a 16x16 map:
    # conv 16*16 * 3*3*3*8 = 55296; BN 2 * 8*16*16 = 4096; ReLU 8*16*16 = 2048.
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
    assert count_flops(net, (3, 32, 32)).total == 55296 + 4096 + 2048


@pytest.mark.parametrize("name", SCRFD)
def test_head_output_shapes(name):
    cfg = get_config(name)
    levels = create_model(name)(torch.randn(2, 3, 96, 128))
    assert len(levels) == 3
    for (cls, reg, kps), s in zip(levels, cfg.head.strides):
        assert cls.shape == (2, 2, 96 // s, 128 // s)
        assert reg.shape == (2, 8, 96 // s, 128 // s)
        assert (kps is None) == (not cfg.head.use_kps)


def test_output_names():
    assert create_model("scrfd_500m_kps").output_names == [
        "score_8", "score_16", "score_32", "bbox_8", "bbox_16", "bbox_32", "kps_8", "kps_16", "kps_32"]
