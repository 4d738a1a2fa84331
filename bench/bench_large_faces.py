"""Recall on faces that fill the frame: close-ups, webcam frames and ID photos look like this.

    python bench/bench_large_faces.py [--weights W ...] [--per-pool 100] [--json-out F]
    python bench/bench_large_faces.py --closeups 150 [--weights W ...]

Images: aligned or tightly cropped face photos given a grey border of 10-50% of their side on each side
(UTKFace crops, CelebA eye-aligned images; both staged as ../shared/data/STAGING.md says) and LFW photos as
they are (250x250, the face about 40% of the side). The reference face of each image is the official
SCRFD-0.5GF's main detection (score >= 0.5, `primary_face`); a model finds it when one of its detections
(score >= 0.5) overlaps it with IoU >= 0.5. Faces are binned by the reference box's side over the image's
short side (40-90%). Printed per model: recall per bin and overall, on the faces the official model finds,
at the Detector's defaults (the image's long side scaled to 640). A benchmark, not a test.

--closeups N: instead, N close-up crops of the staged WIDER train images drawn exactly as training draws them
(`--close-ups`: one face of at least 48 px filling 40-90% of a 640 crop; no colour change), each scored against
its ground-truth box, the official 0.5 GF and the 2.5 GF teacher beside the others: what the distillation
teacher says about the faces the close-ups add to training.
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
TEACHER = SHARED / "models" / "scrfd_onnx" / "det_2.5g.onnx"
WIDER_TRAIN = ROOT.parent / "staged" / "widerface"
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


def closeups(n: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, RGB, ground-truth box) of n close-up crops of WIDER train images, as training draws them."""
    import cv2

    from leanface.data import AugmentConfig, augment, load_training_data
    from leanface.data.augment import CLOSE_UP_MIN_SIDE
    from leanface.data.dataset import training_faces

    cfg, rng, out = AugmentConfig(close_ups=1.0, photometric=False), np.random.default_rng(0), []
    images = load_training_data(WIDER_TRAIN)
    for k in rng.permutation(len(images)):
        boxes, landmarks, valid = training_faces(images[k])
        if not len(boxes) or (boxes[:, 2:] - boxes[:, :2]).max() < CLOSE_UP_MIN_SIDE:
            continue
        view, t = augment(cv2.imread(str(images[k].path)), boxes, landmarks, valid, cfg, rng)
        sides = (t.boxes[:, 2:] - t.boxes[:, :2]).max(1) if len(t.boxes) else np.zeros(0)
        if not len(sides) or sides.max() < BINS[0] * cfg.img_size:
            continue  # the face drawn was too small for a close-up: the crop fell back to sample redistribution
        out.append((Path(images[k].path).name, np.ascontiguousarray(view.clip(0, 255).astype(np.uint8)[:, :, ::-1]),
                    t.boxes[sides.argmax()]))
        if len(out) == n:
            break
    return out


def main() -> int:
    from leanface.boxes import box_iou
    from leanface.infer import Detector
    from leanface.recognize import primary_face

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", nargs="*", default=[], help="models to score besides the bundled one")
    ap.add_argument("--per-pool", type=int, default=100, help="images drawn from each pool")
    ap.add_argument("--closeups", type=int, default=0, metavar="N",
                    help="score N close-up training crops of WIDER train against ground truth instead")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    if not OFFICIAL.is_file():
        print(f"bench_large_faces: {OFFICIAL} not found", file=sys.stderr)
        return 1
    models = {"bundled": Detector(score_thr=0.5)}
    if args.closeups:
        if not (WIDER_TRAIN / "WIDER_train").is_dir():
            print(f"bench_large_faces: {WIDER_TRAIN} absent (stage wider-train-3048 as STAGING.md says)",
                  file=sys.stderr)
            return 1
        crops = closeups(args.closeups)
        data, refs = [(name, rgb) for name, rgb, _ in crops], [box for _, _, box in crops]
        models.update({"official 0.5 GF": Detector(weights=OFFICIAL, score_thr=0.5),
                       "teacher 2.5 GF": Detector(weights=TEACHER, score_thr=0.5)})
        print(f"{len(data)} close-up crops of WIDER train; the reference is the ground-truth box")
    else:
        data = images(args.per_pool)
        reference = Detector(weights=OFFICIAL, score_thr=0.5)
        refs = []
        for name, rgb in data:
            faces = reference(rgb)
            k = primary_face(faces)
            refs.append(None if k is None else faces.boxes[k])
    found_by_official = [r is not None for r in refs]
    models.update({Path(w).name: Detector(weights=w, score_thr=0.5) for w in args.weights})
    fraction = np.array([0.0 if r is None else (r[2:] - r[:2]).max() / min(rgb.shape[:2])
                         for r, (_, rgb) in zip(refs, data)])
    record = {"images": len(data), "official_found": int(sum(found_by_official)), "models": {}}
    if not args.closeups:
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
