"""Does the fast CPU training path learn as well as float32? The same proxy recipe, both paths, several seeds.

    python bench/fast_path_accuracy.py training/search_s1_0.5g/search.json training/search_s1_0.5g/best_model.json \
        --data ../shared/data/widerface --seeds 0 1 [--paths fast fp32]

Trains MODEL under the proxy settings recorded in SEARCH_JSON (the search's: 24 epochs at 320 px on
the WIDER train images, WIDER protocol at 640 on the val subset), changing only the training path:
  fp32  one process, float32, NCHW (the trainer's path before the fast path; the search ran this way)
  fast  the default: single-thread DDP ranks (--procs), channels_last, bfloat16 autocast
and prints the APs with the per-path mean and seed spread. Results go to OUT/<path>/seed<k>/result.json
(default OUT: runs/fast_path_accuracy/<model name>); a finished one is read back, not trained again.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path

PATHS = {
    "fp32": {"procs": 1, "amp": False, "channels_last": False},
    "fast": {"procs": 0, "amp": True, "channels_last": True},
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("search_json", help="a search record (search.json) whose trial settings define the proxy")
    p.add_argument("model", help="zoo name or JSON model config")
    p.add_argument("--data", required=True, help="WIDER-layout root (trains on WIDER_train, evaluates on WIDER_val)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--paths", nargs="+", choices=sorted(PATHS), default=["fast", "fp32"])
    p.add_argument("--out", help="output folder (default runs/fast_path_accuracy/<model name>)")
    args = p.parse_args()

    from leanface.models import get_config
    from leanface.search import TrialSettings, proxy_result

    trial = json.loads(Path(args.search_json).read_text())["settings"]["trial"]
    base = dataclasses.replace(TrialSettings.from_dict(trial), data=os.path.abspath(args.data))
    cfg = get_config(args.model)
    out = Path(args.out or Path("runs/fast_path_accuracy") / cfg.name)
    print(f"proxy: {base.epochs} epochs at {base.train.augment.img_size} px, batch {base.train.batch_size}, "
          f"lr {base.train.lr}; "
          f"WIDER protocol at {base.eval_size} on the val images present (a subset: APs are subset APs)")
    print(f"{'path':>5s} {'seed':>4s} {'easy':>7s} {'medium':>7s} {'hard':>7s} {'train min':>9s}")
    results: dict[str, list[dict]] = {}
    for path in args.paths:
        for seed in args.seeds:
            settings = base.with_train(seed=seed, **PATHS[path])
            r = proxy_result(cfg, settings, out / path / f"seed{seed}")
            results.setdefault(path, []).append(r)
            print(f"{path:>5s} {seed:4d} {100 * r['easy']:7.2f} {100 * r['medium']:7.2f} {100 * r['hard']:7.2f} "
                  f"{r['seconds'] / 60:9.1f}", flush=True)
    print()
    print(f"{'path':>5s} {'':>4s} " + " ".join(f"{s:>15s}" for s in ("easy", "medium", "hard")) + "   (mean, range)")
    for path, rows in results.items():
        cells = []
        for setting in ("easy", "medium", "hard"):
            values = [100 * r[setting] for r in rows]
            cells.append(f"{statistics.mean(values):6.2f} [{max(values) - min(values):5.2f}]")
        print(f"{path:>5s} {len(rows):4d} " + " ".join(f"{c:>15s}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
