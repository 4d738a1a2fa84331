"""Official SCRFD ONNX files -> leanface weights.

The released graphs fold BatchNorm into conv biases and rename most tensors to numbers, so we
match convs by execution order and shape, not by name (see `match`).
"""
from __future__ import annotations

from ...errors import LeanfaceError
from .base import register_importer
from .match import BatchNormParams, FileConv, match_zoo


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
                bn = BatchNormParams(*(consts[n] for n in b.input[1:5]), eps)
            convs.append(FileConv(weight, bias, bn))
            conv_outputs.add(node.output[0])
        elif node.op_type == "Mul":
            a, b = node.input[0], node.input[1]
            if a in conv_outputs and b in consts and consts[b].size == 1:
                scales.append(float(consts[b].reshape(())))
            elif b in conv_outputs and a in consts and consts[a].size == 1:
                scales.append(float(consts[a].reshape(())))
    return convs, scales


@register_importer("onnx", _accepts)
def load_onnx(path: str, model: str | None):
    convs, scales = _read_graph(path)
    return match_zoo(path, "ONNX", model, convs, scales)
