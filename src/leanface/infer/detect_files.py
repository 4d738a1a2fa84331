"""`leanface detect` / `leanface demo`: files, folders and videos in; JSON lines, annotated images, crops out."""
from __future__ import annotations

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
from .detector import Detector
from .image import is_video, list_images, read_image, sample_image, video_frames
from .results import Faces


def _write_image(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(path.suffix or ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise LeanfaceError(f"{path}: cannot encode image")
    with atomic_write(path, binary=True) as f:
        f.write(buf.tobytes())


class _Outputs:
    """Annotated images and crops written as results arrive; the JSON lines file appears whole at the end."""

    def __init__(self, save_dir: str | None, crops: bool):
        self.save_dir = Path(save_dir) if save_dir else None
        self.crops = crops
        self.lines: list[str] = []

    def add(self, faces: Faces, image: np.ndarray, name: str, record: dict | None = None) -> None:
        self.lines.append(json.dumps({**faces.to_dict(), **(record or {})}))
        if self.save_dir is None:
            return
        _write_image(self.save_dir / f"{name}.jpg", faces.plot(image))
        if self.crops:
            for k, crop in enumerate(faces.crops(image)):
                _write_image(self.save_dir / "crops" / f"{name}_{k}.jpg", crop)


def _unique_names(paths: list[Path]) -> list[str]:
    # Output names are file stems, disambiguated by parent folder when two inputs share a stem.
    stems = [p.stem for p in paths]
    dup = {s for s in stems if stems.count(s) > 1}
    return [f"{p.parent.name}_{p.stem}" if p.stem in dup else p.stem for p in paths]


def run_detect(detector: Detector, paths: list[str], json_out: str | None = None, save_dir: str | None = None,
               crops: bool = False) -> int:
    """Detect over every input; unreadable files are reported (one line each) and give exit status 2."""
    images, videos = [], []
    for p in paths:
        (videos if is_video(p) and os.path.isfile(p) else images).extend(
            [Path(p)] if is_video(p) else list_images(p))
    out = _Outputs(save_dir, crops)
    failures = 0
    show = len(images) > 1
    bar = tqdm(total=len(images), desc="detect", unit="img", disable=not show, file=sys.stderr)
    names = _unique_names(images)
    step = detector.batch_size
    for start in range(0, len(images), step):
        chunk, arrays, chunk_names = [], [], []
        for path, name in zip(images[start:start + step], names[start:start + step]):
            try:
                arrays.append(read_image(path))
            except LeanfaceError as exc:
                print(f"leanface detect: error: {exc}", file=sys.stderr)
                failures += 1
                continue
            chunk.append(path)
            chunk_names.append(name)
        for path, name, img, faces in zip(chunk, chunk_names, arrays, detector.detect(arrays)):
            faces = dataclasses.replace(faces, source=str(path))
            out.add(faces, img, name)
            if not show:
                print(f"{path}: {len(faces)} faces")
        bar.update(len(images[start:start + step]))
    bar.close()
    for video in videos:
        frames, count, _ = video_frames(video)
        vbar = tqdm(total=count or None, desc=video.name, unit="frame", file=sys.stderr)
        kept = []

        def remember(it):
            for frame in it:
                kept.append(frame)
                yield frame

        for k, faces in enumerate(detector.stream(remember(frames))):
            frame = kept.pop(0)
            out.add(dataclasses.replace(faces, source=str(video)), frame, f"{video.stem}_{k:06d}", {"frame": k})
            vbar.update(1)
        vbar.close()
    if json_out:
        with atomic_write(json_out) as f:
            f.write("".join(line + "\n" for line in out.lines))
    print(f"{len(out.lines)} results" + (f" -> {json_out}" if json_out else "") +
          (f", images in {save_dir}" if save_dir else "") + (f"; {failures} unreadable" if failures else ""),
          file=sys.stderr)
    return 2 if failures else 0


def run_demo(model: str | None = None, weights: str | None = None, save_dir: str = "demo_out") -> int:
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
