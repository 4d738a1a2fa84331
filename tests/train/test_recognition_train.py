"""The embed task: identity folders -> aligned crops (cached) -> a margin loss -> an embedder that
separates the people it saw; resume equals an uninterrupted run; the dev protocol's pairs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from leanface.cli import main
from leanface.errors import LeanfaceError
from leanface.models.mobilefacenet import MobileFaceNetConfig
from leanface.recognize import Embedder
from leanface.recognize.identities import dev_pairs, dev_split, load_identity_faces
from leanface.train import AugmentConfig, MarginLoss, TrainConfig, train

from ..conftest import SHARED, need

GLINT = SHARED / "data" / "recog_train" / "glint_sample"
TINY = MobileFaceNetConfig("tiny_mfn", stem_channels=16, stages=((2, 16, 1, 2), (2, 32, 1, 2), (2, 32, 1, 2)),
                           conv_channels=64, embedding_size=32)


@pytest.fixture()
def faces_dir(tmp_path, monkeypatch):
    """Six real people (Glint360K sample, 112x112 aligned), eight photos each, plus a corrupt file."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = need(GLINT)
    root = tmp_path / "people"
    for person in sorted(p for p in src.iterdir() if p.is_dir()):
        (root / person.name).mkdir(parents=True)
        for f in sorted(person.glob("*.jpg"))[:8]:
            shutil.copy(f, root / person.name / f.name)
    (root / person.name / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def _separation(weights, faces) -> float:
    """Mean same-person cosine minus mean different-person cosine over the given crops."""
    e = Embedder(weights).embed(faces.crops)
    sim = e @ e.T
    same = faces.labels[:, None] == faces.labels[None]
    off = ~np.eye(len(e), dtype=bool)
    return float(sim[same & off].mean() - sim[~same].mean())


def test_embedder_learns_the_people_it_is_trained_on(faces_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    faces = load_identity_faces(faces_dir, progress=False)
    assert len(faces) == 48 and len(faces.identities) == 6 and faces.unreadable == 1
    assert "broken.jpg" in capsys.readouterr().err
    cfg = TrainConfig(procs=1, epochs=12, batch_size=16, lr=0.05, warmup_iters=5, lr_steps=(10,), workers=0,
                      augment=AugmentConfig(enabled=False), out_dir=str(tmp_path / "run"),
                      margin=MarginLoss(kind="arcface", scale=16, margin=0.2, margin_warmup=2))
    result = train(cfg, TINY, faces_dir, progress=False)
    first, last = float(result.history[0]["ce"]), float(result.history[-1]["ce"])
    assert last < 0.5 * first, (first, last)
    untrained = tmp_path / "untrained.pt"
    from leanface.models import build_model, save_checkpoint
    torch.manual_seed(0)
    save_checkpoint(untrained, TINY, build_model(TINY).state_dict())
    assert _separation(result.weights, faces) > _separation(untrained, faces) + 0.2
    # model.pt is the embedder alone, loadable through the public paths.
    assert Embedder(result.weights).dim == 32


def test_resume_equals_uninterrupted_run(faces_dir, tmp_path):
    torch.set_num_threads(1)
    base = dict(procs=1, batch_size=8, lr=0.05, warmup_iters=3, lr_steps=(2,), seed=1,
                margin=MarginLoss(kind="arcnegface", margin_warmup=1.0, label_smoothing=0.1))
    train(TrainConfig(epochs=3, workers=1, out_dir=str(tmp_path / "a"), **base), TINY, faces_dir, progress=False)
    train(TrainConfig(epochs=1, workers=0, out_dir=str(tmp_path / "b"), **base), TINY, faces_dir, progress=False)
    train(TrainConfig(epochs=3, workers=0, out_dir=str(tmp_path / "b"), **base), TINY, faces_dir, resume=True,
          progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert "head.weight" in a["model"]  # the class weights are part of the resumable state
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=1e-6)


def test_cli_trains_an_embedder_from_an_identity_folder(faces_dir, tmp_path, capsys):
    model = tmp_path / "tiny.json"
    model.write_text(json.dumps(TINY.to_dict()))
    out = tmp_path / "cli"
    base = ["train", "--model", str(model), "--data", str(faces_dir), "--epochs", "1", "--batch-size", "8",
            "--procs", "1", "--workers", "0", "--out-dir", str(out), "--quiet"]
    argv = base + ["--set", "margin.kind=cosface", "--set", "margin.margin=0.35"]
    assert main(argv) == 0
    assert (out / "model.pt").is_file() and "saved" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["margin"]["kind"] == "cosface" and saved["train_identities"] == 6
    assert main(base + ["--exist-ok", "--set", "margin.kind=sphereface"]) == 2
    assert "margin.kind" in capsys.readouterr().err
    # Distillation needs a teacher; a folder without images is refused by name.
    assert main(argv + ["--exist-ok", "--set", "margin.distill=1"]) == 2
    assert "teacher" in capsys.readouterr().err
    flat = tmp_path / "flat"
    flat.mkdir()
    assert main(["train", "--model", str(model), "--data", str(flat), "--out-dir", str(tmp_path / "x")]) == 2
    assert f"{flat}: no images" in capsys.readouterr().err


def test_dev_split_and_pairs_follow_the_protocol():
    labels = np.repeat(np.arange(40), [2, 3, 4, 5] * 10)
    left, right, same, fold = dev_pairs(labels, folds=10, seed=0)
    n_same = sum(n * (n - 1) // 2 for n in [2, 3, 4, 5] * 10)
    assert same.sum() == n_same and (~same).sum() == n_same  # every positive, as many negatives
    assert (labels[left[same]] == labels[right[same]]).all() and (labels[left[~same]] != labels[right[~same]]).all()
    # Folds are identity-disjoint: no identity appears in two folds.
    folds_of = {}
    for a, b, f in zip(left, right, fold):
        for y in (labels[a], labels[b]):
            assert folds_of.setdefault(int(y), f) == f
    assert len(np.unique(fold)) == 10


def test_dev_split_holds_back_whole_identities(tmp_path):
    from leanface.recognize.identities import IdentityFaces

    labels = np.repeat(np.arange(400), 3)
    faces = IdentityFaces(np.zeros((len(labels), 1, 1, 3), np.uint8), labels, tuple(f"id{i}" for i in range(400)),
                          tuple(str(i) for i in range(len(labels))), np.zeros(len(labels), bool))
    held = dev_split(faces, share=0.1)
    per_id = held.reshape(400, 3)
    assert (per_id.all(1) | ~per_id.any(1)).all()  # an identity is held back whole or not at all
    assert 20 <= per_id[:, 0].sum() <= 60
    dev = faces.subset(held)
    assert dev.labels.max() + 1 == len(dev.identities) == per_id[:, 0].sum()



def test_a_diverged_embedder_scores_nan_instead_of_stopping_the_run():
    from leanface.recognize.identities import IdentityFaces
    from leanface.train.recognition import verify_crops

    labels = np.repeat(np.arange(20), 3)
    faces = IdentityFaces(np.zeros((60, 112, 112, 3), np.uint8), labels, tuple(map(str, range(20))),
                          tuple(map(str, range(60))), np.zeros(60, bool))

    class Stub:
        def __init__(self, value):
            self.value = value

        def embed(self, crops):
            rng = np.random.default_rng(0)
            e = rng.normal(size=(len(crops), 8)) + 3 * np.eye(20)[labels][:, :8].repeat(1, 0)
            return np.full_like(e, self.value) if np.isnan(self.value) else e / np.linalg.norm(e, axis=1, keepdims=True)

    assert np.isnan(verify_crops(Stub(np.nan), faces))
    assert 0.5 <= verify_crops(Stub(0.0), faces) <= 1.0


def test_score_pairs_runs_the_protocol_and_flags_a_diverged_embedder():
    """Same-identity pairs get identical unit vectors, different ones orthogonal: every fold is right; a NaN
    embedding (a diverged model) gives None instead of a score."""
    from leanface.train.recognition import score_pairs

    n = 40
    ids = np.arange(n) // 2                      # 20 identities, 2 crops each
    crops = ids.astype(np.float32)[:, None]
    left = np.concatenate([np.arange(0, n, 2), np.arange(0, n - 2, 2)])
    right = np.concatenate([np.arange(1, n, 2), np.arange(2, n, 2)])
    same = ids[left] == ids[right]
    folds = ids[left] % 2

    class OneHot:
        def embed(self, x):
            return np.eye(n // 2, dtype=np.float32)[x[:, 0].astype(int)]

    class Diverged(OneHot):
        def embed(self, x):
            e = super().embed(x)
            e[0, 0] = np.nan
            return e

    result = score_pairs(OneHot(), (crops, (left, right, same, folds)))
    assert result.accuracy == 1.0
    assert score_pairs(Diverged(), (crops, (left, right, same, folds))) is None


def test_teacher_embeddings_are_cached_face_by_face(tmp_path, monkeypatch):
    """The teacher's cache is per face: a second set that overlaps the first runs the teacher only on its new
    faces and returns what the teacher itself gives; a damaged cache file is recomputed."""
    from leanface.export import export_onnx
    from leanface.models import build_model
    from leanface.train import recognition

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    export_onnx(build_model(TINY).eval(), tmp_path / "t.onnx")
    teacher = Embedder(tmp_path / "t.onnx")
    crops = np.random.default_rng(0).integers(0, 256, (12, 112, 112, 3), dtype=np.uint8)
    truth = np.stack([teacher.embed(crops), teacher.embed(np.ascontiguousarray(crops[:, :, ::-1]))], 1)

    embedded = []  # the sizes of the teacher's batches (Embedder probes its size with one blank crop: not counted)
    real_embed = Embedder.embed
    monkeypatch.setattr(Embedder, "embed", lambda self, x: (x.any() and embedded.append(len(x))) or real_embed(self, x))
    first = recognition.teacher_embeddings(str(tmp_path / "t.onnx"), crops[:8], 32, progress=False)
    np.testing.assert_allclose(first, truth[:8], atol=1e-6)
    assert embedded == [8, 8]  # plain and mirrored
    second = recognition.teacher_embeddings(str(tmp_path / "t.onnx"), crops[4:], 32, progress=False)
    np.testing.assert_allclose(second, truth[4:], atol=1e-6)
    assert embedded[2:] == [4, 4]  # only crops 8-11 are new
    assert recognition.teacher_embeddings(str(tmp_path / "t.onnx"), crops[[11, 0]], 32, progress=False).shape == (2, 2, 32)
    assert embedded[4:] == []
    (cache,) = (tmp_path / "cache" / "leanface" / "aligned").glob("teacher_*.npz")
    cache.write_bytes(b"PK\x03\x04 truncated")
    np.testing.assert_allclose(recognition.teacher_embeddings(str(tmp_path / "t.onnx"), crops[:2], 32, progress=False),
                               truth[:2], atol=1e-6)
    assert embedded[4:] == [2, 2]
