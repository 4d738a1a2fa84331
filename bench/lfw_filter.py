"""Keep LFW a test: how many faces of each training pool may show an LFW person, and the filter's threshold.

    python bench/lfw_filter.py --pools A,B,... [--known-others ROOT] [--lfw DIR] [--rate 0.01] [--json-out F]

Every face of the pools (identity folders or flat folders of photos, aligned as `leanface train` aligns them)
and every LFW image is embedded by the teacher (SFace, cached face by face). A face "may show an LFW person"
when its largest cosine to any LFW image exceeds a threshold. A one-to-one verification threshold is far too
loose against thousands of LFW images, so the threshold is set on faces known to be other people (the Glint
identities, none of them LFW people): the largest cosine that removes at most `rate` of them. Prints the
threshold and, per pool, the faces, those removed as LFW-like and the exact duplicate crops; the training
run applies the same filter with --set margin.exclude=<lfw> --set margin.exclude_thr=<threshold>.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TEACHER = ROOT / ".cache/peers/face_recognition_sface_2021dec_int8bq.onnx"


def main() -> int:
    from leanface.recognize.identities import load_identity_faces, pairs_crops
    from leanface.train.recognition import filter_pool, max_cosine, teacher_embeddings

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pools", required=True, help="comma-separated training roots")
    ap.add_argument("--known-others", default=str(ROOT.parent / "staged/recog/glint_sample_full"),
                    help="identity folder of people known not to be in LFW (default: the staged Glint sample)")
    ap.add_argument("--lfw", default=str(SHARED / "data/lfw"))
    ap.add_argument("--teacher", default=str(TEACHER))
    ap.add_argument("--rate", type=float, default=0.01, help="share of the known others the filter may remove")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    for path in (args.lfw, args.known_others, args.teacher):
        if not Path(path).exists():
            print(f"lfw_filter: {path} not found", file=sys.stderr)
            return 1
    lfw = teacher_embeddings(args.teacher, pairs_crops(args.lfw)[0], 128, flips=False)[:, 0]
    others = load_identity_faces([args.known_others])
    other_max = max_cosine(teacher_embeddings(args.teacher, others.crops, 128, flips=False)[:, 0], lfw)
    threshold = float(np.quantile(other_max, 1 - args.rate))
    roots = [r for r in args.pools.split(",") if r]
    faces = load_identity_faces(roots)
    keep, pools = filter_pool(faces, roots, args.teacher, args.lfw, threshold, 128)
    record = {"threshold": round(threshold, 4), "rate": args.rate, "known_others": len(others),
              "lfw_images": len(lfw), "pools": pools, "kept": int(keep.sum()), "faces": len(keep),
              "no_face": faces.no_face, "unreadable": faces.unreadable}
    print(f"threshold {threshold:.4f}: removes {args.rate:.0%} of {len(others):,} faces of known other people "
          f"(their largest cosine to {len(lfw):,} LFW images: median {np.median(other_max):.3f})")
    for name, p in pools.items():
        print(f"{name:24s} {p['faces'] + p['no_face'] + p['unreadable']:7,} images  {p['no_face']:5,} no face  "
              f"{p['unreadable']:3,} unreadable  {p['faces']:7,} faces  {p['lfw_removed']:6,} LFW-like  "
              f"{p['duplicates']:5,} duplicates  {p['kept']:7,} kept")
    print(f"images without a detected face: {faces.no_face:,}; unreadable: {faces.unreadable:,}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
