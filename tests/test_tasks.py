"""The task table is the one place tasks are named: every family, pretrained record and search record uses its
names, and every part a record names exists and has the shape its user expects."""
from __future__ import annotations

import inspect

import pytest

from leanface import pretrained, tasks
from leanface.errors import LeanfaceError
from leanface.models.registry import get_config, get_family, list_models


def test_every_model_and_pretrained_record_names_a_task_of_the_table():
    assert {get_family(get_config(name).family).task for name in list_models()} == set(tasks.TASKS)
    assert {p.task for p in pretrained.PRETRAINED.values()} <= set(tasks.TASKS)
    assert {pretrained.default(name).task for name in tasks.TASKS} == set(tasks.TASKS)


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_the_parts_of_a_task_exist(name):
    from leanface.train.adapter import TaskAdapter

    task = tasks.get(name)
    runtime = task.load("runtime")
    assert inspect.isclass(runtime) and callable(runtime)
    trainer = task.load("trainer")
    # The protocol's methods are the class's; its data attributes (and the embed task's keys) are set per run.
    for attr in ("collate", "loss", "evaluate", "describe", "summary"):
        assert callable(getattr(trainer, attr, None)), f"{trainer.__name__} lacks {attr} ({TaskAdapter.__name__})"
    assert task.metric in getattr(trainer, "eval_keys", (task.metric,))
    if task.evaluator is not None:
        assert callable(task.load("evaluator"))
    if task.search is not None:
        space = task.load("search")
        assert space.task == name and callable(space.trial) and callable(space.prepare)
    else:
        with pytest.raises(LeanfaceError, match=f"the {name} task has no search"):
            task.load("search")


def test_an_unknown_task_is_a_one_line_error():
    with pytest.raises(LeanfaceError, match="unknown task 'detection'; known: detect, embed, quality"):
        tasks.get("detection")
