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
    """Model-only time on the prepared batch and the end-to-end call (read, pre-process, model, decode,
    NMS), timed in alternation so that load on a shared machine hits both alike: medians and spread."""
    from ..infer.image import read_image
    from ..infer.preprocess import make_batch, place

    rgb = read_image(image) if isinstance(image, str) else image
    placement, padded = place(rgb.shape[0], rgb.shape[1], detector.size, detector.letterbox)
    batch = make_batch([rgb], [placement], padded, detector.config.mean, detector.config.std)
    calls = {"model": lambda: detector.backend(batch), "end_to_end": lambda: detector(image)}
    times: dict[str, list[float]] = {k: [] for k in calls}
    for fn in calls.values():
        for _ in range(3):
            fn()
    for _ in range(repeats):
        for k, fn in calls.items():
            t = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t) * 1000)
    out = {"input": f"{padded[1]}x{padded[0]}", "backend": type(detector.backend).__name__.replace("Backend", "")}
    for k, v in times.items():
        q = statistics.quantiles(v, n=10) if len(v) > 1 else v * 9
        out[f"{k}_ms"], out[f"{k}_p10_ms"], out[f"{k}_p90_ms"] = statistics.median(v), q[0], q[-1]
    return out


def interleaved_times(fns: dict[str, Callable[[], object]], rounds: int, inner: int = 3) -> dict[str, list[float]]:
    """ms per call of each function in every round, timed in interleaved rounds after a warm-up, so
    background load on a shared machine hits every contender alike (per-round ratios stay meaningful)."""
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
    return samples


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int, inner: int = 3) -> dict[str, float]:
    """Median ms per call of each function (see interleaved_times)."""
    return {k: statistics.median(v) for k, v in interleaved_times(fns, rounds, inner).items()}


def bench_embedder(embedder, recognizer=None, image=None, repeats: int = 20) -> dict:
    """ms per face of `embedder` at batch 1 and 32 (aligned crops), and ms per photo of the whole
    recognizer call (detect, align, embed) when given: medians with the 10-90% range, timed in alternation."""
    import numpy as np

    size = embedder.input_size
    crops = np.random.default_rng(0).integers(0, 256, (32, size, size, 3), dtype=np.uint8)
    calls = {"batch1": (lambda: embedder.embed(crops[:1]), 1), "batch32": (lambda: embedder.embed(crops), 32)}
    if recognizer is not None:
        calls["photo"] = (lambda: recognizer(image), 1)
    times: dict[str, list[float]] = {k: [] for k in calls}
    for fn, _ in calls.values():
        fn()
    for r in range(repeats):
        for k, (fn, n) in calls.items():
            if k == "batch32" and r % 4:  # 32 crops per call: a quarter of the rounds is enough
                continue
            t = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t) * 1000 / n)
    out = {}
    for k, v in times.items():
        q = statistics.quantiles(v, n=10) if len(v) > 1 else v * 9
        out[f"{k}_ms"], out[f"{k}_p10_ms"], out[f"{k}_p90_ms"] = statistics.median(v), q[0], q[-1]
    return out
