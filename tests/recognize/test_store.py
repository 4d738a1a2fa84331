"""The gallery store (SQLite), its search index and open-set thresholds: enrol, update, remove without
re-embedding; interrupted enrolment loses nothing and resumes; bad stores and setups are one-line errors;
the IVF index agrees with exact search; thresholds follow the gallery's size."""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from leanface.cli import main
from leanface.errors import LeanfaceError
from leanface.recognize import GalleryStore, ImpostorTail, SearchIndex

from ..conftest import LFW, SHARED, need

ROOT = Path(__file__).resolve().parents[2]


def _unit(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_store_add_remove_reopen_and_setup(tmp_path):
    path = tmp_path / "g.db"
    setup = {"embedder": "abc", "detector": "def"}
    with GalleryStore(path, create=True, setup=setup) as store:
        assert store.add("ann", _unit(3), sources=["a1", "a2", "a3"], sha1s=["x1", "x2", "x3"]) == 3
        store.add("bob", _unit(2, seed=1))
        v = store.version
    with GalleryStore(path, setup=setup) as store:  # reopened: everything is there
        assert store.identities() == [("ann", 3), ("bob", 2)]
        assert store.enrolled("ann") == {"x1", "x2", "x3"}
        names, emb, files = store.load()
        assert names == ["ann"] * 3 + ["bob"] * 2 and emb.shape == (5, 16) and files[:3] == ["a1", "a2", "a3"]
        np.testing.assert_array_equal(emb[:3], _unit(3))  # stored exactly, float32
        assert store.remove("ann") == 3 and store.version > v
        assert store.identities() == [("bob", 2)]
        with pytest.raises(LeanfaceError, match="8-d"):
            store.add("carl", _unit(1, dim=8))
        with pytest.raises(LeanfaceError, match="finite"):
            store.add("carl", np.full((1, 16), np.nan, np.float32))
    with pytest.raises(LeanfaceError, match="another recognition setup .*embedder"):
        GalleryStore(path, setup={**setup, "embedder": "other"})
    with pytest.raises(LeanfaceError, match="no gallery store here"):
        GalleryStore(tmp_path / "none.db")


def test_a_damaged_or_foreign_file_is_not_a_store(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"junk" * 100)
    with pytest.raises(LeanfaceError, match="not a leanface gallery store"):
        GalleryStore(tmp_path / "junk.db")
    con = sqlite3.connect(tmp_path / "other.db")  # somebody else's SQLite file
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(LeanfaceError, match="not a leanface gallery store"):
        GalleryStore(tmp_path / "other.db")
    good = tmp_path / "g.db"
    with GalleryStore(good, create=True) as store:
        store.add("ann", _unit(2))
    data = bytearray(good.read_bytes())
    data[100:4096] = b"\0" * (4096 - 100)  # the schema page overwritten
    (tmp_path / "broken.db").write_bytes(bytes(data))
    with pytest.raises(LeanfaceError):
        GalleryStore(tmp_path / "broken.db")


@pytest.mark.parametrize("kind", ["ivfpq", "hnsw", "ivf"])
def test_exact_and_approximate_search_agree(kind, tmp_path):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    # Identity clusters in a low-dimensional subspace, as face embeddings are (not isotropic noise).
    basis = np.linalg.qr(rng.standard_normal((64, 24)))[0].astype(np.float32)
    centres = rng.standard_normal((6000, 24)).astype(np.float32) @ basis.T
    x = centres[np.arange(60_000) % 6000] + 0.3 * rng.standard_normal((60_000, 64)).astype(np.float32) / 8
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = centres[rng.integers(0, 6000, 200)] + 0.3 * rng.standard_normal((200, 64)).astype(np.float32) / 8
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    exact, approx = SearchIndex(x, "exact"), SearchIndex(x, kind)
    assert exact.kind == "exact" and approx.kind == kind and approx.effort >= 1
    s_e, i_e = exact.search(q, 3)
    np.testing.assert_array_equal(i_e[:, 0], (q @ x.T).argmax(1))
    assert (np.diff(s_e, axis=1) <= 1e-6).all()  # best first
    _, i_a = approx.search(q, 1)
    assert (i_a[:, 0] == i_e[:, 0]).mean() >= 0.97
    # Cached beside a store and read back: the same answers.
    with GalleryStore(tmp_path / "g.db", create=True) as store:
        store.add_many([str(k) for k in range(len(x))], x)
        _, emb, _ = store.load()
        built = store.index(emb, kind)
        again = store.index(emb, kind)
        assert (tmp_path / "g.db.index").is_file() and again.kind == kind and again.effort == built.effort
        np.testing.assert_array_equal(again.search(q, 1)[1], built.search(q, 1)[1])
    small = SearchIndex(x[:2], "exact")
    s, i = small.search(q[:1], 4)  # fewer than k: faiss's convention
    assert list(i[0, 2:]) == [-1, -1] and np.isneginf(s[0, 2:]).all()


def test_impostor_tail_thresholds_follow_the_gallery_size():
    """Laplace scores have an exactly exponential tail: q(t) = exp(-t / b) / 2 for t > 0, so the threshold for
    FPIR f at gallery size N is -b ln(2 (1 - (1 - f)^(1/N))), checked for sizes far beyond the sample."""
    b = 0.05
    scores = np.random.default_rng(0).laplace(0.0, b, 2_000_000)
    tail = ImpostorTail.fit(scores)
    for n in (1, 100, 10_000, 1_000_000):
        q = 1 - (1 - 0.01) ** (1 / n)
        assert tail.threshold(0.01, n) == pytest.approx(-b * math.log(2 * q), abs=0.01)
        assert tail.fpir(tail.threshold(0.01, n), n) == pytest.approx(0.01, rel=1e-6)
    assert tail.threshold(0.01, 100) < tail.threshold(0.01, 10_000)
    assert ImpostorTail.from_dict(tail.to_dict()) == tail
    with pytest.raises(LeanfaceError, match="fpir"):
        tail.threshold(0, 10)


@pytest.fixture()
def lfw_gallery(tmp_path):
    """Twenty LFW people, two photos each, as identity folders (copies)."""
    root = need(LFW / "lfw-deepfunneled")
    people = sorted(p for p in root.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 3)[:20]
    g = tmp_path / "G"
    for p in people:
        (g / p.name).mkdir(parents=True)
        for img in sorted(p.glob("*.jpg"))[:2]:
            shutil.copy(img, g / p.name / img.name)
    return g, people


def test_cli_enrol_identify_remove_and_bad_inputs(lfw_gallery, tmp_path, capsys):
    g, people = lfw_gallery
    store = tmp_path / "g.db"
    blank = tmp_path / "blank.jpg"
    cv2.imwrite(str(blank), np.full((120, 120, 3), 128, np.uint8))
    first, second = people[0].name, people[1].name
    assert main(["gallery", "add", str(store), first, *map(str, sorted((g / first).glob("*.jpg"))), str(blank)]) == 2
    err = capsys.readouterr().err
    assert "blank.jpg: no face found; not enrolled" in err and "2 face(s) enrolled" in err
    assert main(["gallery", "add", str(store), first, str(sorted((g / second).glob("*.jpg"))[0])]) == 2
    assert "already enrolled" in capsys.readouterr().err  # a duplicate name
    assert main(["gallery", "add", str(store), "--folder", str(g), "--resume"]) == 0
    capsys.readouterr()
    assert main(["gallery", "list", str(store), "--json"]) == 0
    listed = {r["identity"]: r["faces"] for r in json.loads(capsys.readouterr().out)}
    assert listed == {p.name: 2 for p in people}  # the first identity's photos were not enrolled twice
    probe = sorted(people[2].glob("*.jpg"))[2]
    assert main(["identify", str(probe), "--gallery", str(store)]) == 0
    assert f"{people[2].name} (" in capsys.readouterr().out
    assert main(["gallery", "remove", str(store), people[2].name, "Nobody"]) == 2
    assert "not enrolled: Nobody" in capsys.readouterr().err
    assert main(["gallery", "list", str(store), "--json"]) == 0
    assert people[2].name not in {r["identity"] for r in json.loads(capsys.readouterr().out)}
    # Another setup, a damaged store, an empty one: one line each.
    assert main(["identify", str(probe), "--gallery", str(store), "--size", "320"]) == 2
    assert "made with another recognition setup (differs in: size)" in capsys.readouterr().err
    (tmp_path / "bad.db").write_bytes(b"junk")
    assert main(["identify", str(probe), "--gallery", str(tmp_path / "bad.db")]) == 2
    assert "not a leanface gallery store" in capsys.readouterr().err
    with GalleryStore(tmp_path / "empty.db", create=True):
        pass
    assert main(["identify", str(probe), "--gallery", str(tmp_path / "empty.db")]) == 2
    assert "holds no faces" in capsys.readouterr().err
    assert main(["identify", str(probe), "--gallery", str(store), "--fpir", "0.01"]) == 2
    assert "needs the gallery's impostor calibration" in capsys.readouterr().err


def test_calibrated_store_sets_thresholds_by_size(lfw_gallery, tmp_path, capsys):
    g, people = lfw_gallery
    dev_src = need(SHARED / "data" / "recog_train" / "celeba_aligned_lowres")
    dev = tmp_path / "dev"  # 300 CelebA people (never LFW): enough impostor pairs for the tail
    dev.mkdir()
    for p in sorted(q for q in dev_src.iterdir() if q.is_dir())[:300]:
        (dev / p.name).symlink_to(p)
    store = tmp_path / "g.db"
    assert main(["gallery", "add", str(store), "--folder", str(g)]) == 0
    assert main(["gallery", "calibrate", str(store), "--data", str(dev)]) == 0
    with GalleryStore(store) as s:
        tail = s.calibration()
    assert tail is not None and tail.pairs >= 1_000_000
    assert tail.threshold(0.01, 40) < 1 and tail.threshold(0.01, 40) < tail.threshold(0.01, 100_000)
    probe = sorted(people[3].glob("*.jpg"))[2]
    capsys.readouterr()
    assert main(["identify", str(probe), "--gallery", str(store), "--fpir", "0.01"]) == 0
    err = capsys.readouterr().err
    assert f"threshold {tail.threshold(0.01, 40):.4f} (FPIR 0.01 at this size)" in err


def test_killed_enrolment_resumes_without_losing_or_repeating(lfw_gallery, tmp_path):
    g, people = lfw_gallery  # 40 photos: committed 16 at a time
    store = tmp_path / "g.db"
    cmd = [sys.executable, "-m", "leanface", "gallery", "add", str(store), "--folder", str(g), "--threads", "1"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def count() -> int:
        try:
            con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
            try:
                return con.execute("SELECT count(*) FROM faces").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error:
            return 0

    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and count() == 0:
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = count()
    assert 0 < partial < 40
    done = subprocess.run(cmd + ["--resume"], env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{partial} already there" in done.stderr
    with GalleryStore(store) as s:
        assert s.identities() == [(p.name, 2) for p in people]
        sha = [r[0] for r in s.con.execute("SELECT sha1 FROM faces")]
        assert len(sha) == len(set(sha)) == 40


def test_bulk_enrolment_on_ray_and_its_rerun(lfw_gallery, tmp_path, capsys, monkeypatch):
    """`gallery add --address local`: embedded on a Ray worker into shards, enrolled from them; a rerun reuses
    the shards and enrols nothing twice; the photos equal the one-process enrolment's."""
    pytest.importorskip("ray")
    g, people = lfw_gallery
    store, plain = tmp_path / "bulk.db", tmp_path / "plain.db"
    args = ["gallery", "add", str(store), "--folder", str(g), "--address", "local", "--workers", "1",
            "--shard-dir", str(tmp_path / "shards"), "--threads", "1"]
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert main(args) == 0
    assert main(args + ["--resume"]) == 0
    assert "0 face(s) enrolled, 40 already there" in capsys.readouterr().err
    assert main(["gallery", "add", str(plain), "--folder", str(g), "--threads", "1"]) == 0
    with GalleryStore(store) as a, GalleryStore(plain) as b:
        assert a.identities() == b.identities() == [(p.name, 2) for p in people]
        (_, ea, fa), (_, eb, fb) = a.load(), b.load()
        order_a, order_b = np.argsort(fa), np.argsort(fb)
        assert [fa[i] for i in order_a] == [fb[i] for i in order_b]
        np.testing.assert_allclose(ea[order_a], eb[order_b], atol=1e-5)  # the shards round embeddings to 6 places
