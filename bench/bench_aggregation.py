"""Set-to-set verification: mean vs QAN++ vs best-frame aggregation, 2 seeds of the degradation.

    python bench/bench_aggregation.py --quality runs/qualitynet_r1/model.pt [--k 5] [--share 0.5] [--seeds 0,1]

Templates of k aligned faces from the identities `template_split` holds back (the quality net never
trains on them; the embedders may have: SFace was trained elsewhere, our bundled embedder on these
pools), `share` of each template's frames degraded (leanface.eval.templates). For each embedder and
seed: accuracy (10 folds, mean +- std) and TAR at FAR 1e-3 / 1e-2 for each aggregator, and, as a
reference, the same with no degraded frames. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from leanface import Embedder
from leanface.eval.templates import build_templates, evaluate_templates
from leanface.recognize import QualityScorer
from leanface.recognize.identities import load_identity_faces, template_split

ROOT = Path(__file__).resolve().parents[1]
POOLS = [ROOT.parent / "shared" / "data" / "recog_train" / "celeba_aligned_lowres",
         ROOT.parent / "staged" / "recog" / "celeba_wild", ROOT.parent / "staged" / "recog" / "glint_sample_full"]
SFACE = ROOT / ".cache" / "peers" / "face_recognition_sface_2021dec_int8bq.onnx"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", required=True, help="quality network weights (.pt or .onnx)")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--share", type=float, default=0.5)
    ap.add_argument("--max-templates", type=int, default=6)
    ap.add_argument("--seeds", default="0,1")
    args = ap.parse_args()
    pools = [str(p) for p in POOLS if p.is_dir()]
    if not pools:
        print("skipped: no identity folders (../shared/data/recog_train, ../staged/recog)")
        return 0
    faces = load_identity_faces(pools, progress=False)
    faces = faces.subset(template_split(faces))
    scorer = QualityScorer(args.quality, threads=2)
    embedders = {"bundled MobileFaceNet (ours)": Embedder(threads=2)}
    if SFACE.is_file():
        embedders["SFace (OpenCV, int8)"] = Embedder(SFACE, mean=0, std=1, threads=2)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        ts = build_templates(faces, k=args.k, share=args.share, max_templates=args.max_templates, seed=seed)
        clean = build_templates(faces, k=args.k, share=0.0, max_templates=args.max_templates, seed=seed)
        q, qc = scorer.score(ts.crops), scorer.score(clean.crops)
        deg, ok = q[ts.degraded], q[~ts.degraded]
        rows.append(f"seed {seed}: {len(ts)} templates of {args.k} from {len(ts.identities)} identities; quality "
                    f"median clean {np.median(ok):.3f} vs degraded {np.median(deg):.3f}; share of degraded frames "
                    f"below the median clean one {np.mean(deg < np.median(ok)):.2f}")
        for name, emb in embedders.items():
            e, ec = emb.embed(ts.crops), emb.embed(clean.crops)
            for method in ("mean", "qan", "best"):
                r = evaluate_templates(e, q, ts, method, seed=seed)
                rc = evaluate_templates(ec, qc, clean, method, seed=seed)
                rows.append(f"| {name} | {seed} | {method} | {100 * r.accuracy:.2f} ± {100 * r.accuracy_std:.2f} | "
                            f"{100 * r.tar_at_far[1e-3]:.1f} | {100 * r.tar_at_far[1e-2]:.1f} | "
                            f"{100 * rc.accuracy:.2f} | {r.pairs} |")
    print(f"k = {args.k}, {int(round(100 * args.share))}% of frames degraded (motion blur / downscale / JPEG / "
          f"occlusion); quality: {args.quality}")
    print("| embedder | seed | aggregator | accuracy | TAR@FAR1e-3 | TAR@FAR1e-2 | accuracy, no degradation | pairs |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(r for r in rows if r.startswith("|")))
    print("\n".join(r for r in rows if not r.startswith("|")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
