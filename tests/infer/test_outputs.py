"""`leanface detect` never loses a user's data: outputs never overwrite inputs or each other, are checked
before any work, are written as results arrive, and one bad input does not cost the others' results."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leanface.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture()
def photos(val_images, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in val_images[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


def _detect(*args) -> int:
    return main(["detect", *map(str, args), "--model", "scrfd_500m_kps", "--size", "320"])


def _one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1, err
    return err[0]


def test_save_dir_over_the_inputs_is_refused_and_nothing_changes(photos, capsys):
    before = {p.name: _md5(p) for p in photos.iterdir()}
    assert _detect(photos, "--save-dir", photos) == 2
    assert "--save-dir lies inside an input" in _one_error(capsys)
    assert {p.name: _md5(p) for p in photos.iterdir()} == before
    assert _detect(photos / next(iter(before)), "--json-out", photos / next(iter(before))) == 2
    assert {p.name: _md5(p) for p in photos.iterdir()} == before


def test_same_stem_inputs_get_their_own_outputs(photos, tmp_path, capsys):
    first = sorted(photos.iterdir())[0]
    (photos / "a.jpg").write_bytes(first.read_bytes())
    (photos / "a.png").write_bytes(first.read_bytes())  # OpenCV reads by content, whatever the name
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.jpg").write_bytes(first.read_bytes())
    out = tmp_path / "vis"
    assert _detect(photos, other, "--save-dir", out, "--json-out", tmp_path / "r.jsonl") == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert len(written) == 5 and len(set(written)) == 5, written  # 2 photos + a.jpg, a.png, other/a.jpg
    assert "a_png.jpg" in written and "other/a.jpg" in written and "photos/a.jpg" in written


def test_output_locations_are_checked_before_any_work(photos, tmp_path, capsys):
    (tmp_path / "adir").mkdir()
    assert _detect(photos, "--json-out", tmp_path / "adir") == 2
    assert "--json-out names a folder" in _one_error(capsys)
    (tmp_path / "afile").write_text("x")
    assert _detect(photos, "--save-dir", tmp_path / "afile") == 2
    assert "--save-dir names a file" in _one_error(capsys)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert _detect(photos, "--json-out", locked / "r.jsonl") == 2
        assert "cannot be written" in _one_error(capsys)
    if Path("/proc/self").is_dir():  # a folder whose permissions say yes and which refuses new files, even to root
        assert _detect(photos, "--json-out", "/proc/leanface.jsonl") == 2
        assert "/proc/leanface.jsonl: --json-out cannot be written" in _one_error(capsys)
        assert _detect(photos, "--save-dir", "/proc/leanface_out") == 2
        assert "--save-dir cannot be written" in _one_error(capsys)


def test_each_bad_input_fails_alone(photos, tmp_path, capsys):
    (tmp_path / "fake.mp4").write_text("not a video")
    out = tmp_path / "r.jsonl"
    good = sorted(photos.iterdir())
    rc = _detect(good[0], tmp_path / "nosuch.jpg", tmp_path / "fake.mp4", good[1], tmp_path / "gone.mp4",
                 "--json-out", out)
    assert rc == 2
    err = capsys.readouterr().err
    assert "nosuch.jpg: no such file or folder" in err and "fake.mp4: not a readable video" in err
    assert "gone.mp4: video not found" in err and "Traceback" not in err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["image"] for r in records] == [str(good[0]), str(good[1])]


def test_ctrl_c_keeps_the_results_already_written(val_images, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(40):
        (folder / f"{k:02d}.jpg").symlink_to(val_images[k % 5])
    out = tmp_path / "r.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "leanface.cli", "detect", str(folder), "--model", "scrfd_500m_kps",
                             "--batch-size", "1", "--threads", "1", "--json-out", str(out)],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
                            # A test run started in the background (`cmd &`) ignores SIGINT, and so would the child.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and (not out.is_file() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    lines = out.read_text().splitlines()
    assert 3 <= len(lines) < 40
    assert all(json.loads(line)["image"].startswith(str(folder)) for line in lines)
    # A kill can cut the last line short: --resume drops it, keeps the complete records as they are, and
    # detects only the rest.
    with open(out, "a") as f:
        f.write('{"image": "' + str(folder / "39.jpg"))
    rc = main(["detect", str(folder), "--model", "scrfd_500m_kps", "--size", "320", "--json-out", str(out), "--resume"])
    assert rc == 0
    after = out.read_text().splitlines()
    assert after[:len(lines)] == lines
    assert sorted(json.loads(line)["image"] for line in after) == sorted(str(p) for p in folder.iterdir())


def test_an_existing_results_file_is_kept_unless_asked(photos, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert _detect(sorted(photos.iterdir())[0], "--json-out", out) == 0
    earlier = out.read_text()
    assert _detect(photos, "--json-out", out) == 2
    assert "already holds `leanface detect` results; --resume continues it, --exist-ok replaces it" in _one_error(capsys)
    assert out.read_text() == earlier
    assert _detect(photos, "--json-out", out, "--exist-ok") == 0
    assert len(out.read_text().splitlines()) == 2
    assert _detect(photos, "--json-out", out, "--resume") == 0  # nothing left to do
    assert "2 input(s) already done, 0 to go" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 2
    assert _detect(photos, "--resume") == 2
    assert "--resume needs --json-out" in _one_error(capsys)


def test_resume_redoes_a_video_cut_short(tmp_path, capsys):
    from tests.conftest import SHARED, need

    clip = need(SHARED / "data" / "videos") / "short_hamilton_clip.mp4"
    out = tmp_path / "v.jsonl"
    assert _detect(clip, "--json-out", out, "--max-faces", "1") == 0
    full = out.read_text().splitlines()
    out.write_text("\n".join(full[:100]) + "\n")  # killed after 100 of the frames
    assert _detect(clip, "--json-out", out, "--max-faces", "1", "--resume") == 0
    assert out.read_text().splitlines() == full
    assert _detect(clip, "--json-out", out, "--max-faces", "1", "--resume") == 0
    assert "1 input(s) already done, 0 to go" in capsys.readouterr().err


def test_train_refuses_an_existing_run_unless_asked(wider_train, tmp_path, capsys):
    ann = tmp_path / "faces.jsonl"
    ann.write_text("\n".join(json.dumps({"image": str(im.path), "faces": [{"box": b.tolist()} for b in im.boxes]})
                             for im in wider_train[:2]))
    args = ["train", "--model", "scrfd_500m", "--data", str(ann), "--out-dir", str(tmp_path / "run"), "--epochs", "1",
            "--batch-size", "2", "--img-size", "64", "--workers", "0", "--procs", "1", "--quiet"]
    assert main(args) == 0
    before = _md5(tmp_path / "run" / "model.pt")
    assert main(args) == 2
    assert "holds a training run already" in _one_error(capsys)
    assert _md5(tmp_path / "run" / "model.pt") == before
    assert main(args + ["--exist-ok"]) == 0


def test_a_video_gives_json_per_frame_and_an_annotated_video(tmp_path, capsys):
    import cv2

    from ..conftest import SHARED, need

    src = need(SHARED / "data" / "videos" / "short_hamilton_clip.mp4")
    clip = tmp_path / "clip.mp4"  # the first 12 frames, so the test stays fast
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 360))
    for _ in range(12):
        writer.write(cap.read()[1])
    writer.release()
    out = tmp_path / "vis"
    assert main(["detect", str(clip), "--json-out", str(tmp_path / "f.jsonl"), "--save-dir", str(out)]) == 0
    records = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(12)) and all(r["width"] == 640 for r in records)
    annotated = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert (annotated.get(cv2.CAP_PROP_FRAME_WIDTH), annotated.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 360)
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]  # no per-frame JPEGs, no temporary file


def test_a_reader_that_leaves_early_is_no_traceback():
    # `leanface info | head -1`: the pipe closes after one line; the command stops quietly (status 141, as a shell says).
    proc = subprocess.Popen([sys.executable, "-m", "leanface.cli", "info", "scrfd_500m", "--json"], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert err == "", err


def test_bench_reports_spread_and_warns_on_a_busy_machine(monkeypatch, capsys):
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    assert main(["bench", "--repeats", "3", "--size", "320"]) == 0
    out, err = capsys.readouterr()
    assert "warning: the machine is busy (load 64.0" in err, err
    assert out.startswith("model ") and "10-90% range of 3" in out, out
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert main(["bench", "--repeats", "3", "--size", "320"]) == 0
    assert "busy" not in capsys.readouterr().err
