"""Execution-order view of a model, used to match official graphs that lost their parameter names."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ConvSite:
    """One conv in execution order, with the norm that directly consumes its output (if any)."""

    name: str
    conv: nn.Conv2d
    norm_name: str | None = None
    norm: nn.Module | None = None


def conv_sites(model: nn.Module, input_hw: tuple[int, int] = (64, 64),
               repeats: bool = False) -> tuple[list[ConvSite], list[str]]:
    """Convs and Scale-like modules in the order a forward pass runs them.

    Each conv is listed at its first use, or at every call with `repeats=True`: a head shared
    across levels then appears once per level, as in exported graphs that unroll the sharing.
    """
    names = {m: n for n, m in model.named_modules()}
    order: list[nn.Module] = []
    seen: set[int] = set()
    handles = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm)) or type(m).__name__ == "Scale":
            def hook(mod, args, out):
                if repeats or id(mod) not in seen:
                    seen.add(id(mod))
                    order.append(mod)
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_hw))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    sites: list[ConvSite] = []
    scales: list[str] = []
    for m in order:
        if isinstance(m, nn.Conv2d):
            sites.append(ConvSite(names[m], m))
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            if not sites or sites[-1].norm is not None:
                raise RuntimeError(f"norm {names[m]} does not follow a conv")
            sites[-1].norm_name, sites[-1].norm = names[m], m
        else:
            scales.append(names[m])
    return sites, scales
