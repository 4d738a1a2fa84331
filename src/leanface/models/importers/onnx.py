"""Official SCRFD ONNX files -> leanface weights.

The released graphs fold BatchNorm into conv biases and rename most tensors to numbers, so we
match convs by execution order and shape, not by name. A folded conv+BN pair is loaded as the
conv weight plus an identity BN (gamma 1, mean 0, var 1 - eps) carrying the folded bias, which
keeps the mmdet module tree and reproduces the graph's arithmetic.
"""
from __future__ import annotations

import numpy as np
import torch

from ...errors import LeanfaceError
from ..registry import build_model, get_config, list_models
from . import register_importer
from .trace import conv_sites


def _accepts(path: str) -> bool:
    return path.lower().endswith(".onnx")


def _read_graph(path: str):
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(path).graph
    except Exception as exc:  # noqa: BLE001 - protobuf raises many types for a bad file
        raise LeanfaceError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    convs, scales = [], []
    conv_outputs = set()
    for node in graph.node:
        if node.op_type == "Conv":
            weight = consts[node.input[1]]
            bias = consts[node.input[2]] if len(node.input) > 2 else None
            bn = None
            users = consumers.get(node.output[0], [])
            if len(users) == 1 and users[0].op_type == "BatchNormalization":
                b = users[0]
                eps = next((a.f for a in b.attribute if a.name == "epsilon"), 1e-5)
                bn = tuple(consts[n] for n in b.input[1:5]) + (eps,)
            convs.append((weight, bias, bn))
            conv_outputs.add(node.output[0])
        elif node.op_type == "Mul":
            a, b = node.input[0], node.input[1]
            if a in conv_outputs and b in consts and consts[b].size == 1:
                scales.append(float(consts[b].reshape(())))
            elif b in conv_outputs and a in consts and consts[a].size == 1:
                scales.append(float(consts[a].reshape(())))
    return convs, scales


def _mismatch(sites, scale_names, convs, scales) -> str | None:
    if len(sites) != len(convs):
        return f"{len(convs)} convs in the file, {len(sites)} in the model"
    for i, (site, (w, _, _)) in enumerate(zip(sites, convs)):
        if tuple(site.conv.weight.shape) != tuple(w.shape):
            return (f"conv #{i} ({site.name}): file weight {tuple(w.shape)}, "
                    f"model {tuple(site.conv.weight.shape)}")
    if len(scale_names) != len(scales):
        return f"{len(scales)} box Scale multipliers in the file, {len(scale_names)} in the model"
    return None


def _fill(net, sites, scale_names, convs, scales, path: str) -> dict:
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for site, (w, b, bn) in zip(sites, convs):
        state[f"{site.name}.weight"] = torch.from_numpy(np.array(w, dtype=np.float32))
        has_bias = site.conv.bias is not None
        if bn is not None:  # unfolded graph: Conv -> BatchNormalization
            if site.norm is None or not isinstance(site.norm, torch.nn.BatchNorm2d):
                raise LeanfaceError(f"{path}: BatchNorm after {site.name} but the model has none there")
            gamma, beta, mean, var, _ = bn
            for key, val in zip(("weight", "bias", "running_mean", "running_var"), (gamma, beta, mean, var)):
                state[f"{site.norm_name}.{key}"] = torch.from_numpy(np.array(val, dtype=np.float32))
            if b is not None:
                raise LeanfaceError(f"{path}: conv before BatchNorm at {site.name} has a bias; unsupported layout")
        elif has_bias:
            if b is None:
                raise LeanfaceError(f"{path}: {site.name} has no bias in the file")
            state[f"{site.name}.bias"] = torch.from_numpy(np.array(b, dtype=np.float32))
        elif isinstance(site.norm, torch.nn.BatchNorm2d):
            # Folded BN: identity normalisation that adds the folded bias.
            c = w.shape[0]
            eps = site.norm.eps
            bias = np.zeros(c, np.float32) if b is None else np.array(b, dtype=np.float32)
            state[f"{site.norm_name}.weight"] = torch.ones(c)
            state[f"{site.norm_name}.bias"] = torch.from_numpy(bias)
            state[f"{site.norm_name}.running_mean"] = torch.zeros(c)
            state[f"{site.norm_name}.running_var"] = torch.full((c,), 1.0 - eps)
        else:
            raise LeanfaceError(f"{path}: {site.name} is followed by {type(site.norm).__name__}, which an ONNX "
                                f"graph cannot hold folded; use the mmdet or ncnn weights for this model")
    for name, value in zip(scale_names, scales):
        state[f"{name}.scale"] = torch.tensor(value, dtype=torch.float32)
    return state


@register_importer("onnx", _accepts)
def load_onnx(path: str, model: str | None):
    convs, scales = _read_graph(path)
    candidates = [model] if model else list_models("scrfd_*")
    reasons = []
    for name in candidates:
        cfg = get_config(name)
        if cfg.family != "scrfd":
            raise LeanfaceError(f"{path}: ONNX import supports SCRFD models, not {name}")
        net = build_model(cfg)
        sites, scale_names = conv_sites(net)
        why = _mismatch(sites, scale_names, convs, scales)
        if why is None:
            return cfg, _fill(net, sites, scale_names, convs, scales, path)
        reasons.append(f"{name}: {why}")
    if model:
        raise LeanfaceError(f"{path}: does not match {model}: {reasons[0]}")
    raise LeanfaceError(f"{path}: matches no SCRFD zoo model ({len(convs)} convs, {len(scales)} scales); "
                        f"pass --model to see the first difference")
