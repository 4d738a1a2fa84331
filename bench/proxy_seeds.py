"""Repeat a search trial with other training seeds: how much of a proxy AP is luck?

    python bench/proxy_seeds.py runs/search/s1_0.5g training/search_s1_0.5g/best_model.json --seeds 1 2

Trains MODEL (zoo name or JSON config) under the proxy settings stored in RUN/search.json, changing
only the training seed, and prints the WIDER val APs. Results: OUT/seed<k>/result.json (default
OUT: RUN/seeds/<model name>); a seed whose result exists is not trained again.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="search run folder (its search.json holds the proxy settings)")
    p.add_argument("model", help="zoo name or JSON model config")
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    p.add_argument("--out", help="output folder (default RUN/seeds/<model name>)")
    args = p.parse_args()

    from leanface.models import get_config
    from leanface.search import load_search, proxy_result

    settings, _, _ = load_search(args.run_dir)
    cfg = get_config(args.model)
    out = Path(args.out or Path(args.run_dir) / "seeds" / cfg.name)
    print(f"{'model':>20s} {'seed':>4s} {'easy':>7s} {'medium':>7s} {'hard':>7s} {'min':>5s}")
    for seed in args.seeds:
        r = proxy_result(cfg, settings.trial.with_train(seed=seed), out / f"seed{seed}")
        print(f"{cfg.name:>20s} {seed:4d} {100 * r['easy']:7.2f} {100 * r['medium']:7.2f} {100 * r['hard']:7.2f} "
              f"{r['seconds'] / 60:5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
