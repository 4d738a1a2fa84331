"""Recall on faces that fill the frame: close-ups, webcam frames and ID photos look like this.

    python bench/bench_large_faces.py [--weights W ...] [--per-pool 100] [--json-out F]

Images: aligned or tightly cropped face photos given a grey border of 10-50% of their side on each side
(UTKFace crops, CelebA eye-aligned images; both staged as ../shared/data/STAGING.md says) and LFW photos as
they are (250x250, the face about 40% of the side). The reference face of each image is the official
SCRFD-0.5GF's main detection (score >= 0.5, `primary_face`); a model finds it when one of its detections
(score >= 0.5) overlaps it with IoU >= 0.5. Faces are binned by the reference box's side over the image's
short side (40-90%). Printed per model: recall per bin and overall, on the faces the official model finds,
at the Detector's defaults (the image's long side scaled to 640). A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
STAGED = ROOT.parent / "staged" / "recog"
OFFICIAL = SHARED / "models" / "scrfd_onnx" / "det_500m.onnx"
BORDERS = (0.1, 0.2, 0.3, 0.4, 0.5)
BINS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def images(per_pool: int) -> list[tuple[str, np.ndarray]]:
    """(name, RGB) of the benchmark images: padded UTKFace and CelebA photos, LFW photos."""
    from leanface.infer import read_image
    from leanface.recognize.identities import with_border

    out = []
    rng = np.random.default_rng(0)
    for pool, pattern in (("utkface", "*.jpg"), ("celeba_200x30", "*/*.jpg")):
        files = sorted((STAGED / pool).glob(pattern))
        if not files:
            print(f"bench_large_faces: {STAGED / pool} absent (stage it as ../shared/data/STAGING.md says); "
                  f"left out", file=sys.stderr)
            continue
        for k, f in enumerate(rng.choice(files, min(per_pool, len(files)), replace=False)):
            border = BORDERS[k % len(BORDERS)]
            out.append((f"{pool}/{Path(f).name}+{border:.0%}", with_border(read_image(f), border)[0]))
    lfw = sorted((SHARED / "data" / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))
    for f in rng.choice(lfw, min(per_pool, len(lfw)), replace=False) if lfw else []:
        out.append((f"lfw/{Path(f).name}", read_image(f)))
    return out


def main() -> int:
    from leanface.boxes import box_iou
    from leanface.infer import Detector
    from leanface.recognize import primary_face

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", nargs="*", default=[], help="models to score besides the bundled one")
    ap.add_argument("--per-pool", type=int, default=100, help="images drawn from each pool")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    if not OFFICIAL.is_file():
        print(f"bench_large_faces: {OFFICIAL} not found", file=sys.stderr)
        return 1
    data = images(args.per_pool)
    reference = Detector(weights=OFFICIAL, score_thr=0.5)
    refs = []
    for name, rgb in data:
        faces = reference(rgb)
        k = primary_face(faces)
        refs.append(None if k is None else faces.boxes[k])
    found_by_official = [r is not None for r in refs]
    models = {"bundled": Detector(score_thr=0.5)}
    models.update({Path(w).name: Detector(weights=w, score_thr=0.5) for w in args.weights})
    fraction = np.array([0.0 if r is None else (r[2:] - r[:2]).max() / min(rgb.shape[:2])
                         for r, (_, rgb) in zip(refs, data)])
    record = {"images": len(data), "official_found": int(sum(found_by_official)), "models": {}}
    print(f"{len(data)} images; the official SCRFD-0.5GF finds a face (score >= 0.5) in {sum(found_by_official)}")
    header = " ".join(f"{lo:.0%}-{hi:.0%}".rjust(9) for lo, hi in zip(BINS, BINS[1:]))
    print(f"{'model':28s} {header}   all (faces)")
    counts = [int(((fraction >= lo) & (fraction < hi)).sum()) for lo, hi in zip(BINS, BINS[1:])]
    print(f"{'faces in bin':28s} " + " ".join(f"{c:9d}" for c in counts))
    for label, det in models.items():
        hit = np.zeros(len(data), bool)
        for i, ((name, rgb), ref) in enumerate(zip(data, refs)):
            if ref is not None:
                faces = det(rgb)
                hit[i] = len(faces) > 0 and bool((box_iou(faces.boxes, ref[None]) >= 0.5).any())
        per_bin = []
        for lo, hi in zip(BINS, BINS[1:]):
            sel = (fraction >= lo) & (fraction < hi) & np.array(found_by_official)
            per_bin.append(float(hit[sel].mean()) if sel.any() else float("nan"))
        sel = (fraction >= BINS[0]) & (fraction < BINS[-1]) & np.array(found_by_official)
        overall = float(hit[sel].mean()) if sel.any() else float("nan")
        missed = [data[i][0] for i in np.flatnonzero(sel & ~hit)]
        record["models"][label] = {"recall": overall, "faces": int(sel.sum()), "per_bin": per_bin,
                                   "missed": missed}
        print(f"{label:28s} " + " ".join(f"{r:9.1%}" for r in per_bin) + f"   {overall:.1%} ({int(sel.sum())})")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
