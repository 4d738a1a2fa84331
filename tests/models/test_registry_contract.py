"""The contract every registered model keeps, whatever its family: one test per model, no per-family copies.

A family that registers itself (leanface.models.registry.Family) gets, with no other code: a config that
round-trips through JSON, a model that trains (every parameter gets a gradient), a FLOPs count, an ONNX
export equal to PyTorch, and a Detector that reads the exported file alone and agrees with the PyTorch one.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from leanface import Detector
from leanface.export import export_onnx
from leanface.infer import onnx_session, sample_image
from leanface.models import (build_model, config_from_dict, create_model, get_config, get_family, list_models,
                             save_checkpoint)
from leanface.models.flops import count_flops

MODELS = list_models()


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


def _perturb(net: torch.nn.Module) -> torch.nn.Module:
    """Random BatchNorm statistics and biases, so parity checks are not satisfied by defaults."""
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
        if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
            m.bias.data.uniform_(-1, 1)
    return net.eval()


def _input_hw(cfg) -> tuple[int, int]:
    """A test input: an odd detector canvas, or the embedder's fixed crop size."""
    size = getattr(cfg, "input_size", None)
    return (size, size) if size else (96, 128)


def test_the_registry_holds_every_family():
    assert {get_config(name).family for name in MODELS} == {"scrfd", "eresfd", "extd", "mobilefacenet", "qualitynet"}
    assert {get_family(get_config(name).family).task for name in MODELS} == {"detect", "embed", "quality"}
    assert len(MODELS) == 18  # 8 SCRFD, EResFD, 3 EXTD, 5 MobileFaceNets, the quality net


@pytest.mark.parametrize("name", MODELS)
def test_config_round_trip(name):
    cfg = get_config(name)
    family = get_family(cfg.family)
    assert isinstance(cfg, family.config_cls) and family.task in ("detect", "embed", "quality")
    assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_reaches_every_parameter(name):
    cfg = get_config(name)
    net = build_model(cfg).train()
    outputs = _tensors(net(torch.randn(2, 3, *_input_hw(cfg))))
    assert outputs and all(torch.isfinite(t).all() for t in outputs)
    sum(t.float().sum() for t in outputs).backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_flops_are_counted(name):
    cfg = get_config(name)
    report = count_flops(create_model(name), (3, *(_input_hw(cfg) if hasattr(cfg, "input_size") else (480, 640))))
    params = sum(p.numel() for p in create_model(name).parameters())
    assert report.gflops > 0.02 and report.params == params  # the quality net: 0.028 G at 112x112


@pytest.mark.parametrize("name", MODELS)
def test_export_parity_and_detector_on_the_exported_file(name, tmp_path):
    net = _perturb(create_model(name))
    path = tmp_path / f"{name}.onnx"
    export_onnx(net, path)
    sess = onnx_session(path, threads=1)
    assert [o.name for o in sess.get_outputs()] == net.output_names
    assert sess.get_inputs()[0].name == "input.1"  # the official SCRFD files' input name, for every family
    sizes = [(1, (160, 224)), (2, (128, 96))] if get_family(net.cfg.family).task == "detect" else \
        [(1, _input_hw(net.cfg)), (3, _input_hw(net.cfg))]
    for batch, (h, w) in sizes:
        x = torch.randn(batch, 3, h, w) * 50
        with torch.no_grad():
            ref = [t.numpy() for t in net.forward_export(x)]
        for a, b in zip(ref, sess.run(None, {sess.get_inputs()[0].name: x.numpy()})):
            assert a.shape == b.shape
            assert np.abs(a - b).max() < 2e-3 * max(1.0, float(np.abs(a).max()))
    if get_family(net.cfg.family).task != "detect":
        return
    # The exported file alone (its config is in the metadata) detects what the PyTorch model does.
    save_checkpoint(tmp_path / "w.pt", net.cfg, net.state_dict())
    image = sample_image()
    ours = Detector(weights=tmp_path / "w.pt", size=160, score_thr=0.3, max_faces=50)(image)
    onnx = Detector(weights=path, size=160, score_thr=0.3, max_faces=50)(image)
    _assert_same_faces(onnx, ours)


def _assert_same_faces(a, b, score_tol: float = 1e-3, box_tol: float = 0.5) -> None:
    """The same detections up to the order of (near-)tied scores: a one-to-one match within tolerance."""
    assert len(a) == len(b) and len(a) > 0
    free = np.ones(len(b), bool)
    for score, box in zip(a.scores, a.boxes):
        near = free & (np.abs(b.scores - score) <= score_tol) & (np.abs(b.boxes - box).max(1) <= box_tol)
        assert near.any(), (score, box)
        free[np.flatnonzero(near)[0]] = False
