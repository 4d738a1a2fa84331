"""The `leanface` command. Thin: parse flags, call the library, print results.

Flags use the same words as the Python keyword arguments they feed. Expected mistakes
(LeanfaceError) print one line and exit 2; anything else is a bug and keeps its traceback.
Each subcommand is a pair `_add_<name>(sub)` / `_cmd_<name>(args) -> int`, listed in COMMANDS.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import flags
from .errors import LeanfaceError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv == ["--version"]:  # before any parser is built
        print(f"leanface {_version()}")
        return 0
    parser = argparse.ArgumentParser(prog="leanface", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"leanface {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    # Only the named command's flags are built: several derive theirs from config classes whose modules
    # import torch, and `leanface detect` should start in a fraction of a second. --help and mistakes get all.
    named = [(add, run) for add, run in COMMANDS if argv and add.__name__ == f"_add_{argv[0]}"]
    for add, run in named or COMMANDS:
        add(sub).set_defaults(_run=run)
    args = parser.parse_args(argv)
    import signal
    import threading

    # SIGTERM (`kill PID`, a scheduler's time limit) unwinds like Ctrl-C, so every `finally` runs: Ray shut
    # down, results files closed, worker processes ended.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args._run(args) or 0)
    except LeanfaceError as exc:
        print(f"leanface {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nleanface {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"\nleanface {args.command}: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:  # e.g. `leanface info | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(BaseException):
    """SIGTERM, raised where the command is so that it unwinds (not an Exception: nothing swallows it)."""


def _terminate(signum, frame):
    raise Terminated()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("leanface")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown (not installed)"


def _size(text: str) -> int | None:
    """--size: an int long side (at least 32), 'original' (original size padded to a multiple of 32), or 'preset'
    (the model family's)."""
    if text.lower() in ("original", "orig", "none"):
        return None
    if text == "preset":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'original', got {text!r}") from None


def _add_detector_args(p: argparse.ArgumentParser, use: str = "detect") -> None:
    """The Detector's arguments as flags; what is not given comes from the model family's `use` preset."""
    preset = f"the family's {use} preset, `leanface info`"
    p.add_argument("--model", help="zoo name (default: read from --weights, or the bundled default model)")
    p.add_argument("--weights", help="leanface .pt weights or an .onnx file (default: bundled model)")
    p.add_argument("--size", type=_size, default="preset", help=f"network long side, or 'original' (default: {preset}: "
                                                              f"640 for every family)")
    p.add_argument("--letterbox", action=argparse.BooleanOptionalAction,
                   help=f"pad to size x size (an official test canvas) or not (default: {preset})")
    p.add_argument("--score-thr", type=float, help=f"score threshold (default: {preset})")
    p.add_argument("--nms-thr", type=float, help=f"NMS IoU threshold (default: {preset})")
    p.add_argument("--max-faces", type=int, help="keep at most this many faces per image")
    p.add_argument("--pre-nms-topk", type=int, help=f"keep only the k best-scoring candidates before NMS "
                                                    f"(default: {preset})")
    p.add_argument("--batch-size", type=int, default=8, help="images per network call (default 8)")
    p.add_argument("--threads", type=int, help="CPU threads (default: library default)")
    p.add_argument("--random-init", action="store_true",
                   help="run --model untrained when no --weights are given (timing only; refused otherwise)")


def _detector(args, preset: str = "detect"):
    from .infer import Detector

    return Detector(model=args.model, weights=args.weights, preset=preset, size=args.size, letterbox=args.letterbox,
                    score_thr=args.score_thr, nms_thr=args.nms_thr, max_faces=args.max_faces,
                    pre_nms_topk=args.pre_nms_topk, batch_size=args.batch_size, threads=args.threads,
                    random_init=args.random_init)


# --- info -------------------------------------------------------------------------------------
def _add_info(sub):
    p = sub.add_parser("info", help="the zoo (names, families, tasks), or the parameters and GFLOPs of models")
    p.add_argument("model", nargs="?", help="zoo name or pattern (e.g. 'scrfd*') to count parameters and FLOPs "
                                            "(omit to list the zoo)")
    p.add_argument("--input-size", default="640x480", help="WxH for the FLOPs count (default 640x480)")
    p.add_argument("--json", action="store_true", help="print one JSON object per model")
    return p


def _cmd_info(args) -> int:
    import json

    from .models import get_config, get_family, list_models

    if not args.model:  # the listing needs no network built (and no torch imported)
        for name in list_models():
            cfg = get_config(name)
            family = get_family(cfg.family)
            presets = {use: {"size": p.size, "letterbox": p.letterbox, "score_thr": p.postprocess.score_thr,
                             "nms_thr": p.postprocess.nms_thr, "pre_nms_topk": p.postprocess.pre_nms_topk,
                             "max_faces": p.postprocess.max_faces} for use, p in family.presets.items()}
            record = {"model": name, "family": family.name, "task": family.task, "presets": presets}
            shown = "; ".join(f"{use}: " + ", ".join(f"{k} {v}" for k, v in p.items() if v is not None)
                              for use, p in presets.items())
            print(json.dumps(record) if args.json else f"{name:20s} {family.task:9s} {family.name:14s} {shown}")
        if not args.json:
            print("(`leanface info NAME` or a pattern such as 'scrfd*': parameters and FLOPs; `leanface models`: "
                  "trained weights)")
        return 0
    from .models import create_model
    from .models.flops import count_flops

    names = list_models(args.model) if any(c in args.model for c in "*?[") else [args.model]
    if not names:
        raise LeanfaceError(f"no zoo model matches {args.model!r}; `leanface info` lists them")
    try:
        w, h = (int(v) for v in args.input_size.lower().split("x"))
    except ValueError:
        raise LeanfaceError(f"--input-size: expected WxH, got {args.input_size!r}") from None
    for name in names:
        net = create_model(name)
        size = getattr(net.cfg, "input_size", None)  # embedders take fixed-size crops
        iw, ih = (size, size) if size else (w, h)
        report = count_flops(net, (3, ih, iw))
        record = {"model": name, "params": report.params, "gflops": round(report.gflops, 4), "input_size": [iw, ih]}
        if size:  # the recognition papers count a multiply-add as 2 FLOPs
            record["gflops_2x"] = round(2 * report.gflops, 4)
        if args.json:
            print(json.dumps(record))
        else:
            # GFLOPs here are multiply-adds (mmcv's count, as SCRFD's tables); embedders also get the
            # recognition papers' convention, 2 x multiply-adds.
            extra = f" = {2 * report.gflops:.4f} GFLOPs as 2 x multiply-adds (recognition papers)" if size else ""
            print(f"{name:20s} params {report.params / 1e6:7.4f} M   {report.gflops:8.4f} G multiply-adds at "
                  f"{iw}x{ih}{extra}")
    return 0


# --- models -----------------------------------------------------------------------------------
def _add_models(sub):
    p = sub.add_parser("models", help="the trained weights: task, file, sha256, scores and terms of use")
    p.add_argument("--json", action="store_true", help="print a JSON list of objects")
    p.add_argument("--markdown", action="store_true", help="print the README's model table")
    return p


def _cmd_models(args) -> int:
    import json

    from . import pretrained

    if args.json:
        print(json.dumps([p.to_dict() for p in pretrained.PRETRAINED.values()], indent=2))
    elif args.markdown:
        print(pretrained.markdown_table())
    else:
        for p in pretrained.PRETRAINED.values():
            print(f"{p.name} ({p.task}, {p.source}): {p.model}, input {p.input_size}")
            for m in p.metrics:
                print(f"  {m.name} {m.value:g} on {m.dataset}: `{m.command}`")
            print(f"  trained on {p.data}" + (f", taught by {p.teacher}" if p.teacher else ""))
            print(f"  terms: {p.terms}\n  file: {p.file} sha256 {p.sha256}")
    return 0


# --- convert ----------------------------------------------------------------------------------
def _add_convert(sub):
    p = sub.add_parser("convert", help="import official weights (ONNX, mmdet .pth, ncnn, EXTD/EResFD .pth)")
    p.add_argument("src", help="official weights file")
    p.add_argument("--model", help="zoo name (default: inferred from the file)")
    p.add_argument("-o", "--out", required=True, help="output leanface .pt")
    p.add_argument("--exist-ok", action="store_true", help="replace an existing leanface .pt OUT (default: refused)")
    return p


def _cmd_convert(args) -> int:
    from .files import file_digest
    from .models import save_checkpoint
    from .models.importers import import_weights
    from .outputs import CHECKPOINT, OutputGuard

    guard = OutputGuard("convert", exist_ok=args.exist_ok)
    guard.inputs(args.src, what="the official weights")
    guard.file(args.out, "-o", CHECKPOINT)
    cfg, state = import_weights(args.src, args.model)
    save_checkpoint(args.out, cfg, state, source=str(args.src), source_sha256=file_digest(args.src))
    print(f"{args.src} -> {args.out} ({cfg.name}, {len(state)} tensors)")
    return 0


def _add_average(sub):
    p = sub.add_parser("average", help="average the weights of several epochs or runs of one model (SWA, soups)")
    p.add_argument("weights", nargs="+", help="leanface weights files of one model (model.pt, epochs/e*.pt)")
    p.add_argument("-o", "--out", required=True, help="output leanface .pt")
    p.add_argument("--exist-ok", action="store_true", help="replace an existing leanface .pt OUT (default: refused)")
    return p


def _cmd_average(args) -> int:
    from .files import file_digest
    from .models import save_checkpoint
    from .outputs import CHECKPOINT, OutputGuard
    from .train import average_weights

    guard = OutputGuard("average", exist_ok=args.exist_ok)
    guard.inputs(*args.weights, what="the weights to average")
    guard.file(args.out, "-o", CHECKPOINT)
    cfg, state = average_weights(args.weights)
    save_checkpoint(args.out, cfg, state, averaged=[{"file": str(w), "sha256": file_digest(w)} for w in args.weights])
    print(f"{len(args.weights)} weights files of {cfg.name} -> {args.out}")
    return 0


# --- detect -----------------------------------------------------------------------------------
def _add_rerun_flags(p) -> None:
    """What a verb that writes --json-out does when the file already exists (refused by default)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="skip the inputs JSON_OUT already has (after an interrupted run) and append the rest")
    g.add_argument("--exist-ok", action="store_true", help="overwrite an existing JSON_OUT (default: refused)")


def _add_detect(sub):
    p = sub.add_parser("detect", help="detect faces in images, folders and videos")
    p.add_argument("paths", nargs="+", help="images, folders of images, or video files")
    _add_detector_args(p)
    p.add_argument("--json-out", help="write one JSON object per image (per frame for videos) to this file")
    p.add_argument("--save-dir", help="write annotated images here")
    p.add_argument("--crops", action="store_true", help="also write face crops to SAVE_DIR/crops")
    _add_rerun_flags(p)
    bulk = p.add_argument_group("bulk detection on Ray (images and .txt/.lst list files of image paths)")
    bulk.add_argument("--address", help="run on Ray: 'local' (a private instance here), 'auto' (this machine's "
                                        "cluster) or HOST:PORT (a cluster's head); writes --shard-dir")
    bulk.add_argument("--shard-dir", help="--address: folder of shard-NNNNNN.jsonl results; a rerun skips the "
                                          "images its shards hold")
    bulk.add_argument("--workers", type=int, help="--address: detector actors (default: the cluster's CPUs)")
    bulk.add_argument("--shard-size", type=int, help="--address: images per shard (default 64)")
    return p


def _cmd_detect(args) -> int:
    from .app.runner import plan_detect, run_bulk

    from .outputs import OutputGuard

    if args.address is not None:
        if not args.shard_dir:
            raise LeanfaceError("--address needs --shard-dir (the folder its shard files go to)")
        if args.json_out or args.save_dir or args.crops:
            raise LeanfaceError("--address writes shard files to --shard-dir; --json-out, --save-dir and --crops "
                                "are for runs without it")
        settings = {k: getattr(args, k) for k in ("model", "weights", "size", "letterbox", "score_thr", "nms_thr",
                                                  "max_faces", "pre_nms_topk", "batch_size", "threads",
                                                  "random_init")}
        return run_bulk(settings, args.paths, args.shard_dir, args.address, workers=args.workers,
                        shard_size=args.shard_size)
    if args.shard_dir or args.workers is not None or args.shard_size is not None:
        raise LeanfaceError("--shard-dir, --workers and --shard-size are for --address runs")
    guard = OutputGuard("detect", exist_ok=args.exist_ok, resume=args.resume)
    guard.inputs(args.weights, what="the weights")
    job = plan_detect(args.paths, json_out=args.json_out, save_dir=args.save_dir, crops=args.crops,
                      resume=args.resume, guard=guard)
    return job.run(_detector(args))


# --- demo -------------------------------------------------------------------------------------
def _add_demo(sub):
    p = sub.add_parser("demo", help="detect faces in the bundled sample image (NASA astronaut portrait)")
    p.add_argument("--model")
    p.add_argument("--weights")
    p.add_argument("--save-dir", default="demo_out", help="where to write the annotated image (default demo_out)")
    p.add_argument("--exist-ok", action="store_true", help="replace SAVE_DIR/astronaut.jpg (default: refused)")
    return p


def _cmd_demo(args) -> int:
    from .app.runner import run_demo

    return run_demo(model=args.model, weights=args.weights, save_dir=args.save_dir, exist_ok=args.exist_ok)


# --- export -----------------------------------------------------------------------------------
def _add_export(sub):
    from .export import CALIBRATION_METHODS
    from .export.quantize import DEFAULT_CALIB_IMAGES

    p = sub.add_parser("export", help="export a model to ONNX (detectors: the official SCRFD output layout; "
                                      "embedders: dynamic batch, normalisation in the metadata), float or int8")
    p.add_argument("model", help="zoo name (must match the weights)")
    p.add_argument("--weights", required=True, help="leanface .pt weights")
    p.add_argument("-o", "--out", required=True, help="output .onnx")
    p.add_argument("--exist-ok", action="store_true", help="replace an existing leanface ONNX export OUT "
                                                          "(default: refused)")
    p.add_argument("--threshold", type=float, help="embedders: the same-person cosine threshold to store (e.g. "
                                                   "the one `leanface eval --data LFW_DIR` prints)")
    p.add_argument("--int8", action="store_true", help="statically quantise (QDQ, per-channel int8 weights, "
                                                       "uint8 activations calibrated on --calib images)")
    p.add_argument("--calib", help="--int8 (required): folder of calibration images, searched recursively (detectors: "
                                   "a few hundred photos like the ones to detect in; embedders: aligned face crops)")
    p.add_argument("--calib-images", type=int, default=DEFAULT_CALIB_IMAGES,
                   help=f"--int8: how many calibration images to draw (default {DEFAULT_CALIB_IMAGES})")
    p.add_argument("--calib-method", default="minmax", choices=CALIBRATION_METHODS,
                   help="--int8: activation range calibration (default minmax: measured best, README)")
    return p


def _cmd_export(args) -> int:
    from .export import export_int8, export_onnx
    from .models import create_model, get_family

    from .outputs import ONNX, OutputGuard

    if not args.int8 and args.calib is not None:
        raise LeanfaceError("--calib is for --int8 exports")
    guard = OutputGuard("export", exist_ok=args.exist_ok)
    guard.inputs(args.weights, what="the weights")
    guard.input_folder(args.calib, "the calibration images")
    guard.file(args.out, "-o", ONNX)
    net = create_model(args.model, args.weights)
    task = get_family(net.cfg.family).task
    if args.threshold is not None and (task != "embed" or not -1 <= args.threshold <= 1):
        raise LeanfaceError(f"--threshold is an embedder's cosine in [-1, 1]; got {args.threshold} for {net.cfg.name}")
    shape = "dynamic batch, height, width" if task != "embed" else \
        f"dynamic batch, {net.cfg.input_size}x{net.cfg.input_size} RGB input, L2-normalised"
    if not args.int8:
        export_onnx(net, args.out, threshold=args.threshold)
        print(f"{args.out}: {', '.join(net.output_names)} ({shape})")
        return 0
    if args.calib is None:
        raise LeanfaceError(f"--int8 needs --calib DIR: real {'aligned face crops' if task == 'embed' else 'photos'}, "
                            f"a few hundred, to measure the activation ranges on")
    report = export_int8(net, args.out, args.calib, count=args.calib_images, method=args.calib_method,
                         threshold=args.threshold, progress=not getattr(args, "quiet", False))
    for reason in report.calib_skipped:
        print(f"leanface: skipped for calibration: {reason}", file=sys.stderr)
    print(f"{args.out}: int8 QDQ ({report.quantized_nodes} quantised tensors; float: "
          f"{', '.join(report.float_nodes) or 'none'}), calibrated on {report.calib_images} images ({report.method}), "
          f"{report.int8_bytes / 1e6:.2f} MB vs {report.float_bytes / 1e6:.2f} MB float; {', '.join(net.output_names)} "
          f"({shape})")
    return 0


# --- bench ------------------------------------------------------------------------------------
def _add_bench(sub):
    p = sub.add_parser("bench", help="time a detector on one image (model only and end to end), or an embedder "
                                     "(ms per face at batch 1 and 32, and photo -> embeddings)")
    p.add_argument("image", nargs="?", help="image (default: the sample image)")
    _add_detector_args(p)
    p.add_argument("--embedder", help="time this embedder (a name from `leanface models`, .pt, .onnx, or a zoo "
                                      "name untrained) instead; the detector "
                                      "flags set the detector of the photo -> embeddings call")
    p.add_argument("--mean", help="embedder input mean R,G,B (default: what the file says, else 0)")
    p.add_argument("--std", help="embedder input std R,G,B (default: what the file says, else 1)")
    p.add_argument("--repeats", type=int, default=20)
    return p


def _cmd_bench(args) -> int:
    from .app.benchmark import bench_detector
    from .infer import sample_image

    import os

    image = args.image or sample_image()
    from .host import available_cores

    cores = available_cores()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5 * cores:
        print(f"leanface bench: warning: the machine is busy (load {load:.1f} on {cores} cores); "
              f"times are slower and noisier than on an idle one", file=sys.stderr)
    if args.embedder:
        return _bench_embedder(args, image)
    res = bench_detector(_detector(args), image, repeats=args.repeats)
    print(f"model {res['model_ms']:.2f} ms ({res['model_p10_ms']:.2f}-{res['model_p90_ms']:.2f})   "
          f"end-to-end {res['end_to_end_ms']:.2f} ms ({res['end_to_end_p10_ms']:.2f}-{res['end_to_end_p90_ms']:.2f})"
          f"   ({res['input']}, {res['backend']}, median and 10-90% range of {args.repeats}, alternating)")
    return 0


def _bench_embedder(args, image) -> int:
    from .app.benchmark import bench_embedder
    from . import pretrained
    from .models import list_models
    from .recognize import Embedder, Recognizer

    zoo = args.embedder in list_models() and pretrained.get(args.embedder, "embed") is None
    emb = Embedder(None if zoo else args.embedder, model=args.embedder if zoo else None, mean=args.mean,
                   std=args.std, threads=args.threads, random_init=zoo)  # a zoo name: timing only
    rec = Recognizer(embedder=emb, detector=_detector(args))
    res = bench_embedder(emb, rec, image, repeats=args.repeats)
    print(f"{emb.name}: batch 1 {res['batch1_ms']:.2f} ms/face ({res['batch1_p10_ms']:.2f}-{res['batch1_p90_ms']:.2f})"
          f"   batch 32 {res['batch32_ms']:.2f} ms/face ({res['batch32_p10_ms']:.2f}-{res['batch32_p90_ms']:.2f})"
          f"   photo -> embeddings {res['photo_ms']:.1f} ms ({res['photo_p10_ms']:.1f}-{res['photo_p90_ms']:.1f})"
          f"   (median and 10-90% range of {args.repeats})")
    return 0


# --- eval -------------------------------------------------------------------------------------
def _add_eval(sub):
    p = sub.add_parser("eval", help="WIDER FACE val AP (easy/medium/hard) of a detector, or LFW / pairs-file "
                                    "verification accuracy of an embedder")
    p.add_argument("--data", required=True, help="WIDER FACE root (WIDER_val/images/, ground_truth/*.mat), or an "
                                                 "LFW folder (pairs.txt, lfw-deepfunneled/), or the root of --pairs")
    p.add_argument("--preds", help="WIDER: score this submission folder (<event>/<image>.txt) instead of running a model")
    _add_detector_args(p, "eval")
    v = p.add_argument_group("verification (LFW or --pairs): --model/--weights name the embedder")
    v.add_argument("--embedder", dest="weights", help="the embedder: a name from `leanface models` (e.g. sface), "
                                                      "or its file (the same as --weights)")
    v.add_argument("--pairs", help="pairs file: path1<TAB>path2<TAB>same (1/0)<TAB>fold, paths relative to --data; "
                                   "a side may be a template: a folder of images, or paths joined by ';'")
    v.add_argument("--aggregator", choices=("mean", "qan", "best"), default="mean",
                   help="how a template's images become one embedding (default mean; qan and best use --quality)")
    v.add_argument("--quality", default="bundled", help="face-quality net for --aggregator qan/best: 'bundled' "
                                                        "(default) or weights")
    v.add_argument("--aligned", action="store_true", help="the images are aligned crops of the embedder's input size")
    _add_embedder_args(v)
    v.add_argument("--det-weights", help="detector weights for alignment (default: the bundled detector)")
    p.add_argument("--output", help="folder for the JSON record and plot (WIDER: also predictions; default: "
                                    "runs/eval/<model>-<size>, or the --preds folder)")
    p.add_argument("--exist-ok", action="store_true", help="replace an evaluation already in OUTPUT (default: refused)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return p


def _eval_guard(args, out, record: str, plot: str, keys: tuple[str, ...], predictions: bool = False):
    """--output checked before any work: a folder, outside the data, an earlier evaluation replaced only with
    --exist-ok; a folder of other files (e.g. someone's predictions) never written into."""
    from pathlib import Path

    from .outputs import PLOT, OutputGuard, json_record

    guard = OutputGuard("eval", exist_ok=args.exist_ok)
    if predictions:  # a WIDER run reads the validation images; a pairs run only the files its lines name
        guard.input_folder(Path(args.data) / "WIDER_val", "the WIDER validation set")
    guard.inputs(args.weights, getattr(args, "pairs", None), what="an input")
    guard.inputs(getattr(args, "det_weights", None), what="the detector weights")
    out = Path(out)
    if predictions and out.is_dir() and any(out.iterdir()) and not (out / record).is_file():
        raise LeanfaceError(f"{out}: --output holds files that are not a leanface evaluation; choose another folder")
    guard.folder(out, "--output", writes=[record, plot], kinds={record: json_record(*keys), plot: PLOT})


def _cmd_eval(args) -> int:
    import json
    from pathlib import Path

    from .data.pairs import LFW_IMAGES
    from .data import load_ground_truth
    from .eval import evaluate_detector, evaluate_folder, write_report
    from .files import file_digest
    from .eval.report import PLOT_NAME, RECORD_NAME
    if args.pairs or (Path(args.data) / "pairs.txt").is_file():
        return _eval_verification(args)
    try:
        gt = load_ground_truth(args.data)
    except LeanfaceError as exc:
        raise LeanfaceError(f"{exc} (eval takes a WIDER FACE root, an LFW folder with pairs.txt and "
                            f"{LFW_IMAGES}/, or --pairs FILE)") from None
    settings: dict = {"protocol": "WIDER FACE val (official): IoU 0.5, 1000 thresholds, VOC all-point AP"}
    if args.preds:
        if args.model or args.weights:
            raise LeanfaceError("--preds scores an existing folder; it cannot be combined with --model/--weights")
        out = Path(args.output or args.preds)
        _eval_guard(args, out, RECORD_NAME, PLOT_NAME, ("easy", "medium", "hard"))
        evaluation = evaluate_folder(args.preds, args.data, ground_truth=gt)
        settings["preds"] = str(args.preds)
        title = str(args.preds)
    else:
        detector = _detector(args, "eval")
        name = detector.config.name
        scale = "original" if detector.size is None else str(detector.size)
        out = Path(args.output or Path("runs") / "eval" / f"{name}-{scale}")
        _eval_guard(args, out, RECORD_NAME, PLOT_NAME, ("easy", "medium", "hard"), predictions=True)
        evaluation, timings = evaluate_detector(detector, args.data, out, batch_size=args.batch_size,
                                                ground_truth=gt)
        settings.update(
            model=name, weights=detector.weights,
            weights_sha256=file_digest(detector.weights) if detector.weights else None,
            test_scale="original size" if detector.size is None else f"long side {detector.size}",
            size=detector.size, letterbox=detector.letterbox, score_thr=detector.postprocess.score_thr,
            nms_thr=detector.postprocess.nms_thr, max_faces=detector.postprocess.max_faces,
            pre_nms_topk=detector.postprocess.pre_nms_topk, predictions_dir=str(out), **timings)
        title = f"{name}, {settings['test_scale']}"
    record = write_report(evaluation, out, settings, title=title)
    if args.json:
        print(json.dumps(record))
        return 0
    what = "subset" if record["subset"] else "full set"
    print(f"WIDER FACE val {what}: {record['images']} of {record['protocol_images']} images, "
          f"{record['events']} of {record['protocol_events']} events")
    for s in ("easy", "medium", "hard"):
        print(f"  {s.capitalize():7s} AP {100 * record[s]:6.2f}   ({record['faces'][s]} faces)")
    if record["missing_predictions"] or record["extra_predictions"]:
        print(f"  prediction files: {record['missing_predictions']} missing (scored as no faces), "
              f"{record['extra_predictions']} extra (ignored)")
    print(f"saved {out / RECORD_NAME} and {out / PLOT_NAME}")
    return 0


def _eval_verification(args) -> int:
    import json
    from pathlib import Path

    from .data import load_pairs
    from .eval import evaluate_pairs, write_verification_report
    from .eval.pairs_eval import RECORD_NAME, ROC_NAME, VERIFY_SCORE_THR

    if args.preds:
        raise LeanfaceError("--preds is for WIDER FACE; verification runs an embedder (--weights)")
    pairs = load_pairs(args.data, args.pairs)
    if args.score_thr is None:
        args.score_thr = VERIFY_SCORE_THR
    if args.aggregator == "mean" or not pairs.templates:
        args.quality = None  # no quality net to load when nothing is weighted by it
    rec = _recognizer(args)
    out = Path(args.output or Path("runs") / "eval" /
               f"{Path(rec.embedder.name).stem}-{'lfw' if not args.pairs else 'pairs'}")
    _eval_guard(args, out, RECORD_NAME, ROC_NAME, ("accuracy",))
    record, curves = evaluate_pairs(rec, pairs, aligned=args.aligned, progress=not args.json,
                                    aggregator=args.aggregator)
    name = rec.embedder.name
    record = write_verification_report(
        {**record, "model": name, "weights": getattr(rec.embedder, "weights", None),
         "detector": rec.detector.weights or rec.detector.config.name, "aligned": args.aligned, "flip": args.flip,
         "protocol": "LFW View 2: 10 folds, threshold chosen on the other 9 by accuracy" if not args.pairs else
         "pairs file: per fold, threshold chosen on the other folds by accuracy",
         "data": str(args.data), "pairs_file": str(pairs.source)}, curves, out, title=name)
    if args.json:
        print(json.dumps(record))
        return 0
    print(f"{name}: accuracy {100 * record['accuracy']:.2f}% +- {100 * record['accuracy_std']:.2f} "
          f"over {record['folds']} folds, {record['pairs']} pairs; TAR@FAR=1e-3 {100 * record['tar_at_far_1e-3']:.2f}%, "
          f"TAR@FAR=1e-2 {100 * record['tar_at_far_1e-2']:.2f}%; threshold on all pairs {record['threshold']:.4f}")
    print(f"  {record['no_face']} pairs with a photo where no face was found (centre crop), "
          f"{record['skipped_pairs']} pairs skipped (unreadable images); "
          f"{record['ms_per_image']:.1f} ms per image, scoring {record['scoring_ms']:.0f} ms")
    print(f"saved {record['record']} and {record['roc_plot']}")
    return 0


# --- recognition ------------------------------------------------------------------------------
def _add_embedder_args(p) -> None:
    p.add_argument("--mean", help="embedder input mean, R,G,B (pixel - mean) / std (default: what the file says, "
                                  "else 0)")
    p.add_argument("--std", help="embedder input std, R,G,B (default: what the file says, else 1)")
    p.add_argument("--flip", action="store_true", help="average each face's embedding with its mirror image's")
    p.add_argument("--threshold", type=float, help="cosine similarity above which faces are the same person "
                                                   "(default: the one stored in the embedder file)")


def _add_recognizer_args(p) -> None:
    p.add_argument("--embedder", "--weights", dest="weights",
                   help="the embedder: a name from `leanface models` (default: the bundled mobilefacenet; 'sface' "
                        "with the sface extra), a leanface .pt or a 112x112 ONNX embedder")
    p.add_argument("--model", help="embedder zoo name (default: read from --weights)")
    _add_embedder_args(p)
    p.add_argument("--det-weights", help="detector weights (default: the bundled detector)")
    p.add_argument("--size", type=_size, default="preset", help="detector long side, or 'original' (default: the "
                                                              "detector family's detect preset, 640)")
    p.add_argument("--score-thr", type=float, help="detector score threshold (default: the detector family's "
                                                   "detect preset, 0.5)")
    p.add_argument("--batch-size", type=int, default=8, help="images per detector call (default 8)")
    p.add_argument("--threads", type=int, help="CPU threads (default: one per core)")


def _recognizer(args):
    from .infer import Detector
    from .recognize import Recognizer

    size = getattr(args, "size", "preset")
    detector = Detector(weights=args.det_weights, size=size, score_thr=args.score_thr,
                        batch_size=args.batch_size, threads=args.threads)
    quality = getattr(args, "quality", None)
    quality = None if quality in (None, "none") else True if quality == "bundled" else quality
    return Recognizer(args.weights, model=args.model, mean=args.mean, std=args.std, flip=args.flip,
                      threshold=args.threshold, detector=detector, threads=args.threads, quality=quality)


def _add_embed(sub):
    p = sub.add_parser("embed", help="faces and their embeddings in images, folders and videos (JSON lines)")
    p.add_argument("paths", nargs="+", help="images, folders of images, or video files")
    _add_recognizer_args(p)
    p.add_argument("--json-out", help="write one JSON object per image (per frame for videos): box, score, "
                                      "landmarks, embedding per face")
    p.add_argument("--save-dir", help="write annotated images here")
    _add_rerun_flags(p)
    return p


def _recognizer_inputs(guard, args) -> None:
    """The files a recognition verb reads besides its photos: they are never outputs."""
    guard.inputs(args.weights, what="the embedder weights")
    guard.inputs(args.det_weights, what="the detector weights")
    if getattr(args, "quality", None) not in (None, "none", "bundled"):
        guard.inputs(args.quality, what="the quality-net weights")


def _cmd_embed(args) -> int:
    from .app.runner import plan_detect
    from .outputs import OutputGuard

    guard = OutputGuard("embed", exist_ok=args.exist_ok, resume=args.resume)
    _recognizer_inputs(guard, args)
    job = plan_detect(args.paths, json_out=args.json_out, save_dir=args.save_dir, verb="embed",
                      resume=args.resume, guard=guard)
    return job.run(_recognizer(args))


def _add_verify(sub):
    p = sub.add_parser("verify", help="are the main faces of two photos the same person?")
    p.add_argument("a", help="first photo")
    p.add_argument("b", help="second photo")
    _add_recognizer_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return p


def _cmd_verify(args) -> int:
    import json

    result = _recognizer(args).verify(args.a, args.b)
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, **result.to_dict()}))
    else:
        print(f"similarity {result.similarity:.4f}: {'same person' if result.same else 'different people'} "
              f"(threshold {result.threshold:.4f})")
    return 0


def _add_identify(sub):
    p = sub.add_parser("identify", help="name the faces in images, folders and videos against a gallery folder")
    p.add_argument("paths", nargs="+", help="images, folders of images, or video files")
    p.add_argument("--gallery", required=True, help="a gallery store (.db, `leanface gallery add`) or a folder of "
                                                    "identity sub-folders (GALLERY/<name>/*.jpg)")
    p.add_argument("--fpir", type=float, help="instead of --threshold: the false-positive identification rate to "
                                              "hold at this gallery's size (a store calibrated with `leanface "
                                              "gallery calibrate`), e.g. 0.01")
    _add_recognizer_args(p)
    p.add_argument("--cache", help="gallery embedding cache file (default: one per setup under "
                                   "~/.cache/leanface/gallery)")
    p.add_argument("--no-cache", action="store_true", help="embed the gallery afresh and keep no cache")
    p.add_argument("--quality", default="bundled", help="face-quality net for QAN++ aggregation of video "
                                                        "tracks: 'bundled' (default), weights, or 'none' (mean)")
    p.add_argument("--json-out", help="write one JSON object per image (box, score, landmarks, embedding, "
                                      "identity, similarity, quality per face) and one per video track "
                                      "(track, first_frame, last_frame, identity, similarity, frames)")
    p.add_argument("--save-dir", help="write images annotated with names here")
    _add_rerun_flags(p)
    return p


def _cmd_identify(args) -> int:
    from .app.runner import plan_detect
    from .outputs import GALLERY_CACHE, OutputGuard
    from .recognize import Identifier, build_gallery, open_store_gallery, require_threshold

    if args.cache and args.no_cache:
        raise LeanfaceError("--cache and --no-cache contradict each other")
    guard = OutputGuard("identify", exist_ok=args.exist_ok, resume=args.resume)
    _recognizer_inputs(guard, args)
    if os.path.isdir(args.gallery):
        guard.input_folder(args.gallery, "the gallery")
    else:
        guard.inputs(args.gallery, what="the gallery store")
    job = plan_detect(args.paths, json_out=args.json_out, save_dir=args.save_dir, verb="identify",
                      resume=args.resume, guard=guard)
    # The cache is updated in place as the gallery changes (no --exist-ok), but only a gallery cache.
    guard.file(args.cache, "--cache", GALLERY_CACHE, replaceable=False)
    if args.fpir is not None and not 0 < args.fpir < 1:
        raise LeanfaceError(f"--fpir must be in (0, 1), got {args.fpir}")
    rec = _recognizer(args)
    if os.path.isfile(args.gallery):
        if args.cache:
            raise LeanfaceError("--cache is for gallery folders; a store keeps its own embeddings")
        gallery = open_store_gallery(args.gallery, rec)
    else:
        if args.fpir is None:
            require_threshold(rec)  # say so before embedding the gallery
        gallery = build_gallery(args.gallery, rec, cache=False if args.no_cache else args.cache,
                                report=lambda m: print(f"leanface identify: warning: {m}", file=sys.stderr))
    identifier = Identifier(rec, gallery, fpir=args.fpir)
    if identifier.threshold >= 1:
        print(f"leanface identify: warning: no threshold holds FPIR {args.fpir:g} with {len(gallery.names):,} faces "
              f"for this embedder (it would be {identifier.threshold:.3f}): every face will be unknown",
              file=sys.stderr)
    print(f"gallery {args.gallery}: {len(gallery.identities)} identities, {len(gallery.names)} faces enrolled; "
          f"threshold {identifier.threshold:.4f}" + (f" (FPIR {args.fpir:g} at this size)" if args.fpir else ""),
          file=sys.stderr)
    return job.run(identifier)


# --- gallery ----------------------------------------------------------------------------------
def _add_gallery(sub):
    p = sub.add_parser("gallery", help="a gallery store (.db): enrol, remove, list, calibrate identities")
    steps = p.add_subparsers(dest="gallery_command", required=True)
    a = steps.add_parser("add", help="enrol the main face of each photo under NAME (or every identity sub-folder "
                                     "of --folder); a rerun with --resume continues an interrupted enrolment")
    a.add_argument("store", help="the store file (.db; created if absent)")
    a.add_argument("name", nargs="?", help="identity name (omit with --folder)")
    a.add_argument("photos", nargs="*", help="photos or folders of photos of NAME")
    a.add_argument("--folder", help="enrol every identity sub-folder of this folder (FOLDER/<name>/*.jpg)")
    a.add_argument("--update", action="store_true", help="add photos to an identity already enrolled")
    a.add_argument("--resume", action="store_true", help="continue an interrupted enrolment: photos already "
                                                         "enrolled (by content) are skipped")
    _add_recognizer_args(a)
    bulk = a.add_argument_group("bulk enrolment on Ray (the bulk-detection machinery: sharded, resumable)")
    bulk.add_argument("--address", help="'local', 'auto' or HOST:PORT: detect and embed on Ray workers into "
                                        "--shard-dir, then enrol from the shards")
    bulk.add_argument("--shard-dir", help="--address: folder of shard files (a rerun reuses the shards there)")
    bulk.add_argument("--workers", type=int, help="--address: workers (default: the cluster's CPUs)")
    bulk.add_argument("--shard-size", type=int, help="--address: photos per shard (default 64)")
    r = steps.add_parser("remove", help="remove identities (all their faces)")
    r.add_argument("store")
    r.add_argument("names", nargs="+")
    for name, help_ in (("list", "identities and their face counts"), ("info", "size, setup and calibration")):
        q = steps.add_parser(name, help=help_)
        q.add_argument("store")
        q.add_argument("--json", action="store_true", help="print JSON on stdout")
    c = steps.add_parser("calibrate", help="fit the embedder's impostor-score tail on dev identity folders "
                                           "(never the test set), for `identify --fpir`")
    c.add_argument("store")
    c.add_argument("--data", required=True, help="identity-folder roots of people not in the gallery's tests, "
                                                 "comma-separated")
    c.add_argument("--max-pairs", type=int, default=2_000_000, help="impostor pairs drawn (default 2,000,000)")
    _add_recognizer_args(c)
    return p


def _cmd_gallery(args) -> int:
    import json

    from .outputs import GALLERY_STORE, OutputGuard
    from .recognize import GalleryStore
    from .recognize.gallery import store_setup

    if args.gallery_command in ("list", "info", "remove"):
        with GalleryStore(args.store) as store:
            if args.gallery_command == "list":
                rows = store.identities()
                if args.json:
                    print(json.dumps([{"identity": n, "faces": k} for n, k in rows]))
                else:
                    for n, k in rows:
                        print(f"{n}\t{k}")
            elif args.gallery_command == "info":
                info = store.info()
                print(json.dumps(info) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
            else:
                enrolled = dict(store.identities())
                missing = [n for n in args.names if n not in enrolled]
                for n in args.names:
                    if n in enrolled:
                        print(f"removed {n} ({store.remove(n)} faces)", file=sys.stderr)
                if missing:
                    raise LeanfaceError(f"{args.store}: not enrolled: {', '.join(missing)}")
        return 0
    guard = OutputGuard("gallery", resume=True)
    _recognizer_inputs(guard, args)
    if args.gallery_command == "calibrate":
        return _gallery_calibrate(args, store_setup)
    if bool(args.folder) == bool(args.name):
        raise LeanfaceError("give NAME and photos, or --folder FOLDER (identity sub-folders), not both")
    if args.name and not args.photos:
        raise LeanfaceError(f"no photos given for {args.name!r}")
    guard.inputs(*args.photos, what="a photo")
    if args.folder:
        guard.input_folder(args.folder, "the photos")
    guard.file(args.store, "STORE", GALLERY_STORE, replaceable=False)
    if args.address is not None:
        if not args.shard_dir:
            raise LeanfaceError("--address needs --shard-dir (the folder its shard files go to)")
        guard.folder(args.shard_dir, "--shard-dir")
    elif args.shard_dir or args.workers is not None or args.shard_size is not None:
        raise LeanfaceError("--shard-dir, --workers and --shard-size are for --address runs")
    return _gallery_add(args)


def _gallery_add(args) -> int:
    from pathlib import Path

    from .infer import list_images
    from .recognize import GalleryStore, enrol_photos
    from .data.identities import identity_folder
    from .app.bulk import enrol_bulk
    from .recognize.gallery import store_setup

    def report(message: str) -> None:
        nonlocal failures
        print(f"leanface gallery: error: {message}", file=sys.stderr)
        failures += 1

    failures = 0
    if args.folder:
        groups: dict[str, list[Path]] = {}
        for name, file in identity_folder(args.folder, loose="stem", report=report, what="gallery"):
            groups.setdefault(name, []).append(file)
    else:
        files = []
        for p in args.photos:
            try:
                files.extend(list_images(p))
            except LeanfaceError as exc:
                report(str(exc))
        groups = {args.name: files}
    rec = _recognizer(args)
    with GalleryStore(args.store, create=True, setup=store_setup(rec)) as store:
        enrolled = dict(store.identities())
        clash = [n for n in groups if n in enrolled]
        if clash and not (args.update or args.resume):
            raise LeanfaceError(f"{args.store}: already enrolled: {', '.join(clash[:5])}"
                                f"{' ...' if len(clash) > 5 else ''}; --update adds photos to them, --resume continues "
                                f"an interrupted enrolment")
        added = skipped = 0
        if args.address is not None:
            settings = {k: getattr(args, k) for k in ("weights", "model", "mean", "std", "flip", "det_weights", "size",
                                                      "score_thr", "batch_size", "threads")}
            before = failures
            added, skipped, failed = enrol_bulk(store, settings, groups, args.shard_dir, args.address,
                                                workers=args.workers, shard_size=args.shard_size, report=report)
            failures = before + failed  # the workers' failures are reported by the bulk runner itself
        else:
            for name, files in groups.items():
                a, s, _ = enrol_photos(store, rec, name, files, report=report)
                added, skipped = added + a, skipped + s
        total = len(store)
    print(f"{args.store}: {added} face(s) enrolled" + (f", {skipped} already there" if skipped else "") +
          f"; {total} in the store" + (f"; {failures} photo(s) failed" if failures else ""), file=sys.stderr)
    return 2 if failures else 0


def _gallery_calibrate(args, store_setup) -> int:
    from .recognize import GalleryStore, ImpostorTail
    from .recognize.identities import load_identity_faces
    from .recognize.open_set import impostor_scores

    rec = _recognizer(args)
    with GalleryStore(args.store, setup=store_setup(rec)) as store:
        faces = load_identity_faces(args.data.split(","), detector=rec.detector)
        emb = rec.embedder.embed(faces.crops)
        scores = impostor_scores(emb, faces.labels, max_pairs=args.max_pairs)
        tail = ImpostorTail.fit(scores, source=args.data)
        store.set_calibration(tail)
    print(f"{args.store}: impostor tail from {tail.pairs:,} pairs of {len(faces.labels):,} faces "
          f"(top 1% above {tail.t0:.4f}, mean excess {tail.beta:.4f}); thresholds for FPIR 1%: " +
          ", ".join(f"{n:,} faces {tail.threshold(0.01, n):.3f}" for n in (100, 1000, 10_000, 100_000)),
          file=sys.stderr)
    return 0


# --- train ------------------------------------------------------------------------------------
def _add_train(sub):
    from .train import TrainConfig

    p = sub.add_parser("train", help="train a model of any family with a training loss (detectors: SCRFD recipe, "
                                      "sample redistribution; ATSS/QFL/DIoU for SCRFD, S3FD matching for EResFD/EXTD; "
                                      "embedders: margin losses on identity folders, --set margin.<field>=...)")
    p.add_argument("--model", required=True, help="zoo name, or a JSON model config file (cfg.to_json())")
    p.add_argument("--data", required=True, help="detectors: WIDER-layout root (labelv2 landmarks when present) or "
                                                 "an annotation file (*_bbx_gt.txt, label*.txt, .jsonl); embedders: "
                                                 "identity folders root/<identity>/*.jpg, several separated by commas")
    p.add_argument("--weights", help="leanface weights of the same model to fine-tune (e.g. official ones "
                                     "imported with `leanface convert`); default: random initialisation")
    p.add_argument("--val-data", help="detectors: WIDER root for periodic evaluation (default: --data if it has "
                                      "WIDER_val); embedders: an LFW folder scored beside the dev split")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt exactly")
    p.add_argument("--exist-ok", action="store_true", help="overwrite the run in OUT_DIR (default: refused)")
    p.set_defaults(_train_flags=flags.add_config_flags(p, TrainConfig()))
    flags.add_set_flag(p, "TrainConfig")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _cmd_train(args) -> int:
    import json
    import os

    from .train import TrainConfig, train

    cfg = flags.config_from_flags(TrainConfig(), args, args._train_flags, args.overrides)
    result = train(cfg, args.model, args.data, weights=args.weights, val_data=args.val_data,
                   resume=args.resume, exist_ok=args.exist_ok, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    print(json.dumps(result.metrics))
    print(f"saved {result.weights} (load with create_model(None, weights=...), Detector(weights=...) or "
          f"Recognizer(weights=...))")
    return 0


# --- stats ------------------------------------------------------------------------------------
def _add_stats(sub):
    p = sub.add_parser("stats", help="face-scale distribution and positive anchors per scale (SCRFD Figs. 3, 4)")
    p.add_argument("--data", required=True, help="WIDER-layout root or a training annotation file")
    p.add_argument("--out-dir", default="runs/stats", help="where to write the PNG plots and stats.json")
    p.add_argument("--epochs", type=int, default=1, help="augmented epochs to count anchors over (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exist-ok", action="store_true", help="replace the statistics already in OUT_DIR (default: "
                                                          "refused)")
    return p


STATS_FILES = ("stats.json", "scale_cdf.png", "positive_anchors.png")


def _cmd_stats(args) -> int:
    import json
    from pathlib import Path

    from .files import atomic_write
    from .outputs import PLOT, OutputGuard, json_record
    from .train.stats import compute_stats, format_stats, plot_stats

    guard = OutputGuard("stats", exist_ok=args.exist_ok)
    guard.inputs(args.data, what="the data")
    guard.folder(args.out_dir, "--out-dir", writes=STATS_FILES,
                 kinds={"stats.json": json_record("scales"), "scale_cdf.png": PLOT, "positive_anchors.png": PLOT})
    stats = compute_stats(args.data, epochs=args.epochs, seed=args.seed)
    print(format_stats(stats))
    out = Path(args.out_dir)
    paths = plot_stats(stats, out)
    record = {
        "scale_definition": "sqrt(w*h) px after resizing the image to long side 640",
        "scales": {d.name: {"images": d.images, "faces": len(d.scales),
                            **{f"below_{t}px": d.share_below(t) for t in (8, 16, 32, 64, 128, 256)}}
                   for d in stats.scales},
        "positive_anchors": {p.name: {"crop_choices": list(p.crop_choices), "faces": p.faces, "images": p.images,
                                      "epochs": p.epochs, "per_anchor_size": dict(zip((16, 32, 64, 128, 256, 512),
                                                                                       p.counts))}
                             for p in stats.positives},
    }
    with atomic_write(out / "stats.json") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print(f"saved {', '.join(str(p) for p in paths)} and {out / 'stats.json'}")
    return 0


# --- search -----------------------------------------------------------------------------------
def _add_search(sub):
    from . import search
    from .search import SearchSettings, TrialSettings
    from .train import TrainConfig

    p = sub.add_parser("search", help="FLOPs-budgeted architecture search on Ray Tune (SCRFD computation "
                                      "redistribution), and its bootstrap analysis")
    steps = p.add_subparsers(dest="search_command", required=True)
    r = steps.add_parser("run", help="sample configs within the budget and train/evaluate each as a Ray Tune trial")
    r.add_argument("run_dir", help="run folder (created; with --resume, an existing one)")
    r.add_argument("--resume", action="store_true", help="continue a killed search: finished trials are kept")
    r.add_argument("--address", help="existing Ray cluster ('auto', or head-ip:6379); default: Ray on this machine")
    r.add_argument("--dry-run", action="store_true", help="only sample and print the candidates (no Ray, no files)")
    r.add_argument("--template", help="step 2: a step-1 run folder (its best trial), a JSON config or a zoo name")
    # SearchSettings' and TrialSettings' own flags, from their fields; the three below are not plain values.
    r.add_argument("--gflops", type=float, help=flags.help_of(SearchSettings, "gflops"))
    r.add_argument("--data", help=flags.help_of(TrialSettings, "data"))
    r.add_argument("--reference", action="append", default=[], dest="references", metavar="MODEL",
                   help=flags.help_of(SearchSettings, "references") + "; repeatable")
    defaults = SearchSettings(gflops=0.0, trial=TrialSettings(data=""))
    r.set_defaults(_search_flags=flags.add_config_flags(r, defaults),
                   _trial_flags=flags.add_config_flags(r, defaults.trial))
    # The proxy training: every TrainConfig field; what is not given comes from the task's proxy.
    proxies = {name: search.search_space(name).proxy for name in search.SEARCH_TASKS}
    group = r.add_argument_group(
        "proxy training (TrainConfig fields; not given: the task's proxy, " + "; ".join(
            f"{name}: epochs {c.epochs}, batch {c.batch_size}, lr {c.lr:g}, size {c.augment.img_size}"
            for name, c in proxies.items()) + "; --seed seeds it too)")
    r.set_defaults(_train_flags=flags.add_config_flags(group, TrainConfig(), skip=("seed",) + search.TRIAL_OWNED,
                                                       unset=True))
    flags.add_set_flag(r, "TrainConfig (proxy training)")
    a = steps.add_parser("analyze", help="bootstrap the compute-ratio ranges of the best models; export the best")
    a.add_argument("run_dir", help="search run folder")
    a.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    a.add_argument("--fraction", type=float, default=0.25, help="share of the trials per resample (default 0.25)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--name", help="name of the exported best config (default <run>_best)")
    return p


def _cmd_search(args) -> int:
    import dataclasses
    from pathlib import Path

    from . import search

    if args.search_command == "analyze":
        print(search.analyze_run(args.run_dir, n_boot=args.n_boot, fraction=args.fraction, seed=args.seed,
                                 name=args.name).format())
        return 0
    template = None
    if not args.resume:
        if args.gflops is None or (args.data is None and not args.dry_run):
            raise LeanfaceError("a new search needs --gflops and --data (--dry-run: only --gflops)")
        if args.step == 2 and args.template is None:
            raise LeanfaceError("step 2 needs --template (a step-1 run folder, a JSON config or a zoo name)")
        template = search.resolve_template(args.template) if args.step == 2 else None
        space = search.search_space(args.task)
        data = (",".join(str(Path(p).resolve()) for p in args.data.split(",")) if args.task == "embed"
                else str(Path(args.data).resolve())) if args.data else ""
        proxy = flags.config_from_flags(dataclasses.replace(space.proxy, seed=args.seed), args, args._train_flags,
                                        args.overrides)
        trial = flags.config_from_flags(search.TrialSettings(data=data, train=proxy), args, args._trial_flags)
        # 0 images: all of them (None), as the help says.
        trial = dataclasses.replace(trial, train_images=trial.train_images or None, val_images=trial.val_images or None)
        settings = flags.config_from_flags(search.SearchSettings(gflops=args.gflops, trial=trial,
                                                                 references=tuple(args.references)),
                                           args, args._search_flags)
        if args.dry_run:
            print(space.sample(settings, template, Path(args.run_dir).name).format())
            return 0
    records = search.run_search(args.run_dir, None if args.resume else settings, template=template,
                                resume=args.resume, address=args.address)
    metric = records[0].metric if records else "hard"
    print(f"{'trial':>20s} {'status':>9s} {'GF':>6s} {metric:>8s}")
    for r in records:
        hard = f"{r.metrics[metric]:.4f}" if metric in r.metrics else "-"
        print(f"{r.candidate.config.name:>20s} {r.status:>9s} {r.candidate.flops.gflops:6.3f} {hard:>8s}"
              + ("  (reference)" if r.reference else "") + (f"  {r.error}" if r.error else ""))
    print(f"next: leanface search analyze {args.run_dir}")
    return 0


COMMANDS: list = [
    (_add_info, _cmd_info), (_add_models, _cmd_models), (_add_convert, _cmd_convert), (_add_average, _cmd_average),
    (_add_detect, _cmd_detect), (_add_demo, _cmd_demo),
    (_add_export, _cmd_export), (_add_bench, _cmd_bench), (_add_eval, _cmd_eval), (_add_embed, _cmd_embed),
    (_add_verify, _cmd_verify), (_add_identify, _cmd_identify), (_add_gallery, _cmd_gallery),
    (_add_train, _cmd_train), (_add_stats, _cmd_stats), (_add_search, _cmd_search),
]


if __name__ == "__main__":
    sys.exit(main())
