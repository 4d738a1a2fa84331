"""ONNX export of any registered model: its `forward_export` outputs (SCRFD: the official layout,
input `input.1`, outputs score_8 ... kps_32; the SSD families: loc, score; embedders: `embedding`,
(B, D), L2-normalised).

Detectors: batch, height and width are dynamic. Embedders: the batch is dynamic, the input is the
config's fixed square. The model config (with the input normalisation) is embedded as metadata so the
Detector or the Recognizer can run the file alone; official-layout consumers simply ignore it.
"""
from __future__ import annotations

import io
import json
import os

import torch
from torch import nn

from ..files import atomic_write

INPUT_NAME = "input.1"
OPSET = 17


class _SlopeMax(nn.Module):
    """PReLU written as max(x, a * x), exact when every slope a <= 1: onnxruntime runs it ~1.6x faster
    than its PRelu kernel (which also forces layout reorders around every activation of MobileFaceNet)."""

    def __init__(self, prelu: nn.PReLU):
        super().__init__()
        self.register_buffer("a", prelu.weight.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(x, x * self.a)


def _fast_activations(net: nn.Module) -> nn.Module:
    """A copy of `net` whose PReLUs with slopes <= 1 and a 4-d input are `_SlopeMax` (the same function)."""
    import copy

    net = copy.deepcopy(net)
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.PReLU) and child.num_parameters > 1 and float(child.weight.detach().max()) <= 1.0:
                setattr(module, name, _SlopeMax(child))
    return net


class _ExportView(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        return self.net.forward_export(x)


# Metadata key of an embedder's decision threshold (cosine), read back by leanface.recognize.Embedder.
THRESHOLD_KEY = "leanface.threshold"


def export_onnx(net: nn.Module, path: str | os.PathLike, sample_hw: tuple[int, int] = (640, 640),
                threshold: float | None = None) -> None:
    """Write `net` (eval mode) to `path` atomically. Detector outputs are (B, N_s, C), embedder outputs
    (B, D); names `net.output_names`. threshold: an embedder's calibrated same-person cosine, stored in
    the metadata (what `Recognizer.verify` uses by default)."""
    import onnx

    from ..models import get_family

    net = _fast_activations(net.eval())
    names = list(net.output_names)
    if get_family(net.cfg.family).task == "embed":
        sample_hw = (net.cfg.input_size, net.cfg.input_size)
        dynamic = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}}
    else:
        dynamic = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
        dynamic.update({n: {0: "batch", 1: f"anchors_{n}"} for n in names})
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(_ExportView(net).eval(), torch.zeros(1, 3, *sample_hw), buf, input_names=[INPUT_NAME],
                          output_names=names, dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    from ..models.registry import ONNX_CONFIG_KEY

    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_CONFIG_KEY, json.dumps(net.cfg.to_dict())
    if threshold is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = THRESHOLD_KEY, repr(float(threshold))
    onnx.checker.check_model(model)
    with atomic_write(path, binary=True) as f:
        f.write(model.SerializeToString())
