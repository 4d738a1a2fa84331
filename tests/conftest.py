"""Shared fixtures: the ../shared folder (real data and official weights), read in place."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WIDER = SHARED / "data" / "widerface"
OFFICIAL_ONNX = SHARED / "models" / "scrfd_onnx"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared holds the real data and official weights)")
    return path


@pytest.fixture(scope="session")
def val_images() -> list[Path]:
    root = need(WIDER / "WIDER_val" / "images")
    return sorted(root.rglob("*.jpg"))


@pytest.fixture(scope="session")
def official(tmp_path_factory):
    """Official ONNX files imported once per session: {zoo name: (onnx path, leanface .pt path)}."""
    from leanface.models import save_checkpoint
    from leanface.models.importers import import_weights

    out = tmp_path_factory.mktemp("official")
    result = {}
    for fname, model in (("det_500m.onnx", "scrfd_500m_kps"), ("det_2.5g.onnx", "scrfd_2.5g_kps")):
        src = need(OFFICIAL_ONNX / fname)
        cfg, state = import_weights(src)
        assert cfg.name == model
        save_checkpoint(out / f"{model}.pt", cfg, state)
        result[model] = (src, out / f"{model}.pt")
    return result
