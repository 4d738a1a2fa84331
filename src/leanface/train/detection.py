"""The detection task of the training loop: face boxes (and landmarks) in, a family's loss, WIDER AP out.

The loop (leanface.train.loop) owns optimisation, precision, processes, resume and outputs; this
adapter owns what is specific to detection: the augmented dataset (sample redistribution crops),
its collate, the family's registered loss and periodic evaluation on WIDER FACE val.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import FaceDataset, collate, training_faces
from ..data.readers import load_training_data
from ..errors import LeanfaceError
from .losses import loss_for


class DetectionTask:
    """data: a WIDER-layout root, an annotation file or a list of ImageFaces. val_data: WIDER root for
    periodic evaluation (default: `data` when it is a folder with WIDER_val)."""

    loss_keys = ("loss", "cls", "box", "kps", "kd_cls", "kd_box", "kd_kps", "num_pos")
    eval_keys = ("easy", "medium", "hard")

    def __init__(self, cfg, model_cfg, data, val_data: str | os.PathLike | None = None):
        self.make_loss = loss_for(model_cfg.family)
        absent: list = []
        images = data if isinstance(data, list) else load_training_data(data, absent)
        images = [im for im in images if len(training_faces(im)[0])]
        if not images:
            raise LeanfaceError(f"{data}: no image with a usable face annotation")
        if val_data is None and cfg.eval_interval and not isinstance(data, list) and (Path(data) / "WIDER_val").is_dir():
            val_data = data
        if cfg.eval_interval and val_data is None:
            raise LeanfaceError("eval_interval is set but there is no WIDER validation folder (pass val_data)")
        self.cfg, self.model_cfg, self.val_data = cfg, model_cfg, val_data
        self.source = f"{len(data)} images given in Python" if isinstance(data, list) else str(data)
        faces = [training_faces(im) for im in images]
        self.counts = {"images": len(images), "faces": sum(len(f[0]) for f in faces),
                       "faces_with_landmarks": sum(int(f[2].any(1).sum()) for f in faces),
                       "listed_images_absent": len(absent)}
        self.dataset = FaceDataset(images, cfg.augment, seed=cfg.seed, mean=model_cfg.mean, std=model_cfg.std)
        if cfg.loss.teacher is not None and not os.path.isfile(cfg.loss.teacher):
            raise LeanfaceError(f"{cfg.loss.teacher}: teacher detector not found")
        if cfg.loss.teacher is not None:
            self.loss_keys = self.loss_keys[:-1] + ("teacher_ms", "num_pos")
        self._teacher = None  # opened in the process that first needs it (a data-loading worker)

    def teacher(self):
        """The teacher detector's ONNX Runtime backend (one thread: the student's ranks hold the other cores)."""
        if self._teacher is None:
            from ..infer.detector import OnnxBackend

            self._teacher = OnnxBackend(self.cfg.loss.teacher, threads=1)
        return self._teacher

    def collate(self, samples: list[dict]) -> dict:
        """The batch, and with a teacher its outputs on exactly these images: (B, M, 15) per anchor (score,
        l t r b, ten landmark offsets; stride units), in the order of the student's anchors."""
        batch = collate(samples)
        if self.cfg.loss.teacher is not None:
            t0 = time.perf_counter()
            batch["teacher"] = teacher_targets(self.teacher()(batch["image"].numpy()))
            batch["teacher_ms"] = 1e3 * (time.perf_counter() - t0) / len(samples)
        return batch

    def loss(self, device: torch.device):
        """(net(x), batch) -> {"loss", "cls", "box", "kps", "num_pos"} on (img_size, img_size) inputs."""
        size = self.cfg.augment.img_size
        fn = self.make_loss(self.model_cfg, (size, size), device, self.cfg.loss)

        def batch_loss(outputs, batch):
            extra = {"teacher": batch["teacher"]} if "teacher" in batch else {}
            out = fn(outputs, [b.to(device) for b in batch["boxes"]], [k.to(device) for k in batch["landmarks"]],
                     [v.to(device) for v in batch["landmark_valid"]], **extra)
            if "teacher_ms" in batch:
                out["teacher_ms"] = torch.tensor(float(batch["teacher_ms"]))
            zero = out["loss"].new_zeros(())
            return {k: out.get(k, zero) for k in self.loss_keys}  # e.g. no distillation terms in the SSD loss
        return batch_loss

    def evaluate(self, weights: Path, out_dir: Path, threads: int | None = None) -> dict:
        """The family's official WIDER FACE test settings (its "eval" preset) whatever the training size.

        threads: CPU threads while evaluating (the other ranks wait at a barrier meanwhile).
        """
        from ..eval import evaluate_detector
        from ..infer import Detector

        before = torch.get_num_threads()
        try:
            detector = Detector(weights=weights, threads=threads, preset="eval")
            evaluation, _ = evaluate_detector(detector, Path(self.val_data), out_dir, progress=False)
        finally:
            torch.set_num_threads(before)
        return {k: round(v, 5) for k, v in evaluation.result.aps.items()}

    def describe(self) -> dict:
        return {"data": self.source, "val_data": None if self.val_data is None else str(self.val_data), **self.counts}

    def summary(self) -> str:
        c = self.counts
        missing = c["listed_images_absent"]
        return (f"training on {c['images']:,} images with {c['faces']:,} faces ({c['faces_with_landmarks']:,} with "
                f"landmarks) from {self.source}"
                + (f"; {missing:,} listed images are not on disk (a partial copy) and are left out" if missing else ""))


def teacher_targets(outputs: list[np.ndarray]) -> torch.Tensor:
    """A detector's outputs in the official SCRFD ONNX layout (score_s, bbox_s, kps_s for s in 8, 16, 32; each
    (B, N_s, C)) -> (B, M, 15) per anchor: score, l t r b, ten landmark offsets, levels in stride order."""
    n = len(outputs) // 3
    if len(outputs) != 3 * n or [o.shape[-1] for o in outputs] != [1] * n + [4] * n + [10] * n:
        raise LeanfaceError(f"the teacher detector has {len(outputs)} outputs; a SCRFD layout with landmarks "
                            f"(score, bbox and kps per stride) is needed")
    levels = [np.concatenate([outputs[i], outputs[n + i], outputs[2 * n + i]], -1) for i in range(n)]
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(levels, 1), np.float32))


