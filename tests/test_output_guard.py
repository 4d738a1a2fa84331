"""Every output of every verb goes through one guard: never an input, a gallery photo or a file leanface did
not write; an existing output is replaced only with --exist-ok. And numbers and protocols are checked up front.

Each case runs the command in a folder of copies, then checks: exit status 2, one error line naming the
problem, and every file of the folder unchanged (md5).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from leanface.cli import main

from .conftest import OFFICIAL_ONNX, SHARED, WIDER, alive, descendants, need

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_PT = ROOT / "src" / "leanface" / "weights" / "scrfd_500m_kps.pt"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, val_images):
    return make_workspace(tmp_path_factory.mktemp("ws"), val_images)


def make_workspace(ws: Path, val_images: list[Path]) -> Path:
    """Photos, a clip, a gallery, weights, results files and a note, all copies (also bench/output_guard.py)."""
    (ws / "photos").mkdir()
    for p in val_images[:2]:
        shutil.copy(p, ws / "photos" / p.name)
    shutil.copy(val_images[2], ws / "q.jpg")
    for name, src in (("alice", val_images[3]), ("bob", val_images[4])):
        (ws / "G" / name).mkdir(parents=True)
        shutil.copy(src, ws / "G" / name / "a.jpg")
    writer = cv2.VideoWriter(str(ws / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for k in range(5):
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    shutil.copy(need(OFFICIAL_ONNX / "det_500m.onnx"), ws / "official.onnx")
    shutil.copy(BUNDLED_PT, ws / "w.pt")
    (ws / "notes.txt").write_text("my notes\nline two\n")
    (ws / "det.jsonl").write_text(json.dumps({"image": str(ws / "q.jpg"), "width": 10, "height": 10,
                                              "faces": [{"box": [1, 2, 3, 4], "score": 0.9}]}) + "\n")
    (ws / "vis").mkdir()
    stem = sorted((ws / "photos").iterdir())[0].stem
    (ws / "vis" / f"{stem}.jpg").write_bytes(b"an annotated image from last week")
    (ws / "demo").mkdir()
    (ws / "demo" / "astronaut.jpg").write_bytes(b"kept")
    faces = [{"box": [10.0, 10.0, 50.0, 50.0]}]
    (ws / "faces.jsonl").write_text(json.dumps({"image": str(val_images[0]), "faces": faces}) + "\n")
    (ws / "nan.jsonl").write_text(json.dumps({"image": str(val_images[0]), "faces": faces}) + "\n" +
                                  json.dumps({"image": str(val_images[1]),
                                              "faces": [{"box": [float("nan"), 1.0, 5.0, 5.0]}]}) + "\n")
    p0, p1 = (f"photos/{p.name}" for p in sorted((ws / "photos").iterdir()))
    (ws / "pairs.txt").write_text(f"{p0}\t{p1}\t1\t0\n{p0}\tq.jpg\t0\t0\n{p1}\tq.jpg\t1\t1\n{p1}\t{p0}\t0\t1\n")
    (ws / "same_only.txt").write_text(f"{p0}\t{p1}\t1\t0\n{p1}\tq.jpg\t1\t1\n")
    (ws / "stray_fold.txt").write_text("".join(f"{p0}\t{p1}\t{k % 2}\t{k // 20}\n" for k in range(40))
                                       + f"{p1}\tq.jpg\t0\t99\n")
    return ws


def _snapshot(ws: Path) -> dict[str, str]:
    return {p.relative_to(ws).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(ws.rglob("*")) if p.is_file()}


# (case, argv with {ws} for the workspace, what the one error line says)
REFUSED = [
    # data that would be lost
    ("detect video --save-dir over it", ["detect", "clip.mp4", "--save-dir", "."], "would overwrite an input"),
    ("identify video --save-dir over it", ["identify", "clip.mp4", "--gallery", "G", "--save-dir", "."],
     "would overwrite an input"),
    ("convert onto its source", ["convert", "official.onnx", "-o", "official.onnx"], "would overwrite"),
    ("convert to a photo name", ["convert", "official.onnx", "-o", "x.jpg"], "writes leanface weights"),
    ("convert over weights", ["convert", "official.onnx", "-o", "w.pt"], "already holds leanface weights"),
    ("export to a photo name", ["export", "scrfd_500m_kps", "--weights", "w.pt", "-o", "x.jpg"],
     "writes a leanface ONNX export"),
    ("export int8 to a png", ["export", "scrfd_500m_kps", "--weights", "w.pt", "--int8", "-o", "x.png"],
     "writes a leanface ONNX export"),
    ("export over an official file", ["export", "scrfd_500m_kps", "--weights", "w.pt", "-o", "official.onnx",
                                      "--exist-ok"], "not a leanface ONNX export"),
    ("identify cache over the query", ["identify", "q.jpg", "--gallery", "G", "--cache", "q.jpg"],
     "would overwrite an input"),
    ("identify cache over a gallery photo", ["identify", "q.jpg", "--gallery", "G", "--cache", "G/alice/a.jpg"],
     "lies inside the gallery"),
    ("identify cache named like a note", ["identify", "q.jpg", "--gallery", "G", "--cache", "notes.txt"],
     "writes a gallery embedding cache"),
    ("identify results over a gallery photo", ["identify", "q.jpg", "--gallery", "G", "--json-out",
                                               "G/alice/a.jpg", "--exist-ok"], "lies inside the gallery"),
    ("identify --save-dir the gallery", ["identify", "q.jpg", "--gallery", "G", "--save-dir", "G"],
     "lies inside the gallery"),
    ("detect --resume a note", ["detect", "q.jpg", "--json-out", "notes.txt", "--resume"],
     "not `leanface detect` results"),
    ("detect --exist-ok over a note", ["detect", "q.jpg", "--json-out", "notes.txt", "--exist-ok"],
     "not `leanface detect` results"),
    ("embed --resume detect results", ["embed", "q.jpg", "--json-out", "det.jsonl", "--resume"],
     "not `leanface embed` results"),
    ("detect --save-dir with an earlier image", ["detect", "photos", "--save-dir", "vis"],
     "already exists in --save-dir; --resume continues it, --exist-ok replaces it"),
    ("detect --save-dir inside the input folder", ["detect", "photos", "--save-dir", "photos/vis"],
     "lies inside an input"),
    ("detect --crops without --save-dir", ["detect", "q.jpg", "--crops"], "--crops writes face crops"),
    ("demo over an earlier image", ["demo", "--save-dir", "demo"], "already exists in --save-dir"),
    ("train --out-dir a file", ["train", "--model", "scrfd_500m", "--data", "faces.jsonl", "--out-dir",
                                "notes.txt", "--procs", "2"], "--out-dir names a file"),
    ("train --out-dir inside the data", ["train", "--model", "mobilefacenet", "--data", "G", "--out-dir",
                                         "G/run"], "lies inside the training data"),
    ("eval verification --output a file", ["eval", "--data", ".", "--pairs", "pairs.txt", "--output",
                                           "notes.txt"], "--output names a file"),
    ("eval WIDER --output a file", ["eval", "--data", str(WIDER), "--output", "notes.txt"], "--output names a file"),
    ("stats --out-dir a file", ["stats", "--data", "faces.jsonl", "--out-dir", "notes.txt"],
     "--out-dir names a file"),
    ("search run into a file", ["search", "run", "notes.txt", "--gflops", "0.5", "--data", str(WIDER)],
     "RUN_DIR names a file"),
    # numbers and protocols
    ("detect --size absurd", ["detect", "q.jpg", "--size", "1000000"], "size must be at most 8192"),
    ("search budget nan", ["search", "run", "s", "--dry-run", "--gflops", "nan"], "gflops > 0"),
    ("search budget below the space", ["search", "run", "s", "--dry-run", "--gflops", "0.001"],
     "choose a budget in that range"),
    ("train lr nan", ["train", "--model", "scrfd_500m", "--data", "faces.jsonl", "--lr", "nan", "--out-dir", "r"],
     "lr = nan: every number of a training config must be finite"),
    ("train on a NaN box", ["train", "--model", "scrfd_500m", "--data", "nan.jsonl", "--out-dir", "r2",
                            "--procs", "1", "--workers", "0"], "nan.jsonl:2: face 0: \"box\" must be"),
    ("pairs of one class", ["eval", "--data", ".", "--pairs", "same_only.txt", "--output", "e1"],
     "only same-person pairs"),
    ("pairs with a stray fold", ["eval", "--data", ".", "--pairs", "stray_fold.txt", "--output", "e2"],
     "stray_fold.txt:41: fold 99 holds 1 pair(s)"),
    ("a zoo model without weights", ["detect", "q.jpg", "--model", "scrfd_10g"], "no trained weights given"),
    ("an embedder without weights", ["embed", "q.jpg", "--model", "mobilefacenet_0_5g"], "no trained weights given"),
]


@pytest.mark.parametrize("case,argv,message", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_one_line_and_nothing_changed(workspace, monkeypatch, capsys, case, argv, message):
    monkeypatch.chdir(workspace)
    before = _snapshot(workspace)
    assert main(argv) == 2, case
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in "\n".join(err)
    assert _snapshot(workspace) == before


def test_allowed_replacements_still_work(workspace, tmp_path, monkeypatch, capsys):
    """The guard refuses only what it should: own outputs with --exist-ok, a results file continued with
    --resume, the cache updated in place."""
    monkeypatch.chdir(workspace)
    out = tmp_path / "r.jsonl"
    assert main(["detect", "q.jpg", "--json-out", str(out)]) == 0
    assert main(["detect", "q.jpg", "--json-out", str(out), "--exist-ok"]) == 0
    assert main(["detect", "q.jpg", "--json-out", str(out), "--resume"]) == 0
    assert main(["demo", "--save-dir", str(tmp_path / "d")]) == 0
    assert main(["demo", "--save-dir", str(tmp_path / "d"), "--exist-ok"]) == 0
    cache = tmp_path / "g.npz"
    for _ in range(2):  # written, then read back and kept: a cache needs no --exist-ok
        assert main(["identify", "q.jpg", "--gallery", "G", "--cache", str(cache)]) == 0
    capsys.readouterr()


def test_json_out_dash_writes_json_lines_to_stdout(workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    assert main(["detect", "photos", "q.jpg", "--json-out", "-"]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert len(records) == 3 and {Path(r["image"]).name for r in records} >= {"q.jpg"}
    assert "3 results" in captured.err
    assert not (workspace / "-").exists()


def test_an_embedder_trains_when_the_last_batch_would_hold_one_face(tmp_path):
    """10 identities, 4 photos each minus one: 39 faces, batch 4 -> a last batch of one is dropped, not a crash."""
    root = need(SHARED / "data" / "recog_train" / "celeba_aligned_lowres")
    people = sorted(p for p in root.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 4)[:10]
    data = tmp_path / "ten"
    for k, person in enumerate(people):
        (data / person.name).mkdir(parents=True)
        for img in sorted(person.glob("*.jpg"))[:4 - (k == 0)]:
            shutil.copy(img, data / person.name / img.name)
    from leanface.recognize.identities import dev_split, load_identity_faces
    from leanface.train import TrainConfig

    faces = load_identity_faces([data], cache_dir=False)
    held = dev_split(faces, seed=TrainConfig().seed)
    extra = (int((~held).sum()) - 1) % 4  # photos to remove so that the training faces leave one over
    spare = next(data / people[k].name for k in range(1, 10) if not held[faces.labels == k].any())
    for img in sorted(spare.glob("*.jpg"))[:extra]:
        img.unlink()
    rc = main(["train", "--model", "mobilefacenet_0_1g", "--data", str(data), "--out-dir", str(tmp_path / "run"),
               "--epochs", "1", "--batch-size", "4", "--workers", "0", "--procs", "1", "--quiet"])
    assert rc == 0


@pytest.mark.parametrize("how", ["terminated", "a rank fails"])
def test_no_worker_outlives_train(workspace, tmp_path, how):
    """`train` with two rank processes and a loader worker each: stopped (SIGTERM to the command only, as a
    scheduler does) or failing (one rank killed), it leaves no process behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if not Path("/proc/self/stat").is_file():
        pytest.skip("reads the process tree from /proc")
    ann = tmp_path / "faces.jsonl"
    ann.write_text((workspace / "faces.jsonl").read_text() * 8)
    cmd = [sys.executable, "-m", "leanface.cli", "train", "--model", "scrfd_500m", "--data", str(ann), "--out-dir",
           str(tmp_path / "run"), "--epochs", "50", "--batch-size", "2", "--img-size", "128", "--workers", "1",
           "--procs", "2", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    try:
        seen: set[int] = set()
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:  # ranks, and each rank's loader worker
            seen |= descendants(proc.pid)
            ranks = [p for p in seen if descendants(p)]
            if len(seen) >= 4 and len(ranks) >= 2:
                break
            time.sleep(0.5)
        assert proc.poll() is None and len(seen) >= 4, (seen, proc.poll())
        if how == "terminated":
            proc.send_signal(signal.SIGTERM)
        else:
            rank = next(p for p in sorted(alive(seen)) if descendants(p))  # a rank: it has a loader worker
            os.kill(rank, signal.SIGKILL)
        rc = proc.wait(timeout=60)
        deadline = time.time() + 30
        while alive(seen) and time.time() < deadline:
            time.sleep(0.5)
        assert not alive(seen), f"left running: {alive(seen)}"
        assert rc != 0
        err = proc.stderr.read()
        assert "Traceback" not in err, err[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
