"""The task table: one record per task leanface serves, and the one name it goes by everywhere (a model
family's `task`, the pretrained table, the search's `task`, the CLI's `--task`).

Each record names the parts that serve the task as "module:attribute": the runtime class that runs its
models, the training adapter (`train.adapter.TaskAdapter`), the evaluator, the search space and the
validation metric a search maximises. Parts are imported on use, so the table sits below every layer and
looking a task up imports nothing.

    tasks.get("embed").load("trainer")      # -> leanface.train.recognition.RecognitionTask
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from .errors import LeanfaceError


@dataclass(frozen=True)
class Task:
    """name: the task's one name. runtime: the class that runs a model of the task on images. trainer: its
    training adapter. evaluator: the function that scores a model of the task on its benchmark (None: the
    training adapter's own `evaluate` is the only one). search: the search space (None: no search).
    metric: the validation metric that ranks models of the task (a search's objective). what: one line."""

    name: str
    runtime: str
    trainer: str
    evaluator: str | None
    search: str | None
    metric: str
    what: str

    def load(self, part: str):
        """The object a part names ("runtime", "trainer", "evaluator" or "search")."""
        spec = getattr(self, part)
        if spec is None:
            raise LeanfaceError(f"the {self.name} task has no {part}")
        module, attr = spec.split(":")
        return getattr(importlib.import_module(module), attr)


TASKS = {t.name: t for t in (
    Task("detect", runtime="leanface.infer.detector:Detector", trainer="leanface.train.detection:DetectionTask",
         evaluator="leanface.eval.report:evaluate_detector", search="leanface.search.spaces:DETECT",
         metric="hard", what="face boxes and five landmarks in photos (WIDER FACE AP)"),
    Task("embed", runtime="leanface.recognize.embedder:Embedder", trainer="leanface.train.recognition:RecognitionTask",
         evaluator="leanface.eval.pairs_eval:evaluate_pairs", search="leanface.search.spaces:EMBED",
         metric="dev_acc", what="an embedding per aligned face (LFW verification)"),
    Task("quality", runtime="leanface.recognize.quality:QualityScorer", trainer="leanface.train.quality:QualityTask",
         evaluator=None, search=None,
         metric="dev_spearman", what="a recognisability score per aligned face (QAN++'s quality branch)"),
)}


def get(name: str) -> Task:
    if name not in TASKS:
        raise LeanfaceError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def with_part(part: str) -> tuple[str, ...]:
    """The names of the tasks that have a part ("search": the tasks a search can run)."""
    return tuple(name for name, t in TASKS.items() if getattr(t, part) is not None)
