"""Bulk detection on a local Ray instance (2 workers): shard files, a kill mid-run and the resume, with no
record lost or written twice, and the records equal to the plain local path's; list files and bad flags."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from leanface import Detector
from leanface.cli import main
from leanface.app.bulk import shard_records
from leanface.app.runner import read_list_file

from ..conftest import WIDER, need

ROOT = Path(__file__).resolve().parents[2]


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("shard-*.jsonl")) for line in f.read_text().splitlines()]


def _kill_tree(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray instance it started (same session)
    proc.wait()


def test_bulk_run_killed_and_resumed_loses_and_repeats_nothing(tmp_path):
    # Enough images that the kill lands mid-run even on a fast machine (a run of 24 once finished before it).
    images = sorted(need(WIDER / "WIDER_val" / "images").rglob("*.jpg"))[:240]
    lst = tmp_path / "images.txt"
    lst.write_text("# a list file: one path per line\n" + "\n".join(map(str, images)) + "\n\n")
    shards = tmp_path / "shards"
    cmd = [sys.executable, "-m", "leanface", "detect", str(lst), "--address", "local", "--workers", "2",
           "--shard-size", "2", "--shard-dir", str(shards), "--threads", "1"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(shards.glob("shard-*.jsonl"))) < 3 and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # still running: killed mid-run
    _kill_tree(proc)
    first = _records(shards)
    assert 3 * 2 <= len(first) < len(images)
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(first)} image(s) already in" in done.stderr
    records = _records(shards)
    names = [r["image"] for r in records]
    assert sorted(names) == sorted(map(str, images))  # every image once: none lost, none twice
    assert {r["image"] for r in first} <= set(names)
    assert len(shard_records(shards)[0]) == len(images)
    # The same records as the plain local path (same model, same settings).
    det = Detector(threads=1)
    by_name = {r["image"]: r for r in records}
    for img in images[::40]:
        ours = by_name[str(img)]["faces"]
        local = det(img)
        assert len(ours) == len(local)
        if len(local):
            np.testing.assert_allclose(np.array([f["box"] for f in ours]), local.boxes, atol=0.05)


def test_shard_files_with_bad_lines_and_list_files(tmp_path):
    (tmp_path / "shard-000003.jsonl").write_text('{"image": "/x/a.jpg", "faces": []}\nnot json\n{"faces": []}\n')
    (tmp_path / ".tmp-xyzshard-000004.jsonl").write_text('{"image": "/x/b.jpg", "faces": []}\n')  # a killed write
    done, last = shard_records(tmp_path)
    assert done == {"/x/a.jpg": 3} and last == 3
    img = sorted(need(WIDER / "WIDER_val" / "images").rglob("*.jpg"))[0]
    lst = tmp_path / "l.txt"
    lst.write_text(f"{img}\nmissing.jpg\n{lst}\n")
    found, errors = read_list_file(lst)
    assert found == [img]
    assert errors[0].startswith(f"{lst}:2: missing.jpg") and errors[1].startswith(f"{lst}:3:")


def test_bulk_flag_errors(tmp_path, capsys):
    img = str(sorted(need(WIDER / "WIDER_val" / "images").rglob("*.jpg"))[0])
    assert main(["detect", img, "--address", "local"]) == 2
    assert "--address needs --shard-dir" in capsys.readouterr().err
    assert main(["detect", img, "--shard-dir", str(tmp_path)]) == 2
    assert "are for --address runs" in capsys.readouterr().err
    assert main(["detect", img, "--address", "local", "--shard-dir", str(tmp_path), "--json-out", "x"]) == 2
    capsys.readouterr()
    (tmp_path / "file").write_text("")
    assert main(["detect", img, "--address", "local", "--shard-dir", str(tmp_path / "file")]) == 2
    assert "names a file" in capsys.readouterr().err
    assert main(["detect", img, "--address", "local", "--shard-dir", str(tmp_path / "s"), "--shard-size", "0"]) == 2
    assert "shard size" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "none.txt"), "--address", "local", "--shard-dir", str(tmp_path / "s")]) == 2
    assert "none.txt" in capsys.readouterr().err


def test_a_terminated_bulk_run_leaves_no_process(tmp_path):
    """SIGTERM to the driver only (`kill PID`, a scheduler's limit): the Ray instance it started and its
    workers end with it, the shards already written are kept, and there is no traceback."""
    from ..conftest import alive, descendants

    # Enough images that the kill lands mid-run even on a fast machine (a run of 24 once finished before it).
    images = sorted(need(WIDER / "WIDER_val" / "images").rglob("*.jpg"))[:240]
    shards = tmp_path / "shards"
    cmd = [sys.executable, "-m", "leanface", "detect", *map(str, images), "--address", "local", "--workers", "2",
           "--shard-size", "2", "--shard-dir", str(shards), "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "RAY_AUTH_MODE": "disabled"}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen: set[int] = set()
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not list(shards.glob("shard-*.jsonl")):
            seen |= descendants(proc.pid)
            time.sleep(0.2)
        seen |= descendants(proc.pid)
        assert proc.poll() is None and seen, proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) != 0  # 143 from leanface, or 15 where Ray's own handler exits first
        deadline = time.time() + 60
        while alive(seen) and time.time() < deadline:
            time.sleep(0.5)
        assert not alive(seen), f"left running: {alive(seen)}"
        err = proc.stderr.read()
        assert "Traceback" not in err, err[-2000:]
        assert len(shard_records(shards)[0]) >= 2  # what was written is kept
    finally:
        if proc.poll() is None:
            _kill_tree(proc)
