"""Readers, augmentation (sample redistribution), dataset and data statistics."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from leanface.data import (CROP_CHOICES_SCRFD, AugmentConfig, FaceDataset, ImageFaces, augment, load_training_data,
                           load_wider_split, read_annotations, read_jsonl, read_retinaface_labels, read_wider_bbx_gt)
from leanface.data.augment import crop_and_resize_targets, sample_square_crop, warp_image
from leanface.train.stats import count_positive_anchors, scale_distribution
from leanface.errors import LeanfaceError
from leanface.train import atss_assign, make_anchors

from ..conftest import WIDER, need


def needs_wider():
    need(WIDER / "wider_face_split" / "wider_train_labelv2.txt")


# --- readers ----------------------------------------------------------------------------------
BBX = """a/one.jpg
2
10 20 30 40 0 1 0 0 2 1
5 6 7 8 2 0 1 1 0 0
a/none.jpg
0
0 0 0 0 0 0 0 0 0 0
a/none_v2.jpg
1
0 0 0 0 0 0 0 0 0 0
a/bare_zero.jpg
0
a/last.jpg
1
1 2 3 4 0 0 0 0 0 0
"""


def test_wider_bbx_gt_reader(tmp_path):
    path = tmp_path / "wider_face_x_bbx_gt.txt"
    path.write_text(BBX)
    images = read_wider_bbx_gt(path, tmp_path / "imgs")
    assert [im.path.name for im in images] == ["one.jpg", "none.jpg", "none_v2.jpg", "bare_zero.jpg", "last.jpg"]
    assert [len(im) for im in images] == [2, 0, 0, 0, 1]
    one = images[0]
    assert one.path == tmp_path / "imgs" / "a" / "one.jpg"
    np.testing.assert_array_equal(one.boxes, [[10, 20, 40, 60], [5, 6, 12, 14]])  # x2 = x + w
    np.testing.assert_array_equal(one.attributes, [[0, 1, 0, 0, 2, 1], [2, 0, 1, 1, 0, 0]])
    assert one.landmarks is None and not one.ignore.any()


@pytest.mark.parametrize("text, line", [
    ("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", 4),          # file ends inside the faces
    ("a.jpg\nx\n", 2),                               # count is not a number
    ("a.jpg\n1\n1 2 3 4 0 0 0 0 0\n", 3),            # 9 numbers
    ("a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\nb.jpg\n1\n1 2 3 four 0 0 0 0 0 0\n", 6),
])
def test_wider_bbx_gt_malformed(tmp_path, text, line):
    path = tmp_path / "wider_face_bad_bbx_gt.txt"
    path.write_text(text)
    with pytest.raises(LeanfaceError, match=rf"{path.name}:{line}:"):
        read_wider_bbx_gt(path, tmp_path)


LABELV2 = """# e/a.jpg 100 80
10 10 50 60 20.5 30.5 1.0 40 30 1.0 -1.0 -1.0 -1.0 -2 45 1.0 40 50 0.0
1 1 5 5 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0
# e/b.jpg 20 20
# e/c.jpg
2 3 4 5 1
6 7 8 9 0
1 2 10 20 3 4 0.0 5 6 0.0 7 8 0.0 9 10 0.0 11 12 0.0 0.9
"""


def test_labelv2_reader(tmp_path):
    path = tmp_path / "labelv2.txt"
    path.write_text(LABELV2)
    a, b, c = read_retinaface_labels(path)
    assert a.path == tmp_path / "images" / "e" / "a.jpg" and a.size == (100, 80)
    np.testing.assert_array_equal(a.boxes, [[10, 10, 50, 60], [1, 1, 5, 5]])
    # The flag decides visibility: (-2, 45) lies outside the image but is annotated; -1 -1 -1 is missing.
    np.testing.assert_array_equal(a.landmark_valid, [[True, True, False, True, True], [False] * 5])
    np.testing.assert_array_equal(a.landmarks[0], [[20.5, 30.5], [40, 30], [0, 0], [-2, 45], [40, 50]])
    assert len(b) == 0 and b.landmarks.shape == (0, 5, 2)
    assert c.size is None
    np.testing.assert_array_equal(c.ignore, [True, False, False])
    # 20 numbers: the older RetinaFace label.txt, x y w h + triplets + a quality value.
    np.testing.assert_array_equal(c.boxes[2], [1, 2, 11, 22])
    np.testing.assert_array_equal(c.landmarks[2, 4], [11, 12])
    assert c.landmark_valid[2].all() and not c.landmark_valid[:2].any()


@pytest.mark.parametrize("text, line", [
    ("1 2 3 4\n", 1),                                       # face before any image
    ("# a.jpg 10 10\n1 2 3 4 5 6\n", 2),                    # 6 numbers
    ("# a.jpg 10\n", 1),                                    # size with one number
    ("# a.jpg 10 10\n1 2 3 4\n# b.jpg w h\n", 3),
])
def test_labelv2_malformed(tmp_path, text, line):
    path = tmp_path / "label.txt"
    path.write_text(text)
    with pytest.raises(LeanfaceError, match=rf"label.txt:{line}:"):
        read_retinaface_labels(path)


def test_jsonl_reader(tmp_path):
    path = tmp_path / "faces.jsonl"
    rows = [{"image": "x/1.jpg", "faces": [{"box": [1, 2, 30, 40]},
                                           {"box": [5, 5, 9, 9], "ignore": True,
                                            "landmarks": [[6, 6], None, [7, 7], [6, 8], [8, 8]]}]},
            {"image": "x/2.jpg", "faces": [], "size": [640, 480]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    one, two = read_jsonl(path)
    assert one.path == tmp_path / "x" / "1.jpg"
    np.testing.assert_array_equal(one.boxes, [[1, 2, 30, 40], [5, 5, 9, 9]])
    np.testing.assert_array_equal(one.ignore, [False, True])
    np.testing.assert_array_equal(one.landmark_valid, [[False] * 5, [True, False, True, True, True]])
    assert len(two) == 0 and two.size == (640, 480)
    assert read_annotations(path)[0].path == one.path


@pytest.mark.parametrize("line", [
    '{"image": "a.jpg", "faces": [{"box": [1, 2, 3]}]}',
    '{"image": "a.jpg", "faces": [{"box": [5, 5, 1, 1]}]}',
    '{"faces": []}',
    '{"image": "a.jpg", "faces": [{"box": [0, 0, 4, 4], "landmarks": [[1, 1]]}]}',
    '{"image": "a.jpg" "faces": []}',
])
def test_jsonl_malformed(tmp_path, line):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"image": "ok.jpg", "faces": []}\n' + line + "\n")
    with pytest.raises(LeanfaceError, match=r"bad.jsonl:2:"):
        read_jsonl(path)


def test_missing_files_are_user_errors(tmp_path):
    with pytest.raises(LeanfaceError, match="not found"):
        read_retinaface_labels(tmp_path / "nope.txt")
    with pytest.raises(LeanfaceError, match="no such file"):
        load_training_data(tmp_path / "nope")
    (tmp_path / "f.jsonl").write_text('{"image": "missing.jpg", "faces": []}\n')
    with pytest.raises(LeanfaceError, match="do not exist"):
        load_training_data(tmp_path / "f.jsonl")


def test_real_wider_annotations_agree():
    """labelv2 (RetinaFace's file) and the official bbx_gt boxes are independent copies: they must match."""
    needs_wider()
    v2 = {im.path: im for im in load_wider_split(WIDER)}
    gt = read_wider_bbx_gt(WIDER / "wider_face_split" / "wider_face_train_bbx_gt.txt", WIDER / "WIDER_train" / "images")
    assert len(v2) == len(gt) == 550
    for im in gt:
        b = im.boxes[(im.boxes[:, 2] > im.boxes[:, 0]) & (im.boxes[:, 3] > im.boxes[:, 1])]
        np.testing.assert_array_equal(v2[im.path].boxes, b)
    assert sum(int(im.landmark_valid.any(1).sum()) for im in v2.values()) == 4086  # shared/README.md


# --- augmentation -----------------------------------------------------------------------------
def test_warp_equals_crop_pad_then_resize():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (0, 0), 2)
    for left, top, side in [(20, 10, 80), (-40, -30, 240), (0, 0, 120)]:
        canvas = np.full((side, side, 3), 128, np.uint8)
        x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + side, 160), min(top + side, 120)
        canvas[y0 - top:y1 - top, x0 - left:x1 - left] = img[y0:y1, x0:x1]
        ref = cv2.resize(canvas, (64, 64), interpolation=cv2.INTER_LINEAR).astype(int)
        for flip in (False, True):
            out = warp_image(img, (left, top, side), 64, flip, 128).astype(int)
            assert np.abs(out - (ref[:, ::-1] if flip else ref)).max() <= 1


def test_crop_targets_by_hand():
    boxes = np.array([[10, 10, 30, 50], [90, 90, 130, 130], [0, 0, 4, 4]], np.float32)
    kps = np.zeros((3, 5, 2), np.float32)
    kps[0] = [[12, 20], [28, 20], [20, 30], [14, 40], [26, 40]]
    valid = np.array([[True, True, False, True, True], [True] * 5, [True] * 5])
    # Crop (5, 5) side 110 -> output 220 (x2): centres (20, 30) and (110, 110) are inside, (2, 2) is not.
    t = crop_and_resize_targets(boxes, kps, valid, (5, 5, 110), 220, flip=False, clip_border=True)
    np.testing.assert_allclose(t.boxes, [[10, 10, 50, 90], [170, 170, 220, 220]])  # second clipped to the crop
    np.testing.assert_allclose(t.landmarks[0, 0], [14, 30])
    # Flip: x -> 220 - x, eyes and mouth corners swap, the missing nose stays missing.
    f = crop_and_resize_targets(boxes, kps, valid, (5, 5, 110), 220, flip=True, clip_border=False)
    np.testing.assert_allclose(f.boxes[0], [170, 10, 210, 90])
    np.testing.assert_allclose(f.boxes[1], [-30, 170, 50, 250])  # not clipped
    np.testing.assert_allclose(f.landmarks[0], [[174, 30], [206, 30], [0, 0], [178, 70], [202, 70]])
    np.testing.assert_array_equal(f.landmark_valid[0], [True, True, False, True, True])


def test_square_crop_sampler():
    rng = np.random.default_rng(1)
    centers = np.array([[150.0, 40.0]])
    for _ in range(200):
        left, top, side = sample_square_crop(rng, 300, 200, centers, CROP_CHOICES_SCRFD)
        assert side in {int(s * 200) for s in CROP_CHOICES_SCRFD}
        assert left < 150 < left + side and top < 40 < top + side
        # Small crops lie inside the image; large ones cover it (offsets <= 0).
        if side <= 200:
            assert 0 <= top <= 200 - side
        if side >= 300:
            assert 300 - side <= left <= 0
    # Only small crops and a face near a corner: the scale grows until a crop can hold it.
    left, top, side = sample_square_crop(rng, 1000, 1000, np.array([[1.0, 1.0]]), (0.01,), max_tries=3)
    assert left < 1 and top < 1


def test_augmented_pixels_match_targets():
    """Draw a white face box on grey; after crop/resize/flip its box must still frame the white pixels."""
    img = np.full((300, 400, 3), 60, np.uint8)
    img[100:160, 250:290] = 255  # box x1=250, y1=100, x2=290, y2=160
    boxes = np.array([[250, 100, 290, 160]], np.float32)
    cfg = AugmentConfig(img_size=128, photometric=False)
    for seed in range(20):
        out, t = augment(img, boxes, np.zeros((1, 5, 2), np.float32), np.zeros((1, 5), bool), cfg,
                         np.random.default_rng(seed))
        assert out.shape == (128, 128, 3) and len(t.boxes) == 1
        x1, y1, x2, y2 = t.boxes[0]
        ys, xs = np.nonzero(out[..., 0] > 200)
        assert abs(xs.min() - x1) <= 1.5 and abs(xs.max() + 1 - x2) <= 1.5
        assert abs(ys.min() - y1) <= 1.5 and abs(ys.max() + 1 - y2) <= 1.5


def test_dataset_is_deterministic_per_epoch_and_index():
    needs_wider()
    images = load_wider_split(WIDER)[:3]
    ds = FaceDataset(images, AugmentConfig(img_size=160), seed=5)
    a, b, c = ds[(2, 1)], ds[(2, 1)], ds[(3, 1)]
    assert a["image"].shape == (3, 160, 160) and a["image"].dtype == torch.float32
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["boxes"], b["boxes"])
    assert not torch.equal(a["image"], c["image"])
    np.testing.assert_array_equal(ds.targets_only(2, 1).boxes, a["boxes"].numpy())
    assert a["landmarks"].shape == (len(a["boxes"]), 5, 2)


# --- statistics -------------------------------------------------------------------------------
def test_scale_definition():
    # 40 x 10 box in a 1280 x 960 image: long side -> 640 halves it: sqrt(20 * 5) = 10 px.
    d = scale_distribution("x", [np.array([[0, 0, 40, 10], [0, 0, 64, 64]], np.float32)], [(1280, 960)])
    np.testing.assert_allclose(d.scales, [10, 32])
    assert d.share_below(16) == 0.5 and d.share_below(32) == 0.5 and d.share_below(33) == 1.0


def test_positive_anchor_count_uses_atss(tmp_path):
    # One 64 x 64 face in a 640 x 640 image, no crop randomness (whole image, choices {1.0}, square):
    # the count must equal a direct ATSS assignment on the flipped or unflipped box (same sizes).
    img = tmp_path / "a.jpg"
    cv2.imwrite(str(img), np.zeros((640, 640, 3), np.uint8))
    faces = ImageFaces(img, np.array([[100, 200, 164, 264]], np.float32), size=(640, 640))
    got = count_positive_anchors([faces], (1.0,), epochs=1)
    assigned = atss_assign(make_anchors(640, 640), torch.tensor([[100.0, 200, 164, 264]]))
    sizes = make_anchors(640, 640).sizes[assigned >= 0]
    expect = [int((sizes == s).sum()) for s in (16, 32, 64, 128, 256, 512)]
    assert list(got.counts) == expect and sum(expect) > 0 and got.faces == 1


def test_cli_stats(tmp_path, capsys):
    from leanface.cli import main

    img = tmp_path / "a.jpg"
    cv2.imwrite(str(img), np.zeros((480, 640, 3), np.uint8))
    faces = [{"box": [100, 100, 110, 112]}, {"box": [300, 200, 364, 264]}]
    (tmp_path / "faces.jsonl").write_text(json.dumps({"image": "a.jpg", "faces": faces}) + "\n")
    out = tmp_path / "stats"
    assert main(["stats", "--data", str(tmp_path / "faces.jsonl"), "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "crop [0.3, 2.0]" in printed
    record = json.loads((out / "stats.json").read_text())
    # Long side 640 already: scales sqrt(10*12) = 10.95 and 64 px.
    assert record["scales"]["train"]["below_16px"] == 0.5 and record["scales"]["train"]["below_64px"] == 0.5
    assert set(record["positive_anchors"]) == {"crop [0.3, 1.0]", "crop [0.3, 2.0]"}
    assert (out / "scale_cdf.png").is_file() and (out / "positive_anchors.png").is_file()
    assert main(["stats", "--data", str(tmp_path / "nothing.jsonl")]) == 2


def test_val_scale_distributions_follow_the_keep_lists():
    """Hard-set faces of the present val images, counted straight from the official .mat files."""
    import scipy.io

    from leanface.train.stats import val_scale_distributions

    needs_wider()
    easy, medium, hard = val_scale_distributions(WIDER)
    faces = scipy.io.loadmat(WIDER / "wider_face_split" / "wider_face_val.mat")
    keep = scipy.io.loadmat(WIDER / "ground_truth" / "wider_hard_val.mat")["gt_list"]
    present = {(p.parent.name, p.stem) for p in (WIDER / "WIDER_val" / "images").glob("*/*.jpg")}
    expected = 0
    for e, event in enumerate(faces["event_list"]):
        for k, name in enumerate(faces["file_list"][e][0]):
            if (str(event[0][0]), str(name[0][0])) in present:
                idx = keep[e][0][k][0].ravel()
                expected += len(idx)
    assert len(hard.scales) == expected and hard.images == len(present)
    assert len(easy.scales) < len(medium.scales) < len(hard.scales)
    assert easy.share_below(32) < medium.share_below(32) < hard.share_below(32)


def test_close_up_crops_make_faces_fill_40_to_90_percent_of_the_frame():
    from leanface.data.augment import AugmentConfig, augment_targets

    boxes = np.array([[300, 200, 380, 300], [10, 10, 20, 22]], np.float32)  # a big face and a tiny one
    lm = np.zeros((2, 5, 2), np.float32)
    valid = np.zeros((2, 5), bool)
    cfg = AugmentConfig(img_size=640, close_ups=1.0)
    fills = []
    for seed in range(200):
        crop, _, t = augment_targets(boxes, lm, valid, 1024, 768, cfg, np.random.default_rng(seed))
        left, top, side = crop
        assert left <= 300 and top <= 200 and left + side >= 380 and top + side >= 300  # the big face is inside
        big = t.boxes[np.argmax(t.boxes[:, 2] - t.boxes[:, 0])]
        fills.append(max(big[2] - big[0], big[3] - big[1]) / 640)
    assert 0.39 <= min(fills) and max(fills) <= 0.91 and np.ptp(fills) > 0.3
    # Off (the official recipe), the same draws give the usual sample-redistribution crops: few close-ups.
    plain = AugmentConfig(img_size=640)
    sides = [augment_targets(boxes, lm, valid, 1024, 768, plain, np.random.default_rng(s))[0][2] for s in range(200)]
    assert np.mean(100 / np.array(sides) >= 0.4) < 0.2
