"""The data stage: each task's train and test splits with the spec's data settings, and their summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..spec import RunSpec
from ..tasks import CLUSTERS, get_task, load_task

if TYPE_CHECKING:
    from datasets import DatasetDict

    from ..pipeline import Run

__all__ = ["load_split", "task_table"]

#: Fields of :class:`layerwise.tasks.TaskInfo` shown in the task table, in order.
_INFO_FIELDS = ("kind", "dataset", "source", "origin_split", "licence")


def load_split(spec: RunSpec, task: str, template_shift: int = 0) -> DatasetDict:
    """:func:`layerwise.tasks.load_task` with the spec's data settings.

    Args:
        spec: the run's spec (its ``data`` section: sizes, seed, templates, chat template, ...).
        task: a task name of the catalogue.
        template_shift: render each example with template ``(chosen + shift) mod n_templates``.

    Returns:
        ``datasets.DatasetDict`` with ``train`` and ``test`` splits.
    """
    d = spec.data
    return load_task(task, n_train=d.n_train, n_test=d.n_test, seed=d.seed, max_input_chars=d.max_input_chars,
                     templates=d.templates, chat_template=d.chat_template, allow_downsize=d.allow_downsize,
                     template_shift=template_shift)


def task_table(run: Run) -> pd.DataFrame:
    """One row per task: cluster, kind, provenance, split sizes, mean prompt length (characters)."""
    rows = []
    for name, dd in run.tasks.items():
        info = get_task(name)
        rows.append({"task": name, "cluster": info.cluster, "cluster_name": CLUSTERS[info.cluster],
                     **{field: getattr(info, field) for field in _INFO_FIELDS},
                     "held_out": name in run.spec.heldout_tasks, "n_train": len(dd["train"]), "n_test": len(dd["test"]),
                     "prompt_chars_mean": float(np.mean([len(p) for p in dd["test"]["prompt"]]))})
    return pd.DataFrame(rows)
