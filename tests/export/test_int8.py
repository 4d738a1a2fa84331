"""int8 export: statically quantised files run in the Detector / Embedder like float ones and agree with
them on real images (official weights and our bundled embedder); bad calibration inputs are one-line errors."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from leanface import Detector, Embedder, create_model
from leanface.boxes import box_iou
from leanface.cli import main
from leanface.errors import LeanfaceError
from leanface.export import export_int8, export_onnx
from leanface.models import save_checkpoint
from leanface.models.importers import import_weights
from leanface.recognize.embedder import DEFAULT_EMBEDDER

from ..conftest import SHARED, WIDER, need, tiny_wider_val

CALIB = WIDER / "WIDER_train" / "images"
FACES = SHARED / "data" / "recog_train" / "glint_sample"


@pytest.fixture(scope="module")
def int8_500m(official, tmp_path_factory):
    _, weights = official["scrfd_500m_kps"]
    out = tmp_path_factory.mktemp("int8") / "scrfd_500m_kps_int8.onnx"
    report = export_int8(create_model(None, weights), out, need(CALIB), count=16)
    return weights, out, report


def _matched(a, b, iou=0.7):
    """Share of b's faces that a face of a overlaps by at least `iou`."""
    if not len(b):
        return 1.0
    return float((box_iou(b.boxes, a.boxes).max(1) >= iou).mean()) if len(a) else 0.0


def test_int8_detector_agrees_with_float_on_real_photos(int8_500m, val_images):
    weights, path, report = int8_500m
    assert report.calib_images == 16 and not report.calib_skipped
    assert report.float_nodes == ("/net/backbone/stem/stem.0/stem.0.0/Conv",)  # the RGB stem stays float
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "leanface_config" in {p.key for p in model.metadata_props}
    assert report.int8_bytes < 0.4 * report.float_bytes
    q, f = Detector(weights=path), Detector(weights=weights)  # config from the int8 file's metadata
    assert q.config.name == "scrfd_500m_kps"
    found = sum_f = 0
    for img in val_images[:4]:
        a, b = q(img), f(img)
        sum_f += len(b)
        found += _matched(a, b) * len(b)
        assert abs(len(a) - len(b)) <= max(2, 0.2 * len(b))
    assert sum_f > 10 and found / sum_f >= 0.9


def test_int8_file_through_the_cli(int8_500m, tmp_path, capsys):
    weights, _, _ = int8_500m
    out = tmp_path / "q.onnx"
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in sorted(CALIB.rglob("*.jpg"))[:3]:
        (calib / p.name).symlink_to(p)
    (calib / "broken.jpg").write_bytes(b"not a jpeg")
    rc = main(["export", "scrfd_500m_kps", "--weights", str(weights), "--int8", "--calib", str(calib), "-o", str(out)])
    cap = capsys.readouterr()
    assert rc == 0 and "broken.jpg" in cap.err and "int8" in cap.out and "Traceback" not in cap.err
    val, _ = tiny_wider_val(tmp_path)
    assert main(["eval", "--data", str(val), "--weights", str(out), "--json", "--output", str(tmp_path / "ev")]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["images"] == 2 and record["hard"] > 0.3
    assert main(["detect", str(sorted(CALIB.rglob("*.jpg"))[0]), "--weights", str(out), "--json-out",
                 str(tmp_path / "d.jsonl")]) == 0


def test_int8_ssd_family_runs(tmp_path, val_images):
    cfg, state = import_weights(need(SHARED / "models" / "eresfd" / "eresfd_16.pth.base.pth"))
    save_checkpoint(tmp_path / "eresfd.pt", cfg, state)
    net = create_model(None, tmp_path / "eresfd.pt")
    export_int8(net, tmp_path / "eresfd_int8.onnx", need(CALIB), count=8)
    a = Detector(weights=tmp_path / "eresfd_int8.onnx")(val_images[1])
    b = Detector(weights=tmp_path / "eresfd.pt")(val_images[1])
    assert len(b) > 0 and _matched(a, b, 0.5) >= 0.75


def test_int8_embedder_keeps_its_embeddings(tmp_path):
    net = create_model(None, DEFAULT_EMBEDDER)
    export_onnx(net, tmp_path / "f.onnx", threshold=0.5)
    export_int8(net, tmp_path / "q.onnx", need(FACES), count=32, threshold=0.5)
    f, q = Embedder(tmp_path / "f.onnx"), Embedder(tmp_path / "q.onnx")
    assert q.threshold == 0.5 and q.dim == f.dim
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(tmp_path / "q.onnx")).graph.node)
    import cv2

    crops = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
                      for p in sorted(FACES.rglob("*.jpg"))[-16:]])  # the tail: not among the 32 drawn first
    cos = np.einsum("ij,ij->i", f.embed(crops), q.embed(crops))
    assert cos.min() > 0.95, cos.min()


def test_bad_calibration_inputs(tmp_path, capsys, official):
    _, weights = official["scrfd_500m_kps"]
    net = create_model(None, weights)
    with pytest.raises(LeanfaceError, match="calibration folder not found"):
        export_int8(net, tmp_path / "q.onnx", tmp_path / "nosuch")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LeanfaceError, match="no images"):
        export_int8(net, tmp_path / "q.onnx", tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_bytes(b"junk")
    with pytest.raises(LeanfaceError, match="none of the 1 calibration images"):
        export_int8(net, tmp_path / "q.onnx", tmp_path / "junk")
    with pytest.raises(LeanfaceError, match="calibration method"):
        export_int8(net, tmp_path / "q.onnx", tmp_path / "junk", method="kl")
    assert not (tmp_path / "q.onnx").exists()  # nothing half-written
    assert main(["export", "scrfd_500m_kps", "--weights", str(weights), "-o", str(weights), "--int8"]) == 2
    assert "would overwrite an input of this run (the weights)" in capsys.readouterr().err
    assert main(["export", "scrfd_500m_kps", "--weights", str(weights), "-o", str(tmp_path / "f.onnx"),
                 "--calib", str(tmp_path)]) == 2
    assert "--calib is for --int8" in capsys.readouterr().err
