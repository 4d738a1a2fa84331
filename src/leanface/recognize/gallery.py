"""Identification against a gallery: a folder of identity sub-folders (`root/<name>/*.jpg`; an image
directly in root is an identity named by its file stem), embedded once and cached.

Each gallery image is enrolled by its main face (`primary_face`); an image without a face is reported
and left out (a centre crop would enrol background). A query face takes the identity whose best image
is most similar, or "unknown" below the threshold. The cache maps each image's content hash (SHA-1 of
its bytes) to its embedding, one file per recognition setup (embedder and detector weights and settings),
so renaming or moving gallery files costs nothing and an edited image is re-embedded.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.identities import identity_folder
from ..errors import LeanfaceError
from ..files import atomic_write, file_digest
from ..host import cache_dir
from ..outputs import GALLERY_CACHE, OutputGuard
from ..infer import Faces, read_image
from .open_set import ImpostorTail
from .recognizer import Recognizer, primary_face, require_threshold
from .search_index import SearchIndex

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Gallery:
    """names[i]: the identity of embeddings[i] (M, D), enrolled from files[i]. index: a search index over
    the embeddings (a store's; None: exact search). tail: the embedder's impostor calibration, when known
    (thresholds for a target FPIR at this gallery's size)."""

    names: tuple[str, ...]
    embeddings: np.ndarray
    files: tuple[str, ...]
    index: SearchIndex | None = dataclasses.field(default=None, compare=False, repr=False)
    tail: ImpostorTail | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def identities(self) -> list[str]:
        return sorted(set(self.names))

    def match(self, embeddings: np.ndarray, threshold: float) -> tuple[tuple[str, ...], np.ndarray]:
        """(identity per query, similarity to that identity's best image); "unknown" at or below threshold."""
        if not len(embeddings):
            return (), np.zeros(0, np.float32)
        if self.index is not None:
            score, best = (a[:, 0] for a in self.index.search(embeddings, 1))
        else:
            sims = np.asarray(embeddings, np.float32) @ self.embeddings.T  # (N, M)
            best = sims.argmax(1)
            score = sims[np.arange(len(sims)), best]
        names = tuple(self.names[j] if j >= 0 and s > threshold else UNKNOWN for j, s in zip(best, score))
        return names, score.astype(np.float32)


def setup_of(rec: Recognizer) -> dict:
    """Everything that changes a gallery embedding: the embedder file (digest), its normalisation and flip,
    the detector file and its settings (alignment follows the detector's landmarks)."""
    emb, det = rec.embedder, rec.detector
    return {"embedder": _file_digest(getattr(emb, "weights", None)) or getattr(emb, "name", type(emb).__name__),
            "mean": np.asarray(getattr(emb, "mean", 0)).tolist(), "std": np.asarray(getattr(emb, "std", 1)).tolist(),
            "flip": getattr(emb, "flip", False), "detector": _file_digest(det.weights) or det.config.name,
            "size": det.size, "letterbox": det.letterbox, "score_thr": det.postprocess.score_thr}


def store_setup(rec: Recognizer) -> dict:
    """What a gallery store records and checks queries against: `setup_of` less the detector's score
    threshold (it decides which faces are found, not their embeddings)."""
    return {k: v for k, v in setup_of(rec).items() if k != "score_thr"}


def _setup_key(rec: Recognizer) -> str:
    """A digest of everything that changes a gallery embedding (`setup_of`)."""
    return hashlib.sha1(json.dumps(setup_of(rec), sort_keys=True).encode()).hexdigest()[:16]


def _file_digest(path) -> str | None:
    if path is None or not os.path.isfile(path):
        return None
    return file_digest(path, "sha1")


def _load_cache(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            return dict(zip(z["keys"].tolist(), z["embeddings"]))
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
        print(f"leanface: {path}: unreadable gallery cache; rebuilding it", file=sys.stderr)
        return {}


def _save_cache(path: Path, entries: dict[str, np.ndarray], dim: int) -> None:
    buf = io.BytesIO()
    keys = np.array(list(entries), dtype=str)
    embs = np.stack(list(entries.values())) if entries else np.zeros((0, dim), np.float32)
    np.savez(buf, keys=keys, embeddings=embs.astype(np.float32))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, binary=True) as f:
            f.write(buf.getvalue())
    except OSError as exc:  # the cache is a convenience: identification goes on without it
        print(f"leanface: {path}: cannot write the gallery cache ({exc.strerror or exc})", file=sys.stderr)


def build_gallery(root: str | os.PathLike, recognizer: Recognizer, cache: str | os.PathLike | bool | None = None,
                  report: Callable[[str], None] | None = None) -> Gallery:
    """Enrol every gallery image. cache: a cache file, None for the default one (under
    $XDG_CACHE_HOME/leanface/gallery), False for none. Unusable images are reported one line each."""
    report = report or (lambda message: print(f"leanface: {message}", file=sys.stderr))
    entries = identity_folder(root, loose="stem", report=report, what="gallery")
    path = None if cache is False else Path(cache) if cache else cache_dir("gallery") / f"{_setup_key(recognizer)}.npz"
    if cache:  # a file the caller named: never a gallery photo, never a file that is not a gallery cache
        guard = OutputGuard("identify")
        guard.input_folder(root, "the gallery")
        guard.file(path, "cache", GALLERY_CACHE, replaceable=False)
    cached = _load_cache(path) if path is not None else {}
    names, embs, files, fresh = [], [], [], 0
    for identity, file in entries:
        try:
            data = file.read_bytes()
        except OSError as exc:
            report(f"{file}: cannot read it ({exc.strerror or exc}); left out of the gallery")
            continue
        key = hashlib.sha1(data).hexdigest()
        emb = cached.get(key)
        if emb is None:
            try:
                rgb = read_image(file)
            except LeanfaceError as exc:
                report(f"{exc}; left out of the gallery")
                continue
            faces = recognizer.detector(rgb)
            k = primary_face(faces)
            if k is None:
                report(f"{file}: no face found; left out of the gallery")
                cached[key] = np.full(recognizer.embedder.dim, np.nan, np.float32)  # remember: no face
                fresh += 1
                continue
            emb = recognizer.embedder.embed_faces(rgb, faces.boxes[k:k + 1],
                                                  None if faces.landmarks is None else faces.landmarks[k:k + 1])[0]
            cached[key] = emb
            fresh += 1
        elif np.isnan(emb).any():
            report(f"{file}: no face found; left out of the gallery")
            continue
        names.append(identity)
        embs.append(emb)
        files.append(str(file))
    if path is not None and fresh:
        _save_cache(path, cached, recognizer.embedder.dim)
    if not embs:
        raise LeanfaceError(f"{root}: no face found in any gallery image")
    return Gallery(tuple(names), np.stack(embs).astype(np.float32), tuple(files))


class Identifier:
    """A Recognizer and a Gallery: Faces with identities and similarities (the Detector's call shape, so
    the detect verb's file, folder and video handling runs it unchanged)."""

    def __init__(self, recognizer: Recognizer, gallery: Gallery, threshold: float | None = None,
                 fpir: float | None = None):
        """threshold: the one-to-one cosine threshold (default: the recognizer's). fpir: instead, the threshold
        for this false-positive identification rate at this gallery's size, from the gallery's impostor
        calibration (`leanface gallery calibrate`)."""
        self.recognizer, self.gallery = recognizer, gallery
        if fpir is not None:
            if threshold is not None:
                raise LeanfaceError("give a threshold or a target FPIR, not both")
            if gallery.tail is None:
                raise LeanfaceError("a target FPIR needs the gallery's impostor calibration: run "
                                    "`leanface gallery calibrate STORE --data DEV_FOLDERS` first")
            threshold = gallery.tail.threshold(fpir, len(gallery.embeddings))
        self.threshold = require_threshold(recognizer, threshold)
        self.batch_size = recognizer.batch_size

    def _name(self, faces: Faces) -> Faces:
        ids, sims = self.gallery.match(faces.embeddings, self.threshold)
        return dataclasses.replace(faces, identities=ids, similarities=sims)

    def __call__(self, images):
        if isinstance(images, (list, tuple)):
            return self.detect(list(images))
        return self.detect([images])[0]

    def detect(self, images: Sequence) -> list[Faces]:
        return [self._name(f) for f in self.recognizer.detect(images)]

    def stream(self, frames: Iterable[np.ndarray]) -> Iterable[Faces]:
        return (self._name(f) for f in self.recognizer.stream(frames))

    def track(self, frames: Iterable[np.ndarray], embed_every: int | None = None):
        """The recognizer's `track` (faces tracked, embedded lazily), lost tracks re-identified at this
        identifier's threshold."""
        kw = {} if embed_every is None else {"embed_every": embed_every}
        return self.recognizer.track(frames, reid_cos=self.threshold, **kw)

    def name_track(self, embeddings: np.ndarray, qualities: np.ndarray | None) -> tuple[str, float, str]:
        """(identity, similarity, aggregator) of one video track: its frames' embeddings aggregated by
        QAN++ when there are qualities (the mean otherwise), matched against the gallery."""
        from .aggregate import aggregate

        method = "qan" if qualities is not None else "mean"
        names, sims = self.gallery.match(aggregate(embeddings, qualities, method)[None], self.threshold)
        return names[0], float(sims[0]), method


def open_store_gallery(path: str | os.PathLike, recognizer: Recognizer) -> Gallery:
    """The Gallery of a store, checked against the recognizer's setup, with its search index."""
    from .store import GalleryStore

    with GalleryStore(path, setup=store_setup(recognizer)) as store:
        names, emb, files = store.load()
        if not len(names):
            raise LeanfaceError(f"{path}: the gallery store holds no faces (`leanface gallery add` enrols some)")
        return Gallery(tuple(names), emb, tuple(files), index=store.index(emb), tail=store.calibration())


def enrol_photos(store, recognizer: Recognizer, identity: str, photos: Iterable[Path],
                 report: Callable[[str], None], batch: int = 16) -> tuple[int, int, int]:
    """Enrol the main face of each photo as `identity`, committing every `batch` photos (a kill loses at most
    one batch; a rerun skips the photos already enrolled, by content). Returns (added, skipped, failed)."""
    done = store.enrolled(identity)
    added = skipped = failed = 0
    pending: list[tuple[np.ndarray, str, str]] = []

    def flush():
        nonlocal added
        if pending:
            emb, src, sha = zip(*pending)
            added += store.add(identity, np.stack(emb), src, sha)
            pending.clear()

    for file in photos:
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            report(f"{file}: cannot read it ({exc.strerror or exc})")
            failed += 1
            continue
        sha = hashlib.sha1(data).hexdigest()
        if sha in done:
            skipped += 1
            continue
        try:
            rgb = read_image(file)
        except LeanfaceError as exc:
            report(str(exc))
            failed += 1
            continue
        faces = recognizer.detector(rgb)
        k = primary_face(faces)
        if k is None:
            report(f"{file}: no face found; not enrolled")
            failed += 1
            continue
        emb = recognizer.embedder.embed_faces(rgb, faces.boxes[k:k + 1],
                                              None if faces.landmarks is None else faces.landmarks[k:k + 1])[0]
        done.add(sha)
        pending.append((emb, str(Path(file).resolve()), sha))
        if len(pending) >= batch:
            flush()
    flush()
    return added, skipped, failed
