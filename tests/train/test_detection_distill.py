"""Dense distillation in the detection task: the teacher (the official SCRFD-2.5GF) sees exactly the student's
augmented view, its raw outputs sit on the student's anchor grid, its outputs reach the loss, resume stays exact."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from leanface.boxes import distance_to_boxes
from leanface.infer import Detector
from leanface.infer.detector import DEFAULT_WEIGHTS
from leanface.infer.postprocess import postprocess
from leanface.infer.preprocess import place
from leanface.models import create_model, get_config, get_family
from leanface.train import AugmentConfig, TrainConfig, train
from leanface.train.assigner import make_anchors
from leanface.train.detection import DetectionTask, teacher_targets
from leanface.train.losses import LossWeights

from ..conftest import OFFICIAL_ONNX, need

STUDENT = get_config("scrfd_500m_kps")


@pytest.fixture(scope="module")
def teacher() -> str:
    return str(need(OFFICIAL_ONNX / "det_2.5g.onnx"))


def test_the_teachers_raw_outputs_decode_on_the_students_anchors_to_the_official_detections(wider_train, teacher):
    cfg = TrainConfig(augment=AugmentConfig(enabled=False), loss=LossWeights(teacher=teacher))
    images = [im for im in wider_train if 2 <= len(im) <= 20 and (im.boxes[:, 2] - im.boxes[:, 0]).min() >= 40][:2]
    task = DetectionTask(cfg, STUDENT, images)
    batch = task.collate([task.dataset[(0, i)] for i in range(2)])
    anchors = make_anchors(640, 640, STUDENT.head.strides, STUDENT.head.base_sizes, STUDENT.head.anchor_scales)
    settings = get_family("scrfd").preset("detect").postprocess
    official = Detector(weights=teacher, size=640, score_thr=0.5, nms_thr=0.4)
    for b in range(2):
        t = batch["teacher"][b]
        keep = t[:, 0] >= 0.5
        stride = anchors.strides[keep][:, None]
        boxes = distance_to_boxes(anchors.centers[keep] / stride, t[keep, 1:5]) * stride
        kps = anchors.centers[keep][:, None] + t[keep, 5:].reshape(-1, 5, 2) * stride[:, :, None]
        ours = postprocess((boxes.numpy(), t[keep, 0].numpy(), kps.numpy()), place(640, 640, 640, False)[0], settings)
        rgb = np.rint(batch["image"][b].permute(1, 2, 0).numpy() * 128 + 127.5).astype(np.uint8)
        found = official(rgb)
        assert len(found) >= 2 and len(ours) == len(found)
        np.testing.assert_allclose(ours.boxes, found.boxes, atol=0.05)
        np.testing.assert_allclose(ours.landmarks, found.landmarks, atol=0.05)
        np.testing.assert_allclose(ours.scores, found.scores, atol=1e-5)


class Recorder:
    """A teacher that answers with given outputs and remembers its inputs."""

    def __init__(self, net, shift: float = 0.0):
        self.net, self.shift, self.seen = net, shift, []

    def __call__(self, batch):
        self.seen.append(batch.copy())
        with torch.no_grad():
            outs = [o.numpy() for o in self.net.forward_export(torch.from_numpy(batch))]
        n = len(outs) // 3
        return [o + self.shift if k >= n else o for k, o in enumerate(outs)]  # shift boxes and landmarks only


def test_a_teachers_outputs_reach_the_loss_for_the_same_view(wider_train, teacher):
    cfg = TrainConfig(augment=AugmentConfig(img_size=320), loss=LossWeights(teacher=teacher, kd_conf=0.2))
    task = DetectionTask(cfg, STUDENT, wider_train[:4])
    net = create_model(None, weights=DEFAULT_WEIGHTS).eval()  # eval: its outputs are then what it trains on
    loss = task.loss(torch.device("cpu"))
    samples = [task.dataset[(1, i)] for i in range(4)]
    results = {}
    for shift in (0.0, 0.5):
        task._teacher = Recorder(net, shift)
        batch = task.collate(samples)
        np.testing.assert_array_equal(task._teacher.seen[0], batch["image"].numpy())  # the student's very view
        with torch.no_grad():
            results[shift] = {k: float(v) for k, v in loss(net(batch["image"]), batch).items()}
    same, shifted = results[0.0], results[0.5]
    # A teacher that says what the student says leaves nothing to distil; one that disagrees does.
    assert same["kd_cls"] == pytest.approx(0, abs=1e-6) and same["kd_box"] == pytest.approx(0, abs=1e-5)
    assert same["kd_kps"] == pytest.approx(0, abs=1e-6)
    assert shifted["kd_box"] > 0.01 and shifted["kd_kps"] > 0.001
    assert shifted["loss"] == pytest.approx(sum(shifted[k] for k in ("cls", "box", "kps", "kd_cls", "kd_box", "kd_kps")),
                                            rel=1e-5)
    assert same["teacher_ms"] > 0


def test_resume_equals_uninterrupted_distillation(wider_train, tmp_path, teacher):
    torch.set_num_threads(1)
    images = wider_train[:2]
    base = dict(procs=1, batch_size=2, lr=0.02, warmup_iters=2, lr_steps=(2,), augment=AugmentConfig(img_size=96), seed=3,
                loss=LossWeights(teacher=teacher))
    train(TrainConfig(epochs=3, workers=1, out_dir=str(tmp_path / "a"), **base), STUDENT, images, progress=False)
    train(TrainConfig(epochs=1, workers=0, out_dir=str(tmp_path / "b"), **base), STUDENT, images, progress=False)
    resumed = train(TrainConfig(epochs=3, workers=0, out_dir=str(tmp_path / "b"), **base), STUDENT, images,
                    resume=True, progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=1e-6)
    assert float(resumed.metrics["kd_cls"]) > 0 and float(resumed.metrics["teacher_ms"]) > 0


def test_teacher_targets_refuse_a_layout_without_landmarks():
    from leanface.errors import LeanfaceError

    with pytest.raises(LeanfaceError, match="landmarks"):
        teacher_targets([np.zeros((1, 10, 1))] * 3 + [np.zeros((1, 10, 4))] * 3)


def test_the_ground_truth_floor_keeps_a_silent_teacher_from_lowering_annotated_faces():
    """Hand-checked case: a teacher that scores every anchor 0. Without the floor its QFL pulls every anchor of the
    annotated face towards 0; with it, the target on those anchors is the ground truth's own IoU target, so the
    distillation score term equals the ground-truth score term exactly (both weigh 1), and anchors off the face
    are taught the teacher's 0 either way."""
    from leanface.train.losses import scrfd_loss

    torch.manual_seed(0)
    h = w = 160
    anchors = make_anchors(h, w, STUDENT.head.strides, STUDENT.head.base_sizes, STUDENT.head.anchor_scales, "cpu")
    outputs = [(torch.randn(1, 2, h // s, w // s), torch.rand(1, 8, h // s, w // s) * 3,
                torch.randn(1, 20, h // s, w // s)) for s in STUDENT.head.strides]
    # A face filling 80% of the crop (the close-ups the 2.5 GF misses), and its landmarks.
    boxes, kps = [torch.tensor([[16.0, 16.0, 144.0, 144.0]])], [torch.full((1, 5, 2), 80.0)]
    valid = [torch.ones(1, 5, dtype=torch.bool)]
    silent = torch.zeros(1, len(anchors.centers), 15)
    plain = scrfd_loss(outputs, boxes, kps, valid, anchors, LossWeights(teacher="t"), teacher=silent)
    floored = scrfd_loss(outputs, boxes, kps, valid, anchors, LossWeights(teacher="t", kd_gt_floor=True), teacher=silent)
    assert floored["kd_cls"] == pytest.approx(float(floored["cls"]), rel=1e-6)
    assert plain["cls"] == floored["cls"] and plain["kd_box"] == floored["kd_box"] == 0
    assert float(plain["kd_cls"]) != pytest.approx(float(floored["kd_cls"]), rel=1e-3)  # the face's anchors differ
