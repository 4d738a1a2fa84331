"""The user-facing Detector: images in, typed Faces out, on PyTorch or ONNX Runtime.

Both backends produce the model's export outputs (`forward_export`, the layout of its ONNX file), so
decoding (the family's decoder) and post-processing (leanface.infer.postprocess) are one code path
whatever runs the network.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence

import numpy as np

from .. import pretrained
from ..errors import LeanfaceError
from ..host import available_cores
from ..models import PRESETS, build_model, get_config, get_family
from ..models.registry import onnx_config, untrained_model_check
from .image import as_rgb, read_image
from .postprocess import postprocess
from .preprocess import make_batch, place
from .results import Faces

# The bundled detector (leanface.pretrained): its checkpoint and its ONNX export, which runs by default
# (`leanface export scrfd_500m_kps --weights DEFAULT_WEIGHTS -o DEFAULT_ONNX`; tests check they agree).
DEFAULT_WEIGHTS = pretrained.default("detect").checkpoint_path
DEFAULT_ONNX = pretrained.default("detect").path


def onnx_session(path: str | os.PathLike | bytes, threads: int | None = None):
    """An onnxruntime CPU session (quiet logging) with `threads` intra-op threads (None: one per core) that
    do not spin: spinning threads collapse under load on a shared machine (2 threads: 29 ms per call with
    spinning, 13 ms without, beside a training job; docs/LAB_NOTES.md)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # official files declare fixed output shapes and warn on every call
    opts.intra_op_num_threads = threads or available_cores()
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model = path if isinstance(path, bytes) else str(path)  # bytes: a model rewritten in memory
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


class OnnxBackend:
    def __init__(self, path: str, threads: int | None = None):
        self.path = path
        try:
            self.session = onnx_session(path, threads)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise LeanfaceError(f"{path}: onnxruntime cannot load it ({type(exc).__name__})") from None
        self.input = self.session.get_inputs()[0].name
        # Official SCRFD files have outputs without a batch dimension: run them one image at a time.
        self.batched = len(self.session.get_outputs()[0].shape) == 3
        self.metadata = self.session.get_modelmeta().custom_metadata_map

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        try:
            if self.batched:
                return self.session.run(None, {self.input: batch})
            outs = [self.session.run(None, {self.input: batch[i:i + 1]}) for i in range(len(batch))]
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LeanfaceError(f"{self.path}: onnxruntime cannot run it on a {tuple(batch.shape)} image batch "
                                f"(not a face detector of this layout? {first[:160]})") from None
        return [np.stack([o[k] for o in outs]) for k in range(len(outs[0]))]


def _onnx_config(backend: OnnxBackend, model, path: str):
    cfg = onnx_config(backend.metadata)
    if cfg is not None:
        return cfg
    if model is not None:
        cfg = get_config(model) if isinstance(model, str) else model
        expected = len(build_model(cfg).output_names)
        found = len(backend.session.get_outputs())
        if found != expected:
            raise LeanfaceError(f"{path}: {found} outputs, but {cfg.name} has {expected}; not an export of this model")
        return cfg
    # A foreign SCRFD export: every SCRFD decodes alike, only landmarks differ (6 vs 9 outputs).
    n = len(backend.session.get_outputs())
    if n in (6, 9):
        return get_config("scrfd_500m_kps" if n == 9 else "scrfd_500m")
    raise LeanfaceError(f"{path}: {n} outputs; not a SCRFD layout and no leanface config inside; name its model "
                        f"(model= in Python, --model on the command line)")


MAX_SIZE = 8192  # network long side: beyond it the input tensor alone would take gigabytes


def _check_settings(size, score_thr, nms_thr, max_faces, pre_nms_topk, batch_size, threads) -> None:
    """The same rules for the Python API and the CLI flags that feed it: one-line errors."""
    def whole(name, value, low, none_ok=True, high=None):
        if value is None and none_ok:
            return
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise LeanfaceError(f"{name} must be at least {low} (an integer{', or None' if none_ok else ''}), "
                                f"got {value!r}")
        if high is not None and value > high:
            raise LeanfaceError(f"{name} must be at most {high}, got {value!r}")

    whole("size", size, 32, high=MAX_SIZE)  # None: the original size
    whole("max_faces", max_faces, 1)
    whole("pre_nms_topk", pre_nms_topk, 1)
    whole("batch_size", batch_size, 1, none_ok=False)
    whole("threads", threads, 1)
    for name, value in (("score_thr", score_thr), ("nms_thr", nms_thr)):
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise LeanfaceError(f"{name} must be a number in [0, 1], got {value!r}")


class Detector:
    """Face detector.

    model: zoo name or config (None: read from the weights file, or the bundled default model).
    weights: a leanface .pt checkpoint or an exported/official .onnx file (run with ONNX Runtime).
    preset: which of the family's registered test-time settings fill what is not given here: "detect"
    (confident faces, the default) or "eval" (the family's official WIDER FACE test settings);
    `leanface info` lists them.
    size: long side of the network input, at least 32 (640 in every preset); None = original size.
    letterbox: pad to size x size as the official test pipelines do, instead of to a multiple of 32.
    score_thr, nms_thr: candidate score threshold and NMS IoU threshold; max_faces: keep at most this
    many (and never more than the family's own cap, e.g. 750 for the SSD families).
    pre_nms_topk: NMS only the k best-scoring candidates (mmdet's nms_pre). It bounds NMS time for weak models.
    The other test-time settings (NMS area convention, clipping before NMS) are the family's.
    batch_size: images per network call for lists (images are grouped by padded shape).
    threads: CPU threads for the backend (None: library default).
    random_init: allow a zoo model without weights (random weights: for timing; refused otherwise).
    """

    def __init__(self, model=None, weights: str | os.PathLike | None = None, *, preset: str = "detect",
                 size: int | None | str = "preset", letterbox: bool | None = None, score_thr: float | None = None,
                 nms_thr: float | None = None, max_faces: int | None = None, pre_nms_topk: int | None = None,
                 batch_size: int = 8, threads: int | None = None, random_init: bool = False):
        if preset not in PRESETS:
            raise LeanfaceError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        _check_settings(None if size == "preset" else size, 0.5 if score_thr is None else score_thr,
                        0.5 if nms_thr is None else nms_thr, max_faces, pre_nms_topk, batch_size, threads)
        model = untrained_model_check(model, weights, random_init, DEFAULT_WEIGHTS.stem)
        if model is None and weights is None:
            # The bundled model runs on ONNX Runtime (an export of DEFAULT_WEIGHTS): 3x faster than eager
            # PyTorch here, and it does not collapse when other work shares the cores.
            weights = next((w for w in (DEFAULT_ONNX, DEFAULT_WEIGHTS) if w.is_file()), None)
            if weights is None:
                raise LeanfaceError(f"{DEFAULT_WEIGHTS}: the bundled default weights are missing; "
                                    f"pass model= and weights=")
        if weights is not None and str(weights).lower().endswith(".onnx"):
            if not os.path.isfile(weights):
                raise LeanfaceError(f"{weights}: ONNX file not found")
            self.backend = OnnxBackend(str(weights), threads)
            self.config = _onnx_config(self.backend, model, str(weights))
        else:
            from .torch_backend import TorchBackend

            self.backend = TorchBackend(model, weights, threads)
            self.config = self.backend.net.cfg
        self.weights = None if weights is None else str(weights)
        family = get_family(self.config.family)
        if family.task != "detect":
            raise LeanfaceError(f"{self.config.name} is not a face detector (its task is {family.task!r})")
        chosen = family.preset(preset)
        self.size = chosen.size if size == "preset" else size
        self.letterbox = chosen.letterbox if letterbox is None else letterbox
        if self.letterbox and self.size is None:
            raise LeanfaceError("letterbox needs a fixed size")
        cap = chosen.postprocess.max_faces
        self.postprocess = chosen.postprocess.replace(
            score_thr=score_thr, nms_thr=nms_thr, pre_nms_topk=pre_nms_topk,
            max_faces=max_faces if cap is None or max_faces is None else min(cap, max_faces))
        self.batch_size = batch_size
        self.decoder = family.decoder(self.config)

    def __call__(self, images):
        """Detect faces in an image (RGB array, PIL image or path) -> Faces, or in a list of them -> list[Faces]."""
        if isinstance(images, (list, tuple)):
            return self.detect(list(images))
        return self.detect([images])[0]

    def detect(self, images: Sequence) -> list[Faces]:
        loaded, sources = [], []
        for i, im in enumerate(images):
            if isinstance(im, (str, os.PathLike)):
                loaded.append(read_image(im))
                sources.append(os.fspath(im))
            else:
                loaded.append(as_rgb(im, name=f"image {i}"))
                sources.append(None)
        plans = [place(im.shape[0], im.shape[1], self.size, self.letterbox) for im in loaded]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (_, padded) in enumerate(plans):
            groups.setdefault(padded, []).append(i)
        results: list[Faces | None] = [None] * len(loaded)
        for padded, idx in groups.items():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                placements = [plans[i][0] for i in chunk]
                batch = make_batch([loaded[i] for i in chunk], placements, padded, self.config.mean, self.config.std)
                candidates = self.decoder(self.backend(batch), padded, self.postprocess.score_thr)
                for i, p, cand in zip(chunk, placements, candidates):
                    results[i] = dataclasses.replace(postprocess(cand, p, self.postprocess, sources[i]),
                                                     image=loaded[i])
        return results  # type: ignore[return-value]

    def stream(self, frames: Iterable[np.ndarray]) -> Iterable[Faces]:
        """Detect frame by frame over an iterable of RGB frames (e.g. a video), batching internally."""
        buf = []
        for frame in frames:
            buf.append(frame)
            if len(buf) == self.batch_size:
                yield from self.detect(buf)
                buf = []
        if buf:
            yield from self.detect(buf)
