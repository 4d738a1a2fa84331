"""Video throughput: frames per second of detect + track (+ embed + quality) on the real clips.

    python bench/bench_video.py [--rounds 3] [--threads 1,2]

For ../shared/data/videos/short_hamilton_clip.mp4 (640x360) and video.mp4 (1920x1080), with the bundled
models: detection + tracking (what `leanface detect clip.mp4` does per frame); what `leanface identify
clip.mp4` does (faces embedded and quality-scored lazily: where boxes cannot settle a match, and once per
track every 10 frames); and the same with every face of every frame embedded (embed_every=1), the cost
lazy embedding saves. Frames are decoded once beforehand (decoding fps printed apart); the pipelines run
in interleaved rounds, so machine load hits all alike; median fps with min-max. Target: real time, 25 fps
at 640x360 on one thread.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from leanface import Detector, Recognizer
from leanface.infer.image import video_frames
from leanface.infer.track import SceneCuts, score_floor, video_tracker

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"


def detect_track(det: Detector, frames: list) -> int:
    tracker, low = video_tracker(det)
    cuts = SceneCuts()
    n = 0
    with score_floor(det, low):
        for frame, faces in zip(frames, det.stream(frames)):
            n += len(tracker(faces, cut=cuts(frame)))
    return n


def identify_like(rec: Recognizer, frames: list, every: int) -> int:
    return sum(len(step.embedded) for step in rec.track(frames, embed_every=every))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    if not VIDEOS.is_dir():
        print(f"skipped: {VIDEOS} is absent")
        return 0
    rows = []
    for name in ("short_hamilton_clip.mp4", "video.mp4"):
        t = time.perf_counter()
        frames = list(video_frames(VIDEOS / name)[0])
        decode = len(frames) / (time.perf_counter() - t)
        h, w = frames[0].shape[:2]
        for threads in (int(x) for x in args.threads.split(",")):
            det = Detector(threads=threads)
            rec = Recognizer(detector=det, threads=threads, quality=True)
            pipes = {"detect + track": lambda: detect_track(det, frames),
                     "identify: + embed + quality, lazy (every 10 frames)": lambda: identify_like(rec, frames, 10),
                     "identify, every face of every frame embedded": lambda: identify_like(rec, frames, 1)}
            embedded = {k: fn() for k, fn in pipes.items()}  # warm-up; also the count of faces embedded
            fps = {k: [] for k in pipes}
            for _ in range(args.rounds):
                for k, fn in pipes.items():
                    t = time.perf_counter()
                    fn()
                    fps[k].append(len(frames) / (time.perf_counter() - t))
            for k, v in fps.items():
                faces = "" if k == "detect + track" else embedded[k]
                rows.append(f"| {name} ({w}x{h}) | {threads} | {k} | {faces} | {statistics.median(v):.1f} "
                            f"({min(v):.1f}-{max(v):.1f}) |")
        rows.append(f"| {name} ({w}x{h}) | 1 | decoding only (not in the rows above) | | {decode:.1f} |")
    print(f"bundled models; frames per second, median of {args.rounds} interleaved rounds (min-max)")
    print("| clip | threads | pipeline | faces embedded | fps |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
