"""Speed at VGA (640x480) on this CPU, everything measured side by side in one process.

For scrfd_500m_kps and scrfd_2.5g_kps, with 1 and 2 threads:
  official ONNX (onnxruntime)  vs  our export of the same weights (onnxruntime)  -> ratio
  our PyTorch eager model
  end-to-end Detector call on a 640x480 JPEG (read -> pre-process -> model -> decode -> NMS), ONNX backend,
  and the same call on the already decoded image (what the pipeline adds besides JPEG decoding)
Timings are medians over interleaved rounds, so background load hits both sides alike.
Needs ../shared (official weights and a real image); run: .venv/bin/python bench/bench_speed.py
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch

from leanface import Detector, create_model
from leanface.app.benchmark import interleaved_medians
from leanface.export import export_onnx
from leanface.infer import onnx_session
from leanface.models import save_checkpoint
from leanface.models.importers import import_weights

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODELS = {"scrfd_500m_kps": "det_500m.onnx", "scrfd_2.5g_kps": "det_2.5g.onnx"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    if not (SHARED / "models" / "scrfd_onnx").is_dir():
        print(f"skipped: {SHARED} is absent (official weights are needed for the comparison)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="leanface-bench-"))
    src = sorted((SHARED / "data/widerface/WIDER_val/images/0--Parade").glob("*.jpg"))[0]
    vga = tmp / "vga.jpg"
    cv2.imwrite(str(vga), cv2.resize(cv2.imread(str(src)), (640, 480)), [cv2.IMWRITE_JPEG_QUALITY, 95])
    rgb = cv2.cvtColor(cv2.imread(str(vga)), cv2.COLOR_BGR2RGB)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 480, 640)).astype(np.float32)
    rows = []
    for name, fname in MODELS.items():
        official = SHARED / "models" / "scrfd_onnx" / fname
        cfg, state = import_weights(official)
        save_checkpoint(tmp / f"{name}.pt", cfg, state)
        net = create_model(None, tmp / f"{name}.pt")
        export_onnx(net, tmp / f"{name}.onnx")
        for threads in (1, 2):
            torch.set_num_threads(threads)
            theirs, ours = onnx_session(official, threads), onnx_session(tmp / f"{name}.onnx", threads)
            det = Detector(weights=tmp / f"{name}.onnx", threads=threads)
            tx = torch.from_numpy(x)

            def eager():
                with torch.inference_mode():
                    net.forward_export(tx)

            t = interleaved_medians({
                "official": lambda: theirs.run(None, {"input.1": x}),
                "ours": lambda: ours.run(None, {"input.1": x}),
                "eager": eager,
                "e2e": lambda: det(str(vga)),
                "e2e_array": lambda: det(rgb),
            }, args.rounds)
            rows.append((name, threads, t["official"], t["ours"], t["ours"] / t["official"], t["eager"], t["e2e"],
                         t["e2e"] / t["ours"], t["e2e_array"] / t["ours"]))
    print(f"CPU: {torch.get_num_threads()} threads max; torch {torch.__version__}, onnxruntime {ort.__version__}; "
          f"input 640x480, batch 1; medians of {args.rounds} interleaved rounds (ms)")
    print("| model | threads | official ONNX | our ONNX | ours/official | PyTorch eager | end-to-end (JPEG file) "
          "| e2e/model | e2e/model from a decoded array |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.3f} | {r[5]:.2f} | {r[6]:.2f} | {r[7]:.3f} | {r[8]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
