"""Identity-folder face sets (`root/<identity>/*.jpg`) as aligned 112x112 crops in memory, for training
and for dev-split verification. A flat folder of photos (`root/*.jpg`, no identity sub-folders) is a pool
of unlabelled faces: label -1, used where no identity is needed (distillation from a teacher embedder).

An image that is already 112x112 is taken as aligned to the ArcFace template (as Glint360K's are);
any other goes detect -> main face (`primary_face`) -> five-point alignment, once: the crops are cached
in one .npz per set (keyed by the files' names, sizes and times and by the detector's weights), so a
second run and every DDP rank read them in a second. Images without a detected face are left out and
counted; unreadable ones are reported by name and left out. Tight crops where the face fills the frame
(UTKFace's) defeat detectors trained on scenes: an image without a detected face is tried once more with a
grey border of BORDER x its side on each side.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import LeanfaceError
from .. import host
from ..data.identities import identity_folder
from ..data.pairs import load_pairs
from ..files import atomic_write
from ..infer import DEFAULT_ONNX, DEFAULT_WEIGHTS, Detector, read_image
from .align import align_faces
from .recognizer import centre_crop, primary_face

SIZE = 112
# Border added around an image where no face was found: at 30% the official SCRFD-0.5GF finds all 150 of
# 150 UTKFace crops and the bundled detector 93; at 60% both find all (../shared/data/STAGING.md).
BORDER = 0.6
# Bumped when the alignment recipe changes, so caches made by an older recipe are not reused.
_RECIPE = "border0.6"


@dataclass(frozen=True)
class IdentityFaces:
    """crops (N, 112, 112, 3) uint8 RGB; labels (N,) int64 into `identities`, -1 for unlabelled faces (a
    flat folder's); files (N,) source paths;
    detected (N,) True where the crop was aligned from detected landmarks. no_face / unreadable: counts
    of the images left out."""

    crops: np.ndarray
    labels: np.ndarray
    identities: tuple[str, ...]
    files: tuple[str, ...]
    detected: np.ndarray
    no_face: int = 0
    unreadable: int = 0
    pools: tuple = ()  # (root name, faces, images without a face, unreadable images) per root

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray) -> "IdentityFaces":
        """The faces where `keep` (N,) is True, labels renumbered 0..K-1 in order of the kept identities."""
        keep = np.asarray(keep, bool)
        labels = self.labels[keep]
        kept_ids = np.unique(labels[labels >= 0])
        new = np.full(len(self.identities) + 1, -1, np.int64)  # the last entry maps label -1 to -1
        new[kept_ids] = np.arange(len(kept_ids))
        return IdentityFaces(self.crops[keep], new[labels], tuple(self.identities[i] for i in kept_ids),
                             tuple(f for f, k in zip(self.files, keep) if k), self.detected[keep])

    @property
    def labelled(self) -> np.ndarray:
        """(N,) bool: the faces with an identity label."""
        return self.labels >= 0


def _cache_key(files: list[tuple[str, Path]], detector_id: str) -> str:
    h = hashlib.sha1(f"{_RECIPE}\0{detector_id}".encode())
    for identity, f in files:
        st = f.stat()
        h.update(f"{identity}\0{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _detector_id(detector: Detector | None) -> str:
    if detector is None:  # the bundled detector: its weights' digest, so a new bundled model re-aligns
        bundled = next((w for w in (DEFAULT_ONNX, DEFAULT_WEIGHTS) if w.is_file()), None)
        return "bundled:" + (hashlib.sha1(bundled.read_bytes()).hexdigest() if bundled else "absent")
    weights = detector.weights
    digest = hashlib.sha1(Path(weights).read_bytes()).hexdigest() if weights and os.path.isfile(weights) else "bundled"
    return json.dumps([digest, detector.size, detector.postprocess.score_thr])


def load_identity_faces(roots, detector: Detector | None = None, cache_dir: str | os.PathLike | None = None,
                        progress: bool = True, report: Callable[[str], None] | None = None) -> IdentityFaces:
    """All faces of one or more identity-folder roots or flat folders of unlabelled photos (label -1).
    Identities of different roots are kept apart (named `<root name>/<identity>`). detector: for images
    that are not 112x112 (default: the bundled detector, score threshold 0.3). cache_dir: where the aligned
    crops are cached, one file per root (default ~/.cache/leanface/aligned; False: no cache), so adding a
    folder aligns only that folder."""
    report = report or (lambda m: print(f"leanface: {m}", file=sys.stderr))
    roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
    if not roots:
        raise LeanfaceError("no identity folder given")
    listed = [[(None if identity is None else f"{Path(r).name}/{identity}", f) for identity, f in identity_folder(r, loose="unlabelled")]
              for r in roots]
    parts = []
    for root, files in zip(roots, listed):
        cache = None
        if cache_dir is not False:
            cache = Path(cache_dir or host.cache_dir("aligned")) / f"{_cache_key(files, _detector_id(detector))}.npz"
        faces = _read_cache(cache, report) if cache is not None else None
        if faces is None:
            faces = _align_all(files, detector, progress, report)
            if cache is not None:
                _write_cache(cache, faces, report)
        parts.append((Path(root).name, faces))
    return _concat(parts)


def _concat(parts: list[tuple[str, IdentityFaces]]) -> IdentityFaces:
    """One face set from several (root name, faces): identities in name order (the same name in two roots of
    the same name is one identity), unlabelled faces last; `pools` counts faces and losses per root."""
    identities = tuple(sorted({n for _, f in parts for n in f.identities}))
    index = {n: i for i, n in enumerate(identities)}
    labels = []
    for _, f in parts:
        remap = np.array([index[n] for n in f.identities] + [-1], np.int64)
        labels.append(remap[f.labels])
    labels = np.concatenate(labels)
    order = np.argsort(np.where(labels < 0, len(identities), labels), kind="stable")
    pools = tuple((name, len(f), f.no_face, f.unreadable) for name, f in parts)
    return IdentityFaces(np.concatenate([f.crops for _, f in parts])[order], labels[order], identities,
                         tuple(np.concatenate([np.array(f.files, dtype=object) for _, f in parts])[order].tolist()),
                         np.concatenate([f.detected for _, f in parts])[order],
                         sum(f.no_face for _, f in parts), sum(f.unreadable for _, f in parts), pools)


def _align_all(files, detector, progress: bool, report) -> IdentityFaces:
    from tqdm import tqdm

    crops, names, paths, detected = [], [], [], []
    no_face = unreadable = 0
    pending: list[tuple[str, Path, np.ndarray]] = []

    def flush():
        nonlocal no_face, det
        if not pending:
            return
        if det is None:
            det = Detector(score_thr=0.3)
        found = det.detect([p[2] for p in pending])
        missed = [i for i, faces in enumerate(found) if primary_face(faces) is None or faces.landmarks is None]
        if missed:  # a face that fills the frame: try again with a border
            padded = [with_border(pending[i][2]) for i in missed]
            for i, (rgb, pad), faces in zip(missed, padded, det.detect([p[0] for p in padded])):
                found[i] = faces
                pending[i] = (*pending[i][:2], rgb)
        for (identity, f, rgb), faces in zip(pending, found):
            k = primary_face(faces)
            if k is None or faces.landmarks is None:
                no_face += 1
                continue
            crops.append(align_faces(rgb, faces.landmarks[k:k + 1], SIZE)[0])
            names.append(identity)
            paths.append(str(f))
            detected.append(True)
        pending.clear()

    det = detector
    for identity, f in tqdm(files, desc="align", unit="img", disable=not progress, file=sys.stderr):
        try:
            rgb = read_image(f)
        except LeanfaceError as exc:
            report(f"{exc}; left out")
            unreadable += 1
            continue
        if rgb.shape[:2] == (SIZE, SIZE):
            crops.append(rgb)
            names.append(identity)
            paths.append(str(f))
            detected.append(False)
        else:
            pending.append((identity, f, rgb))
            if len(pending) >= 16:
                flush()
    flush()
    if not crops:
        raise LeanfaceError(f"no face found in {len(files)} images of {files[0][1].parents[1]}")
    identities = tuple(sorted({n for n in names if n is not None}))
    index = {n: i for i, n in enumerate(identities)}
    index[None] = len(identities)  # unlabelled faces sort last
    order = np.argsort([index[n] for n in names], kind="stable")
    labels = np.array([index[n] if n is not None else -1 for n in names], np.int64)[order]
    return IdentityFaces(np.stack(crops)[order], labels, identities, tuple(paths[i] for i in order),
                         np.array(detected, bool)[order], no_face, unreadable)


def with_border(rgb: np.ndarray, border: float = BORDER, fill: int = 127) -> tuple[np.ndarray, int]:
    """The image inside a grey frame of `border` x its longer side on each side, and that frame's width."""
    pad = int(round(border * max(rgb.shape[:2])))
    framed = np.full((rgb.shape[0] + 2 * pad, rgb.shape[1] + 2 * pad, 3), fill, np.uint8)
    framed[pad:pad + rgb.shape[0], pad:pad + rgb.shape[1]] = rgb
    return framed, pad


def _read_cache(path: Path, report) -> IdentityFaces | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return IdentityFaces(z["crops"], z["labels"], tuple(z["identities"].tolist()), tuple(z["files"].tolist()),
                                 z["detected"], int(z["no_face"]), int(z["unreadable"]))
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
        report(f"{path}: unreadable aligned-face cache; rebuilding it")
        return None


def _write_cache(path: Path, faces: IdentityFaces, report) -> None:
    buf = io.BytesIO()
    np.savez(buf, crops=faces.crops, labels=faces.labels, identities=np.array(faces.identities, dtype=str),
             files=np.array(faces.files, dtype=str), detected=faces.detected, no_face=faces.no_face,
             unreadable=faces.unreadable)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, binary=True) as f:
            f.write(buf.getvalue())
    except OSError as exc:  # the cache is a convenience
        report(f"{path}: cannot write the aligned-face cache ({exc.strerror or exc})")


def _held(faces: IdentityFaces, share: float, low: int, high: int | None, key: str) -> np.ndarray:
    labelled = faces.labels >= 0
    counts = np.bincount(faces.labels[labelled], minlength=len(faces.identities))
    held = np.array([low <= counts[i] and (high is None or counts[i] <= high) and
                     int(hashlib.sha1(f"{key}:{name}".encode()).hexdigest()[:8], 16) < share * 2 ** 32
                     for i, name in enumerate(faces.identities)] + [False], bool)
    return held[faces.labels]  # label -1 picks the final False: unlabelled faces are never held back


def dev_split(faces: IdentityFaces, share: float = 0.05, max_images: int = 20, seed: int = 0) -> np.ndarray:
    """(N,) bool: the faces of held-back identities (about `share` of those with 2..max_images images,
    chosen by a hash of the name and seed, so the split does not move when other folders are added)."""
    return _held(faces, share, 2, max_images, str(seed))


# Identities with at least this many faces can give the set-to-set protocol several templates.
TEMPLATE_MIN_FACES = 20


def template_split(faces: IdentityFaces, share: float = 0.3, min_faces: int = TEMPLATE_MIN_FACES) -> np.ndarray:
    """(N,) bool: the faces of identities held back for the set-to-set (template) protocol: about `share` of
    those with at least `min_faces` faces, by a hash of the name (fixed, whatever the seed). The quality
    task never trains on them, so its QAN++ figures are measured on unseen people."""
    return _held(faces, share, min_faces, None, "templates")


def dev_pairs(labels: np.ndarray, folds: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, same, fold) index pairs over faces with identity labels: every same-identity pair, and
    as many different-identity pairs drawn at random within the same fold; folds are identity-disjoint."""
    labels = np.asarray(labels)
    ids = np.unique(labels)
    fold_of_id = dict(zip(ids.tolist(), np.random.default_rng(seed).permutation(len(ids)) % folds))
    rng = np.random.default_rng(seed + 1)
    left, right, same, fold = [], [], [], []
    for f in range(folds):
        members = np.flatnonzero(np.array([fold_of_id[int(y)] == f for y in labels]))
        if len(members) < 2:
            continue
        pos = [(a, b) for i, a in enumerate(members) for b in members[i + 1:] if labels[a] == labels[b]]
        n = len(pos)
        neg = set()
        while len(neg) < n and len(np.unique(labels[members])) > 1:
            a, b = rng.choice(members, 2, replace=False)
            if labels[a] != labels[b]:
                neg.add((min(a, b), max(a, b)))
        for pairs, s in ((pos, True), (sorted(neg), False)):
            left += [p[0] for p in pairs]
            right += [p[1] for p in pairs]
            same += [s] * len(pairs)
            fold += [f] * len(pairs)
    return np.array(left, np.int64), np.array(right, np.int64), np.array(same, bool), np.array(fold, np.int64)


# Test-time detection of LFW photos, as `leanface eval` runs it (leanface.eval.pairs_eval).
PAIRS_SCORE_THR = 0.3


def pairs_crops(root) -> tuple[np.ndarray, tuple]:
    """Aligned crops of every image of an LFW (or generic pairs) folder, by the bundled detector's main
    face (the centre crop where none is found), cached; and (left, right, same, fold) index arrays."""
    pairs = load_pairs(root)
    images = pairs.images
    h = hashlib.sha1("\n".join(map(str, images)).encode())
    cache = host.cache_dir("aligned") / f"pairs_{h.hexdigest()[:16]}.npy"
    crops = read_array(cache, (len(images), 112, 112, 3))
    if crops is None:
        det = Detector(score_thr=PAIRS_SCORE_THR)
        crops = np.zeros((len(images), 112, 112, 3), np.uint8)
        for s in range(0, len(images), 16):
            arrays = [read_image(p) for p in images[s:s + 16]]
            for k, (rgb, faces) in enumerate(zip(arrays, det.detect(arrays))):
                j = primary_face(faces)
                crops[s + k] = centre_crop(rgb, 112) if j is None else align_faces(rgb, faces.landmarks[j:j + 1])[0]
        write_arrays(cache, crops)
    index = {p: i for i, p in enumerate(images)}
    left = np.array([index[p] for p in pairs.left])
    right = np.array([index[p] for p in pairs.right])
    return crops, (left, right, pairs.same, pairs.fold)


def read_array(path: Path, shape: tuple) -> np.ndarray | None:
    """A cached array of the expected shape, or None (absent, damaged or stale: recomputed)."""
    try:
        out = np.load(path) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return out if out is not None and out.shape == shape else None


def write_arrays(path: Path, arr: np.ndarray | None = None, **arrays: np.ndarray) -> None:
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
