"""Training images/s: the landed CPU path versus the fast path, side by side in one run.

    python bench/bench_train.py [--data ../shared/data/widerface] [--sizes 640 512] [--repeats 3]

Both paths train scrfd_500m_kps with the same recipe (batch 8 per step, official augmentation) on
the same images, alternating path by path within each repeat so that machine load hits both alike:
  landed  one process with all cores' threads, float32, NCHW, one DataLoader worker (the trainer's
          CPU default before the fast path, as the bundled model was trained)
  fast    the default now: one single-thread DDP rank per core (gloo), channels_last, bfloat16
          autocast where the CPU has bf16 instructions, one DataLoader worker per rank
A run is two epochs over --images images; images/s is that of the second epoch (the first pays for
process start-up and oneDNN kernel creation). The 1-minute load average before each run is printed:
on a shared machine compare the ratios of one repeat, not absolute numbers across runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

PATHS = {
    "landed": {"procs": 1, "amp": False, "channels_last": False},
    "fast": {"procs": 0, "amp": True, "channels_last": True},
}


def run(path: str, images: list, size: int, workdir: Path) -> float:
    import torch

    from leanface.host import available_cores
    from leanface.train import AugmentConfig, TrainConfig, train

    torch.set_num_threads(available_cores())  # the landed path used every core's thread; ranks set their own
    cfg = TrainConfig(epochs=2, batch_size=8, warmup_iters=10, augment=AugmentConfig(img_size=size), workers=1,
                      seed=0, out_dir=str(workdir / f"{path}_{size}"), **PATHS[path])
    result = train(cfg, "scrfd_500m_kps", images, progress=False)
    return float(result.history[-1]["images_per_s"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/widerface", help="WIDER-layout root with training images")
    p.add_argument("--images", type=int, default=96, help="images per epoch (default 96)")
    p.add_argument("--sizes", type=int, nargs="+", default=[640, 512])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import torch

    from leanface.data import load_wider_split
    from leanface.host import available_cores
    from leanface.train import cpu_has_bf16

    images = load_wider_split(args.data)[: args.images]
    print(f"torch {torch.__version__}, {available_cores()} cores, bf16 instructions: {cpu_has_bf16()}, "
          f"{len(images)} images per epoch, batch 8")
    rates: dict[tuple[int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for rep in range(args.repeats):
                for path in PATHS:
                    load = os.getloadavg()[0]
                    rate = run(path, images, size, Path(tmp) / str(rep))
                    rates.setdefault((size, path), []).append(rate)
                    print(f"size {size} repeat {rep + 1} {path:>6s}: {rate:6.2f} img/s (load before {load:.2f})",
                          flush=True)
    print()
    print(f"{'size':>4s} {'path':>6s} {'img/s median':>12s} {'min-max':>13s} {'ratio to landed (per repeat)':>30s}")
    for size in args.sizes:
        base = rates[(size, "landed")]
        for path in PATHS:
            r = rates[(size, path)]
            ratios = [a / b for a, b in zip(r, base)]
            print(f"{size:4d} {path:>6s} {statistics.median(r):12.2f} {min(r):6.2f}-{max(r):6.2f} "
                  f"{statistics.median(ratios):12.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
