"""FLOPs counter with mmcv `get_model_complexity_info` conventions (what the paper's figures use).

A multiply-add counts as one FLOP; conv = out_pixels * k*k*cin/groups*cout (+ cout per pixel for the
bias); norms count input elements (x2 when affine); activations count outputs; pools count inputs;
functional ops (adds, F.interpolate) count nothing. We count with forward hooks rather than pull in
mmcv, whose CUDA build is heavy and whose counter is the only part we need.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_NORMS = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)
_ACTS = (nn.ReLU, nn.PReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class FlopsReport:
    """total: FLOPs for one image; by_module: FLOPs per leaf module name; params: parameter count."""

    total: int
    params: int
    by_module: dict[str, int]

    @property
    def gflops(self) -> float:
        return self.total / 1e9

    def group(self, prefix: str) -> int:
        """FLOPs of all modules under a name prefix, e.g. 'backbone.layer2' or 'neck'."""
        return sum(v for k, v in self.by_module.items() if k == prefix or k.startswith(prefix + "."))


def _module_flops(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(m, nn.Conv2d):
        per_pixel = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups) * m.out_channels
        pixels = out.shape[0] * out.shape[2] * out.shape[3]
        return per_pixel * pixels + (m.out_channels * pixels if m.bias is not None else 0)
    if isinstance(m, nn.ConvTranspose2d):
        per_pixel = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups) * m.out_channels
        return per_pixel * inp.shape[0] * inp.shape[2] * inp.shape[3]
    if isinstance(m, _NORMS):
        affine = getattr(m, "affine", getattr(m, "elementwise_affine", False))
        return inp.numel() * (2 if affine else 1)
    if isinstance(m, _ACTS):
        return out.numel()
    if isinstance(m, _POOLS):
        return inp.numel()
    if isinstance(m, nn.Linear):
        return inp.numel() * m.out_features
    if isinstance(m, nn.Upsample):
        return out.numel()
    return 0


@torch.no_grad()
def count_flops(model: nn.Module, input_chw: tuple[int, int, int] = (3, 480, 640)) -> FlopsReport:
    """Count FLOPs of one forward pass at batch 1 (default input 640x480, the paper's setting)."""
    by_module: dict[str, int] = {}
    handles = []
    for name, m in model.named_modules():
        if len(list(m.children())) == 0:
            def hook(mod, args, out, name=name):
                by_module[name] = by_module.get(name, 0) + _module_flops(mod, args[0], out)
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_chw))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return FlopsReport(total=sum(by_module.values()), params=params, by_module=by_module)
