"""Bulk detection throughput: the plain local path vs Ray with 1 and 2 workers, on this machine.

    python bench/bench_bulk.py [--images 256] [--shard-size 32] [--repeats 2]

The same WIDER val images (the bundled detector, one thread per worker, 640 long side) go through
`leanface detect` without --address (one process, one thread) and with --address local --workers 1/2
(`leanface.app.bulk.detect_bulk`, a fresh Ray instance per run). Wall time includes Ray's start-up
and the actors' model loading; the start-up is also measured alone (a one-image run) so the steady
rate can be read off. Medians over the repeats, with min-max. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from leanface.app.bulk import detect_bulk
from leanface.app.runner import run_detect
from leanface.infer import Detector

ROOT = Path(__file__).resolve().parents[1]
WIDER_VAL = ROOT.parent / "shared" / "data" / "widerface" / "WIDER_val" / "images"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--shard-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if not WIDER_VAL.is_dir():
        print(f"skipped: {WIDER_VAL} is absent")
        return 0
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    images = [str(p) for p in sorted(WIDER_VAL.rglob("*.jpg"))[: args.images]]
    tmp = Path(tempfile.mkdtemp(prefix="leanface-bulk-"))
    settings = {"threads": 1}

    def local() -> float:
        t = time.perf_counter()
        run_detect(Detector(**settings), images, json_out=str(tmp / "local.jsonl"), exist_ok=True)
        return time.perf_counter() - t

    def ray_run(workers: int, subset: list[str]) -> float:
        shutil.rmtree(tmp / "shards", ignore_errors=True)
        t = time.perf_counter()
        detect_bulk(subset, tmp / "shards", settings, address="local", workers=workers,
                    shard_size=args.shard_size, progress=False)
        return time.perf_counter() - t

    rows = {"local path (no Ray), 1 thread": [], "Ray, 1 worker": [], "Ray, 2 workers": [],
            "Ray start-up alone (1 image, 1 worker)": []}
    for _ in range(args.repeats):  # interleaved, so background load hits every row alike
        rows["local path (no Ray), 1 thread"].append(local())
        rows["Ray, 1 worker"].append(ray_run(1, images))
        rows["Ray, 2 workers"].append(ray_run(2, images))
        rows["Ray start-up alone (1 image, 1 worker)"].append(ray_run(1, images[:1]))
    start = statistics.median(rows["Ray start-up alone (1 image, 1 worker)"])
    print(f"{len(images)} WIDER val images, bundled detector, shards of {args.shard_size}; {os.cpu_count()} CPUs; "
          f"median of {args.repeats} (min-max)")
    print("| run | wall s | images/s | images/s after start-up |")
    print("|---|---|---|---|")
    for name, v in rows.items():
        med = statistics.median(v)
        n = 1 if "alone" in name else len(images)
        steady = "" if "alone" in name or "local" in name else f"{n / max(med - start, 1e-9):.1f}"
        print(f"| {name} | {med:.1f} ({min(v):.1f}-{max(v):.1f}) | {n / med:.1f} | {steady} |")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
