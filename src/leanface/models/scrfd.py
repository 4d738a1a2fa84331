"""The SCRFD family: detector = backbone -> PAFPN neck -> shared-tower head (state-dict prefixes as in
mmdet), its output decoder, and the zoo of official configs (configs/scrfd/*.py in insightface)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..boxes import distance_to_boxes
from .config import MobileNetConfig, PAFPNConfig, ResNetConfig, SCRFDConfig, SCRFDHeadConfig
from .registry import Family, Postprocess, Preset, network, register_family, register_model


class DistanceDecoder:
    """SCRFD outputs (official ONNX layout) -> candidates in network-input pixels.

    outputs: score_s (B, N_s, 1) probabilities, bbox_s (B, N_s, 4) l,t,r,b in stride units,
    kps_s (B, N_s, 10) in stride units, for s in strides; N_s = H/s * W/s * anchors, location-major.
    Official ONNX files without a batch dim ((N_s, C)) are accepted too. Candidates score >= score_thr.
    """

    def __init__(self, strides: tuple[int, ...], num_anchors: int, has_landmarks: bool):
        self.strides = tuple(strides)
        self.num_anchors = num_anchors
        self.has_landmarks = has_landmarks

    @classmethod
    def for_config(cls, cfg: SCRFDConfig) -> "DistanceDecoder":
        return cls(cfg.head.strides, cfg.head.num_anchors, cfg.head.use_kps)

    def __call__(self, outputs: list[np.ndarray], input_hw: tuple[int, int], score_thr: float):
        n = len(self.strides)
        outputs = [o[None] if o.ndim == 2 else o for o in outputs]
        results = []
        for b in range(outputs[0].shape[0]):
            boxes, scores, kps = [], [], []
            for lvl, s in enumerate(self.strides):
                score = outputs[lvl][b, :, 0]
                idx = np.flatnonzero(score >= score_thr)
                centres = anchor_centres(-(-input_hw[0] // s), -(-input_hw[1] // s), s, self.num_anchors)[idx]
                boxes.append(distance_to_boxes(centres, outputs[n + lvl][b, idx] * s))
                scores.append(score[idx])
                if self.has_landmarks:
                    offs = outputs[2 * n + lvl][b, idx].reshape(-1, 5, 2) * s
                    kps.append(centres[:, None, :] + offs)
            results.append((np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32),
                            np.concatenate(kps).astype(np.float32) if self.has_landmarks else None))
        return results


@lru_cache(maxsize=64)
def anchor_centres(h: int, w: int, stride: int, anchors: int) -> np.ndarray:
    """Anchor centres (h*w*anchors, 2) as (x, y): cell corners j*s, i*s, row-major, anchor-minor."""
    ys, xs = np.mgrid[:h, :w]
    c = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) * stride
    c = np.repeat(c, anchors, axis=0)
    c.setflags(write=False)
    return c


# eval: the official test config (SCRFD_FACTS 3.3): a 640x640 letterbox, score 0.02, NMS 0.45; mmdet clips
# decoded boxes to the image before NMS (mmcv NMS, no "+1" pixel) and keeps every detection that survives
# (max_per_img -1). detect: the official inference class's defaults (score 0.5, NMS 0.4).
register_family(Family("scrfd", "detect", SCRFDConfig, network("scrfd", "SCRFD"), DistanceDecoder.for_config, {
    "detect": Preset(Postprocess(score_thr=0.5, nms_thr=0.4, clip_before_nms=True)),
    "eval": Preset(Postprocess(score_thr=0.02, nms_thr=0.45, clip_before_nms=True), letterbox=True)}))


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
