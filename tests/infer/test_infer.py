"""Inference pieces checked by hand: reading odd images, placement, NMS, results, the CLI."""
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from leanface.cli import COMMANDS, main
from leanface.errors import LeanfaceError
from leanface.infer import Faces, nms, read_image
from leanface.models.scrfd import DistanceDecoder
from leanface.infer.preprocess import place


def test_read_image_variants(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :, 0] = 200  # red
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((20, 30), 7, np.uint8)])).save(tmp_path / "rgba.png")
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((20, 30), 51400, np.uint16))
    assert read_image(tmp_path / "rgb.png")[0, 0].tolist() == [200, 0, 0]
    assert read_image(tmp_path / "gray.png")[0, 0].tolist() == [200, 200, 200]
    assert read_image(tmp_path / "rgba.png")[0, 0].tolist() == [200, 0, 0]
    assert read_image(tmp_path / "deep.png")[0, 0].tolist() == [200, 200, 200]  # 51400 / 257


def test_read_image_applies_exif_rotation(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(img).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "rot.jpg")
    assert out.shape == (40, 20, 3)
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # white half now on top


def test_read_image_errors(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    with pytest.raises(LeanfaceError, match="bad.jpg: not a readable image"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(LeanfaceError, match="missing.jpg: image not found"):
        read_image(tmp_path / "missing.jpg")


def test_placement_rules():
    p, padded = place(480, 640, 640, letterbox=False)
    assert (p.new_h, p.new_w, padded) == (480, 640, (480, 640))  # VGA is not computed as 640x640
    p, padded = place(819, 1024, 640, letterbox=False)
    assert (p.new_h, p.new_w, padded) == (512, 640, (512, 640))  # 819 * 0.625 = 511.875 -> 512
    _, padded = place(819, 1024, 640, letterbox=True)
    assert padded == (640, 640)
    p, padded = place(100, 70, None, letterbox=False)
    assert (p.new_h, p.new_w, padded, p.scale_x) == (100, 70, (128, 96), 1.0)


def test_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    # IoU(box0, box1) = 90 / 110 = 0.818; box3 duplicates box0 with a higher score.
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms(boxes, scores, 0.85).tolist() == [3, 1, 2]
    # +1 convention: IoU(box0, box1) = 110 / 132 = 0.833 -> still kept at 0.85.
    assert nms(boxes, scores, 0.85, offset=1.0).tolist() == [3, 1, 2]


def test_distance_decoder_by_hand():
    # One 32x64 input: stride-8 grid 4x8, two anchors per cell; put one positive at cell (row 2, col 3), anchor 1.
    dec = DistanceDecoder((8, 16, 32), 2, True)
    n = [4 * 8 * 2, 2 * 4 * 2, 1 * 2 * 2]
    scores = [np.zeros((1, k, 1), np.float32) for k in n]
    boxes = [np.zeros((1, k, 4), np.float32) for k in n]
    kps = [np.zeros((1, k, 10), np.float32) for k in n]
    idx = (2 * 8 + 3) * 2 + 1
    scores[0][0, idx, 0] = 0.9
    boxes[0][0, idx] = [1, 2, 3, 4]
    kps[0][0, idx, :2] = [0.5, -0.5]
    (b, s, k), = dec(scores + boxes + kps, (32, 64), 0.5)
    # centre (3*8, 2*8) = (24, 16); box = (24-8, 16-16, 24+24, 16+32)
    assert b.tolist() == [[16, 0, 48, 48]]
    assert s.tolist() == pytest.approx([0.9])
    assert k[0, 0].tolist() == [28, 12]


def test_cli_detect_folder_json_and_errors(official, val_images, tmp_path, capsys):
    _, weights = official["scrfd_500m_kps"]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in val_images[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "zz_corrupt.jpg").write_bytes(b"\xff\xd8garbage")
    out = tmp_path / "d.jsonl"
    rc = main(["detect", str(folder), "--weights", str(weights), "--json-out", str(out),
               "--save-dir", str(tmp_path / "vis"), "--crops"])
    assert rc == 2  # the corrupt file is reported and makes the exit status non-zero
    assert "zz_corrupt.jpg: not a readable image" in capsys.readouterr().err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3
    rec = lines[0]
    assert set(rec) == {"image", "width", "height", "faces"}
    face = rec["faces"][0]
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and 0 < face["score"] <= 1
    assert len(list((tmp_path / "vis").glob("*.jpg"))) == 3
    assert any((tmp_path / "vis" / "crops").glob("*.jpg"))


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["detect", str(tmp_path / "nothing"), "--model", "scrfd_500m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing: no such file or folder" in err[0]
    (tmp_path / "empty").mkdir()
    assert main(["detect", str(tmp_path / "empty"), "--model", "scrfd_500m"]) == 2
    assert "contains no images" in capsys.readouterr().err
    (tmp_path / "w.pt").write_bytes(b"junk")
    cv2.imwrite(str(tmp_path / "empty" / "grey.jpg"), np.full((64, 64, 3), 128, np.uint8))
    assert main(["detect", str(tmp_path / "empty"), "--weights", str(tmp_path / "w.pt")]) == 2
    assert "w.pt: not a leanface weights file" in capsys.readouterr().err


def test_cli_info_json(capsys):
    assert main(["info", "scrfd_2.5g", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "scrfd_2.5g" and info["params"] == 671761 and abs(info["gflops"] - 2.53) < 0.05


def test_demo_writes_annotated_sample(tmp_path, capsys):
    assert main(["demo", "--save-dir", str(tmp_path)]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (record["width"], record["height"]) == (512, 512)
    # The bundled model finds the astronaut's face (true box about [180, 60, 272, 180]).
    x1, y1, x2, y2 = record["faces"][0]["box"]
    assert abs(x1 - 180) < 15 and abs(y1 - 60) < 15 and abs(x2 - 272) < 15 and abs(y2 - 180) < 15
    assert cv2.imread(str(tmp_path / "astronaut.jpg")).shape == (512, 512, 3)


def test_pre_nms_topk_equals_raising_the_score_threshold():
    """Keeping the k best candidates before NMS is the same as a score threshold at the k-th best score."""
    import torch

    from leanface.infer import Detector

    def detector(**kw):
        torch.manual_seed(0)  # the same random weights every time
        return Detector(model="scrfd_500m", size=None, random_init=True, **{"score_thr": 0.0, "nms_thr": 0.4, **kw})

    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    scores = detector(nms_thr=1.0)(img).scores  # IoU never exceeds 1: every candidate, best first
    assert len(scores) == (8 * 8 + 4 * 4 + 2 * 2) * 2 and len(np.unique(scores)) == len(scores)
    k = 20
    everything, cut = detector()(img), detector(pre_nms_topk=k)(img)
    by_threshold = detector(score_thr=float(scores[k - 1]))(img)
    assert 0 < len(cut.scores) <= k < len(everything.scores)
    np.testing.assert_array_equal(cut.boxes, by_threshold.boxes)
    np.testing.assert_array_equal(cut.scores, by_threshold.scores)
    np.testing.assert_array_equal(detector(pre_nms_topk=10_000)(img).boxes, everything.boxes)
    with pytest.raises(LeanfaceError, match="pre_nms_topk must be at least 1"):
        detector(pre_nms_topk=0)


def test_faces_index_like_a_sequence():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 2, 3, 4]], np.float32)
    kps = np.arange(30, dtype=np.float32).reshape(3, 5, 2)
    faces = Faces(boxes, np.array([0.9, 0.8, 0.7], np.float32), kps, 100, 80, "a.jpg")
    first = faces[0]
    assert first.score == pytest.approx(0.9) and first.box.tolist() == [0, 0, 10, 10]
    assert first.landmarks.tolist() == kps[0].tolist()
    assert [f.score for f in faces] == pytest.approx([0.9, 0.8, 0.7])
    kept = faces[faces.scores > 0.75]
    assert isinstance(kept, Faces) and len(kept) == 2 and kept.source == "a.jpg" and kept.width == 100
    assert faces[[2]].boxes.tolist() == [[1, 2, 3, 4]] and faces[1:].landmarks.shape == (2, 5, 2)


@pytest.mark.parametrize("command", [add.__name__[len("_add_"):] for add, _ in COMMANDS])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0 and f"usage: leanface {command}" in capsys.readouterr().out


def test_cli_version(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"leanface {version('leanface')}"
    with pytest.raises(SystemExit) as exc:  # after a command, argparse's own --version answers the same
        main(["--version", "--help"])
    assert exc.value.code == 0
