"""LFW View 2 accuracy of a training checkpoint's embedder (e.g. runs/mfn_distill_r2/last.pt mid-run).

    python bench/lfw_checkpoint.py runs/mfn_distill_r2/last.pt

The embedder is taken out of the run's last.pt (the class weights beside it are dropped) and scored on
LFW's 6,000 pairs with the crops the training adapter caches (bundled detector, main face; the same
crops `leanface train --val-data LFW` uses), 10 folds.
"""
import sys
import tempfile
from pathlib import Path

import torch

from leanface import Embedder
from leanface.models import config_from_dict, create_model, save_checkpoint
from leanface.recognize.identities import pairs_crops
from leanface.train.recognition import score_pairs

LFW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if not (LFW / "pairs.txt").is_file():
        print(f"skipped: {LFW} is absent")
        return 0
    ck = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
    cfg = config_from_dict(ck["model_config"])
    net = create_model(cfg)
    state = {k[len("model."):]: v for k, v in ck["model"].items() if k.startswith("model.")}
    net.load_state_dict(state)
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp) / "e.pt", cfg, net.state_dict())
        r = score_pairs(Embedder(Path(tmp) / "e.pt", threads=2), pairs_crops(LFW))
    if r is None:
        print(f"{sys.argv[1]}: epoch {ck['epoch']}: non-finite embeddings (diverged)")
        return 1
    print(f"{sys.argv[1]}: epoch {ck['epoch']}, LFW {100 * r.accuracy:.2f} ± {100 * r.accuracy_std:.2f}, "
          f"TAR@FAR1e-3 {100 * r.tar_at_far[1e-3]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
