"""Sample-redistribution ablation (the paper's Table 1 question): crops [0.3, 1.0] vs [0.3, 2.0].

Trains the same model from scratch once per crop range (and per seed) under one budget, scores each
with the WIDER protocol on the val folder and prints a table. Each arm is one `proxy_trial` (the search's
short training + evaluation), so the two arms differ only in `crop_choices`.

    python bench/ablation_crops.py --data ../shared/data/widerface --model scrfd_500m --epochs 20 \\
        --img-size 640 --out runs/ablation_crops --jobs 2

Arms run as separate processes (--jobs at once, one thread each); an arm whose result file exists is
not run again, so a killed ablation continues where it stopped. Results: OUT/results.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from leanface.data import CROP_CHOICES_BASELINE, CROP_CHOICES_SCRFD

ARMS = {"[0.3, 1.0]": CROP_CHOICES_BASELINE, "[0.3, 2.0]": CROP_CHOICES_SCRFD}  # paper's baseline, SCRFD's crops


def run_arm(args: argparse.Namespace, crops: tuple[float, ...], seed: int, out: Path) -> None:
    """One training + evaluation (in this process); its report goes to out/result.json."""
    import torch

    from leanface.models import get_config
    from leanface.search import TrialSettings, proxy_result
    from leanface.train import AugmentConfig

    torch.set_num_threads(args.threads)
    settings = TrialSettings(data=str(Path(args.data).resolve()), eval_size=args.eval_size,
                             val_images=args.val_images or None).with_train(
        epochs=args.epochs, augment=AugmentConfig(img_size=args.img_size, crop_choices=crops), lr=args.lr,
        batch_size=args.batch_size,
        warmup_iters=args.warmup_iters, seed=seed, amp=not args.fp32,
        channels_last=not args.fp32)
    proxy_result(get_config(args.model), settings, out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="WIDER-layout root (WIDER_train, WIDER_val, wider_face_split)")
    p.add_argument("--model", default="scrfd_500m")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--img-size", type=int, default=640)
    p.add_argument("--eval-size", type=int, default=640)
    p.add_argument("--val-images", type=int, default=0, help="0: all val images present")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--warmup-iters", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--jobs", type=int, default=2, help="arms trained at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per arm")
    p.add_argument("--fp32", action="store_true", help="float32 NCHW training, as the reported runs used")
    p.add_argument("--out", default="runs/ablation_crops")
    p.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm ("name|seed") in this process
    args = p.parse_args()
    out = Path(args.out)

    if args.arm:
        name, seed = args.arm.rsplit("|", 1)
        run_arm(args, ARMS[name], int(seed), out / _slug(name, int(seed)))
        return 0

    todo = [(name, seed) for name in ARMS for seed in args.seeds
            if not (out / _slug(name, seed) / "result.json").is_file()]
    running: list[subprocess.Popen] = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    failed = 0
    while todo or running:
        while todo and len(running) < args.jobs:
            name, seed = todo.pop(0)
            print(f"training {args.model} with crops {name}, seed {seed} ...", flush=True)
            running.append(subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--arm", f"{name}|{seed}"], env=env))
        time.sleep(2)
        for proc in [r for r in running if r.poll() is not None]:
            failed += proc.returncode != 0
            running.remove(proc)
    if failed:
        print(f"{failed} arm(s) failed", file=sys.stderr)
        return 1

    rows = []
    for name in ARMS:
        for seed in args.seeds:
            r = json.loads((out / _slug(name, seed) / "result.json").read_text())
            rows.append({"crops": name, "seed": seed, **{k: r[k] for k in ("easy", "medium", "hard", "loss")},
                         "minutes": r["seconds"] / 60})
    print(f"\n{args.model}, {args.epochs} epochs at {args.img_size} px, batch {args.batch_size}, lr {args.lr}; "
          f"WIDER val AP (eval long side {args.eval_size})")
    print(f"{'crops':>12s} {'seed':>4s} {'easy':>7s} {'medium':>7s} {'hard':>7s} {'loss':>6s} {'min':>5s}")
    for r in rows:
        print(f"{r['crops']:>12s} {r['seed']:4d} {100 * r['easy']:7.2f} {100 * r['medium']:7.2f} "
              f"{100 * r['hard']:7.2f} {r['loss']:6.3f} {r['minutes']:5.1f}")
    from leanface.files import atomic_write

    with atomic_write(out / "results.json") as f:
        json.dump({"model": args.model, "epochs": args.epochs, "img_size": args.img_size, "rows": rows}, f, indent=2)
    return 0


def _slug(name: str, seed: int) -> str:
    return f"crops_{name.strip('[]').replace(', ', '-')}_seed{seed}"


if __name__ == "__main__":
    sys.exit(main())
