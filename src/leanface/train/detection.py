"""The detection task of the training loop: face boxes (and landmarks) in, a family's loss, WIDER AP out.

The loop (leanface.train.loop) owns optimisation, precision, processes, resume and outputs; this
adapter owns what is specific to detection: the augmented dataset (sample redistribution crops),
its collate, the family's registered loss and periodic evaluation on WIDER FACE val.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..data.augment import AugmentConfig
from ..data.dataset import FaceDataset, collate, training_faces
from ..data.readers import load_training_data
from ..errors import LeanfaceError
from .loop import register_task
from .losses import loss_for


class DetectionTask:
    """data: a WIDER-layout root, an annotation file or a list of ImageFaces. val_data: WIDER root for
    periodic evaluation (default: `data` when it is a folder with WIDER_val)."""

    loss_keys = ("loss", "cls", "box", "kps", "num_pos")
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
        aug = AugmentConfig(size=cfg.img_size, crop_choices=tuple(cfg.crop_choices), clip_border=cfg.clip_border,
                            random_crop=cfg.augment, flip=cfg.augment, photometric=cfg.augment)
        self.dataset = FaceDataset(images, aug, seed=cfg.seed, mean=model_cfg.mean, std=model_cfg.std)

    collate = staticmethod(collate)

    def loss(self, device: torch.device):
        """(net(x), batch) -> {"loss", "cls", "box", "kps", "num_pos"} on (img_size, img_size) inputs."""
        fn = self.make_loss(self.model_cfg, (self.cfg.img_size, self.cfg.img_size), device, self.cfg.loss)

        def batch_loss(outputs, batch):
            return fn(outputs, [b.to(device) for b in batch["boxes"]], [k.to(device) for k in batch["landmarks"]],
                      [v.to(device) for v in batch["landmark_valid"]])
        return batch_loss

    def evaluate(self, weights: Path, out_dir: Path, threads: int | None = None) -> dict:
        """The WIDER protocol (`leanface.eval.WIDER_PROTOCOL`) whatever the training size.

        threads: CPU threads while evaluating (the other ranks wait at a barrier meanwhile).
        """
        from ..eval import WIDER_PROTOCOL, evaluate_detector
        from ..infer import Detector

        before = torch.get_num_threads()
        try:
            detector = Detector(weights=weights, threads=threads, **WIDER_PROTOCOL)
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


register_task("detection", DetectionTask)
