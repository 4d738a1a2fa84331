"""Timing helpers shared by `leanface bench` and the scripts in bench/ (medians, warm-up first)."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np


def sample_image() -> np.ndarray:
    """The bundled sample: the public-domain NASA astronaut portrait shipped in scikit-image (RGB, 512x512)."""
    try:
        from skimage import data
    except ImportError:
        from .errors import LeanfaceError

        raise LeanfaceError("the sample image needs scikit-image (pip install scikit-image)") from None
    return data.astronaut()


def median_ms(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def bench_detector(detector, image, repeats: int = 20) -> dict:
    """Model-only time on the prepared batch, and the end-to-end call (read, pre-process, model, decode, NMS)."""
    from .infer.image import read_image
    from .infer.preprocess import make_batch, place

    rgb = read_image(image) if isinstance(image, str) else image
    placement, padded = place(rgb.shape[0], rgb.shape[1], detector.size, detector.letterbox)
    batch = make_batch([rgb], [placement], padded, detector.config.mean, detector.config.std)
    return {
        "model_ms": median_ms(lambda: detector.backend(batch), repeats),
        "end_to_end_ms": median_ms(lambda: detector(image), repeats),
        "input": f"{padded[1]}x{padded[0]}",
        "backend": type(detector.backend).__name__.replace("Backend", ""),
    }
