"""Data preparation: the faces of WIDER FACE train images that are large enough to align, as a flat folder
of aligned 112x112 crops (an unlabelled pool for `leanface train --model mobilefacenet`).

    python bench/wider_faces.py --data ../staged/widerface --out ../staged/recog/wider_faces [--min-side 64]

A face is taken when it is not marked ignore, has all five RetinaFace landmarks (labelv2) and its box's
shorter side is at least --min-side pixels; it is aligned from those annotated landmarks (more exact than a
detector's on a crowd photo) to the ArcFace template. Files are `<image stem>_<face index>.png`, written
atomically; a file already there is kept, so a second run finishes an interrupted one. WIDER FACE is for
non-commercial research: the crops are too, and never go into the repository.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np


def main() -> int:
    from leanface.data.readers import load_training_data
    from leanface.files import atomic_write
    from leanface.images import read_bgr
    from leanface.recognize import align_faces

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="WIDER-layout train root (labelv2 landmarks)")
    ap.add_argument("--out", required=True, help="flat output folder (outside the repository)")
    ap.add_argument("--min-side", type=int, default=64)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = kept = 0
    for im in load_training_data(args.data, []):
        if im.landmarks is None:
            continue
        b = im.boxes
        ok = ~im.ignore & im.landmark_valid.all(1) & (np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) >= args.min_side)
        if not ok.any():
            continue
        rgb = None
        for k in np.flatnonzero(ok):
            path = out / f"{Path(im.path).stem}_{k}.png"
            if path.is_file():
                kept += 1
                continue
            if rgb is None:
                rgb = np.ascontiguousarray(read_bgr(im.path)[..., ::-1])
            crop = align_faces(rgb, im.landmarks[k:k + 1], 112)[0]
            ok_png, buf = cv2.imencode(".png", np.ascontiguousarray(crop[..., ::-1]))
            with atomic_write(path, binary=True) as f:
                f.write(buf.tobytes())
            written += 1
    print(f"{written:,} aligned faces written, {kept:,} already there, in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
