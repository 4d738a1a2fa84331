"""Weight import: mmdet checkpoints by key, inference of the model, clear errors."""
import pytest
import torch

from leanface.cli import main
from leanface.errors import LeanfaceError
from leanface.models import create_model, read_checkpoint
from leanface.models.importers import import_weights


def _mmdet_checkpoint(path, model):
    torch.manual_seed(1)
    net = create_model(model)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    state["bbox_head.integral.project"] = torch.linspace(0, 8, 9)  # present in official files, unused
    torch.save({"meta": {"epoch": 640, "mmdet_version": "2.7.0"}, "state_dict": state}, path)
    return state


@pytest.mark.parametrize("model", ["scrfd_1g", "scrfd_10g_kps"])
def test_mmdet_checkpoint_keys_load_and_model_is_inferred(tmp_path, model):
    state = _mmdet_checkpoint(tmp_path / "epoch_640.pth", model)
    out = tmp_path / "ours.pt"
    assert main(["convert", str(tmp_path / "epoch_640.pth"), "-o", str(out)]) == 0
    cfg, loaded = read_checkpoint(out)
    assert cfg.name == model
    assert torch.equal(loaded["bbox_head.stride_reg.0.weight" if "kps" not in model
                              else "bbox_head.stride_reg.(16, 16).weight"],
                       state["bbox_head.stride_reg.0.weight" if "kps" not in model
                             else "bbox_head.stride_reg.(16, 16).weight"])
    net = create_model(None, out)
    assert torch.equal(net.backbone.stem[0][0].weight if "1g" in model else net.backbone.stem[0].weight,
                       state["backbone.stem.0.0.weight" if "1g" in model else "backbone.stem.0.weight"])


def test_mismatched_files_are_named(tmp_path):
    _mmdet_checkpoint(tmp_path / "a.pth", "scrfd_500m")
    with pytest.raises(LeanfaceError, match=r"a.pth: matches no SCRFD model \(scrfd_2.5g: missing key"):
        import_weights(tmp_path / "a.pth", "scrfd_2.5g")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01junk")
    with pytest.raises(LeanfaceError, match="junk.onnx: not a readable ONNX file"):
        import_weights(tmp_path / "junk.onnx")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(LeanfaceError, match="x.txt: unrecognised weights file"):
        import_weights(tmp_path / "x.txt")
    with pytest.raises(LeanfaceError, match="nope.onnx: file not found"):
        import_weights(tmp_path / "nope.onnx")
