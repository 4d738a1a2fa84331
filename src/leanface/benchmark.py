"""Timing helpers shared by `leanface bench` and the scripts in bench/ (medians, warm-up first)."""
from __future__ import annotations

import statistics
import time
from typing import Callable


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


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int, inner: int = 3) -> dict[str, float]:
    """Median ms per call of each function, timed in interleaved rounds after a warm-up, so
    background load on a shared machine hits every contender alike."""
    for fn in fns.values():
        for _ in range(2):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[k].append((time.perf_counter() - t) * 1000 / inner)
    return {k: statistics.median(v) for k, v in samples.items()}

