"""The task-level evaluation stage: each model's score on each task with the task's metric.

Accuracy by option scoring for classification, token F1 for short-answer QA, ROUGE-L for other
generation (:func:`layerwise.evaluation.evaluate_task`), on the first ``data.n_eval`` test
examples; one JSON file per (model, task) under ``evaluation/``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..cache import atomic_write_json, content_key
from ..evaluation import evaluate_task
from ..tasks import get_task
from ..vocab import RANDOM_ROLE
from .slots import ModelSlot
from .states import for_each_model, test_key

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ..pipeline import Run

__all__ = ["MAX_NEW_TOKENS", "eval_path", "evaluate"]

#: Cap on generated tokens in the task-level evaluation (each task: its longest reference + 4).
MAX_NEW_TOKENS = 40


def eval_path(run: Run, slot: ModelSlot, task: str) -> Path:
    """File of the task-level evaluation of ``slot``'s model on ``task``."""
    key = content_key([test_key(run, task), run.spec.data.n_eval, "task-metric", MAX_NEW_TOKENS])
    return run.out / "evaluation" / slot.label / f"{run.slug(task)}-metric-{key}.json"


def evaluate(run: Run, progress: bool = True, slots: Sequence[ModelSlot] | None = None) -> pd.DataFrame:
    """Evaluate PT, SFT, held-out SFT and each control (not random-init) on their tasks, cached.

    ``slots`` (default: every slot of the run) restricts the work and the table, e.g. to one slot
    with one task (one job of :mod:`layerwise.plan`).

    Returns:
        DataFrame ``task, cluster, role, metric, value, exact_match, n`` (``exact_match`` NaN
        where the metric has none).
    """
    n_eval = run.spec.data.n_eval
    slots = [s for s in (run.slots if slots is None else slots) if s.role != RANDOM_ROLE]

    def work(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, slot: ModelSlot, task: str) -> None:
        test = run.tasks[task]["test"]
        ev = test.select(range(min(n_eval, len(test))))
        longest = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in ev["target"])
        res = evaluate_task(model, tokenizer, ev, kind=get_task(task).kind, task=task,
                            batch_size=run.spec.extraction.batch_size, max_new_tokens=min(MAX_NEW_TOKENS, longest + 4))
        atomic_write_json(eval_path(run, slot, task), {k: v for k, v in res.items() if k != "predictions"}
                          | {"predictions": res["predictions"][:5]})

    for_each_model(run, slots, lambda slot, task: eval_path(run, slot, task).is_file(), work, "evaluated")
    rows = []
    for slot in slots:
        for task in slot.tasks:
            r = json.loads(eval_path(run, slot, task).read_text())
            rows.append({"task": task, "cluster": run.cluster_of(task), "role": slot.role, "metric": r["metric"],
                         "value": float(r["value"]), "exact_match": r["metrics"].get("exact_match", np.nan), "n": r["n"]})
    return pd.DataFrame(rows)
