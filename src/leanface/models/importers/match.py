"""Match the convs of an exported graph (ONNX, ncnn) to a zoo model by execution order and shape.

Exported graphs lose parameter names and usually fold BatchNorm into conv biases. A folded
conv+BN pair is loaded as the conv weight plus an identity BN (gamma 1, mean 0, var 1 - eps)
carrying the folded bias, which keeps the mmdet module tree and reproduces the graph's
arithmetic. GroupNorm cannot be folded, so a GN model needs a file that keeps its GN layers.
A head shared across levels appears once per level in the file; its copies must be identical.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...errors import LeanfaceError
from ..registry import build_model, get_config, list_models
from .trace import ConvSite, conv_sites


@dataclass
class BatchNormParams:
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float


@dataclass
class GroupNormParams:
    groups: int
    gamma: np.ndarray
    beta: np.ndarray
    eps: float


@dataclass
class FileConv:
    """One conv call of an exported graph, with the unfolded norm that consumes its output (if any).

    weight: (O, I/groups, kh, kw); bias: (O,) or None. The geometry fields are checked against the
    model when the format states them (None: not checked).
    """

    weight: np.ndarray
    bias: np.ndarray | None
    norm: BatchNormParams | GroupNormParams | None = None
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None
    dilation: tuple[int, int] | None = None
    groups: int | None = None


def _same(a: FileConv, b: FileConv) -> bool:
    def fields(c: FileConv) -> list:
        return [c.weight, c.bias, type(c.norm), *([] if c.norm is None else vars(c.norm).values())]

    def eq(x, y) -> bool:
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            return isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and np.array_equal(x, y)
        return x == y

    fa, fb = fields(a), fields(b)
    return len(fa) == len(fb) and all(eq(x, y) for x, y in zip(fa, fb))


def _norm_mismatch(site: ConvSite, fc: FileConv) -> str | None:
    model_norm, file_norm = site.norm, fc.norm
    model_has = f"the model has {type(model_norm).__name__ if model_norm is not None else 'no norm'} there"
    if isinstance(model_norm, nn.GroupNorm):
        if not isinstance(file_norm, GroupNormParams):
            return "the model has GroupNorm after this conv, the file does not (GroupNorm cannot be folded into a conv)"
        if fc.bias is not None:
            return "the file has a conv bias before GroupNorm"
        if (file_norm.groups, len(file_norm.gamma)) != (model_norm.num_groups, model_norm.num_channels):
            return (f"file GroupNorm({file_norm.groups}, {len(file_norm.gamma)}), "
                    f"model GroupNorm({model_norm.num_groups}, {model_norm.num_channels})")
        if not np.isclose(file_norm.eps, model_norm.eps, rtol=1e-5, atol=0.0):
            return f"file GroupNorm eps {file_norm.eps:g}, model {model_norm.eps:g}"
        return None
    if isinstance(file_norm, GroupNormParams):
        return f"the file has GroupNorm after this conv, {model_has}"
    if isinstance(file_norm, BatchNormParams):
        if not isinstance(model_norm, nn.BatchNorm2d):
            return f"the file has BatchNorm after this conv, {model_has}"
        if fc.bias is not None:
            return "the file has a conv bias before BatchNorm; unsupported layout"
        return None
    if site.conv.bias is not None and fc.bias is None:
        return "no bias in the file"
    if model_norm is None and site.conv.bias is None and fc.bias is not None:
        return "the file has a bias the model cannot hold"
    return None


def _first_difference(sites: list[ConvSite], convs: list[FileConv]) -> str | None:
    first: dict[str, int] = {}
    for i, (site, fc) in enumerate(zip(sites, convs)):
        conv = site.conv
        if tuple(conv.weight.shape) != tuple(fc.weight.shape):
            return f"conv #{i} ({site.name}): file weight {tuple(fc.weight.shape)}, model {tuple(conv.weight.shape)}"
        for attr in ("stride", "padding", "dilation", "groups"):
            want, got = getattr(conv, attr), getattr(fc, attr)
            if got is not None and got != want:
                return f"conv #{i} ({site.name}): file {attr} {got}, model {want}"
        why = _norm_mismatch(site, fc)
        if why is not None:
            return f"conv #{i} ({site.name}): {why}"
        j = first.setdefault(site.name, i)
        if j != i and not _same(convs[j], fc):
            return f"conv #{i} ({site.name}) is shared with conv #{j} in the model, but the file holds different weights"
    return None


def mismatch(sites: list[ConvSite], scale_names: list[str], convs: list[FileConv],
             scales: list[float]) -> str | None:
    """Why `convs`/`scales` from a file do not fit the traced model, or None when they do."""
    why = _first_difference(sites, convs)
    if len(sites) != len(convs):
        count = f"{len(convs)} convs in the file, {len(sites)} in the model"
        return count if why is None else f"{count}; first difference: {why}"
    if why is not None:
        return why
    if len(scale_names) != len(scales):
        return f"{len(scales)} box Scale multipliers in the file, {len(scale_names)} in the model"
    return None


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32))


def fill_state(net: nn.Module, sites: list[ConvSite], scale_names: list[str], convs: list[FileConv],
               scales: list[float]) -> dict:
    """State dict of `net` with the file's tensors (call only after `mismatch` returned None)."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for site, fc in zip(sites, convs):
        state[f"{site.name}.weight"] = _t(fc.weight)
        norm = fc.norm
        if site.conv.bias is not None:
            state[f"{site.name}.bias"] = _t(fc.bias)
        elif isinstance(norm, GroupNormParams):
            state[f"{site.norm_name}.weight"] = _t(norm.gamma)
            state[f"{site.norm_name}.bias"] = _t(norm.beta)
        elif isinstance(norm, BatchNormParams):
            for key, val in zip(("weight", "bias", "running_mean", "running_var"),
                                (norm.gamma, norm.beta, norm.mean, norm.var)):
                state[f"{site.norm_name}.{key}"] = _t(val)
        elif isinstance(site.norm, nn.BatchNorm2d):
            # Folded BN: identity normalisation that adds the folded bias.
            c = fc.weight.shape[0]
            state[f"{site.norm_name}.weight"] = torch.ones(c)
            state[f"{site.norm_name}.bias"] = torch.zeros(c) if fc.bias is None else _t(fc.bias)
            state[f"{site.norm_name}.running_mean"] = torch.zeros(c)
            state[f"{site.norm_name}.running_var"] = torch.full((c,), 1.0 - site.norm.eps)
    for name, value in zip(scale_names, scales):
        state[f"{name}.scale"] = torch.tensor(value, dtype=torch.float32)
    return state


def match_zoo(path: str, kind: str, model: str | None, convs: list[FileConv], scales: list[float]):
    """(config, state_dict) of the SCRFD zoo model `model` (or the first one that fits) for a file's graph."""
    candidates = [model] if model else list_models("scrfd_*")
    reasons = []
    for name in candidates:
        cfg = get_config(name)
        if cfg.family != "scrfd":
            raise LeanfaceError(f"{path}: {kind} import supports SCRFD models, not {name}")
        net = build_model(cfg)
        sites, scale_names = conv_sites(net, repeats=True)
        why = mismatch(sites, scale_names, convs, scales)
        if why is None:
            return cfg, fill_state(net, sites, scale_names, convs, scales)
        reasons.append(why)
    if model:
        raise LeanfaceError(f"{path}: does not match {model}: {reasons[0]}")
    raise LeanfaceError(f"{path}: matches no SCRFD zoo model ({len(convs)} convs, {len(scales)} scales); "
                        f"pass --model to see the first difference")
