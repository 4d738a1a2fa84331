"""Face embedders: aligned 112x112 RGB crops in, L2-normalised embeddings out, on PyTorch or ONNX Runtime.

A leanface checkpoint or export carries its config, so its input normalisation travels with it. A
foreign ONNX embedder gets its normalisation from the caller, else from the file's `mean` / `std`
metadata (comma-separated RGB), else raw 0-255 pixels (OpenCV SFace's convention), said once on stderr.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from .. import pretrained
from ..errors import LeanfaceError
from ..infer import onnx_session
from ..models import get_family
from ..models.registry import onnx_config, untrained_model_check
from .align import align_faces

INPUT_SIZE = 112
# Metadata key of an ONNX embedder's calibrated cosine threshold (read when present; written by
# leanface.export.export_onnx(threshold=...)).
THRESHOLD_KEY = "leanface.threshold"
# The bundled embedder, trained by us (README: "The bundled recognition model"); its ONNX export runs by
# default, with the LFW-calibrated threshold in its metadata.
DEFAULT_EMBEDDER = pretrained.default("embed").checkpoint_path
DEFAULT_EMBEDDER_ONNX = pretrained.default("embed").path


def _rgb_triple(value, name: str) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = [float(v) for v in value.split(",")]
        except ValueError:
            raise LeanfaceError(f"{name} must be one number or three comma-separated numbers (R,G,B), "
                                f"got {value!r}") from None
    arr = np.asarray(value, np.float32).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3 or not np.isfinite(arr).all():
        raise LeanfaceError(f"{name} must be one number or three (R,G,B), got {value!r}")
    if name == "std" and (arr <= 0).any():
        raise LeanfaceError(f"std must be positive, got {value!r}")
    return arr


def _clean_inputs(path: str) -> bytes:
    """The model with legacy graph inputs removed: inputs no node reads (SFace lists 29) and weights listed
    as inputs (which onnxruntime may not constant-fold: SFace's batch norms and int8 weights would be
    recomputed on every call)."""
    import onnx

    model = onnx.load(path)
    graph = model.graph
    if not any(node.op_type == "QuantizeLinear" for node in graph.node):
        _fold_weight_dequantization(graph)  # weight-only quantisation (SFace); a static int8 file stays int8
    used = {name for node in graph.node for name in node.input}
    weights = {i.name for i in graph.initializer}
    keep = [i for i in graph.input if i.name in used and i.name not in weights]
    if len(keep) != len(graph.input):
        del graph.input[:]
        graph.input.extend(keep)
    return model.SerializeToString()


def _fold_weight_dequantization(graph) -> None:
    """Replace DequantizeLinear nodes of constant weights by their float result. onnxruntime keeps such
    nodes (for QDQ fusion) and, with no quantised activations to fuse with, dequantises every weight on
    every call; SFace's blockwise int8 weights cost ~half its time so. The arithmetic is unchanged:
    (q - zero_point) * scale, per tensor, per axis or per block, as the operator defines it."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    folded, keep = [], []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or not all(x in inits for x in node.input if x):
            keep.append(node)
            continue
        q = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32) if len(node.input) > 2 and node.input[2] \
            else np.zeros_like(scale)
        attrs = {a.name: a.i for a in node.attribute}
        axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
        if scale.ndim and q.ndim:
            axis %= q.ndim
            if block:
                scale, zero = (np.repeat(t, block, axis=axis).take(np.arange(q.shape[axis]), axis=axis)
                               for t in (scale, zero))
            else:
                shape = [1] * q.ndim
                shape[axis] = -1
                scale, zero = scale.reshape(shape), zero.reshape(shape)
        folded.append(numpy_helper.from_array(((q - zero) * scale).astype(np.float32), node.output[0]))
    if folded:
        del graph.node[:]
        graph.node.extend(keep)
        graph.initializer.extend(folded)


class Embedder:
    """weights: a leanface checkpoint (.pt) of an embedder family, an ONNX embedder with a 112x112
    3-channel RGB input (NCHW or NHWC; fixed or dynamic batch) and one (B, D) output, or the name of trained
    weights in `leanface models` (e.g. "sface": its file, normalisation and threshold).
    model: zoo name or config (with weights=None: the bundled weights for the bundled model's name; another
    model untrained only with random_init=True, for shapes and timing).
    mean, std: input normalisation, (pixel - mean) / std per RGB channel (None: what the file says).
    flip: embed each crop and its mirror image and average them (the usual LFW test-time option).
    """

    def __init__(self, weights: str | os.PathLike | None = None, *, model=None, mean=None, std=None,
                 flip: bool = False, batch_size: int = 32, threads: int | None = None, random_init: bool = False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise LeanfaceError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise LeanfaceError(f"threads must be an integer of at least 1, or None, got {threads!r}")
        named = None
        if isinstance(weights, str) and not os.path.exists(weights):
            named = pretrained.get(weights, "embed")
        if named is not None:
            weights = named.path
            mean = named.mean if mean is None else mean
            std = named.std if std is None else std
        mean, std = _rgb_triple(mean, "mean"), _rgb_triple(std, "std")
        self.flip, self.batch_size = bool(flip), batch_size
        self.weights = None if weights is None else os.fspath(weights)
        self.threshold: float | None = None
        self.input_size = INPUT_SIZE
        model = untrained_model_check(model, weights, random_init, DEFAULT_EMBEDDER_ONNX.stem)
        if weights is None and model is None:
            if not DEFAULT_EMBEDDER_ONNX.is_file():
                raise LeanfaceError(f"{DEFAULT_EMBEDDER_ONNX}: the bundled embedder is missing; pass weights "
                                    f"(a .pt or .onnx embedder)")
            weights = DEFAULT_EMBEDDER_ONNX
            self.weights = os.fspath(weights)
        if self.weights is not None and self.weights.lower().endswith(".onnx"):
            self._open_onnx(self.weights, mean, std, threads)
        else:
            from ..infer.torch_backend import TorchBackend

            self._net = TorchBackend(model, weights, threads)
            net, self._session = self._net.net, None
            if get_family(net.cfg.family).task != "embed":
                raise LeanfaceError(f"{self.weights or net.cfg.name}: {net.cfg.name} is not a face embedder "
                                    f"(its task is {get_family(net.cfg.family).task!r})")
            self.name = net.cfg.name
            self.input_size = net.cfg.input_size
            self.mean = np.asarray(net.cfg.mean, np.float32) if mean is None else mean
            self.std = np.asarray(net.cfg.std, np.float32) if std is None else std
            self.batched, self.layout = True, "NCHW"
        if named is not None:
            self.name = named.name
            self.threshold = named.threshold if self.threshold is None else self.threshold
        self.dim = int(self.embed(np.zeros((1, self.input_size, self.input_size, 3), np.uint8)).shape[1])

    def _open_onnx(self, path: str, mean, std, threads) -> None:
        if not os.path.isfile(path):
            raise LeanfaceError(f"{path}: ONNX file not found")
        try:
            self._session = onnx_session(_clean_inputs(path), threads)
        except Exception as exc:  # noqa: BLE001 - onnx / onnxruntime raise their own exception types
            raise LeanfaceError(f"{path}: onnxruntime cannot load it ({type(exc).__name__})") from None
        self._net = None
        first = self._session.get_inputs()[0]
        shape = list(first.shape)
        if len(shape) != 4 or (3 not in (shape[1], shape[3])):
            raise LeanfaceError(f"{path}: input {first.name} has shape {shape}; not a face embedder "
                                f"(expected a 112x112 RGB image batch)")
        self.layout = "NCHW" if shape[1] == 3 else "NHWC"
        spatial = shape[2:4] if self.layout == "NCHW" else shape[1:3]
        if any(isinstance(s, int) and s != INPUT_SIZE for s in spatial):
            raise LeanfaceError(f"{path}: input {first.name} is {spatial[0]}x{spatial[1]}; not a 112x112 face embedder")
        outputs = self._session.get_outputs()
        if len(outputs) != 1 or len(outputs[0].shape) != 2:
            raise LeanfaceError(f"{path}: {len(outputs)} output(s) of rank {len(outputs[0].shape)}; not a face embedder "
                                f"(one (batch, D) output expected)")
        self._input = first.name
        self.batched = not isinstance(shape[0], int) or shape[0] != 1
        # Inputs that nodes do use but nobody can give (none in the files we know): zeros.
        self._extra = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
                       for i in self._session.get_inputs()[1:]}
        meta = self._session.get_modelmeta().custom_metadata_map
        cfg = onnx_config(meta)
        file_mean = _rgb_triple(meta.get("mean", cfg.mean if cfg is not None else None), "mean")
        file_std = _rgb_triple(meta.get("std", cfg.std if cfg is not None else None), "std")
        if (mean is None and file_mean is None) or (std is None and file_std is None):
            print(f"leanface: {path} does not say its input normalisation; assuming raw RGB pixels 0-255 "
                  f"(pass mean/std, --mean/--std, if it expects others)", file=sys.stderr)
        self.mean = mean if mean is not None else file_mean if file_mean is not None else np.zeros(3, np.float32)
        self.std = std if std is not None else file_std if file_std is not None else np.ones(3, np.float32)
        self.name = cfg.name if cfg is not None else os.path.basename(path)
        if THRESHOLD_KEY in meta:
            self.threshold = float(meta[THRESHOLD_KEY])

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._net is not None:
            return self._net(x)[0]
        if self.layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        try:
            if self.batched:
                out = self._session.run(None, {self._input: x, **self._extra})[0]
            else:
                out = np.concatenate([self._session.run(None, {self._input: x[i:i + 1], **self._extra})[0]
                                      for i in range(len(x))])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise LeanfaceError(f"{self.weights}: onnxruntime cannot run it on {tuple(x.shape)} crops "
                                f"(not a face embedder? {first[:160]})") from None
        out = np.asarray(out, np.float32)
        if out.ndim != 2 or len(out) != len(x):
            raise LeanfaceError(f"{self.weights}: output of shape {out.shape} for {len(x)} crops; not a face embedder "
                                f"(one vector per crop expected)")
        return out

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(K, S, S, 3) uint8 RGB aligned crops -> (K, D) float32 L2-normalised embeddings."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        size = self.input_size
        if crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
            raise LeanfaceError(f"embed expects (K, {size}, {size}, 3) RGB crops, got {crops.shape}")
        out = []
        for start in range(0, len(crops), self.batch_size):
            x = crops[start:start + self.batch_size].astype(np.float32)
            x = np.ascontiguousarray(((x - self.mean) / self.std).transpose(0, 3, 1, 2))
            e = self._normalise(self._run(x))
            if self.flip:
                e = self._normalise(e + self._normalise(self._run(np.ascontiguousarray(x[..., ::-1]))))
            out.append(e)
        return np.concatenate(out) if out else np.zeros((0, getattr(self, "dim", 0)), np.float32)

    @staticmethod
    def _normalise(e: np.ndarray) -> np.ndarray:
        return (e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def embed_faces(self, image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        """Embeddings of the faces of one RGB image, aligned from their five landmarks."""
        return self.embed(align_faces(image, landmarks, self.input_size))
