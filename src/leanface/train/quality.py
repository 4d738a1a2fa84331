"""The quality task of the training loop: a face-quality network learns how well each face image
represents its identity.

The target (QAN++'s authors do not say how they trained theirs): the cosine similarity of a face's
embedding, by a reference embedder, to the centre of the *other* faces of its identity (leave-one-out,
so an identity's two photos are each scored against the other), clipped to [0, 1]. This is the
face-image-quality idea that a good sample lies near its class centre in embedding space ("utility"
of the image for recognition): blur, low resolution, occlusion and extreme pose move an embedding away
from its identity, and the net learns to see that from the pixels. Faces of identities with a single
image have no target and are not used. The reference embedder is `margin.teacher` when set (e.g.
OpenCV SFace, Apache-2.0), else our bundled embedder. Augmentation: flips only (a flip does not change
quality; blur or downscaling would, and the target would then be wrong).

Evaluation on the held-back identities (the embed task's dev split, and the identities the template
protocol keeps for itself, `template_split`, which the quality net never trains on): mean absolute error
and Spearman's rank correlation between predicted and target quality.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LeanfaceError
from ..recognize.embedder import DEFAULT_EMBEDDER_ONNX
from ..recognize.identities import dev_split, load_identity_faces, template_split
from .recognition import _roots, teacher_embeddings


def quality_targets(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) leave-one-out cosine of each L2-normalised embedding to its identity's other faces' mean,
    clipped to [0, 1]; NaN for identities with one face."""
    e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    n = labels.max() + 1 if len(labels) else 0
    sums = np.zeros((n, e.shape[1]), np.float64)
    np.add.at(sums, labels, e)
    counts = np.bincount(labels, minlength=n)
    others = sums[labels] - e
    norm = np.linalg.norm(others, axis=1)
    out = np.full(len(e), np.nan)
    ok = (counts[labels] > 1) & (norm > 1e-12)
    out[ok] = np.einsum("ij,ij->i", e[ok], others[ok]) / norm[ok]
    return np.clip(out, 0.0, 1.0)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if len(a) > 2 else float("nan")


class QualityDataset:
    def __init__(self, crops: np.ndarray, targets: np.ndarray, augment: bool, seed: int):
        self.crops, self.targets, self.augment, self.seed = crops, targets, augment, seed

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key):
        epoch, i = key
        img = self.crops[i]
        if self.augment and np.random.default_rng((self.seed, epoch, i)).random() < 0.5:
            img = img[:, ::-1]
        return {"image": torch.from_numpy(np.ascontiguousarray(img)), "target": float(self.targets[i])}


class QualityTask:
    """data: identity folders as for the embed task (root/<identity>/*.jpg, several separated by commas)."""

    loss_keys = ("loss", "mae")
    eval_keys = ("dev_mae", "dev_spearman")

    def __init__(self, cfg, model_cfg, data, val_data=None):
        main = int(os.environ.get("RANK", "0")) == 0 and not os.environ.get("LEANFACE_RANK_CHILD")
        self.cfg, self.model_cfg = cfg, model_cfg
        self.roots = _roots(data)
        faces = load_identity_faces(self.roots, progress=main)
        self.reference = cfg.margin.teacher or os.fspath(DEFAULT_EMBEDDER_ONNX)
        from ..recognize import Embedder

        dim = Embedder(self.reference).dim
        # Targets per split: the splits share no identity, so each identity's centre is the same either way.
        # Computed per dev split, so the embed task's cached embeddings of its training faces are reused.
        dev = dev_split(faces, seed=cfg.seed)
        emb = np.zeros((len(faces), dim), np.float32)
        for keep in (~dev, dev):
            if keep.any():
                emb[keep] = teacher_embeddings(self.reference, faces.subset(keep).crops, dim, progress=main)[:, 0]
        held = dev | template_split(faces)  # the template protocol's people too
        parts = []
        for keep in (~held, held):
            part = faces.subset(keep)
            t = quality_targets(emb[keep], part.labels)
            parts.append((part.crops[np.isfinite(t)], t[np.isfinite(t)], int((~np.isfinite(t)).sum())))
        (self.train_crops, self.train_targets, lost_train), (self.dev_crops, self.dev_targets, lost_dev) = parts
        if len(self.train_targets) < 2:
            raise LeanfaceError(f"{data}: quality training needs identities with at least two faces")
        self.counts = {"faces": len(faces), "train_faces": len(self.train_targets), "dev_faces": len(self.dev_targets),
                       "single_face_identities_left_out": lost_train + lost_dev,
                       "target_mean": round(float(self.train_targets.mean()), 4)}
        self.dataset = QualityDataset(self.train_crops, self.train_targets, cfg.augment.enabled, cfg.seed)
        self._mean = torch.tensor(model_cfg.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(model_cfg.std, dtype=torch.float32).view(1, 3, 1, 1)

    def collate(self, items: list[dict]) -> dict:
        x = torch.stack([it["image"] for it in items]).permute(0, 3, 1, 2).float()
        return {"image": (x - self._mean) / self._std,
                "target": torch.tensor([it["target"] for it in items], dtype=torch.float32)}

    def loss(self, device: torch.device):
        def batch_loss(outputs, batch):
            pred = torch.sigmoid(outputs.float())
            target = batch["target"].to(device)
            return {"loss": F.mse_loss(pred, target), "mae": (pred - target).abs().mean().detach()}
        return batch_loss

    def evaluate(self, weights: Path, out_dir: Path, threads: int | None = None) -> dict:
        if not len(self.dev_targets):
            return {"dev_mae": float("nan"), "dev_spearman": float("nan")}
        from ..recognize.quality import QualityScorer

        pred = QualityScorer(weights, threads=threads).score(self.dev_crops)
        return {"dev_mae": round(float(np.abs(pred - self.dev_targets).mean()), 5),
                "dev_spearman": round(spearman(pred, self.dev_targets), 5)}

    def describe(self) -> dict:
        return {"data": self.roots, "reference_embedder": self.reference, **self.counts}

    def summary(self) -> str:
        c = self.counts
        return (f"quality targets from {self.reference}: {c['train_faces']:,} training faces, {c['dev_faces']:,} "
                f"held-back faces; {c['single_face_identities_left_out']:,} faces of one-photo identities left out; "
                f"mean target {c['target_mean']}")


