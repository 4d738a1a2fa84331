"""What a teacher costs inside a training step: float vs int8 teachers timed side by side on one thread.

    python bench/bench_teacher.py detect --teachers A.onnx B.onnx [--repeats 7]
    python bench/bench_teacher.py embed --teachers SFACE.onnx [--repeats 7]

detect: ms per 640x640 training view (the SCRFD crop size), through the ONNX Runtime backend the detection
task's collate uses. embed: ms per 112x112 face at batch 128, through the Embedder the embed task's collate
uses, with the bundled student's forward pass beside it. Calls are interleaved (A, B, A, B, ...) so a busy
machine slows each alike; printed: median ms and the 10-90% range, and each teacher's ratio to the first.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("task", choices=("detect", "embed"))
    ap.add_argument("--teachers", nargs="+", required=True)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    if args.task == "detect":
        from leanface.infer.detector import OnnxBackend

        runners = {t: OnnxBackend(t, threads=1) for t in args.teachers}
        x = rng.standard_normal((1, 3, 640, 640)).astype(np.float32)
        per = 1
        calls = {t: (lambda r=r: r(x)) for t, r in runners.items()}
    else:
        from leanface.recognize import Embedder

        x = rng.integers(0, 256, (128, 112, 112, 3), dtype=np.uint8)
        per = len(x)
        models = {t: Embedder(t, threads=1, batch_size=128) for t in args.teachers}
        models["student (bundled)"] = Embedder(threads=1, batch_size=128)
        calls = {t: (lambda m=m: m.embed(x)) for t, m in models.items()}
    for fn in calls.values():
        fn()  # warm-up
    times = {t: [] for t in calls}
    for _ in range(args.repeats):
        for t, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[t].append(1e3 * (time.perf_counter() - t0) / per)
    first = np.median(times[next(iter(times))])
    unit = "ms per 640x640 view" if args.task == "detect" else "ms per face"
    for t, v in times.items():
        lo, hi = np.percentile(v, [10, 90])
        print(f"{t}: {np.median(v):.1f} {unit} (10-90%: {lo:.1f}-{hi:.1f}), {np.median(v) / first:.2f}x the first")
    return 0


if __name__ == "__main__":
    sys.exit(main())
