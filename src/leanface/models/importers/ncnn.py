"""Official SCRFD ncnn files (`.param` text graph + `.bin` weights) -> leanface weights.

Format facts (ncnn docs "param and model file structure", "operation param weight table"):
- .param: magic 7767517, then "<layer count> <blob count>", then one layer per line:
  `type name n_in n_out in_blobs... out_blobs... key=value...`; keys <= -23300 hold arrays.
- .bin: each layer's weights in .param order, no header. A conv stores its weight as a 4-byte
  tag (0 = float32, 0x01306B47 = float16 padded to 4 bytes, others = quantised) + data, then
  the bias as raw float32 (no tag); GroupNorm stores gamma then beta as raw float32.
The released SCRFD files fold BatchNorm into conv biases but keep GroupNorm (with its affine
parameters), store conv weights as float16 (truncated from float32: up to 2^-10 relative error
against the ONNX copies of the _kps models), and give the box Scale as a scalar BinaryOp Mul
printed with 7 significant digits. They unroll the shared GN head once per level.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ...errors import LeanfaceError
from .base import register_importer
from .match import FileConv, GroupNormParams, match_zoo

MAGIC = 7767517
TAG_FP32 = 0x00000000
TAG_FP16 = 0x01306B47
_ARRAY_KEY = -23300
# Layers of the SCRFD graphs that carry no weights in the .bin (anything else is refused, since
# an unknown layer's weights would shift every later offset).
_NO_WEIGHTS = {"Input", "Split", "ReLU", "Interp", "BinaryOp", "Pooling", "Sigmoid"}
_BINARY_MUL = 2


@dataclass(frozen=True)
class Layer:
    """One .param line. params: key -> int, float or list (array keys are stored by index, 0..19)."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict
    line: int


def _paths(path: str) -> tuple[str, str]:
    stem, ext = os.path.splitext(path)
    return (path, stem + ".bin") if ext.lower() == ".param" else (stem + ".param", path)


def _accepts(path: str) -> bool:
    stem, ext = os.path.splitext(path)
    ext = ext.lower()
    return ext == ".param" or (ext == ".bin" and os.path.isfile(stem + ".param"))


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        return float(text)


def read_param(path: str) -> list[Layer]:
    """Parse an ncnn .param file; LeanfaceError names the file and line at fault."""
    try:
        with open(path, encoding="ascii") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise LeanfaceError(f"{path}: ncnn .param file not found") from None
    except UnicodeDecodeError:
        raise LeanfaceError(f"{path}: not a text ncnn .param file") from None
    if not lines or lines[0].strip() != str(MAGIC):
        raise LeanfaceError(f"{path}:1: not an ncnn .param file (magic number {MAGIC} expected)")
    try:
        n_layers, _ = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise LeanfaceError(f"{path}:2: expected '<layer count> <blob count>'") from None
    layers = []
    for lineno, text in enumerate(lines[2:], start=3):
        tok = text.split()
        if not tok:
            continue
        try:
            n_in, n_out = int(tok[2]), int(tok[3])
            blobs = tok[4:4 + n_in + n_out]
            if len(blobs) != n_in + n_out:
                raise ValueError
            params = {}
            for item in tok[4 + n_in + n_out:]:
                key_text, value = item.split("=", 1)
                key = int(key_text)
                if key <= _ARRAY_KEY:  # "[count],v1,v2,..."
                    params[_ARRAY_KEY - key] = [_number(v) for v in value.split(",")[1:]]
                elif "," in value:
                    params[key] = [_number(v) for v in value.split(",")]
                else:
                    params[key] = _number(value)
        except (IndexError, ValueError):
            raise LeanfaceError(f"{path}:{lineno}: malformed layer line") from None
        layers.append(Layer(tok[0], tok[1], tuple(blobs[:n_in]), tuple(blobs[n_in:]), params, lineno))
    if len(layers) != n_layers:
        raise LeanfaceError(f"{path}: header says {n_layers} layers, the file has {len(layers)}")
    return layers


class _Weights:
    """Sequential reader over a .bin file; errors name the layer being read."""

    def __init__(self, path: str):
        self.path = path
        try:
            with open(path, "rb") as f:
                self.data = f.read()
        except FileNotFoundError:
            raise LeanfaceError(f"{path}: ncnn .bin weights file not found (expected beside the .param)") from None
        self.offset = 0

    def _take(self, nbytes: int, layer: Layer) -> bytes:
        if self.offset + nbytes > len(self.data):
            raise LeanfaceError(f"{self.path}: truncated: {len(self.data)} bytes, weights of layer {layer.name} "
                                f"(.param line {layer.line}) need bytes {self.offset}..{self.offset + nbytes}")
        chunk = self.data[self.offset:self.offset + nbytes]
        self.offset += nbytes
        return chunk

    def raw(self, n: int, layer: Layer) -> np.ndarray:
        """n untagged float32 values."""
        return np.frombuffer(self._take(4 * n, layer), dtype="<f4").astype(np.float32)

    def tagged(self, n: int, layer: Layer) -> np.ndarray:
        """n values after a storage tag (float32 or float16; float16 is padded to 4 bytes)."""
        tag = int.from_bytes(self._take(4, layer), "little")
        if tag == TAG_FP32:
            return self.raw(n, layer)
        if tag == TAG_FP16:
            half = np.frombuffer(self._take(-(-2 * n // 4) * 4, layer)[:2 * n], dtype="<f2")
            return half.astype(np.float32)
        raise LeanfaceError(f"{self.path}: weights of layer {layer.name} (.param line {layer.line}) have storage "
                            f"tag 0x{tag:08X} at byte {self.offset - 4}; only float32 and float16 are supported "
                            f"(a corrupt .bin, or one from another model, also reads like this)")


def _conv(layer: Layer, weights: _Weights, param_path: str) -> FileConv:
    p = layer.params
    if p.get(8, 0):
        raise LeanfaceError(f"{param_path}:{layer.line}: {layer.name} is int8-quantised; not supported")
    out, kw = p.get(0, 0), p.get(1, 0)
    kh = p.get(11, kw)
    dil = (p.get(12, p.get(2, 1)), p.get(2, 1))
    stride = (p.get(13, p.get(3, 1)), p.get(3, 1))
    left = p.get(4, 0)
    pads = (p.get(14, left), p.get(16, p.get(14, left)), left, p.get(15, left))  # top, bottom, left, right
    groups = p.get(7, 1) if layer.type == "ConvolutionDepthWise" else 1
    size = p.get(6, 0)
    if len(layer.inputs) != 1 or len(layer.outputs) != 1:
        raise LeanfaceError(f"{param_path}:{layer.line}: {layer.name}: a convolution needs one input and one output")
    if min(out, kw, kh) <= 0 or size % (out * kh * kw) or min(pads) < 0:
        raise LeanfaceError(f"{param_path}:{layer.line}: {layer.name}: unsupported convolution parameters")
    if pads[0] != pads[1] or pads[2] != pads[3]:
        raise LeanfaceError(f"{param_path}:{layer.line}: {layer.name}: asymmetric padding is not supported")
    weight = weights.tagged(size, layer).reshape(out, size // (out * kh * kw), kh, kw)
    bias = weights.raw(out, layer) if p.get(5, 0) else None
    return FileConv(weight, bias, stride=stride, padding=(pads[0], pads[2]), dilation=dil, groups=groups)


def read_graph(param_path: str, bin_path: str) -> tuple[list[FileConv], list[float]]:
    """Convs in file order (with the GroupNorm that consumes each) and the box Scale values."""
    layers = read_param(param_path)
    weights = _Weights(bin_path)
    convs: list[FileConv] = []
    by_output: dict[str, FileConv] = {}
    scales: list[float] = []
    for layer in layers:
        if layer.type in ("Convolution", "ConvolutionDepthWise"):
            fc = _conv(layer, weights, param_path)
            convs.append(fc)
            by_output[layer.outputs[0]] = fc
        elif layer.type == "GroupNorm":
            p = layer.params
            groups, channels, eps = p.get(0, 1), p.get(1, 0), float(p.get(2, 0.001))
            fc = by_output.get(layer.inputs[0]) if layer.inputs else None
            if fc is None or fc.norm is not None or not p.get(3, 1):
                raise LeanfaceError(f"{param_path}:{layer.line}: {layer.name}: only an affine GroupNorm directly "
                                    f"after a convolution is supported")
            fc.norm = GroupNormParams(groups, weights.raw(channels, layer), weights.raw(channels, layer), eps)
        elif layer.type == "BinaryOp":
            p = layer.params
            if p.get(0, 0) == _BINARY_MUL and p.get(1, 0) and layer.inputs and layer.inputs[0] in by_output:
                scales.append(float(p.get(2, 0.0)))
        elif layer.type not in _NO_WEIGHTS:
            raise LeanfaceError(f"{param_path}:{layer.line}: layer type {layer.type} does not occur in SCRFD "
                                f"graphs; not supported")
    left = len(weights.data) - weights.offset
    if left:
        raise LeanfaceError(f"{bin_path}: {left} bytes left after the last layer's weights; "
                            f"this .bin does not belong to {os.path.basename(param_path)}")
    return convs, scales


@register_importer("ncnn", _accepts)
def load_ncnn(path: str, model: str | None):
    param_path, bin_path = _paths(path)
    convs, scales = read_graph(param_path, bin_path)
    return match_zoo(param_path, "ncnn", model, convs, scales)
