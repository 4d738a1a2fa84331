"""The SCRFD network: backbone -> PAFPN neck -> shared-tower head (state-dict prefixes as in mmdet)."""
from __future__ import annotations

import torch
from torch import nn

from ..config import SCRFDConfig, SCRFDHeadConfig
from .backbones import build_backbone
from .neck import PAFPN



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
