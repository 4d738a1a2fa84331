"""The SCRFD zoo: the official configs (configs/scrfd/*.py in insightface) as typed configs."""
from __future__ import annotations

import functools

from .config import MobileNetConfig, PAFPNConfig, ResNetConfig, SCRFDConfig, SCRFDHeadConfig
from .registry import register_family, register_model
from .scrfd import SCRFD


def _scrfd_loss(cfg: SCRFDConfig, input_hw: tuple[int, int], device, weights):
    """SCRFD's training loss (ATSS, QFL, DIoU, landmarks) on the anchors of (H, W) inputs."""
    # Imported on use: leanface.train imports the models package.
    from ..train.assigner import make_anchors
    from ..train.losses import scrfd_loss

    anchors = make_anchors(*input_hw, cfg.head.strides, cfg.head.base_sizes, cfg.head.anchor_scales, device)
    return functools.partial(scrfd_loss, anchors=anchors, weights=weights)


register_family("scrfd", SCRFD, SCRFDConfig, loss=_scrfd_loss)


def _named(name: str):
    def deco(fn):
        fn.model_name = name
        return register_model(fn)
    return deco


def _head(feat: int, stacked: int, *, kps: bool, gn_groups: int = 16, dw: bool = False, scale: bool = True):
    # Without landmarks: GroupNorm heads shared across strides; the _kps models use unshared BN heads.
    return SCRFDHeadConfig(
        feat_channels=feat, stacked_convs=stacked, norm="bn" if kps else "gn", gn_groups=gn_groups,
        shared=not kps, dw_conv=dw, use_scale=scale, use_kps=kps,
    )


_MB_500M = MobileNetConfig(planes=(16, 16, 40, 72, 152, 288), blocks=(2, 3, 2, 6))
_MB_1G = MobileNetConfig(planes=(32, 48, 48, 160, 216, 312), blocks=(3, 2, 1, 5))
_R_2_5G = ResNetConfig(block="basic", base_channels=24, planes=(24, 48, 48, 80), blocks=(3, 5, 3, 2))
_R_10G = ResNetConfig(block="basic", base_channels=56, planes=(56, 88, 88, 224), blocks=(3, 4, 2, 3))
_R_34G = ResNetConfig(block="bottleneck", base_channels=56, planes=(56, 56, 144, 184), blocks=(17, 16, 2, 8))


@_named("scrfd_500m")
def scrfd_500m() -> SCRFDConfig:
    return SCRFDConfig("scrfd_500m", _MB_500M, PAFPNConfig(16), _head(64, 2, kps=False, dw=True))


@_named("scrfd_500m_kps")
def scrfd_500m_kps() -> SCRFDConfig:
    # The released model has no Scale (scale_mode=0 in its config; no Mul op in det_500m.onnx).
    return SCRFDConfig("scrfd_500m_kps", _MB_500M, PAFPNConfig(16), _head(64, 2, kps=True, dw=True, scale=False))


@_named("scrfd_1g")
def scrfd_1g() -> SCRFDConfig:
    return SCRFDConfig("scrfd_1g", _MB_1G, PAFPNConfig(24), _head(96, 2, kps=False, dw=True, gn_groups=8))


@_named("scrfd_2.5g")
def scrfd_2_5g() -> SCRFDConfig:
    return SCRFDConfig("scrfd_2.5g", _R_2_5G, PAFPNConfig(24), _head(64, 2, kps=False))


@_named("scrfd_2.5g_kps")
def scrfd_2_5g_kps() -> SCRFDConfig:
    return SCRFDConfig("scrfd_2.5g_kps", _R_2_5G, PAFPNConfig(24), _head(64, 2, kps=True))


@_named("scrfd_10g")
def scrfd_10g() -> SCRFDConfig:
    return SCRFDConfig("scrfd_10g", _R_10G, PAFPNConfig(56), _head(80, 3, kps=False))


@_named("scrfd_10g_kps")
def scrfd_10g_kps() -> SCRFDConfig:
    return SCRFDConfig("scrfd_10g_kps", _R_10G, PAFPNConfig(56), _head(80, 3, kps=True))


@_named("scrfd_34g")
def scrfd_34g() -> SCRFDConfig:
    return SCRFDConfig("scrfd_34g", _R_34G, PAFPNConfig(128), _head(256, 2, kps=False, gn_groups=32))

from . import eresfd, extd  # noqa: E402,F401  (SSD-style families register their zoo entries on import)
