"""The embedder recipe at our scale (issue 14): loss, label smoothing and distillation, 2 seeds each, and
LFW accuracy against multiply-adds and ms per face for the zoo's budget entries.

    D=../shared/data/recog_train/celeba_aligned_lowres,../staged/recog/celeba_wild,../staged/recog/glint_sample_full
    T=.cache/peers/face_recognition_sface_2021dec_int8bq.onnx
    python bench/recog_ablation.py --data $D --teacher $T                       # the ablation table
    python bench/recog_ablation.py --data $D --teacher $T --variants base --seeds 0 \\
        --models mobilefacenet_0_1g,mobilefacenet_0_25g,mobilefacenet_0_5g,mobilefacenet_1g \\
        --peers runs/peers_lfw.json --plot docs/recog_flops.png                # accuracy vs FLOPs

Every (model, variant, seed) trains from scratch with one short recipe (default: 4 epochs, batch 128,
lr 0.03 with 100 warm-up iterations, x0.1 after epoch 3, s = 64, m = 0.5 reached after one epoch of margin
warm-up, distillation weight 64 towards the teacher's embedding) that differs only in the variant's change:

    base            ArcNegFace + distillation (the bundled model's recipe)
    arcface         ArcFace + distillation
    ls              ArcNegFace + distillation + label smoothing 0.1
    nokd            ArcNegFace, no distillation
    arcface_nokd    ArcFace, no distillation

It is then scored on LFW View 2 (bundled detector's crops, 10 folds; never trained or selected on) and on
its dev split (held-back training identities; the split moves with the seed). Each result is kept in
OUT/<model>/<variant>/seed<k>/result.json (written atomically): a finished one is read back, an interrupted
one resumes from its last.pt. The table gives each row's seeds, their mean and half their range.
ms per face: the model exported to ONNX, one thread, batch 1 (median, 10-90% range), as bench_recognition.py
times the peers; --peers reads that script's --json-out to put the peers on the plot's axes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LFW = ROOT.parent / "shared" / "data" / "lfw"
sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = {
    "base": {},
    "arcface": {"kind": "arcface"},
    "ls": {"label_smoothing": 0.1},
    "nokd": {"distill": 0.0},
    "arcface_nokd": {"kind": "arcface", "distill": 0.0},
}
LABELS = {
    "base": "ArcNegFace + distillation",
    "arcface": "ArcFace + distillation",
    "ls": "ArcNegFace + distillation + label smoothing 0.1",
    "nokd": "ArcNegFace, no distillation",
    "arcface_nokd": "ArcFace, no distillation",
}


def recipe(args, variant: str, seed: int, out_dir: Path):
    from leanface.train import MarginLoss, TrainConfig

    margin = MarginLoss(kind="arcnegface", scale=64.0, margin=0.5, margin_warmup=1.0, distill=args.distill,
                        teacher=args.teacher)
    margin = dataclasses.replace(margin, **VARIANTS[variant])
    if not margin.distill:
        margin = dataclasses.replace(margin, teacher=None)
    steps = tuple(int(s) for s in args.lr_steps.split(",")) if args.lr_steps else (max(1, round(args.epochs * 0.75)),)
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_iters=100, lr_steps=steps,
                       workers=1, seed=seed, out_dir=str(out_dir), eval_interval=0, margin=margin)


def run_one(args, model: str, variant: str, seed: int, lfw) -> dict:
    """Train (or resume, or read back) one cell and score it."""
    from leanface.files import atomic_write
    from leanface.models import get_config
    from leanface.recognize import Embedder
    from leanface.recognize.identities import dev_split, load_identity_faces
    from leanface.train import train
    from leanface.train.recognition import score_pairs

    out = Path(args.out) / model / variant / f"seed{seed}"
    path = out / "result.json"
    if path.is_file():
        return json.loads(path.read_text())
    cfg = get_config(model)
    tcfg = recipe(args, variant, seed, out)
    start = time.perf_counter()
    result = train(tcfg, cfg, args.data, resume=(out / "last.pt").is_file(), progress=not args.quiet)
    seconds = time.perf_counter() - start
    emb = Embedder(result.weights, batch_size=128)
    r = score_pairs(emb, lfw)
    if r is None:
        from leanface.errors import LeanfaceError

        raise LeanfaceError(f"{out}: the trained embedder gives non-finite embeddings (diverged)")
    faces = load_identity_faces(args.data.split(","), progress=False, report=lambda m: None)
    dev = faces.subset(dev_split(faces, seed=seed))
    row = {"model": model, "variant": variant, "seed": seed, "lfw": r.accuracy, "lfw_std": r.accuracy_std,
           "tar_at_far_1e-3": r.tar_at_far[1e-3], "dev": _dev_accuracy(emb, dev), "gmacs": _gmacs(cfg),
           "weights": str(result.weights), "train_seconds": seconds,
           "images_per_s": float(result.metrics.get("images_per_s", "nan")), "config": tcfg.to_dict()}
    with atomic_write(path) as f:
        json.dump(row, f, indent=2)
    return row


def _dev_accuracy(emb, dev) -> float:
    from leanface.errors import LeanfaceError
    from leanface.train.recognition import verify_crops

    try:
        return verify_crops(emb, dev)
    except LeanfaceError:  # a small data set's dev split may hold too few identities: LFW still counts
        return float("nan")


def _gmacs(cfg) -> float:
    from leanface.models import create_model
    from leanface.models.flops import count_flops

    return count_flops(create_model(cfg), (3, cfg.input_size, cfg.input_size)).gflops


def ms_per_face(weights: dict[str, str], crops: np.ndarray, rounds: int = 3) -> dict[str, str]:
    """{name: "median (10-90% range)"} ms per face of each embedder exported to ONNX, one thread, batch 1 —
    as bench_recognition.py times the peers; the embedders take turns (rounds x 100 calls each), so a
    change in the machine's load falls on all of them alike."""
    from bench_recognition import _spread
    from leanface.export import export_onnx
    from leanface.models import create_model
    from leanface.recognize import Embedder

    x = crops[:1]
    times: dict[str, list[float]] = {n: [] for n in weights}
    with tempfile.TemporaryDirectory() as tmp:
        embedders = {}
        for i, (name, w) in enumerate(weights.items()):
            onnx = Path(w) if str(w).endswith(".onnx") else Path(tmp) / f"{i}.onnx"
            if onnx != Path(w):
                export_onnx(create_model(None, w).eval(), onnx, sample_hw=(112, 112))
            embedders[name] = Embedder(onnx, threads=1, **({"mean": 0.0, "std": 1.0} if onnx == Path(w) else {}))
            embedders[name].embed(x)
        for _ in range(rounds):
            for name, emb in embedders.items():
                for _ in range(100):
                    t = time.perf_counter()
                    emb.embed(x)
                    times[name].append(1000 * (time.perf_counter() - t))
    return {n: _spread(t) for n, t in times.items()}


def _median(ms: str) -> float:
    return float(ms.split()[0])


def table(rows: list[dict], ms: dict[str, str]) -> str:
    lines = ["| model | G MACs | recipe | LFW per seed | LFW mean ± half-range | dev mean | ms/face (b1, 1 thread) |",
             "|---|---|---|---|---|---|---|"]
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["model"], r["variant"]), []).append(r)
    for (model, variant), rs in cells.items():
        acc = [100 * r["lfw"] for r in rs]
        dev = [100 * r["dev"] for r in rs]
        per = ", ".join(f"{a:.2f}" for a in acc)
        half = (max(acc) - min(acc)) / 2
        lines.append(f"| {model} | {rs[0]['gmacs']:.3f} | {LABELS[variant]} | {per} | {np.mean(acc):.2f} ± {half:.2f} "
                     f"| {np.mean(dev):.2f} | {ms.get(model, 'n/a')} |")
    return "\n".join(lines)


def plot(rows: list[dict], ms: dict[str, str], extra: list[dict], path: str) -> None:
    """Two panels, LFW accuracy against G MACs and against ms per face: the zoo under this recipe (a line),
    the bundled model and the peers (`extra`: {"name", "lfw" in %, "gmacs" or None, "ms" or None})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from leanface.files import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    ours: dict[str, list[dict]] = {}
    for r in rows:
        ours.setdefault(r["model"], []).append(r)
    pts = sorted((rs[0]["gmacs"], 100 * np.mean([x["lfw"] for x in rs]), _median(ms[m]), m) for m, rs in ours.items())
    markers = "*sD^v"
    for ax, xi, xl in ((axes[0], 0, "G multiply-adds per 112x112 face (paper FLOPs = 2x)"),
                       (axes[1], 2, "ms per face, ONNX Runtime, 1 thread, batch 1")):
        ax.plot([q[xi] for q in pts], [q[1] for q in pts], "o-", color="C0", label="leanface zoo, short recipe")
        for q in pts:
            ax.annotate(q[3].replace("mobilefacenet", "mfn"), (q[xi], q[1]), fontsize=7, xytext=(3, -10),
                        textcoords="offset points")
        for k, e in enumerate(extra):
            x = e["gmacs"] if xi == 0 else e["ms"]
            if x is not None:
                ax.plot([x], [e["lfw"]], markers[k % len(markers)], color=f"C{k + 1}", markersize=9, label=e["name"])
        ax.set_xlabel(xl)
        ax.set_ylabel("LFW View 2 accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Embedders: LFW accuracy vs compute (ours trained on ~14 K faces; the peers on millions)")
    fig.tight_layout()
    save_figure(fig, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="identity-folder roots, comma-separated")
    p.add_argument("--teacher", help="ONNX teacher embedder (needed by the distillation variants)")
    p.add_argument("--models", default="mobilefacenet_0_1g", help="zoo embedders, comma-separated")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr-steps", help="default: 0.75 of the epochs")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--distill", type=float, default=64.0, help="distillation weight of the variants that use it")
    p.add_argument("--out", default="runs/recog_ablation")
    p.add_argument("--peers", help="bench_recognition.py --json-out file: the peers' LFW accuracy on the plot (SFace "
                                   "is timed here beside ours when it is the --teacher; the others at their own run)")
    p.add_argument("--bundled", default=str(ROOT / "src" / "leanface" / "weights" / "mobilefacenet.pt"),
                   help="also score and time this embedder (default: the bundled one; '' for none)")
    p.add_argument("--plot", help="write LFW accuracy vs G MACs and vs ms/face here (.png)")
    p.add_argument("--json-out", help="also write every row here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()

    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    if any(VARIANTS[v].get("distill", 1) for v in variants) and not args.teacher:
        p.error("the distillation variants need --teacher (an ONNX embedder, e.g. SFace)")
    if not (LFW / "pairs.txt").is_file():
        print(f"skipped: {LFW} is absent")
        return 0
    from leanface.errors import LeanfaceError
    from leanface.recognize.identities import pairs_crops

    try:
        lfw = pairs_crops(LFW)
        rows = []
        for model in args.models.split(","):
            for variant in variants:
                for seed in args.seeds:
                    row = run_one(args, model, variant, seed, lfw)
                    rows.append(row)
                    print(f"{model} {variant} seed {seed}: LFW {100 * row['lfw']:.2f} ± {100 * row['lfw_std']:.2f}, "
                          f"dev {100 * row['dev']:.2f}, {row['train_seconds'] / 60:.1f} min", flush=True)
        timed = {r["model"]: r["weights"] for r in rows if r["variant"] == variants[0] and r["seed"] == args.seeds[0]}
        bundled_lfw = None
        if args.plot and args.bundled:  # the bundled model and SFace are only drawn, not tabled
            timed["bundled"] = args.bundled
            from leanface.recognize import Embedder

            from leanface.train.recognition import score_pairs

            bundled_lfw = 100 * score_pairs(Embedder(args.bundled, batch_size=128), lfw).accuracy
            print(f"bundled {args.bundled}: LFW {bundled_lfw:.2f}")
        peers = json.loads(Path(args.peers).read_text())["rows"] if args.peers else []
        sface = next((r for r in peers if "SFace" in r["embedder"]), None)
        if args.plot and sface and args.teacher:
            timed["sface"] = args.teacher
        ms = ms_per_face(timed, lfw[0])
        print(table(rows, ms))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({"rows": rows, "ms_per_face_b1": ms}, indent=2))
        if args.plot:
            extra = []
            if bundled_lfw is not None:
                from leanface.models import create_model

                cfg = create_model(None, args.bundled).cfg
                extra.append({"name": "bundled (ours, long run)", "lfw": bundled_lfw, "gmacs": _gmacs(cfg),
                              "ms": _median(ms["bundled"])})
            for r in peers:
                if "untrained" in r["embedder"]:
                    continue
                own = "sface" in ms and r is sface
                extra.append({"name": r["embedder"] + ("" if own else " (ms: its own run)"),
                              "lfw": 100 * r["accuracy"], "gmacs": r["macs"] / 1e9 if r.get("macs") else None,
                              "ms": _median(ms["sface"] if own else r["ms_per_face_b1"])})
            plot([r for r in rows if r["variant"] == variants[0]], ms, extra, args.plot)
            print(f"plot: {args.plot}")
    except LeanfaceError as e:
        print(f"recog_ablation: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
