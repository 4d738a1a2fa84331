"""Tracking: hand-made trajectories with known identities (crossing faces, misses, low-score frames), and
`leanface detect` on the real Hamilton clip (track ids in the JSON, stable where boxes overlap)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from leanface.cli import main
from leanface.errors import LeanfaceError
from leanface.infer import Faces
from leanface.infer.track import SceneCuts, Tracker, TrackerConfig

from ..conftest import SHARED, need


def _faces(boxes, scores, emb=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Faces(boxes, np.asarray(scores, np.float32), None, 640, 480,
                 embeddings=None if emb is None else np.asarray(emb, np.float32))


def _box(cx, cy, s=40):
    return [cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2]


def test_crossing_faces_keep_their_ids_by_appearance():
    a, b = np.eye(4)[0], np.eye(4)[1]  # two people's (unit) embeddings
    tr = Tracker()
    seen = []
    for t in range(30):  # A moves right, B left; they overlap fully at t = 15
        xa, xb = 100 + 10 * t, 400 - 10 * t
        out = tr(_faces([_box(xb, 200), _box(xa, 200)], [0.9, 0.8], [b, a]))
        seen.append(tuple(out.track_ids))
    ids_b, ids_a = zip(*seen)
    assert len(set(ids_a)) == 1 and len(set(ids_b)) == 1 and ids_a[0] != ids_b[0]


def test_a_short_miss_keeps_the_id_and_a_long_one_does_not():
    tr = Tracker(TrackerConfig(max_age=5))
    ids = []
    for t in range(20):
        gone = 6 <= t < 10  # 4 frames without the face: it reappears where its velocity says
        out = tr(_faces([] if gone else [_box(100 + 8 * t, 200)], [] if gone else [0.9]))
        ids += list(out.track_ids)
    assert set(ids) == {ids[0]}
    tr = Tracker(TrackerConfig(max_age=2))
    first = tr(_faces([_box(100, 200)], [0.9])).track_ids[0]
    for _ in range(3):
        tr(_faces([], []))
    assert tr(_faces([_box(100, 200)], [0.9])).track_ids[0] != first


def test_low_score_frames_continue_a_track_but_start_none():
    tr = Tracker()
    first = tr(_faces([_box(100, 200)], [0.9])).track_ids[0]
    out = tr(_faces([_box(104, 200), _box(500, 300)], [0.3, 0.3]))  # blurred frame; a far low-score box
    assert out.track_ids[0] == first and out.track_ids[1] == -1
    assert tr(_faces([_box(108, 200)], [0.9])).track_ids[0] == first
    with pytest.raises(LeanfaceError, match="low_thr"):
        TrackerConfig(high_thr=0.2, low_thr=0.5)


def test_lazy_embeddings_only_where_boxes_cannot_decide():
    """Two faces far apart: embedded when they appear and then every embed_every frames; two crossing faces:
    embedded on every frame where their boxes overlap, and they keep their ids by appearance."""
    a, b = np.eye(4)[0], np.eye(4)[1]
    tr = Tracker(TrackerConfig(embed_every=10))
    asked = []
    for t in range(30):
        boxes = [_box(100 + 2 * t, 200), _box(500 - 2 * t, 200)]
        out = tr(_faces(boxes, [0.9, 0.9]), embed=lambda idx: (asked.append((t, tuple(idx))), np.stack([a, b])[idx])[1])
        assert len(set(out.track_ids)) == 2
    assert asked == [(0, (0, 1)), (10, (0, 1)), (20, (0, 1))]
    tr, asked, seen = Tracker(TrackerConfig(embed_every=100)), [], []
    for t in range(30):
        xa, xb = 100 + 10 * t, 400 - 10 * t
        out = tr(_faces([_box(xb, 200), _box(xa, 200)], [0.9, 0.8]),
                 embed=lambda idx: (asked.append(t), np.stack([b, a])[idx])[1])
        seen.append(tuple(out.track_ids))
    ids_b, ids_a = zip(*seen)
    assert len(set(ids_a)) == 1 and len(set(ids_b)) == 1 and ids_a[0] != ids_b[0]
    assert 0 in asked and 15 in asked and 1 not in asked and 29 not in asked  # boxes apart: no embedding


def test_reidentified_after_a_miss_by_appearance_and_not_across_a_cut():
    a, b = np.eye(4)[0], np.eye(4)[1]
    tr = Tracker(TrackerConfig(reid_cos=0.5))
    first = tr(_faces([_box(100, 200)], [0.9], [a])).track_ids[0]
    tr(_faces([], []))
    assert tr(_faces([_box(400, 300)], [0.9], [a])).track_ids[0] == first  # jumped, same face: found again
    assert tr(_faces([_box(100, 100)], [0.9], [b])).track_ids[0] != first  # a stranger there: a new track
    big = tr(_faces([_box(400, 100, 200)], [0.9], [a])).track_ids[0]  # 5x the size at once: not the same face
    assert big != first
    tr = Tracker(TrackerConfig(reid_cos=0.5))
    first = tr(_faces([_box(100, 200)], [0.9], [a])).track_ids[0]
    assert tr(_faces([_box(100, 200)], [0.9], [a]), cut=True).track_ids[0] != first  # a new shot: new tracks


def test_scene_cuts_on_the_hamilton_clip():
    """The clip's cuts by eye: frames 20, 82 and 211 start new shots; nothing else (camera motion, a
    performer's gestures, stage light) counts as one."""
    from leanface.infer.image import video_frames

    frames, _, _ = video_frames(need(SHARED / "data" / "videos" / "short_hamilton_clip.mp4"))
    cuts = SceneCuts()
    assert [k for k, f in enumerate(frames) if cuts(f)] == [20, 82, 211]
    cuts = SceneCuts()
    grey = np.full((90, 160, 3), 120, np.uint8)
    assert not cuts(grey) and not cuts(np.roll(grey, 3, axis=1))
    assert cuts(np.dstack([np.full((90, 160), 200, np.uint8), np.zeros((90, 160, 2), np.uint8)]))
    with pytest.raises(LeanfaceError, match="scene-cut"):
        SceneCuts(0)


def test_detect_video_has_stable_track_ids(tmp_path):
    clip = need(SHARED / "data" / "videos" / "short_hamilton_clip.mp4")
    out = tmp_path / "t.jsonl"
    assert main(["detect", str(clip), "--json-out", str(out), "--threads", "1"]) == 0
    frames = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(frames) == 275
    tracks = [f["track"] for r in frames for f in r["faces"]]
    assert tracks and min(tracks) >= 1 and len(set(tracks)) <= 12
    kept = changed = 0
    for prev, cur in zip(frames, frames[1:]):  # a face that barely moved between frames keeps its id
        for f in cur["faces"]:
            for g in prev["faces"]:
                x1, y1 = max(f["box"][0], g["box"][0]), max(f["box"][1], g["box"][1])
                x2, y2 = min(f["box"][2], g["box"][2]), min(f["box"][3], g["box"][3])
                inter = max(0, x2 - x1) * max(0, y2 - y1)
                union = sum((b[2] - b[0]) * (b[3] - b[1]) for b in (f["box"], g["box"])) - inter
                if inter / union > 0.7:
                    kept += f["track"] == g["track"]
                    changed += f["track"] != g["track"]
    assert kept > 300 and changed == 0


def test_identify_video_one_record_per_track(tmp_path, capsys):
    """The Hamilton clip with the two reference stills as a flat gallery: one JSON line per track, tracks
    ending at the clip's cuts (20, 82, 211), and the longest track (the performer in frames 82-210) named
    Lin-Manuel Miranda by the bundled models from the embeddings of some of its frames."""
    import cv2

    videos = need(SHARED / "data" / "videos")
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for still in ("lin-manuel-miranda.png", "alex-lacamoire.png"):
        (gallery / still).symlink_to(videos / still)
    out = tmp_path / "who.jsonl"
    assert main(["identify", str(videos / "short_hamilton_clip.mp4"), "--gallery", str(gallery), "--json-out",
                 str(out), "--threads", "1"]) == 0
    tracks = [json.loads(line) for line in out.read_text().splitlines()]
    assert tracks and all({"track", "first_frame", "last_frame", "identity", "similarity", "frames", "seen"}
                          <= set(t) for t in tracks)
    assert all(t["identity"] in ("lin-manuel-miranda", "alex-lacamoire", "unknown") for t in tracks)
    assert not any(t["first_frame"] < cut <= t["last_frame"] for t in tracks for cut in (20, 82, 211))
    longest = max(tracks, key=lambda t: t["seen"])
    assert longest["identity"] == "lin-manuel-miranda" and (longest["first_frame"], longest["last_frame"]) == (82, 210)
    assert 10 <= longest["frames"] < longest["seen"] == 129
    # A video with no face, and an unreadable one: one line each, exit status 2, nothing else lost.
    blank = tmp_path / "blank.mp4"
    w = cv2.VideoWriter(str(blank), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for _ in range(5):
        w.write(np.zeros((48, 64, 3), np.uint8))
    w.release()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    capsys.readouterr()
    assert main(["identify", str(blank), str(broken), "--gallery", str(gallery), "--json-out",
                 str(tmp_path / "none.jsonl"), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "blank.mp4: no faces found" in err and "broken.mp4" in err and "Traceback" not in err
