"""The embed task of the training loop: identity folders in, a margin loss over identities, verification
accuracy out.

The loop (leanface.train.loop) owns optimisation, precision, processes, resume and outputs; this
adapter owns what is specific to face embedders: the aligned crops (decoded and aligned once, cached,
held in memory: the two cores are for training, not JPEG decoding), their augmentation, the class
weights trained beside the embedder (`wrap`; model.pt holds the embedder alone), the margin loss
(leanface.train.margin), optional distillation from a teacher embedder, and periodic evaluation: the
10-fold verification protocol on held-back identities of the training folders ("dev", never LFW), and
on LFW View 2 when `val_data` is an LFW folder.
"""
from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.pairs import load_pairs
from ..errors import LeanfaceError
from ..eval.verification import verification_protocol
from ..files import atomic_write
from ..infer import Detector, read_image
from ..recognize import Embedder, align_faces, centre_crop, primary_face
from ..recognize.identities import IdentityFaces, default_cache_dir, dev_pairs, dev_split, load_identity_faces
from .loop import register_task
from .margin import EmbedderTrainer, margin_loss

# Test-time detection of LFW photos, as `leanface eval` runs it (leanface.eval.pairs_eval).
_LFW_SCORE_THR = 0.3


def _roots(data) -> list[str]:
    if isinstance(data, (list, tuple)):
        return [os.fspath(d) for d in data]
    return [p for p in os.fspath(data).split(",") if p]


class RecognitionDataset:
    """Indexed by (epoch, i): the i-th training crop augmented with a generator seeded by (seed, epoch, i),
    so a resumed run sees the same samples. Augmentation (on): horizontal flip; a small random zoom and
    shift (a random resized crop of 89-100% of the side); brightness, contrast and saturation jitter;
    and for a fifth of the samples a downscale to 30-70% of the side and back, or a Gaussian blur, the
    way low-resolution photos degrade."""

    def __init__(self, crops: np.ndarray, labels: np.ndarray, teacher: np.ndarray | None, augment: bool, seed: int):
        self.crops, self.labels, self.teacher = crops, labels, teacher  # teacher: (N, 2, D): plain, flipped
        self.augment, self.seed = augment, seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key):
        epoch, i = key
        img = self.crops[i]
        flipped = False
        if self.augment:
            rng = np.random.default_rng((self.seed, epoch, i))
            img, flipped = _augment(img, rng)
        item = {"image": torch.from_numpy(np.ascontiguousarray(img)), "label": int(self.labels[i]), "epoch": epoch}
        if self.teacher is not None:
            item["teacher"] = torch.from_numpy(self.teacher[i, int(flipped)])
        return item


def _augment(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    size = img.shape[0]
    flipped = bool(rng.random() < 0.5)
    if flipped:
        img = img[:, ::-1]
    zoom = rng.uniform(1.0, 1.12)
    shift = rng.uniform(-0.04, 0.04, 2) * size
    m = np.array([[zoom, 0, (1 - zoom) * size / 2 + shift[0]], [0, zoom, (1 - zoom) * size / 2 + shift[1]]])
    img = cv2.warpAffine(np.ascontiguousarray(img), m, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    x = img.astype(np.float32)
    grey = x.mean(2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.8, 1.2)  # saturation
    x = (x - x.mean()) * rng.uniform(0.8, 1.2) + x.mean() * rng.uniform(0.8, 1.2)  # contrast, brightness
    img = np.clip(x, 0, 255).astype(np.uint8)
    u = rng.random()
    if u < 0.1:
        side = max(8, int(size * rng.uniform(0.3, 0.7)))
        img = cv2.resize(cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA), (size, size),
                         interpolation=cv2.INTER_LINEAR)
    elif u < 0.2:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    return img, flipped


class RecognitionTask:
    """data: an identity-folder root (root/<identity>/*.jpg), several separated by commas, or a list of
    roots. val_data: an LFW folder (pairs.txt) or a pairs file's folder, scored every eval_interval
    epochs besides the dev split."""

    loss_keys = ("loss", "ce", "reg", "distill", "margin")

    def __init__(self, cfg, model_cfg, data, val_data: str | os.PathLike | None = None):
        main = int(os.environ.get("RANK", "0")) == 0 and not os.environ.get("LEANFACE_RANK_CHILD")
        self.cfg, self.model_cfg, self.val_data = cfg, model_cfg, val_data
        self.roots = _roots(data)
        faces = load_identity_faces(self.roots, progress=main)
        held = dev_split(faces, seed=cfg.seed)
        self.train_faces, self.dev_faces = faces.subset(~held), faces.subset(held)
        if len(self.train_faces.identities) < 2:
            raise LeanfaceError(f"{data}: training needs at least two identities, found {len(self.train_faces.identities)}")
        self.dim = model_cfg.embedding_size
        self.eval_keys = ("dev_acc",) + (("lfw_acc",) if val_data is not None else ())
        self.counts = {"identities": len(faces.identities), "faces": len(faces), "train_identities":
                       len(self.train_faces.identities), "train_faces": len(self.train_faces),
                       "dev_identities": len(self.dev_faces.identities), "dev_faces": len(self.dev_faces),
                       "no_face": faces.no_face, "unreadable": faces.unreadable}
        teacher = None
        if cfg.margin.distill and not cfg.margin.teacher:
            raise LeanfaceError("margin.distill is set but there is no margin.teacher (an ONNX embedder)")
        if cfg.margin.distill:
            teacher = teacher_embeddings(cfg.margin.teacher, self.train_faces.crops, self.dim, progress=main)
        self.dataset = RecognitionDataset(self.train_faces.crops, self.train_faces.labels, teacher, cfg.augment,
                                          cfg.seed)
        self._mean = torch.tensor(model_cfg.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(model_cfg.std, dtype=torch.float32).view(1, 3, 1, 1)

    def collate(self, items: list[dict]) -> dict:
        x = torch.stack([it["image"] for it in items]).permute(0, 3, 1, 2).float()
        batch = {"image": (x - self._mean) / self._std, "label": torch.tensor([it["label"] for it in items]),
                 "epoch": items[0]["epoch"]}
        if "teacher" in items[0]:
            batch["teacher"] = torch.stack([it["teacher"] for it in items])
        return batch

    def wrap(self, net: torch.nn.Module) -> EmbedderTrainer:
        """The module the loop trains: the embedder and the class weights of the training identities."""
        return EmbedderTrainer(net, len(self.train_faces.identities), self.dim, self.cfg.margin.kind)

    @staticmethod
    def unwrap(module: EmbedderTrainer) -> torch.nn.Module:
        return module.model

    def loss(self, device: torch.device):
        cfg = self.cfg.margin

        def batch_loss(outputs, batch):
            teacher = batch["teacher"].to(device) if "teacher" in batch else None
            return margin_loss(outputs, batch["label"].to(device), cfg, float(batch["epoch"]),
                               outputs["weight"], teacher)
        return batch_loss

    def evaluate(self, weights: Path, out_dir: Path, threads: int | None = None) -> dict:
        before = torch.get_num_threads()
        try:
            emb = Embedder(weights, threads=threads, batch_size=128)
            out = {"dev_acc": round(verify_crops(emb, self.dev_faces), 5)}
            if self.val_data is not None:
                result = score_pairs(emb, lfw_crops(self.val_data))
                out["lfw_acc"] = float("nan") if result is None else round(result.accuracy, 5)
        finally:
            torch.set_num_threads(before)
        return out

    def describe(self) -> dict:
        return {"data": self.roots, "val_data": None if self.val_data is None else str(self.val_data), **self.counts}

    def summary(self) -> str:
        c = self.counts
        return (f"training on {c['train_faces']:,} faces of {c['train_identities']:,} identities from "
                f"{', '.join(self.roots)}; {c['dev_faces']:,} faces of {c['dev_identities']:,} held-back identities "
                f"for the dev protocol; {c['no_face']:,} images without a detected face left out")


def verify_crops(embedder, faces: IdentityFaces, seed: int = 0) -> float:
    """Mean 10-fold verification accuracy over the same-identity pairs of `faces` and as many random
    different-identity pairs (`dev_pairs`)."""
    left, right, same, folds = dev_pairs(faces.labels, seed=seed)
    if not len(left) or len(np.unique(folds)) < 2:
        raise LeanfaceError("the dev split has too few identities for the verification protocol")
    e = embedder.embed(faces.crops)
    scores = np.einsum("ij,ij->i", e[left], e[right])
    if not np.isfinite(scores).all():  # a diverged model: say so in the metrics, do not stop the run
        print("leanface: the embedder gives non-finite embeddings (diverged?); accuracy recorded as NaN",
              file=sys.stderr)
        return float("nan")
    return verification_protocol(scores, same, folds).accuracy


def score_pairs(embedder, crops_and_pairs: tuple):
    """The verification protocol's result for `embedder` on (crops, (left, right, same, fold)), as
    `lfw_crops` returns them; None when the embeddings are not finite (a diverged model)."""
    crops, (left, right, same, folds) = crops_and_pairs
    e = embedder.embed(crops)
    scores = np.einsum("ij,ij->i", e[left], e[right])
    return verification_protocol(scores, same, folds) if np.isfinite(scores).all() else None


def teacher_embeddings(teacher: str, crops: np.ndarray, dim: int, progress: bool = True) -> np.ndarray:
    """(N, 2, D) embeddings of the crops and of their mirror images by the teacher, cached next to the
    aligned crops face by face (keyed by the teacher file and each crop's bytes): another dev split, seed
    or added folder runs the teacher only on the faces it has not seen."""
    if not os.path.isfile(teacher):
        raise LeanfaceError(f"{teacher}: teacher embedder not found")
    cache = default_cache_dir() / f"teacher_{hashlib.sha1(Path(teacher).read_bytes()).hexdigest()[:16]}.npz"
    keys = crop_keys(crops)
    known = read_teacher_cache(cache, dim)
    out = np.zeros((len(crops), 2, dim), np.float32)
    missing = []
    for i, k in enumerate(keys):
        j = known.index.get(k.tobytes())
        if j is None:
            missing.append(i)
        else:
            out[i] = known.emb[j]
    if not missing:
        return out
    emb = Embedder(teacher, batch_size=128)
    if emb.dim != dim:
        raise LeanfaceError(f"{teacher}: the teacher's embeddings are {emb.dim}-d, the student's {dim}-d")
    from tqdm import tqdm

    missing = np.array(missing)
    for s in tqdm(range(0, len(missing), 512), desc="teacher", disable=not progress, file=sys.stderr):
        rows = missing[s:s + 512]
        chunk = crops[rows]
        out[rows, 0] = emb.embed(chunk)
        out[rows, 1] = emb.embed(np.ascontiguousarray(chunk[:, :, ::-1]))
    write_teacher_cache(cache, known, keys[missing], out[missing])
    return out


def crop_keys(crops: np.ndarray) -> np.ndarray:
    """(N, 20) uint8: the SHA-1 of each crop's pixels (and shape)."""
    keys = np.zeros((len(crops), 20), np.uint8)
    for i, c in enumerate(crops):
        h = hashlib.sha1(str(c.shape).encode())
        h.update(np.ascontiguousarray(c).data)
        keys[i] = np.frombuffer(h.digest(), np.uint8)
    return keys


class TeacherCache:
    """A teacher's cached embeddings: keys (M, 20) uint8, emb (M, 2, D) float32, index {key bytes: row}."""

    def __init__(self, keys: np.ndarray, emb: np.ndarray):
        self.keys, self.emb = keys, emb
        self.index = {k.tobytes(): i for i, k in enumerate(keys)}


def read_teacher_cache(path: Path, dim: int) -> TeacherCache:
    """The cache at `path`, or an empty one (absent, damaged, or for another embedding size)."""
    empty = TeacherCache(np.zeros((0, 20), np.uint8), np.zeros((0, 2, dim), np.float32))
    try:
        with np.load(path) as z:
            keys, emb = z["keys"], z["emb"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return empty
    ok = keys.ndim == 2 and keys.shape[1] == 20 and emb.shape == (len(keys), 2, dim)
    return TeacherCache(keys.astype(np.uint8), emb.astype(np.float32)) if ok else empty


def write_teacher_cache(path: Path, known: TeacherCache, keys: np.ndarray, emb: np.ndarray) -> None:
    """Add (keys, emb) to `known` and write the union atomically; what another process added meanwhile is
    kept too (re-read just before writing)."""
    latest = read_teacher_cache(path, emb.shape[2])
    base = latest if len(latest.keys) >= len(known.keys) else known
    new = np.array([k.tobytes() not in base.index for k in keys], bool)
    _write_npy(path, keys=np.concatenate([base.keys, keys[new]]), emb=np.concatenate([base.emb, emb[new]]))


def _read_npy(path: Path, shape: tuple) -> np.ndarray | None:
    """A cached array of the expected shape, or None (absent, damaged or stale: recomputed)."""
    try:
        out = np.load(path) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return out if out is not None and out.shape == shape else None


def _write_npy(path: Path, arr: np.ndarray | None = None, **arrays: np.ndarray) -> None:
    """Write one array (.npy) or several by name (.npz) atomically; a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, binary=True) as f:
            if arr is not None:
                np.save(f, arr)
            else:
                np.savez(f, **arrays)
    except OSError:
        pass


def lfw_crops(root) -> tuple[np.ndarray, tuple]:
    """Aligned crops of every image of an LFW (or generic pairs) folder, by the bundled detector's main
    face (the centre crop where none is found), cached; and (left, right, same, fold) index arrays."""
    pairs = load_pairs(root)
    images = pairs.images
    h = hashlib.sha1("\n".join(map(str, images)).encode())
    cache = default_cache_dir() / f"pairs_{h.hexdigest()[:16]}.npy"
    crops = _read_npy(cache, (len(images), 112, 112, 3))
    if crops is None:
        det = Detector(score_thr=_LFW_SCORE_THR)
        crops = np.zeros((len(images), 112, 112, 3), np.uint8)
        for s in range(0, len(images), 16):
            arrays = [read_image(p) for p in images[s:s + 16]]
            for k, (rgb, faces) in enumerate(zip(arrays, det.detect(arrays))):
                j = primary_face(faces)
                crops[s + k] = centre_crop(rgb, 112) if j is None else align_faces(rgb, faces.landmarks[j:j + 1])[0]
        _write_npy(cache, crops)
    index = {p: i for i, p in enumerate(images)}
    left = np.array([index[p] for p in pairs.left])
    right = np.array([index[p] for p in pairs.right])
    return crops, (left, right, pairs.same, pairs.fold)


register_task("embed", RecognitionTask)
