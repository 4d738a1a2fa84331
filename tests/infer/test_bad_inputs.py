"""Bad flags, arguments and inputs: one line naming what is wrong, exit status 2, never a traceback.
The CLI and the Python API apply the same rules (the CLI's flags feed the Detector's arguments)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from leanface import Detector
from leanface.cli import main
from leanface.errors import LeanfaceError
from leanface.infer import sample_image

BAD_FLAGS = [
    (["--size", "-5"], "size must be at least 32"),
    (["--size", "0"], "size must be at least 32"),
    (["--threads", "-2"], "threads must be at least 1"),
    (["--max-faces", "-1"], "max_faces must be at least 1"),
    (["--max-faces", "0"], "max_faces must be at least 1"),
    (["--score-thr", "2"], "score_thr must be a number in [0, 1]"),
    (["--score-thr", "-1"], "score_thr must be a number in [0, 1]"),
    (["--nms-thr", "1.5"], "nms_thr must be a number in [0, 1]"),
    (["--batch-size", "0"], "batch_size must be at least 1"),
    (["--batch-size", "-3"], "batch_size must be at least 1"),
    (["--pre-nms-topk", "0"], "pre_nms_topk must be at least 1"),
]


@pytest.mark.parametrize("flags,message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_detector_flag(val_images, flags, message, capsys):
    assert main(["detect", str(val_images[0]), "--model", "scrfd_500m", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0], err


@pytest.mark.parametrize("kwargs", [{"size": 0}, {"size": -5}, {"threads": -2}, {"max_faces": -1},
                                    {"score_thr": 2.0}, {"batch_size": 0}])
def test_bad_detector_argument(kwargs):
    with pytest.raises(LeanfaceError, match="must be"):
        Detector("scrfd_500m", random_init=True, **kwargs)


@pytest.mark.parametrize("image,message", [(None, "got None instead of an image"),
                                           (b"\xff\xd8\xff", "got encoded bytes"),
                                           (42, "expected a numpy array, a PIL image or a path")])
def test_bad_image_objects(image, message):
    with pytest.raises(LeanfaceError, match=message):
        Detector("scrfd_500m", random_init=True)(image)


def test_pil_images_are_accepted():
    from PIL import Image

    det = Detector("scrfd_500m", size=160, score_thr=0.3, random_init=True)
    rgb = sample_image()
    a, b = det(Image.fromarray(rgb)), det(rgb)
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_a_non_detector_onnx_file(val_images, tmp_path, capsys):
    path = tmp_path / "conv.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 2, 1).eval(), torch.randn(1, 3, 32, 32), str(path), input_names=["input.1"],
                      dynamo=False)
    assert main(["detect", str(val_images[0]), "--weights", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a SCRFD layout" in err[0] and "--model" in err[0]
    assert main(["detect", str(val_images[0]), "--weights", str(path), "--model", "scrfd_500m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 outputs, but scrfd_500m has 6" in err[0]
