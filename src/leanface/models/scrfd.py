"""The SCRFD family: detector = backbone -> PAFPN neck -> shared-tower head (state-dict prefixes as in
mmdet), its output decoder, and the zoo of official configs (configs/scrfd/*.py in insightface)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ..boxes import distance_to_boxes
from .backbones import build_backbone
from .config import MobileNetConfig, PAFPNConfig, ResNetConfig, SCRFDConfig, SCRFDHeadConfig
from .neck import PAFPN
from .registry import Family, Postprocess, register_family, register_model


class ConvNormAct(nn.Module):
    """mmcv ConvModule with norm + ReLU; the norm is named `bn` or `gn` as mmcv names it."""

    def __init__(self, cin: int, cout: int, k: int, groups: int, head: SCRFDHeadConfig):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False)
        self.norm_name = head.norm
        norm = nn.BatchNorm2d(cout) if head.norm == "bn" else nn.GroupNorm(head.gn_groups, cout)
        self.add_module(head.norm, norm)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(getattr(self, self.norm_name)(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin: int, cout: int, head: SCRFDHeadConfig):
        super().__init__()
        self.depthwise_conv = ConvNormAct(cin, cin, 3, cin, head)
        self.pointwise_conv = ConvNormAct(cin, cout, 1, 1, head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class Scale(nn.Module):
    """Learnable scalar on the box regression (a 0-dim parameter, as mmcv's Scale)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class SCRFDHead(nn.Module):
    def __init__(self, cin: int, cfg: SCRFDHeadConfig):
        super().__init__()
        self.cfg = cfg
        self.keys = ["0"] * len(cfg.strides) if cfg.shared else [str((s, s)) for s in cfg.strides]
        a, c = cfg.num_anchors, cfg.feat_channels
        self.cls_stride_convs = nn.ModuleDict()
        self.stride_cls = nn.ModuleDict()
        self.stride_reg = nn.ModuleDict()
        self.stride_kps = nn.ModuleDict()
        for key in dict.fromkeys(self.keys):
            units = []
            for i in range(cfg.stacked_convs):
                unit_in = cin if i == 0 else c
                units.append(DepthwiseSeparable(unit_in, c, cfg) if cfg.dw_conv else ConvNormAct(unit_in, c, 3, 1, cfg))
            self.cls_stride_convs[key] = nn.Sequential(*units)
            self.stride_cls[key] = nn.Conv2d(c, a, 3, 1, 1)
            self.stride_reg[key] = nn.Conv2d(c, 4 * a, 3, 1, 1)
            if cfg.use_kps:
                self.stride_kps[key] = nn.Conv2d(c, 10 * a, 3, 1, 1)
        self.scales = nn.ModuleList(Scale() for _ in cfg.strides) if cfg.use_scale else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Official init: normal(0, 0.01) on all head convs, classification prior 0.01 (bias -4.595).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for conv in self.stride_cls.values():
            nn.init.constant_(conv.bias, -4.595)

    def forward(self, feats: list[torch.Tensor]):
        outs = []
        for level, (key, x) in enumerate(zip(self.keys, feats)):
            t = self.cls_stride_convs[key](x)
            cls = self.stride_cls[key](t)
            reg = self.stride_reg[key](t)
            if self.scales is not None:
                reg = self.scales[level](reg)
            kps = self.stride_kps[key](t) if self.cfg.use_kps else None
            outs.append((cls, reg, kps))
        return outs


class SCRFD(nn.Module):
    """Raw network: normalised RGB (B, 3, H, W), H and W multiples of 32, to per-level head maps.

    forward -> [(cls (B, A, H/s, W/s) logits, reg (B, 4A, ...) l,t,r,b in stride units,
                 kps (B, 10A, ...) offsets in stride units or None)] for s in strides.
    """

    def __init__(self, cfg: SCRFDConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg.backbone)
        self.neck = PAFPN(cfg.backbone.out_channels[1:], cfg.neck.out_channels)
        self.bbox_head = SCRFDHead(cfg.neck.out_channels, cfg.head)

    def forward(self, x: torch.Tensor):
        return self.bbox_head(self.neck(self.backbone(x)[1:]))

    @property
    def output_names(self) -> list[str]:
        kinds = ["score", "bbox"] + (["kps"] if self.cfg.head.use_kps else [])
        return [f"{k}_{s}" for k in kinds for s in self.cfg.head.strides]

    def forward_export(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Official SCRFD ONNX layout: score_8..32 (B, N_l, 1) sigmoid, bbox_* (B, N_l, 4), kps_* (B, N_l, 10)."""
        levels = self(x)
        b = x.shape[0]

        def flat(t: torch.Tensor, c: int) -> torch.Tensor:
            return t.permute(0, 2, 3, 1).reshape(b, -1, c)

        scores = [flat(cls, 1).sigmoid() for cls, _, _ in levels]
        boxes = [flat(reg, 4) for _, reg, _ in levels]
        kps = [flat(k, 10) for _, _, k in levels] if self.cfg.head.use_kps else []
        return tuple(scores + boxes + kps)


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


# The official test config (SCRFD_FACTS 3.3): score 0.02, NMS 0.45; mmdet clips decoded boxes to the
# image before NMS (mmcv NMS, no "+1" pixel) and keeps every detection that survives (max_per_img -1).
register_family(Family("scrfd", "detection", SCRFDConfig, SCRFD, DistanceDecoder.for_config,
                       Postprocess(score_thr=0.02, nms_thr=0.45, clip_before_nms=True)))


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
