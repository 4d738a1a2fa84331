"""`leanface detect` / `leanface demo`: files, folders and videos in; JSON lines, annotated images, crops out.

`run_detect` takes any pipeline with the Detector's call shape (`detect(list) -> list[Faces]`,
`stream(frames)`, `batch_size`), so the recognition verbs (`embed`, `identify`) reuse the same file,
folder and video handling, output checks and incremental writing."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import LeanfaceError
from ..files import atomic_write
from ..outputs import STDOUT, OutputGuard, results_kind
from ..infer.detector import Detector
from ..infer.image import IMAGE_EXTS, is_video, list_images, read_image, sample_image, video_frame_count, video_frames
from ..infer.results import Faces
from ..infer.track import SceneCuts, Tracker, TrackerConfig, score_floor, video_tracker


def _write_image(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(path.suffix or ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise LeanfaceError(f"{path}: cannot encode image")
    with atomic_write(path, binary=True) as f:
        f.write(buf.tobytes())


class _Outputs:
    """Results written as they arrive: one JSON line per image, flushed (a killed run leaves complete
    records), annotated images and crops under save_dir. Every location goes through the output guard
    (`plan`) before any work; json_out "-" writes the JSON lines to standard output."""

    def __init__(self, json_out: str | None, save_dir: str | None, crops: bool, verb: str = "detect",
                 resume: bool = False):
        self.verb = verb
        self.save_dir = Path(save_dir) if save_dir else None
        self.crops = crops
        self.count = 0
        self.json = None
        self.to_stdout = json_out == STDOUT
        self.target: Path | None = Path(json_out) if json_out and not self.to_stdout else None
        self.records: list[tuple[str, int | None, str]] = []  # (input absolute path, frame or None, line) already done
        if resume and self.target is not None and self.target.is_file():
            self.records = _read_records(self.target)

    def plan(self, guard: OutputGuard, names: list[str], videos: list[Path]) -> None:
        """Check every output of the run (results file, annotated images and videos, crops) with `guard`."""
        if self.crops and self.save_dir is None:
            raise LeanfaceError("--crops writes face crops into SAVE_DIR/crops: it needs --save-dir")
        if guard.resume and self.target is None:
            raise LeanfaceError("--resume needs --json-out FILE: the results file is the record of what is done")
        guard.file(self.target, "--json-out", results_kind(self.verb), resumable=True)
        if self.save_dir is None:
            return
        writes = [f"{n}.jpg" for n in names] + [f"{v.stem}.mp4" for v in videos]
        if len(set(writes)) < len(writes):
            twice = next(w for w in writes if writes.count(w) > 1)
            raise LeanfaceError(f"{self.save_dir / twice}: two inputs would write this annotated file "
                                f"(videos with the same name?); run them separately")
        guard.folder(self.save_dir, "--save-dir", writes=writes, resumable=True)
        crops = self.save_dir / "crops"
        if self.crops and crops.is_dir() and not (guard.exist_ok or guard.resume):
            wanted = set(names) | {v.stem for v in videos}
            for f in crops.rglob("*.jpg"):
                if f.relative_to(crops).as_posix().rsplit("_", 1)[0] in wanted:
                    raise LeanfaceError(f"{f}: already exists in --save-dir; --exist-ok replaces it")

    def done(self, videos: dict[str, int]) -> tuple[set[str], set[str]]:
        """(images, videos) the results file already has in full; `videos`: absolute path -> frame count. A video
        counts only when every frame is there (it is redone otherwise, its partial lines dropped)."""
        images = {src for src, frame, _ in self.records if frame is None}
        frames: dict[str, set[int]] = {}
        for src, frame, _ in self.records:
            if frame is not None:
                frames.setdefault(src, set()).add(frame)
        finished = {v for v, n in videos.items() if n > 0 and frames.get(v) == set(range(n))}
        self.records = [r for r in self.records if r[1] is None or r[0] in finished]
        return images, finished

    def open(self) -> None:
        """Start the results file: the kept records of a resumed run rewritten whole (atomic), then appended to."""
        if self.to_stdout:
            self.json = sys.stdout
            return
        if self.target is None:
            return
        self.target.parent.mkdir(parents=True, exist_ok=True)  # checked writable above
        with atomic_write(self.target) as f:
            f.writelines(line + "\n" for _, _, line in self.records)
        self.json = open(self.target, "a", encoding="utf-8")

    def add(self, faces: Faces, image: np.ndarray, name: str, record: dict | None = None, image_out: bool = True) -> None:
        """Record one result; image_out=False: no annotated JPEG (video frames go into the annotated video)."""
        # Images first, the JSON line last: a line in the results file means its outputs exist (--resume).
        if self.save_dir is not None:
            if image_out:
                _write_image(self.save_dir / f"{name}.jpg", faces.plot(image))
            if self.crops:
                for k, crop in enumerate(faces.crops(image)):
                    _write_image(self.save_dir / "crops" / f"{name}_{k}.jpg", crop)
        if self.json is not None:
            self.json.write(json.dumps({**faces.to_dict(), **(record or {})}) + "\n")
            self.json.flush()
        self.count += 1

    def add_record(self, record: dict) -> None:
        """One JSON line that is not an image's faces (a video track's identity)."""
        if self.json is not None:
            self.json.write(json.dumps(record) + "\n")
            self.json.flush()
        self.count += 1

    def report(self, message: str) -> None:
        """One error line for an input that failed (above the progress bar, not inside it)."""
        tqdm.write(f"leanface {self.verb}: error: {message}", file=sys.stderr)

    def image_path(self, name: str) -> Path | None:
        return None if self.save_dir is None else self.save_dir / f"{name}.jpg"

    def close(self) -> None:
        if self.json is not None and not self.to_stdout:
            self.json.close()


def _read_records(path: Path) -> list[tuple[str, int | None, str]]:
    """The complete records of a results file: (input absolute path, frame or None, line); a line cut short by a
    kill, or one that is not a record, is left out (that input is redone)."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                rec = json.loads(line)
                src = os.path.abspath(rec["image"])
            except (ValueError, KeyError, TypeError):
                continue
            frame = rec.get("frame")
            records.append((src, frame if isinstance(frame, int) else None, line.rstrip("\n")))
    return records


def _output_names(inputs: list[tuple[Path, Path | None]]) -> list[str]:
    """Output names that never collide: the path relative to its input folder (the file name for a file
    argument), its extension kept unless .jpg; then the input folder's name, then a counter, when two
    inputs would still share a name."""
    def base(path: Path, root: Path | None) -> str:
        rel = path.relative_to(root) if root is not None else Path(path.name)
        ext = path.suffix.lower()
        stem = rel.with_suffix("").as_posix()
        return stem if ext in (".jpg", "") else f"{stem}_{ext[1:]}"

    names = [base(p, r) for p, r in inputs]
    if len(set(names)) < len(names):
        names = [f"{(r.name if r is not None else p.parent.name) or 'root'}/{n}" if names.count(n) > 1 else n
                 for n, (p, r) in zip(names, inputs)]
    seen: dict[str, int] = {}
    unique = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return unique


def _gather(paths: list[str]) -> tuple[list[tuple[Path, Path | None]], list[Path], list[str]]:
    """(images with their input folder or None, videos, one-line errors for inputs that cannot be used)."""
    images, videos, errors = [], [], []
    for p in paths:
        try:
            if is_list_file(p):
                listed, bad = read_list_file(p)
                images.extend((f, None) for f in listed)
                errors.extend(bad)
            elif is_video(p):
                if not os.path.isfile(p):
                    raise LeanfaceError(f"{p}: video not found")
                videos.append(Path(p))
            elif os.path.isdir(p):
                images.extend((f, Path(p)) for f in list_images(p))
            else:
                images.extend((f, None) for f in list_images(p))
        except LeanfaceError as exc:
            errors.append(str(exc))
    return images, videos, errors


LIST_EXTS = (".txt", ".lst")


def is_list_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in LIST_EXTS


def read_list_file(path: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """Image paths listed one per line (blank lines and # comments skipped; relative paths are relative to
    the list's folder), and a one-line error naming the file and line for each entry that is not an image."""
    lst = Path(path)
    try:
        text = lst.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LeanfaceError(f"{lst}: cannot read the list file ({getattr(exc, 'strerror', None) or exc})") from None
    images, errors = [], []
    for n, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        p = Path(entry) if os.path.isabs(entry) else lst.parent / entry
        if not p.is_file():
            errors.append(f"{lst}:{n}: {entry}: no such image file")
        elif p.suffix.lower() not in IMAGE_EXTS:
            errors.append(f"{lst}:{n}: {entry}: not an image ({', '.join(IMAGE_EXTS)})")
        else:
            images.append(p)
    if not images and not errors:
        raise LeanfaceError(f"{lst}: the list file names no images")
    return images, errors


def run_bulk(settings: dict, paths: list[str], shard_dir: str, address: str, workers: int | None = None,
             shard_size: int | None = None) -> int:
    """`leanface detect --address`: the inputs' images detected on Ray workers into shard files (see
    leanface.app.bulk); exit status 2 when an input could not be used."""
    from .bulk import DEFAULT_SHARD_SIZE, detect_bulk

    images, videos, errors = _gather(paths)
    errors += [f"{v}: videos are detected without --address (frames of one video stay in order)" for v in videos]
    if not images:
        raise LeanfaceError(errors[0] if len(errors) == 1 else "no usable input: " + "; ".join(errors))
    guard = OutputGuard("detect", resume=True)  # a shard folder is continued by design (its shards say what is done)
    guard.inputs(*paths, settings.get("weights"))
    guard.inputs(*(p for p, _ in images))
    guard.folder(shard_dir, "--shard-dir")
    for message in errors:
        tqdm.write(f"leanface detect: error: {message}", file=sys.stderr)
    report = detect_bulk([p for p, _ in images], shard_dir, settings, address=address, workers=workers,
                         shard_size=DEFAULT_SHARD_SIZE if shard_size is None else shard_size)
    failures = len(errors) + len(report.failed)
    print(f"{report.detected} result(s) in {report.shards} new shard(s) -> {shard_dir} in {report.seconds:.1f} s"
          + (f" ({report.already_done} already done)" if report.already_done else "")
          + (f"; {failures} input(s) failed" if failures else ""), file=sys.stderr)
    return 2 if failures else 0


def run_detect(detector: Detector, paths: list[str], json_out: str | None = None, save_dir: str | None = None,
               crops: bool = False, verb: str = "detect", resume: bool = False, exist_ok: bool = False,
               guard: OutputGuard | None = None) -> int:
    """Detect over every input. An input that cannot be used (missing, unreadable image or video) is reported
    on one line and the rest is still processed and written; the exit status is then 2. Outputs are
    checked before any work by the output guard (`guard`, when the caller registered more inputs, e.g. a
    gallery): writable, never an input, an existing results file refused unless `resume` (skip the inputs it
    already has, append the rest) or `exist_ok`. json_out "-": JSON lines on standard output."""
    job = plan_detect(paths, json_out=json_out, save_dir=save_dir, crops=crops, verb=verb, resume=resume,
                      exist_ok=exist_ok, guard=guard)
    return job.run(detector)


@dataclasses.dataclass
class DetectJob:
    """A checked detect/embed/identify run: its inputs, output names and outputs (from `plan_detect`)."""

    images: list[tuple[Path, Path | None]]
    names: list[str]
    videos: list[Path]
    errors: list[str]
    out: _Outputs
    resume: bool

    def run(self, detector) -> int:
        out, images, names, videos = self.out, self.images, self.names, self.videos
        if self.resume:
            done_images, done_videos = out.done({os.path.abspath(v): video_frame_count(v) for v in videos})
            kept = [(im, n) for im, n in zip(images, names) if os.path.abspath(im[0]) not in done_images]
            skipped = len(images) - len(kept) + len(done_videos)
            images, names = [im for im, _ in kept], [n for _, n in kept]
            videos = [v for v in videos if os.path.abspath(v) not in done_videos]
            print(f"resuming {out.target}: {skipped} input(s) already done, {len(images) + len(videos)} to go",
                  file=sys.stderr)
        out.open()
        for message in self.errors:
            out.report(message)
        failures = len(self.errors)
        try:
            failures += _detect_images(detector, images, names, out)
            for video in videos:
                # `identify` names tracks, the other verbs write frames: the verb decides, not the pipeline's methods.
                failures += (_identify_video if out.verb == "identify" else _detect_video)(detector, video, out)
        finally:
            out.close()
        print(f"{out.count} result{'s' if out.count != 1 else ''}" + (f" -> {out.target}" if out.target else "") +
              (f", images in {out.save_dir}" if out.save_dir else "") +
              (f"; {failures} input(s) failed" if failures else ""), file=sys.stderr)
        return 2 if failures else 0


def plan_detect(paths: list[str], json_out: str | None = None, save_dir: str | None = None, crops: bool = False,
                verb: str = "detect", resume: bool = False, exist_ok: bool = False,
                guard: OutputGuard | None = None) -> DetectJob:
    """Gather the inputs and check every output through the guard, before any model is loaded or run."""
    images, videos, errors = _gather(paths)
    if not images and not videos:
        raise LeanfaceError(errors[0] if len(errors) == 1 else "no usable input: " + "; ".join(errors))
    if guard is None:
        guard = OutputGuard(verb, exist_ok=exist_ok, resume=resume)
    guard.inputs(*paths)
    guard.inputs(*(p for p, _ in images), *videos)
    names = _output_names(images)
    out = _Outputs(json_out, save_dir, crops, verb, resume=resume)
    out.plan(guard, names, videos)
    return DetectJob(images, names, videos, errors, out, resume)


def _detect_images(detector: Detector, images: list[tuple[Path, Path | None]], names: list[str],
                   out: _Outputs) -> int:
    failures = 0
    show = len(images) > 1
    bar = tqdm(total=len(images), desc=out.verb, unit="img", disable=not show, file=sys.stderr)
    step = detector.batch_size
    for start in range(0, len(images), step):
        chunk, arrays, chunk_names = [], [], []
        for (path, _), name in zip(images[start:start + step], names[start:start + step]):
            try:
                arrays.append(read_image(path))
            except LeanfaceError as exc:
                out.report(str(exc))
                failures += 1
                continue
            chunk.append(path)
            chunk_names.append(name)
        for path, name, img, faces in zip(chunk, chunk_names, arrays, detector.detect(arrays)):
            faces = dataclasses.replace(faces, source=str(path))
            out.add(faces, img, name)
            if not show:
                named = "" if faces.identities is None else ": " + ", ".join(
                    f"{n} ({v:.2f})" for n, v in zip(faces.identities, faces.similarities))
                print(f"{path}: {len(faces)} faces{named}", file=sys.stderr if out.to_stdout else sys.stdout)
        bar.update(len(images[start:start + step]))
    bar.close()
    return failures


def _detect_video(detector: Detector, video: Path, out: _Outputs) -> int:
    """One JSON line per frame; with save_dir an annotated copy <save_dir>/<stem>.mp4 at the input's frame
    rate (written under a temporary name, renamed when complete), and crops per frame with --crops."""
    try:
        frames, count, fps = video_frames(video)
    except LeanfaceError as exc:
        out.report(str(exc))
        return 1
    vbar = tqdm(total=count or None, desc=video.name, unit="frame", file=sys.stderr)
    kept: list[np.ndarray] = []
    writer, target = None, None
    if out.save_dir is not None:
        target = out.save_dir / f"{video.stem}.mp4"
        partial = target.with_name(f".tmp-{target.name}")

    def remember(it):
        for frame in it:
            kept.append(frame)
            yield frame

    if hasattr(detector, "postprocess"):  # stage two wants low-score faces too; reported only when tracked
        tracker, low_thr = video_tracker(detector)
        user_thr, floor = float(detector.postprocess.score_thr), score_floor(detector, low_thr)
    else:
        tracker, user_thr, floor = Tracker(TrackerConfig(high_thr=0.0, low_thr=0.0)), 0.0, contextlib.nullcontext()
    cuts = SceneCuts()
    try:
        with floor:
            for k, faces in enumerate(detector.stream(remember(frames))):
                frame = kept.pop(0)
                faces = _one_frame(tracker(faces, cut=cuts(frame)), user_thr, video)
                out.add(faces, frame, f"{video.stem}_{k:06d}", {"frame": k}, image_out=False)
                if target is not None:
                    if writer is None:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps or 25.0,
                                                 (frame.shape[1], frame.shape[0]))
                    writer.write(cv2.cvtColor(faces.plot(frame), cv2.COLOR_RGB2BGR))
                vbar.update(1)
    except BaseException:
        if writer is not None:
            writer.release()
            partial.unlink(missing_ok=True)
        raise
    vbar.close()
    if writer is not None:
        writer.release()
        os.replace(partial, target)
    return 0


def _one_frame(faces, user_thr: float, video: Path):
    """The faces a plain run reports plus the low-score ones a track claimed."""
    faces = faces[(faces.scores >= user_thr) | (faces.track_ids >= 0)]
    return dataclasses.replace(faces, source=str(video))


def _identify_video(identifier, video: Path, out: _Outputs) -> int:
    """`identify` on a video: faces tracked through it, one JSON line per track (its frames' embeddings
    aggregated, QAN++ when the recognizer has a quality net, and named against the gallery); with save_dir
    an annotated copy <stem>.mp4 with each track's name, drawn in a second pass over the video."""
    try:
        frames, count, fps = video_frames(video)
    except LeanfaceError as exc:
        out.report(str(exc))
        return 1
    tracks: dict[int, dict] = {}
    drawn: list[list[tuple[np.ndarray, int]]] = []
    vbar = tqdm(total=count or None, desc=video.name, unit="frame", file=sys.stderr)
    try:
        for k, step in enumerate(identifier.track(frames)):
            faces = step.faces[step.faces.track_ids >= 0]
            drawn.append([(b, int(t)) for b, t in zip(faces.boxes, faces.track_ids)])
            for t in faces.track_ids:
                tracks.setdefault(int(t), {"seen": [], "emb": [], "q": []})["seen"].append(k)
            emb = step.embedded
            for i, t in enumerate(emb.track_ids):
                if t >= 0:
                    tracks[int(t)]["emb"].append(emb.embeddings[i])
                    if emb.qualities is not None:
                        tracks[int(t)]["q"].append(float(emb.qualities[i]))
            vbar.update(1)
    finally:
        vbar.close()
    if not tracks:
        out.report(f"{video}: no faces found in its {len(drawn)} frames")
        return 1
    names = {}
    for t, tr in sorted(tracks.items()):
        if not tr["emb"]:  # reported in a frame whose faces the tracker settled by boxes alone, then ended
            identity, similarity, method = "unknown", 0.0, "none"
        else:
            q = np.array(tr["q"]) if len(tr["q"]) == len(tr["emb"]) else None
            identity, similarity, method = identifier.name_track(np.stack(tr["emb"]), q)
        names[t] = identity
        out.add_record({"video": str(video), "track": t, "first_frame": tr["seen"][0], "last_frame": tr["seen"][-1],
                        "identity": identity, "similarity": round(similarity, 5), "frames": len(tr["emb"]),
                        "seen": len(tr["seen"]), "aggregator": method})
    if out.save_dir is not None:
        _write_track_video(video, drawn, names, fps, out.save_dir / f"{video.stem}.mp4")
    return 0


def _write_track_video(video: Path, drawn: list, names: dict[int, str], fps: float, target: Path) -> None:
    frames, _, _ = video_frames(video)
    partial = target.with_name(f".tmp-{target.name}")
    writer = None
    try:
        for frame, faces in zip(frames, drawn):
            if writer is None:
                target.parent.mkdir(parents=True, exist_ok=True)
                writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps or 25.0,
                                         (frame.shape[1], frame.shape[0]))
            img = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            thick = max(1, round(max(frame.shape[:2]) / 500))
            for box, t in faces:
                x1, y1, x2, y2 = (int(round(v)) for v in box)
                cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), thick)
                cv2.putText(img, f"#{t} {names.get(t, '')}", (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                            0.4 * thick, (0, 255, 0), thick)
            writer.write(img)
    except BaseException:
        if writer is not None:
            writer.release()
            partial.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.release()
        os.replace(partial, target)


def run_demo(model: str | None = None, weights: str | None = None, save_dir: str = "demo_out",
             exist_ok: bool = False) -> int:
    guard = OutputGuard("demo", exist_ok=exist_ok)
    guard.inputs(weights, what="the weights")
    guard.folder(save_dir, "--save-dir", writes=["astronaut.jpg"])
    detector = Detector(model=model, weights=weights)
    image = sample_image()
    faces = dataclasses.replace(detector(image), source="skimage.data.astronaut()")
    print(json.dumps(faces.to_dict()))
    target = Path(save_dir) / "astronaut.jpg"
    _write_image(target, faces.plot(image))
    weights_name = detector.weights or "bundled"
    print(f"{len(faces)} face(s) found with {detector.config.name} ({weights_name}); annotated image: {target}",
          file=sys.stderr)
    return 0
