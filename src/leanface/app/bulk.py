"""Bulk detection on Ray: image collections too big for one process, spread over a cluster's workers; bulk
gallery enrolment on the same machinery (`enrol_bulk`).

The images are split into shards; Ray actors (one Detector each, one thread each) detect a shard at a
time and send its records back; the driver writes each shard as one JSON-lines file, atomically
(`shard-000012.jsonl` appears whole or not at all). A rerun over the same shard folder reads the
shards there and detects only the images none of them holds, in new shards, so a killed run loses at
most the shards in flight and no record is ever written twice. Inputs are paths that every worker can
read (a shared filesystem on a cluster); only the records travel back.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import LeanfaceError
from ..files import atomic_write, check_writable_folder, file_digest
from ..infer.results import Faces
from ..recognize.recognizer import Recognizer, primary_face

SHARD_RE = re.compile(r"^shard-(\d{6})\.jsonl$")
DEFAULT_SHARD_SIZE = 64


@dataclass(frozen=True)
class BulkReport:
    """One bulk run: images detected now, already done before, failed (one line each), shards written."""

    detected: int
    already_done: int
    failed: tuple[str, ...]
    shards: int
    seconds: float


def shard_records(shard_dir: str | os.PathLike) -> tuple[dict[str, int], int]:
    """({absolute image path: shard number} over the complete shards of a folder, highest shard number or -1).
    A shard is complete by construction (atomic rename); a line that is not a record is ignored, so its
    image is simply detected again."""
    done: dict[str, int] = {}
    last = -1
    folder = Path(shard_dir)
    if not folder.is_dir():
        return done, last
    for f in sorted(folder.iterdir()):
        m = SHARD_RE.match(f.name)
        if not m:
            continue
        k = int(m.group(1))
        last = max(last, k)
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    done.setdefault(os.path.abspath(json.loads(line)["image"]), k)
                except (ValueError, KeyError, TypeError):
                    continue
    return done, last


def _check_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise LeanfaceError(f"{folder}: --shard-dir names a file, not a folder")
    check_writable_folder(folder, "--shard-dir")


def _make_detector(settings: dict):
    from ..infer.detector import Detector

    return Detector(**settings)


class _Worker:
    """A Ray actor body: one pipeline (a Detector, or what `factory` builds: anything with the Detector's
    `detect(list) -> list[Faces]` and `batch_size`, e.g. a Recognizer), reused for every shard it is given."""

    def __init__(self, settings: dict, factory=_make_detector):
        self.detector = factory(settings)

    def run(self, shard: int, paths: list[str]) -> tuple[int, list[str], list[str]]:
        import dataclasses

        from ..infer.image import read_image

        lines, errors = [], []
        step = self.detector.batch_size
        for start in range(0, len(paths), step):
            arrays, chunk = [], []
            for p in paths[start:start + step]:
                try:
                    arrays.append(read_image(p))
                    chunk.append(p)
                except LeanfaceError as exc:
                    errors.append(str(exc))
            for p, faces in zip(chunk, self.detector.detect(arrays)):
                lines.append(json.dumps(dataclasses.replace(faces, source=p).to_dict()))
        return shard, lines, errors


def detect_bulk(images: list[str | os.PathLike], shard_dir: str | os.PathLike, settings: dict,
                address: str | None = "local", workers: int | None = None, shard_size: int = DEFAULT_SHARD_SIZE,
                progress: bool = True, factory=_make_detector, verb: str = "detect") -> BulkReport:
    """Detect faces in `images` on Ray workers, writing shard files to `shard_dir` (see the module docstring).

    settings: the Detector's keyword arguments (weights must be readable by every worker; `threads`
    defaults to 1 per worker). address: "local" (a private Ray instance here), "auto" or "HOST:PORT".
    workers: actors to start (default: the cluster's CPUs). factory: builds each worker's pipeline from
    settings (a module-level function, so Ray can ship it; default a Detector): e.g. a Recognizer, whose
    records then carry embeddings (bulk enrolment into a gallery store).
    """
    import time

    from tqdm import tqdm

    from ..cluster import ray_init, require_ray

    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise LeanfaceError(f"shard size must be a whole number of at least 1, got {shard_size!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise LeanfaceError(f"workers must be a whole number of at least 1, got {workers!r}")
    folder = Path(shard_dir)
    _check_folder(folder)
    settings = {"threads": 1, **settings}
    for key in ("weights", "det_weights"):
        if settings.get(key) is not None:
            settings[key] = os.path.abspath(settings[key])
    factory(settings)  # bad weights or settings: the usual one-line error, before any cluster work
    t0 = time.perf_counter()
    done, last = shard_records(folder)
    todo, seen = [], set()
    for p in images:
        a = os.path.abspath(p)
        if a not in done and a not in seen:  # an image listed twice is detected once
            seen.add(a)
            todo.append(a)
    already = len(done)
    if progress and already:
        print(f"{folder}: {already} image(s) already in {last + 1} shard file(s); {len(todo)} to go", file=sys.stderr)
    jobs = [(last + 1 + k, todo[s:s + shard_size]) for k, s in enumerate(range(0, len(todo), shard_size))]
    failed: list[str] = []
    if not jobs:
        return BulkReport(0, already, (), 0, time.perf_counter() - t0)
    folder.mkdir(parents=True, exist_ok=True)
    ray = require_ray()
    from ray.util import ActorPool

    started = ray_init(address)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = min(workers or cpus, len(jobs))
        actor = ray.remote(num_cpus=1)(_Worker)
        pool = ActorPool([actor.remote(settings, factory) for _ in range(n)])
        bar = tqdm(total=len(todo), desc=verb, unit="img", disable=not progress, file=sys.stderr)
        detected = 0
        for shard, lines, errors in pool.map_unordered(lambda a, job: a.run.remote(*job), jobs):
            with atomic_write(folder / f"shard-{shard:06d}.jsonl") as f:
                f.writelines(line + "\n" for line in lines)
            for message in errors:
                tqdm.write(f"leanface {verb}: error: {message}", file=sys.stderr)
            failed.extend(errors)
            detected += len(lines)
            bar.update(len(lines) + len(errors))
        bar.close()
    finally:
        if started:
            ray.shutdown()
    return BulkReport(detected, already, tuple(failed), len(jobs), time.perf_counter() - t0)


def recognizer_from_settings(settings: dict) -> Recognizer:
    """A Recognizer from keyword settings (what a bulk worker builds: module-level, so Ray can ship it)."""
    return Recognizer(**settings)


def enrol_bulk(store, settings: dict, groups: dict[str, list[Path]], shard_dir: str | os.PathLike,
               address: str, workers: int | None = None, shard_size: int | None = None,
               report: Callable[[str], None] = lambda m: None) -> tuple[int, int, int]:
    """Bulk enrolment: every photo detected and embedded on Ray workers into shard files (the bulk detection
    machinery: sharded, resumable, any cluster), then each photo's main face enrolled under its identity,
    one transaction per shard; photos already enrolled (by content) are skipped, so a rerun after a kill
    redoes neither the embedding nor the enrolment. Returns (added, skipped, failed)."""
    identity = {os.path.abspath(f): name for name, files in groups.items() for f in files}
    bulk = detect_bulk(list(identity), shard_dir, settings, address=address, workers=workers,
                       shard_size=shard_size or DEFAULT_SHARD_SIZE, factory=recognizer_from_settings, verb="gallery")
    failed = len(bulk.failed)
    enrolled = {name: store.enrolled(name) for name in groups}
    added = skipped = 0
    for shard in sorted(Path(shard_dir).glob("shard-*.jsonl")):
        rows: list[tuple[str, np.ndarray, str, str]] = []
        for line in shard.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                path = os.path.abspath(rec["image"])
            except (ValueError, KeyError, TypeError):
                continue
            name = identity.get(path)
            if name is None:  # a shard of another run in the same folder
                continue
            try:
                sha = file_digest(path, "sha1")
            except OSError as exc:
                report(f"{path}: cannot read it ({exc.strerror or exc})")
                failed += 1
                continue
            if sha in enrolled[name]:
                skipped += 1
                continue
            faces = Faces.from_dict(rec)
            k = primary_face(faces)
            if k is None or faces.embeddings is None:
                report(f"{path}: no face found; not enrolled")
                failed += 1
                continue
            enrolled[name].add(sha)
            rows.append((name, faces.embeddings[k], path, sha))
        if rows:
            names, emb, src, sha = zip(*rows)
            added += store.add_many(list(names), np.stack(emb), src, sha)
    return added, skipped, failed
