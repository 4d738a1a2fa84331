"""Function matching in the embed task: the teacher embeds exactly the (mixed) view the student trains on;
unlabelled folders train; the LFW filter removes a face that equals an LFW face; resume stays exact."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from leanface.export import export_onnx
from leanface.models import build_model
from leanface.recognize.identities import load_identity_faces
from leanface.train import AugmentConfig, MarginLoss, TrainConfig, train
from leanface.train import recognition
from leanface.train.recognition import RecognitionTask, mix_batch

from ..conftest import SHARED, need
from .test_recognition_train import TINY

GLINT = SHARED / "data" / "recog_train" / "glint_sample"


@pytest.fixture()
def pools(tmp_path, monkeypatch):
    """Three real people (Glint360K, aligned 112x112) with six photos each, and a flat folder of twelve
    unlabelled photos of three others; a tiny random teacher exported to ONNX."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    people = sorted(p for p in need(GLINT).iterdir() if p.is_dir())
    labelled, flat = tmp_path / "people", tmp_path / "flat"
    flat.mkdir()
    for person in people[:3]:
        (labelled / person.name).mkdir(parents=True)
        for f in sorted(person.glob("*.jpg"))[:6]:
            shutil.copy(f, labelled / person.name / f.name)
    for person in people[3:6]:
        for f in sorted(person.glob("*.jpg"))[:4]:
            shutil.copy(f, flat / f"{person.name}_{f.name}")
    torch.manual_seed(0)
    export_onnx(build_model(TINY).eval(), tmp_path / "teacher.onnx")
    return labelled, flat, tmp_path / "teacher.onnx"


class RecordingTeacher:
    """Stands in for the teacher embedder: remembers every batch it is given."""

    dim = TINY.embedding_size

    def __init__(self):
        self.seen = []

    def embed(self, crops):
        self.seen.append(crops.copy())
        return np.random.default_rng(len(self.seen)).standard_normal((len(crops), self.dim)).astype(np.float32)


def test_the_teacher_embeds_exactly_the_students_view(pools):
    labelled, flat, teacher = pools
    cfg = TrainConfig(margin=MarginLoss(distill=1.0, teacher=str(teacher), online=True, mixup=0.5, occlusion=0.5))
    task = RecognitionTask(cfg, TINY, [labelled, flat])
    fake = task._teacher = RecordingTeacher()
    items = [task.dataset[(2, i)] for i in range(len(task.dataset))]
    batch = task.collate(items)
    (seen,) = fake.seen
    student = batch["image"] * task._std + task._mean  # undo the student's normalisation
    np.testing.assert_allclose(student.permute(0, 2, 3, 1).numpy(), seen, atol=1e-3)
    # Augmentation changed the pixels, and mixing changed some more: those lose their identity label.
    clean = np.stack([task.dataset.crops[it["index"]] for it in items])
    assert (seen != clean).any(axis=(1, 2, 3)).all()
    augmented = np.stack([it["image"].numpy() for it in items])
    mixed = (seen != augmented).any(axis=(1, 2, 3))
    assert 0 < mixed.sum() < len(items)
    assert (batch["label"][torch.from_numpy(mixed)] == -1).all()
    assert (batch["label"][torch.from_numpy(~mixed)] == torch.tensor([it["label"] for it in items])[~mixed]).all()
    # The same batch again gives the same views (seeded by epoch and indices: resume sees the same data).
    task.collate([task.dataset[(2, i)] for i in range(len(task.dataset))])
    np.testing.assert_array_equal(fake.seen[1], seen)


def test_mixup_and_cutmix_blend_two_faces_of_the_batch():
    rng = np.random.default_rng(0)
    images = np.stack([np.full((112, 112, 3), 6 * k, np.uint8) for k in range(40)])  # each face one grey level
    out, mixed = mix_batch(images, rng, share=1.0)
    assert mixed.all()
    kinds = set()
    for i in range(len(out)):
        values = set(np.unique(out[i]).tolist()) - {6 * i}
        if len(np.unique(out[i])) == 2:  # cutmix: a square of another face
            (v,) = values
            square = out[i] == v
            rows, cols = np.flatnonzero(square.any((1, 2))), np.flatnonzero(square.any((0, 2)))
            assert square.all(2)[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
            kinds.add("cutmix")
        elif values:  # mixup: one blended level between this face's and another's
            (v,) = values
            assert any(min(6 * i, 6 * j) <= v <= max(6 * i, 6 * j) for j in range(40) if j != i)
            kinds.add("mixup")
    assert kinds == {"mixup", "cutmix"}
    same, none = mix_batch(images, rng, share=0.0)
    np.testing.assert_array_equal(same, images)
    assert not none.any()


def test_a_flat_folder_is_a_pool_of_unlabelled_faces_that_trains_on_the_teacher(pools, tmp_path):
    labelled, flat, teacher = pools
    faces = load_identity_faces([labelled, flat], progress=False)
    assert (faces.labels == -1).sum() == 12 and len(faces.identities) == 3
    torch.set_num_threads(1)
    cfg = TrainConfig(procs=1, epochs=15, batch_size=6, lr=0.1, warmup_iters=2, lr_steps=(100,), workers=0,
                      out_dir=str(tmp_path / "run"), seed=1, augment=AugmentConfig(enabled=False),
                      margin=MarginLoss(distill=1.0, teacher=str(teacher), online=True, ce_weight=0.0))
    result = train(cfg, TINY, flat, progress=False)  # no identity at all: the teacher alone
    distill = [float(r["distill"]) for r in result.history]
    assert np.mean(distill[-3:]) < 0.5 * distill[0], distill
    assert float(result.history[-1]["teacher_ms"]) > 0


def test_the_lfw_filter_removes_a_face_equal_to_an_lfw_face(pools, sface, monkeypatch):
    labelled, flat, _ = pools
    faces = load_identity_faces([labelled, flat], progress=False)
    # The "LFW" of this test: one photo that is also in the unlabelled pool, and a photo of a labelled person.
    lfw = np.stack([faces.crops[-1], faces.crops[0]])
    monkeypatch.setattr(recognition, "pairs_crops", lambda root: (lfw, None))
    keep, pools_out = recognition.filter_pool(faces, [str(labelled), str(flat)], str(sface), "lfw", 0.6, 128,
                                              progress=False)
    assert not keep[-1] and not keep[0]
    # The first person's other photos look like the removed one: they go too; the other people stay.
    first = faces.labels == 0
    assert keep[faces.labels == 1].all() and keep[faces.labels == 2].all()
    assert pools_out["flat"]["lfw_removed"] >= 1 and pools_out["people"]["lfw_removed"] >= first.sum() - 1
    # Exact duplicate crops are left out as well (after the first).
    dup = faces.subset(np.r_[np.ones(len(faces), bool)])
    doubled = type(faces)(np.concatenate([dup.crops, dup.crops[:2]]), np.concatenate([dup.labels, dup.labels[:2]]),
                          dup.identities, dup.files + dup.files[:2], np.concatenate([dup.detected, dup.detected[:2]]))
    keep2, counts = recognition.filter_pool(doubled, [str(labelled), str(flat)], None, None, 1.0, 128)
    assert keep2.sum() == len(faces) and counts["people"]["duplicates"] == 2


def test_resume_equals_uninterrupted_function_matching(pools, tmp_path):
    labelled, flat, teacher = pools
    torch.set_num_threads(1)
    base = dict(procs=1, batch_size=6, lr=0.05, warmup_iters=2, lr_steps=(2,), seed=2, epoch_samples=12,
                margin=MarginLoss(distill=2.0, teacher=str(teacher), online=True, mixup=0.5, margin_warmup=1))
    data = [labelled, flat]
    train(TrainConfig(epochs=3, workers=1, out_dir=str(tmp_path / "a"), **base), TINY, data, progress=False)
    train(TrainConfig(epochs=1, workers=0, out_dir=str(tmp_path / "b"), **base), TINY, data, progress=False)
    train(TrainConfig(epochs=3, workers=0, out_dir=str(tmp_path / "b"), **base), TINY, data, resume=True,
          progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=1e-6)
