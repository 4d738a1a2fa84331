"""The SSD-style network both EResFD and EXTD build on: per-level heads, outputs in the official anchor order."""
from __future__ import annotations

import torch
from torch import nn

from ..ssd import SSDAnchorConfig



class SSDDetector(nn.Module):
    """Six feature maps -> per-level loc/conf convs -> flat outputs in the official anchor order.

    Subclasses build `features(x) -> [6 maps (B, C, H_k, W_k)]`, fine to coarse.
    forward(x) -> (loc (B, N, 4) encoded offsets, conf (B, N, 2) logits (background, face)), the
    level-0 background logit being the max-out over `maxout_bg` logits.
    x: (B, 3, H, W) float32 RGB, (pixel - mean) / std; any H, W.
    """

    def __init__(self, anchors: SSDAnchorConfig, channels: int, head_kernel: int):
        super().__init__()
        self.anchors = anchors
        pad = head_kernel // 2
        levels = range(len(anchors.strides))
        self.loc = nn.ModuleList(nn.Conv2d(channels, 4, head_kernel, padding=pad) for _ in levels)
        self.conf = nn.ModuleList(
            nn.Conv2d(channels, anchors.maxout_bg + 1 if k == 0 else 2, head_kernel, padding=pad) for k in levels)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        locs, confs = [], []
        for k, f in enumerate(self.features(x)):
            conf = self.conf[k](f)
            if k == 0:
                bg = conf[:, : self.anchors.maxout_bg].amax(dim=1, keepdim=True)
                conf = torch.cat([bg, conf[:, self.anchors.maxout_bg:]], dim=1)
            locs.append(self.loc[k](f).permute(0, 2, 3, 1).reshape(b, -1, 4))
            confs.append(conf.permute(0, 2, 3, 1).reshape(b, -1, 2))
        return torch.cat(locs, 1), torch.cat(confs, 1)

    @property
    def output_names(self) -> list[str]:
        return ["loc", "score"]

    def forward_export(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc (B, N, 4) encoded offsets, score (B, N) softmax face probability)."""
        loc, conf = self(x)
        return loc, torch.softmax(conf, dim=-1)[..., 1]
