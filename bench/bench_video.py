"""Video throughput: frames per second of decode + detect + track (+ embed + quality) on the real clips.

    python bench/bench_video.py [--repeats 2]

For ../shared/data/videos/short_hamilton_clip.mp4 (640x360) and video.mp4 (1920x1080), with the bundled
models on 1 and 2 threads: detection + tracking (what `leanface detect clip.mp4` does per frame), and
detection + embedding + quality + tracking (what `leanface identify clip.mp4` does). Median of the
repeats with min-max; the target is real time, 25 fps at 640x360 on one thread.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from leanface import Detector, Recognizer
from leanface.infer.image import video_frames
from leanface.infer.track import Tracker

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"


def run(pipeline, video: Path) -> tuple[int, float]:
    frames, _, _ = video_frames(video)
    tracker = Tracker()
    t = time.perf_counter()
    n = 0
    for faces in pipeline.stream(frames):
        tracker(faces)
        n += 1
    return n, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if not VIDEOS.is_dir():
        print(f"skipped: {VIDEOS} is absent")
        return 0
    rows = []
    for name in ("short_hamilton_clip.mp4", "video.mp4"):
        for threads in (1, 2):
            det = Detector(threads=threads)
            rec = Recognizer(detector=det, threads=threads, quality=True)
            for label, pipe in (("detect + track", det), ("detect + embed + quality + track", rec)):
                fps = []
                for _ in range(args.repeats):
                    n, s = run(pipe, VIDEOS / name)
                    fps.append(n / s)
                rows.append(f"| {name} | {threads} | {label} | {statistics.median(fps):.1f} ({min(fps):.1f}-{max(fps):.1f}) |")
    print(f"bundled models; frames per second including decoding, median of {args.repeats} (min-max)")
    print("| clip | threads | pipeline | fps |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
