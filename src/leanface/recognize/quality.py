"""Face-quality scoring: aligned 112x112 crops in, one quality in (0, 1) per face out (QAN++'s weights).

Runs a quality-task checkpoint (.pt, e.g. `leanface train --model qualitynet`'s model.pt) on PyTorch, or
its ONNX export on ONNX Runtime.
"""
from __future__ import annotations

import os

import numpy as np

from .. import pretrained
from ..errors import LeanfaceError
from ..infer import onnx_session
from ..models import get_family
from ..models.registry import onnx_config


# The bundled quality net, trained by us (README: "Faces through video"; training/qualitynet_r1/).
DEFAULT_QUALITY = pretrained.default("quality").path


class QualityScorer:
    """weights: a quality-task checkpoint (.pt) or its ONNX export (None: the bundled quality net)."""

    def __init__(self, weights: str | os.PathLike | None = None, *, batch_size: int = 64, threads: int | None = None):
        self.weights = os.fspath(DEFAULT_QUALITY if weights is None else weights)
        self.batch_size = batch_size
        if not os.path.isfile(self.weights):
            raise LeanfaceError(f"{self.weights}: quality weights not found")
        if self.weights.lower().endswith(".onnx"):
            try:
                self._session = onnx_session(self.weights, threads)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
                raise LeanfaceError(f"{self.weights}: onnxruntime cannot load it ({type(exc).__name__})") from None
            meta = self._session.get_modelmeta().custom_metadata_map
            cfg = onnx_config(meta)
            if cfg is None:
                raise LeanfaceError(f"{self.weights}: no leanface config inside; not a leanface quality export")
            self._net = None
        else:
            from ..infer.torch_backend import TorchBackend

            self._net = TorchBackend(None, self.weights, threads)
            cfg = self._net.net.cfg
        if get_family(cfg.family).task != "quality":
            raise LeanfaceError(f"{self.weights}: {cfg.name} is not a face-quality network "
                                f"(its task is {get_family(cfg.family).task!r})")
        self.config = cfg
        self._mean = np.asarray(cfg.mean, np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(cfg.std, np.float32).reshape(1, 3, 1, 1)

    def score(self, crops: np.ndarray) -> np.ndarray:
        """(K, S, S, 3) uint8 RGB aligned crops -> (K,) float32 qualities in (0, 1)."""
        crops = np.asarray(crops)
        side = self.config.input_size
        if crops.ndim != 4 or crops.shape[1:] != (side, side, 3):
            raise LeanfaceError(f"quality needs (K, {side}, {side}, 3) aligned crops, got shape {crops.shape}")
        out = []
        for s in range(0, len(crops), self.batch_size):
            x = (crops[s:s + self.batch_size].transpose(0, 3, 1, 2).astype(np.float32) - self._mean) / self._std
            if self._net is not None:
                out.append(self._net(x)[0][:, 0])
            else:
                out.append(self._session.run(None, {self._session.get_inputs()[0].name: x})[0][:, 0])
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
