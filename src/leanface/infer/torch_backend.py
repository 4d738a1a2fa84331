"""The PyTorch backend of the Detector (a .pt checkpoint): imported only when one is used, since torch
takes longer to import than the whole ONNX Runtime path takes to start."""
from __future__ import annotations

import numpy as np
import torch

from ..models import create_model


class TorchBackend:
    """A leanface checkpoint (or a zoo model) in eager PyTorch, returning the model's export outputs."""

    def __init__(self, model, weights, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.net = create_model(model, weights).eval()
        self.batched = True

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            return [o.numpy() for o in self.net.forward_export(torch.from_numpy(batch))]
