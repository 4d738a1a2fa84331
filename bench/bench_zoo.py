"""EResFD, EXTD-32/48/64, SCRFD-0.5GF and SCRFD-2.5GF side by side, measured in one run on this CPU.

Every model runs with its official weights imported by `leanface convert`'s importers:
EResFD/EXTD from their .pth checkpoints, SCRFD-0.5GF/2.5GF (no landmarks, as in the paper's
table) from the official ncnn files. Columns:
  params, GFLOPs (mmcv conventions) at 640x480;
  model time at 640x480, batch 1, 1 and 2 threads: PyTorch eager `forward_export` and our ONNX export
  under ONNX Runtime (medians of interleaved rounds, so background load hits every model alike);
  WIDER FACE val AP (easy/medium/hard) on the images present in ../shared (a SUBSET of the val set),
  single scale: long side 640 (VGA), each family with its official test thresholds
  (SCRFD: score 0.02, NMS 0.45; EResFD/EXTD: score 0.05, 5000 candidates, NMS 0.3, 750 kept).
The papers' figures are printed beside ours; their AP protocols differ (see the footnotes).
Needs ../shared; run: .venv/bin/python bench/bench_zoo.py   (about 40 min on 2 shared cores, most of it EXTD AP)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from leanface import Detector, create_model
from leanface.app.benchmark import interleaved_medians
from leanface.data import load_ground_truth
from leanface.eval import evaluate_detector
from leanface.export import export_onnx
from leanface.infer import onnx_session
from leanface.models import get_family, save_checkpoint
from leanface.models.flops import count_flops
from leanface.models.importers import import_weights

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WIDER = SHARED / "data" / "widerface"
OFFICIAL = {
    "eresfd": "eresfd/eresfd_16.pth.base.pth",
    "extd_32": "extd/EXTD_32.pth",
    "extd_48": "extd/EXTD_48.pth",
    "extd_64": "extd/EXTD_64.pth",
    "scrfd_500m": "scrfd_ncnn/scrfd_500m-opt2.param",
    "scrfd_2.5g": "scrfd_ncnn/scrfd_2.5g-opt2.param",
}
# What the papers/READMEs report: (params M, CPU ms at VGA, easy, medium, hard AP %, footnote mark).
PAPER = {
    "eresfd": (None, 37.7, 89.0, 87.9, 80.4, "a"),
    "extd_64": (0.16, None, 92.1, 90.3, 85.0, "b"),
    "scrfd_500m": (0.57, 28.3, 90.57, 88.12, 68.51, "c"),
    "scrfd_2.5g": (0.67, None, 93.78, 92.16, 77.87, "c"),
}
FOOTNOTES = {
    "a": "EResFD README: original image size with flip + multi-scale testing and box voting; "
         "37.7 ms per 640x480 image on an unnamed CPU.",
    "b": "EXTD paper: 0.16 M parameters for EXTD-64; AP as listed for 'EXTD' (Papers with Code), "
         "multi-scale testing as in the official wider_test.py.",
    "c": "SCRFD README: 640x480 (VGA) single scale, as here (full val set); 28.3 ms = SCRFD-0.5GF in plain "
         "PyTorch on one thread of a Ryzen 9 3950X.",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(OFFICIAL), choices=list(OFFICIAL))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-ap", action="store_true", help="skip the WIDER AP columns (minutes per EXTD model)")
    ap.add_argument("--out", help="keep weights, ONNX files and WIDER predictions here (default: a temp folder)")
    args = ap.parse_args()
    if not (SHARED / "models").is_dir():
        print(f"skipped: {SHARED} is absent (official weights are needed)")
        return 0
    tmp = Path(args.out or tempfile.mkdtemp(prefix="leanface-zoo-"))
    tmp.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).uniform(-120, 130, (1, 3, 480, 640)).astype(np.float32)
    tx = torch.from_numpy(x)
    nets, onnx_paths, rows = {}, {}, {}
    for name in args.models:
        cfg, state = import_weights(SHARED / "models" / OFFICIAL[name], name)
        save_checkpoint(tmp / f"{name}.pt", cfg, state)
        nets[name] = create_model(None, tmp / f"{name}.pt")
        export_onnx(nets[name], tmp / f"{name}.onnx")
        onnx_paths[name] = tmp / f"{name}.onnx"
        report = count_flops(nets[name], (3, 480, 640))
        rows[name] = {"params": report.params / 1e6, "gflops": report.gflops}

    for threads in (1, 2):
        torch.set_num_threads(threads)
        fns = {}
        for name in args.models:
            sess = onnx_session(onnx_paths[name], threads)

            def eager(net=nets[name]):
                with torch.inference_mode():
                    net.forward_export(tx)

            fns[name, "torch"] = eager
            fns[name, "ort"] = lambda sess=sess: sess.run(None, {"input.1": x})
        for (name, backend), ms in interleaved_medians(fns, args.rounds).items():
            rows[name][f"{backend}{threads}"] = ms
    load = os.getloadavg()[0]

    if not args.no_ap:
        gt = load_ground_truth(WIDER)
        for name in args.models:
            det = Detector(weights=onnx_paths[name], preset="eval", batch_size=1, threads=2)  # the official test
            evaluation, _ = evaluate_detector(det, WIDER, tmp / "wider" / name, batch_size=1, progress=False,
                                              ground_truth=gt)
            summary = evaluation.summary()
            rows[name].update({s: 100 * summary[s] for s in ("easy", "medium", "hard")})
            rows[name]["images"] = summary["images"]
            print(f"{name}: AP {rows[name]['easy']:.2f} / {rows[name]['medium']:.2f} / {rows[name]['hard']:.2f}",
                  file=sys.stderr)

    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}; input 640x480, batch 1; model time = median "
          f"ms of {args.rounds} interleaved rounds; GFLOPs with mmcv conventions at 640x480; "
          f"{os.cpu_count()} CPUs, load average during timing {load:.2f} (other work shares them)")
    if not args.no_ap:
        n = next(iter(rows.values()))["images"]
        print(f"WIDER FACE val SUBSET ({n} of 3226 images), single scale, long side 640; AP in %")
    print("| model | params (M) | GFLOPs | PyTorch 1T | PyTorch 2T | ORT 1T | ORT 2T | easy | medium | hard "
          "| paper: params (M) | paper: ms | paper: easy / medium / hard |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        r = rows[name]
        ap_cols = " | ".join(f"{r[s]:.2f}" if s in r else "-" for s in ("easy", "medium", "hard"))
        p = PAPER.get(name)
        if p:
            paper = (f"{p[0] if p[0] is not None else '-'} | {p[1] if p[1] is not None else '-'} | "
                     f"{p[2]} / {p[3]} / {p[4]} ({p[5]})")
        else:
            paper = "- | - | -"
        print(f"| {name} | {r['params']:.4f} | {r['gflops']:.3f} | {r['torch1']:.1f} | {r['torch2']:.1f} | "
              f"{r['ort1']:.1f} | {r['ort2']:.1f} | {ap_cols} | {paper} |")
    for mark, text in FOOTNOTES.items():
        print(f"({mark}) {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
