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
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import LeanfaceError
from ..eval.verification import verification_protocol
from ..recognize import Embedder
from ..host import cache_dir
from ..recognize.identities import (IdentityFaces, dev_pairs, dev_split, load_identity_faces, pairs_crops,
                                   write_arrays)
from .margin import EmbedderTrainer, margin_loss

def _roots(data) -> list[str]:
    if isinstance(data, (list, tuple)):
        return [os.fspath(d) for d in data]
    return [p for p in os.fspath(data).split(",") if p]


class RecognitionDataset:
    """Indexed by (epoch, i): the i-th training crop augmented with a generator seeded by (seed, epoch, i),
    so a resumed run sees the same samples. Augmentation (on): horizontal flip; a small random zoom and
    shift (a random resized crop of 89-100% of the side); brightness, contrast and saturation jitter;
    for a fifth of the samples a downscale to 30-70% of the side and back, or a Gaussian blur, the
    way low-resolution photos degrade; and for a share `occlusion` a rectangle over part of the face.
    Items hold the uint8 view: normalisation happens in the task's collate, after mixing."""

    def __init__(self, crops: np.ndarray, labels: np.ndarray, teacher: np.ndarray | None, augment: bool, seed: int,
                 occlusion: float = 0.0):
        self.crops, self.labels, self.teacher = crops, labels, teacher  # teacher: (N, 2, D): plain, flipped
        self.augment, self.seed, self.occlusion = augment, seed, occlusion

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key):
        epoch, i = key
        img = self.crops[i]
        flipped = False
        if self.augment:
            rng = np.random.default_rng((self.seed, epoch, i))
            img, flipped = _augment(img, rng, self.occlusion)
        item = {"image": torch.from_numpy(np.ascontiguousarray(img)), "label": int(self.labels[i]), "epoch": epoch,
                "index": int(i)}
        if self.teacher is not None:
            item["teacher"] = torch.from_numpy(self.teacher[i, int(flipped)])
        return item


def _augment(img: np.ndarray, rng: np.random.Generator, occlusion: float = 0.0) -> tuple[np.ndarray, bool]:
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
    if occlusion and rng.random() < occlusion:  # drawn only when on: the plain recipe's samples are unchanged
        img = img.copy()
        h, w = (rng.uniform(0.2, 0.5, 2) * size).astype(int)
        top, left = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        patch = rng.integers(0, 256, (h, w, 3)) if rng.random() < 0.5 else np.full((h, w, 3), 127)
        img[top:top + h, left:left + w] = patch.astype(np.uint8)
    return img, flipped


def mix_batch(images: np.ndarray, rng: np.random.Generator, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Mix a share of a uint8 batch (B, S, S, 3) with other faces of it: half by mixup (a pixel blend with
    weight lam ~ U(0, 1)), half by cutmix (a box of area share 1 - lam pasted from the other face). Returns the
    new batch (uint8: the student and the teacher see the same pixels) and (B,) bool, True where mixed."""
    out = images.copy()
    b, size = len(images), images.shape[1]
    mixed = np.zeros(b, bool)
    if b < 2:
        return out, mixed
    for i in np.flatnonzero(rng.random(b) < share):
        j = (i + rng.integers(1, b)) % b  # any other face of the batch, never itself
        lam = rng.uniform(0.0, 1.0)
        if rng.random() < 0.5:
            out[i] = np.clip(np.rint(lam * images[i].astype(np.float32) + (1 - lam) * images[j]), 0, 255)
        else:
            side = int(round(size * np.sqrt(1 - lam)))
            top, left = rng.integers(0, size - side + 1), rng.integers(0, size - side + 1)
            out[i, top:top + side, left:left + side] = images[j, top:top + side, left:left + side]
        mixed[i] = True
    return out, mixed


class RecognitionTask:
    """data: identity-folder roots (root/<identity>/*.jpg) and flat folders of unlabelled photos, several
    separated by commas, or a list of roots. val_data: an LFW folder (pairs.txt) or a pairs file's folder,
    scored every eval_interval epochs besides the dev split.

    With margin.online (function matching) the teacher embeds exactly the view the student trains on, in the
    collate (so in the data-loading process, beside the student's step); otherwise its cached embeddings of the
    clean crop or its mirror are the target. With margin.exclude, faces that may show a person of that pairs
    folder (LFW) are left out of training, and exact duplicate crops too."""

    def __init__(self, cfg, model_cfg, data, val_data: str | os.PathLike | None = None):
        main = int(os.environ.get("RANK", "0")) == 0 and not os.environ.get("LEANFACE_RANK_CHILD")
        self.cfg, self.model_cfg, self.val_data = cfg, model_cfg, val_data
        m = cfg.margin
        self.roots = _roots(data)
        self.dim = model_cfg.embedding_size
        if m.distill and not m.teacher:
            raise LeanfaceError("margin.distill is set but there is no margin.teacher (an ONNX embedder)")
        if (m.online or m.exclude) and not m.teacher:
            raise LeanfaceError("margin.online and margin.exclude need margin.teacher (an ONNX embedder)")
        faces = load_identity_faces(self.roots, progress=main)
        keep, self.pools = filter_pool(faces, self.roots, m.teacher if m.exclude else None, m.exclude,
                                       m.exclude_thr, self.dim, progress=main)
        faces = faces.subset(keep)
        held = dev_split(faces, seed=cfg.seed)
        self.train_faces, self.dev_faces = faces.subset(~held), faces.subset(held)
        identities = len(self.train_faces.identities)
        if m.ce_weight and identities < 2:
            raise LeanfaceError(f"{data}: the margin loss needs at least two identities, found {identities} "
                                f"(set margin.ce_weight=0 to train on the teacher alone)")
        self.loss_keys = ("loss", "ce", "reg", "distill", "margin") + (("teacher_ms",) if m.online else ())
        self.eval_keys = ("dev_acc",) + (("lfw_acc", "lfw_tar", "lfw_teacher_cos") if val_data is not None else ())
        unlabelled = int((~self.train_faces.labelled).sum())
        self.counts = {"identities": len(faces.identities), "faces": len(faces), "train_identities": identities,
                       "train_faces": len(self.train_faces), "unlabelled_faces": unlabelled,
                       "dev_identities": len(self.dev_faces.identities), "dev_faces": len(self.dev_faces),
                       "no_face": faces.no_face, "unreadable": faces.unreadable, "pools": self.pools}
        teacher = None
        if m.distill and not m.online:
            teacher = teacher_embeddings(m.teacher, self.train_faces.crops, self.dim, progress=main)
        self.dataset = RecognitionDataset(self.train_faces.crops, self.train_faces.labels, teacher, cfg.augment.enabled,
                                          cfg.seed, m.occlusion)
        self._mean = torch.tensor(model_cfg.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(model_cfg.std, dtype=torch.float32).view(1, 3, 1, 1)
        self._teacher = None  # the online teacher, opened in the process that first needs it

    def teacher(self):
        """The online teacher embedder (one thread: the student's ranks hold the other cores)."""
        if self._teacher is None:
            self._teacher = Embedder(self.cfg.margin.teacher, threads=1, batch_size=256)
            if self._teacher.dim != self.dim:
                raise LeanfaceError(f"{self.cfg.margin.teacher}: the teacher's embeddings are {self._teacher.dim}-d, "
                                    f"the student's {self.dim}-d")
        return self._teacher

    def collate(self, items: list[dict]) -> dict:
        m = self.cfg.margin
        images = np.stack([it["image"].numpy() for it in items])
        labels = torch.tensor([it["label"] for it in items])
        epoch = items[0]["epoch"]
        if m.mixup:
            rng = np.random.default_rng((self.cfg.seed, epoch, items[0]["index"], len(items), 1))
            images, mixed = mix_batch(images, rng, m.mixup)
            labels[torch.from_numpy(mixed)] = -1  # a blend of two people belongs to neither class
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        batch = {"image": (x - self._mean) / self._std, "label": labels, "epoch": epoch}
        if m.distill and m.online:
            t0 = time.perf_counter()
            batch["teacher"] = torch.from_numpy(self.teacher().embed(images))
            batch["teacher_ms"] = 1e3 * (time.perf_counter() - t0) / len(images)
        elif "teacher" in items[0]:
            batch["teacher"] = torch.stack([it["teacher"] for it in items])
        return batch

    def wrap(self, net: torch.nn.Module) -> EmbedderTrainer:
        """The module the loop trains: the embedder and the class weights of the training identities."""
        return EmbedderTrainer(net, max(len(self.train_faces.identities), 1), self.dim, self.cfg.margin.kind)

    @staticmethod
    def unwrap(module: EmbedderTrainer) -> torch.nn.Module:
        return module.model

    def loss(self, device: torch.device):
        cfg = self.cfg.margin

        def batch_loss(outputs, batch):
            teacher = batch["teacher"].to(device) if "teacher" in batch else None
            out = margin_loss(outputs, batch["label"].to(device), cfg, float(batch["epoch"]), outputs["weight"],
                              teacher)
            if "teacher_ms" in self.loss_keys:
                out["teacher_ms"] = torch.tensor(float(batch.get("teacher_ms", 0.0)))
            return out
        return batch_loss

    def evaluate(self, weights: Path, out_dir: Path, threads: int | None = None) -> dict:
        before = torch.get_num_threads()
        try:
            emb = Embedder(weights, threads=threads, batch_size=128)
            out = {"dev_acc": round(verify_crops(emb, self.dev_faces), 5)}
            if self.val_data is not None:
                crops, pairs = pairs_crops(self.val_data)
                student = emb.embed(crops)
                result = score_embeddings(student, pairs)
                out["lfw_acc"] = float("nan") if result is None else round(result.accuracy, 5)
                out["lfw_tar"] = float("nan") if result is None else round(result.tar_at_far.get(1e-3, float("nan")), 5)
                if self.cfg.margin.teacher:
                    t = teacher_embeddings(self.cfg.margin.teacher, crops, self.dim, progress=False, flips=False)[:, 0]
                    out["lfw_teacher_cos"] = round(float(np.einsum("ij,ij->i", student, t).mean()), 5)
        finally:
            torch.set_num_threads(before)
        return out

    def describe(self) -> dict:
        return {"data": self.roots, "val_data": None if self.val_data is None else str(self.val_data), **self.counts}

    def summary(self) -> str:
        c = self.counts
        pools = "; ".join(f"{name}: {p['faces']:,} faces, {p['lfw_removed']:,} like an LFW person and "
                          f"{p['duplicates']:,} duplicates left out" for name, p in c["pools"].items())
        return (f"training on {c['train_faces']:,} faces ({c['unlabelled_faces']:,} unlabelled) of "
                f"{c['train_identities']:,} identities from {', '.join(self.roots)}; {c['dev_faces']:,} faces of "
                f"{c['dev_identities']:,} held-back identities for the dev protocol; {c['no_face']:,} images without "
                f"a detected face left out; {pools}")


def filter_pool(faces: IdentityFaces, roots: list[str], teacher: str | None, exclude, threshold: float, dim: int,
                progress: bool = True) -> tuple[np.ndarray, dict]:
    """(N,) bool of the faces to train on, and per root {no_face, unreadable (images lost in alignment), faces,
    lfw_removed, duplicates, kept}: exact duplicate
    crops (after the first) are left out, and with `exclude` (a pairs folder, e.g. LFW) every face whose teacher
    embedding has a cosine above `threshold` with one of that folder's faces."""
    keys = crop_keys(faces.crops)
    _, first = np.unique(keys, axis=0, return_index=True)
    duplicate = np.ones(len(faces), bool)
    duplicate[first] = False
    similar = np.zeros(len(faces), bool)
    if exclude is not None:
        emb = teacher_embeddings(teacher, faces.crops, dim, progress=progress, flips=False)[:, 0]
        ref = teacher_embeddings(teacher, pairs_crops(exclude)[0], dim, progress=progress, flips=False)[:, 0]
        similar = max_cosine(emb, ref) > threshold
    pool_of = np.array([_pool_index(f, roots) for f in faces.files])
    lost = {name: (no_face, unreadable) for name, _, no_face, unreadable in faces.pools}
    pools = {}
    for k, root in enumerate(roots):
        here = pool_of == k
        no_face, unreadable = lost.get(Path(root).name, (0, 0))
        pools[Path(root).name] = {"no_face": no_face, "unreadable": unreadable,
                                  "faces": int(here.sum()), "lfw_removed": int((here & similar).sum()),
                                  "duplicates": int((here & duplicate & ~similar).sum()),
                                  "kept": int((here & ~duplicate & ~similar).sum())}
    return ~duplicate & ~similar, pools


def _pool_index(file: str, roots: list[str]) -> int:
    """Which root (the longest prefix) a face's file lies under."""
    best, length = -1, -1
    for k, root in enumerate(roots):
        r = os.path.join(os.path.abspath(root), "")
        if os.path.abspath(file).startswith(r) and len(r) > length:
            best, length = k, len(r)
    return best


def max_cosine(emb: np.ndarray, ref: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(N,) the largest cosine of each row of `emb` with any row of `ref` (both L2-normalised)."""
    out = np.full(len(emb), -1.0, np.float32)
    for s in range(0, len(emb), chunk):
        out[s:s + chunk] = (emb[s:s + chunk] @ ref.T).max(1) if len(ref) else -1.0
    return out


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
    `recognize.identities.pairs_crops` returns them; None when the embeddings are not finite (a diverged model)."""
    crops, pairs = crops_and_pairs
    return score_embeddings(embedder.embed(crops), pairs)


def score_embeddings(e: np.ndarray, pairs: tuple):
    """The verification protocol's result on embeddings `e` of the crops and (left, right, same, fold)."""
    left, right, same, folds = pairs
    scores = np.einsum("ij,ij->i", e[left], e[right])
    return verification_protocol(scores, same, folds) if np.isfinite(scores).all() else None


def teacher_embeddings(teacher: str, crops: np.ndarray, dim: int, progress: bool = True,
                       flips: bool = True) -> np.ndarray:
    """(N, 2, D) embeddings of the crops and of their mirror images by the teacher (flips=False: the mirror
    half is NaN where not known already), cached next to the aligned crops face by face (keyed by the
    teacher file and each crop's bytes) and written as it goes: another dev split, seed, added folder or an
    interrupted run runs the teacher only on the faces it has not seen."""
    if not os.path.isfile(teacher):
        raise LeanfaceError(f"{teacher}: teacher embedder not found")
    cache = cache_dir("aligned") / f"teacher_{hashlib.sha1(Path(teacher).read_bytes()).hexdigest()[:16]}.npz"
    keys = crop_keys(crops)
    known = read_teacher_cache(cache, dim)
    out = np.full((len(crops), 2, dim), np.nan, np.float32)
    for i, k in enumerate(keys):
        j = known.index.get(k.tobytes())
        if j is not None:
            out[i] = known.emb[j]
    views = (0, 1) if flips else (0,)
    missing = np.flatnonzero(np.isnan(out[:, views, 0]).any(1))
    if not len(missing):
        return out
    emb = Embedder(teacher, batch_size=128)
    if emb.dim != dim:
        raise LeanfaceError(f"{teacher}: the teacher's embeddings are {emb.dim}-d, the student's {dim}-d")
    from tqdm import tqdm

    step, written = 512, 0
    for s in tqdm(range(0, len(missing), step), desc="teacher", disable=not progress, file=sys.stderr):
        rows = missing[s:s + step]
        for view in views:
            todo = rows[np.isnan(out[rows, view, 0])]
            if len(todo):
                chunk = crops[todo] if view == 0 else np.ascontiguousarray(crops[todo][:, :, ::-1])
                out[todo, view] = emb.embed(chunk)
        if s + step >= len(missing) or s - written >= 8 * step:  # a checkpoint every ~4 K faces
            done = missing[:s + step]
            known = write_teacher_cache(cache, known, keys[done], out[done])
            written = s
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


def write_teacher_cache(path: Path, known: TeacherCache, keys: np.ndarray, emb: np.ndarray) -> TeacherCache:
    """Add (keys, emb) to `known` and write the union atomically; what another process added meanwhile is
    kept too (re-read just before writing). A row already there takes the new values where they are known
    (e.g. a mirror view computed later). Returns the union."""
    latest = read_teacher_cache(path, emb.shape[2])
    base = latest if len(latest.keys) >= len(known.keys) else known
    rows = np.array([base.index.get(k.tobytes(), -1) for k in keys], np.int64)
    merged = base.emb.copy()
    old = rows >= 0
    if old.any():
        merged[rows[old]] = np.where(np.isnan(emb[old]), merged[rows[old]], emb[old])
    new = ~old
    union = TeacherCache(np.concatenate([base.keys, keys[new]]), np.concatenate([merged, emb[new]]))
    write_arrays(path, keys=union.keys, emb=union.emb)
    return union
