"""int8 export: our float ONNX export, statically quantised by onnxruntime's tooling.

QDQ format, int8 weights per output channel, uint8 activations (the U8S8 pair that onnxruntime runs
on VNNI CPUs), scales calibrated on real images run through the model's own pre-processing. The
file keeps the leanface metadata (config, threshold), so `Detector` / `Embedder` run it like any
export.

Nodes that stay float, and why (measured on this CPU, docs/LAB_NOTES.md "int8"):
- convolutions that read fewer than 8 channels (the RGB stem): onnxruntime's int8 kernels pack the
  reduction in groups of channels, and a 3-channel 3x3 conv ran 2.8x slower in int8 than in float
  (7.5 vs 2.7 ms at 640x480, scrfd_500m_kps), more than the whole int8 gain of that model.
- everything onnxruntime does not quantise (shape arithmetic, the output reshapes).
"""
from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LeanfaceError
from ..files import atomic_write

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
DEFAULT_CALIB_IMAGES = 200
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Convolutions reading fewer input channels than this stay float (see the module docstring).
MIN_INT8_CONV_CHANNELS = 8


@dataclass(frozen=True)
class QuantReport:
    """What `export_int8` did: calibration images used / skipped, nodes quantised and kept float."""

    path: str
    method: str
    calib_images: int
    calib_skipped: tuple[str, ...]
    quantized_nodes: int
    float_nodes: tuple[str, ...]
    float_bytes: int
    int8_bytes: int


def calibration_files(calib: str | os.PathLike, count: int = DEFAULT_CALIB_IMAGES, seed: int = 0) -> list[Path]:
    """`count` images from the folder `calib` (searched recursively), a seeded random choice so that
    every event / identity of a dataset can be drawn, in a fixed order."""
    root = Path(calib)
    if not root.is_dir():
        raise LeanfaceError(f"{root}: calibration folder not found")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise LeanfaceError(f"calibration image count must be a whole number of at least 1, got {count!r}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise LeanfaceError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) to calibrate on")
    random.Random(seed).shuffle(files)
    return files[:count]


def _detector_input(cfg, size: int = 640) -> Callable[[np.ndarray], np.ndarray]:
    """Calibration tensors as the official test canvas makes them: long side 640, letterboxed."""
    from ..infer.preprocess import make_batch, place

    def prepare(rgb: np.ndarray) -> np.ndarray:
        placement, padded = place(rgb.shape[0], rgb.shape[1], size, True)
        return make_batch([rgb], [placement], padded, cfg.mean, cfg.std)

    return prepare


def _embedder_input(cfg) -> Callable[[np.ndarray], np.ndarray]:
    """Calibration tensors of aligned crops (other sizes resized to the input square)."""
    import cv2

    mean, std, side = np.asarray(cfg.mean, np.float32), np.asarray(cfg.std, np.float32), cfg.input_size

    def prepare(rgb: np.ndarray) -> np.ndarray:
        if rgb.shape[:2] != (side, side):
            rgb = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
        return ((rgb.astype(np.float32) - mean) / std).transpose(2, 0, 1)[None].copy()

    return prepare


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over decoded images (uint8, decoded once up front so that
    an unreadable file is skipped and named, never a failed calibration pass)."""

    def __init__(self, images: list[np.ndarray], prepare: Callable[[np.ndarray], np.ndarray], input_name: str):
        self.images, self.prepare, self.input_name = images, prepare, input_name
        self._it: Iterator[np.ndarray] = iter(images)

    def __len__(self) -> int:
        return len(self.images)

    def set_range(self, start_index: int, end_index: int) -> None:
        """onnxruntime's strided calibration: the next images[start:end] only (bounded memory; see _stride)."""
        self._it = iter(self.images[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        rgb = next(self._it, None)
        return None if rgb is None else {self.input_name: self.prepare(rgb)}


def _read_all(files: list[Path]) -> tuple[list[np.ndarray], list[str]]:
    from ..images import read_image

    images, skipped = [], []
    for path in files:
        try:
            images.append(read_image(path))
        except LeanfaceError as exc:
            skipped.append(str(exc))
    return images, skipped


def _stride(n: int, most: int = 8) -> int:
    """Images per calibration pass: onnxruntime's histogram calibrators otherwise keep every intermediate
    tensor of every image (~85 MB per 640x640 image here: 200 images ran out of 24 GB). It must divide n."""
    return next(k for k in range(min(most, n), 0, -1) if n % k == 0)


def float_nodes(model) -> list[str]:
    """Names of the nodes we keep float (see MIN_INT8_CONV_CHANNELS)."""
    inits = {i.name: i for i in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[1] not in inits:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if inits[node.input[1]].dims[1] * group < MIN_INT8_CONV_CHANNELS:
            keep.append(node.name)
    return keep


def export_int8(net, out: str | os.PathLike, calib: str | os.PathLike, *, count: int = DEFAULT_CALIB_IMAGES,
                method: str = "minmax", threshold: float | None = None, seed: int = 0,
                progress: bool = False) -> QuantReport:
    """Export `net` to ONNX and quantise it to int8 (QDQ), calibrated on `count` images of `calib`;
    written atomically to `out`."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..models import get_family
    from .onnx import INPUT_NAME, export_onnx

    if method not in CALIBRATION_METHODS:
        raise LeanfaceError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    files = calibration_files(calib, count, seed)
    embed = get_family(net.cfg.family).task == "embed"
    prepare = _embedder_input(net.cfg) if embed else _detector_input(net.cfg)
    with tempfile.TemporaryDirectory(prefix="leanface-int8-") as tmp:
        plain, pre, q = (Path(tmp) / n for n in ("float.onnx", "pre.onnx", "int8.onnx"))
        export_onnx(net, plain, threshold=threshold)
        # Graph optimisation + ONNX shape inference before calibrating, as onnxruntime recommends; symbolic
        # shape inference cannot resolve the detectors' dynamic height/width, so it is skipped.
        quant_pre_process(str(plain), str(pre), skip_symbolic_shape=True)
        keep = float_nodes(onnx.load(str(pre)))
        images, skipped = _read_all(files)
        if not images:
            raise LeanfaceError(f"{calib}: none of the {len(files)} calibration images could be read "
                                f"({skipped[0]})")
        reader = _CalibrationReader(images, prepare, INPUT_NAME)
        if progress:
            print(f"calibrating on {len(images)} images from {calib} ({method}) ...", file=sys.stderr)
        methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                   "entropy": CalibrationMethod.Entropy}
        with contextlib.redirect_stdout(sys.stderr):  # onnxruntime prints its progress; stdout stays ours
            quantize_static(str(pre), str(q), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=methods[method], nodes_to_exclude=keep,
                            extra_options={"CalibStridedMinMax": _stride(len(images))})
        model = onnx.load(str(q))
        # The pre-processing pass's own notes are not ours to ship; the leanface metadata is kept.
        kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith("onnx.")]
        del model.metadata_props[:]
        for key, value in kept:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        data = model.SerializeToString()
        float_size = plain.stat().st_size
    with atomic_write(out, binary=True) as f:
        f.write(data)
    quantized = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    return QuantReport(os.fspath(out), method, len(images), tuple(skipped), quantized, tuple(keep),
                       float_size, len(data))
