"""float vs int8 ONNX, side by side in one run: model time, end-to-end time, accuracy, file size.

    python bench/bench_int8.py [--rounds 15] [--calib-images 200] [--methods minmax] [--skip-accuracy]

Detectors: scrfd_500m_kps and scrfd_2.5g_kps with the imported official weights, and our bundled
scrfd_500m_kps. Each is exported float (`export_onnx`) and int8 (`export_int8`, calibrated on WIDER
train images, which the dev subset never contains), then timed at 640x480 on 1 and 2 threads: the
network alone (onnxruntime) and the Detector call on a JPEG (read, pre-process, network, decode, NMS);
medians of interleaved rounds with the 10-90% range of the per-round int8/float ratio, so background
load hits both sides alike. Accuracy: WIDER dev subset, the VGA protocol (`leanface eval`'s path).
Embedder: the bundled MobileFaceNet on LFW View 2 (10 folds, crops aligned once by the bundled
detector, the same crops for both files), ms per face at batch 1 and 32.
Needs ../shared; a benchmark, not a test.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from leanface import Detector, Embedder, create_model
from leanface.app.benchmark import interleaved_times
from leanface.eval.report import evaluate_detector
from leanface.eval.verification import verification_protocol
from leanface.export import export_int8, export_onnx
from leanface.infer import onnx_session
from leanface.models import save_checkpoint
from leanface.models.importers import import_weights

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WIDER = SHARED / "data" / "widerface"
CALIB = WIDER / "WIDER_train" / "images"
FACES_CALIB = SHARED / "data" / "recog_train" / "glint_sample"
LFW = SHARED / "data" / "lfw"
WEIGHTS = ROOT / "src" / "leanface" / "weights"


def ratio_text(num: list[float], den: list[float]) -> str:
    r = [a / b for a, b in zip(num, den)]
    q = statistics.quantiles(r, n=10)
    return f"{statistics.median(r):.2f} ({q[0]:.2f}-{q[-1]:.2f})"


def wider_ap(weights: Path, tmp: Path) -> dict[str, float]:
    """The dev subset under the official VGA protocol, by `leanface eval --data WIDER`'s own path."""
    det = Detector(weights=weights, size=640, score_thr=0.02, nms_thr=0.45, threads=2)
    evaluation, _ = evaluate_detector(det.detect, WIDER, tmp / f"preds_{weights.stem}", progress=False)
    return {k: 100 * v for k, v in evaluation.summary().items() if k in ("easy", "medium", "hard")}


def detectors(tmp: Path) -> dict[str, Path]:
    out = {}
    for name, fname in (("scrfd_500m_kps", "det_500m.onnx"), ("scrfd_2.5g_kps", "det_2.5g.onnx")):
        cfg, state = import_weights(SHARED / "models" / "scrfd_onnx" / fname)
        save_checkpoint(tmp / f"{name}.pt", cfg, state)
        out[f"{name} (official weights)"] = tmp / f"{name}.pt"
    out["scrfd_500m_kps (bundled, ours)"] = WEIGHTS / "scrfd_500m_kps.pt"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calib-images", type=int, default=200)
    ap.add_argument("--methods", default="minmax", help="calibration methods to compare, comma-separated")
    ap.add_argument("--skip-accuracy", action="store_true", help="timing and sizes only")
    args = ap.parse_args()
    if not (SHARED / "models" / "scrfd_onnx").is_dir() or not CALIB.is_dir():
        print(f"skipped: {SHARED} is absent (official weights and WIDER images are needed)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="leanface-int8-"))
    src = sorted((WIDER / "WIDER_val" / "images" / "0--Parade").glob("*.jpg"))[0]
    vga = tmp / "vga.jpg"
    cv2.imwrite(str(vga), cv2.resize(cv2.imread(str(src)), (640, 480)), [cv2.IMWRITE_JPEG_QUALITY, 95])
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 480, 640)).astype(np.float32)
    methods = args.methods.split(",")
    speed, acc = [], []
    for label, pt in detectors(tmp).items():
        net = create_model(None, pt)
        stem = label.split()[0] + ("_ours" if "ours" in label else "")
        files = {"float": tmp / f"{stem}.onnx"}
        export_onnx(net, files["float"])
        for m in methods:
            t = time.perf_counter()
            rep = export_int8(net, tmp / f"{stem}_{m}.onnx", CALIB, count=args.calib_images, method=m)
            files[m] = Path(rep.path)
            print(f"{label}: int8 ({m}) in {time.perf_counter() - t:.0f} s; float nodes: {', '.join(rep.float_nodes)}",
                  file=sys.stderr)
        q = files[methods[0]]
        for threads in (1, 2):
            a, b = onnx_session(files["float"], threads), onnx_session(q, threads)
            da, db = Detector(weights=files["float"], threads=threads), Detector(weights=q, threads=threads)
            t = interleaved_times({"f": lambda: a.run(None, {"input.1": x}), "q": lambda: b.run(None, {"input.1": x}),
                              "fe": lambda: da(str(vga)), "qe": lambda: db(str(vga))}, args.rounds)
            med = {k: statistics.median(v) for k, v in t.items()}
            speed.append(f"| {label} | {threads} | {med['f']:.2f} | {med['q']:.2f} | {ratio_text(t['q'], t['f'])} | "
                         f"{med['fe']:.2f} | {med['qe']:.2f} | {ratio_text(t['qe'], t['fe'])} | "
                         f"{files['float'].stat().st_size / 1e6:.2f} / {q.stat().st_size / 1e6:.2f} |")
        if not args.skip_accuracy:
            base = wider_ap(files["float"], tmp)
            for m in ["float", *methods]:
                r = base if m == "float" else wider_ap(files[m], tmp)
                acc.append(f"| {label} | {m} | {r['easy']:.2f} | {r['medium']:.2f} | {r['hard']:.2f} | "
                           f"{r['hard'] - base['hard']:+.2f} |")
                print(acc[-1], file=sys.stderr)
    print(f"CPU threads: 1 and 2; onnxruntime {ort.__version__}; 640x480, batch 1; medians of {args.rounds} "
          f"interleaved rounds (ms); ratio: median int8/float per round (10-90%)")
    print("| detector | threads | float model | int8 model | int8/float | float end-to-end | int8 end-to-end "
          "| int8/float | MB float / int8 |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(speed))
    if acc:
        print("\nWIDER FACE dev subset (343 images of 5 events), VGA protocol, AP %")
        print("| detector | file | easy | medium | hard | hard vs float |")
        print("|---|---|---|---|---|---|")
        print("\n".join(acc))
    embedder_table(tmp, args)
    return 0


def embedder_table(tmp: Path, args) -> None:
    from leanface.recognize.identities import pairs_crops

    pt = WEIGHTS / "mobilefacenet.pt"
    net = create_model(None, pt)
    threshold = Embedder(WEIGHTS / "mobilefacenet.onnx").threshold
    fl = tmp / "mfn.onnx"
    export_onnx(net, fl, threshold=threshold)
    rep = export_int8(net, tmp / "mfn_int8.onnx", FACES_CALIB, count=args.calib_images, threshold=threshold)
    ef, eq = Embedder(fl, threads=1), Embedder(rep.path, threads=1)
    crops = np.random.default_rng(0).integers(0, 256, (32, 112, 112, 3), dtype=np.uint8)
    t = interleaved_times({"f1": lambda: ef.embed(crops[:1]), "q1": lambda: eq.embed(crops[:1]),
                      "f32": lambda: ef.embed(crops), "q32": lambda: eq.embed(crops)}, args.rounds, inner=2)
    med = {k: statistics.median(v) for k, v in t.items()}
    print(f"\nEmbedder (bundled MobileFaceNet), one thread; int8 float nodes: {', '.join(rep.float_nodes) or 'none'}")
    print("| file | ms/face batch 1 | ms/face batch 32 | MB | LFW accuracy | TAR@FAR1e-3 |")
    print("|---|---|---|---|---|---|")
    lfw = None
    if not args.skip_accuracy and (LFW / "pairs.txt").is_file():
        lfw = pairs_crops(LFW)
    for name, emb, k in (("float", ef, "f"), ("int8", eq, "q")):
        cell = "| - | - |"
        if lfw is not None:
            crops_all, (left, right, same, folds) = lfw
            e = emb.embed(crops_all)
            r = verification_protocol(np.einsum("ij,ij->i", e[left], e[right]), same, folds)
            cell = f"| {100 * r.accuracy:.2f} ± {100 * r.accuracy_std:.2f} | {100 * r.tar_at_far[1e-3]:.1f} |"
        size = Path(fl if name == "float" else rep.path).stat().st_size / 1e6
        print(f"| {name} | {med[k + '1']:.2f} | {med[k + '32'] / 32:.2f} | {size:.2f} {cell}")


if __name__ == "__main__":
    sys.exit(main())
