"""The task-level evaluation stage: each model's score on each task with the task's metric.

Accuracy by option scoring for classification, token F1 for short-answer QA, ROUGE-L for other
generation (:func:`layerwise.evaluation.evaluate_task`), on the first ``data.n_eval`` test
examples; one JSON file per (model, task) under ``evaluation/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import evaluation as _evaluation
from ..cache import CorruptArtefact, atomic_write_json, content_key, discard_corrupt, read_verified_json
from ..evaluation import evaluate_task
from ..gate import OTHER_CONTROL, control_gate
from ..tasks import get_task
from ..vocab import CONTROL_ROLE, OTHER_ROLE, PT_ROLE, RANDOM_ROLE
from .cached import cached_table, code_digest
from .slots import ModelSlot, gate_other_control, gate_other_keys
from .states import for_each_model, read_loss, run_models, test_key

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ..pipeline import Run

__all__ = ["MAX_NEW_TOKENS", "eval_path", "evaluate", "gate_scores", "gate_table"]

#: Cap on generated tokens in the task-level evaluation (each task: its longest reference + 4).
MAX_NEW_TOKENS = 40


def eval_path(run: Run, slot: ModelSlot, task: str) -> Path:
    """File of the task-level evaluation of ``slot``'s model on ``task``."""
    key = content_key({"test": test_key(run, task), "n_eval": run.spec.data.n_eval, "max_new_tokens": MAX_NEW_TOKENS,
                       "code": code_digest([_evaluation, work_on])})
    return run.out / "evaluation" / slot.label / f"{run.slug(task)}-metric-{key}.json"


def work_on(run: Run, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, slot: ModelSlot, task: str) -> None:
    """Evaluate one model on one task's first ``n_eval`` test examples and write the result: the
    metric's mean, the first predictions, and every example's score (``ids``, ``scores``)."""
    test = run.tasks[task]["test"]
    ev = test.select(range(min(run.spec.data.n_eval, len(test))))
    longest = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in ev["target"])
    res = evaluate_task(model, tokenizer, ev, kind=get_task(task).kind, task=task,
                        batch_size=run.spec.extraction.batch_size, max_new_tokens=min(MAX_NEW_TOKENS, longest + 4))
    scores = [float(p[res["metric"]]) for p in res["predictions"]]
    atomic_write_json(eval_path(run, slot, task), {k: v for k, v in res.items() if k != "predictions"}
                      | {"predictions": res["predictions"][:5], "ids": list(ev["id"]), "scores": scores})


def _read_eval(run: Run, slot: ModelSlot, task: str) -> dict:
    """A model's evaluation on a task, verified when read; a corrupt file is reported, removed and recomputed."""
    required = ("metric", "value", "metrics", "n", "ids", "scores")
    try:
        return read_verified_json(eval_path(run, slot, task), required)
    except CorruptArtefact as err:
        discard_corrupt(err)
        evaluate(run, progress=False)
        return read_verified_json(eval_path(run, slot, task), required)


def _eval_slots(run: Run) -> list[ModelSlot]:
    """The models evaluated: every model of the main design but random-init, and the other-task
    controls (each only on the tasks where the gate reads it, see :func:`evaluate`)."""
    return [s for s in run.slots if s.role != RANDOM_ROLE] + [s for s in run.extra_slots if s.role == OTHER_ROLE]


def evaluate(run: Run, progress: bool = True, slots: Sequence[ModelSlot] | None = None) -> pd.DataFrame:
    """Evaluate PT, SFT, held-out SFT and each control (not random-init) on their tasks, cached.

    ``slots`` (default: every slot of the run) restricts the work and the table, e.g. to one slot
    with one task (one job of :mod:`layerwise.plan`).

    Returns:
        DataFrame ``task, cluster, role, metric, value, exact_match, n`` (``exact_match`` NaN
        where the metric has none).
    """
    slots = _eval_slots(run) if slots is None else [s for s in slots if s.role != RANDOM_ROLE]
    others = gate_other_keys(run.slots, run.extra_slots, run.spec.tasks)
    # an other-task control is evaluated only where the gate reads it (its first sibling's inputs)
    skip = lambda slot, task: slot.role == OTHER_ROLE and slot.key != others.get(task)  # noqa: E731
    for_each_model(run, slots, lambda slot, task: skip(slot, task) or eval_path(run, slot, task).is_file(),
                   lambda model, tokenizer, slot, task: work_on(run, model, tokenizer, slot, task), "evaluated")
    rows = []
    for slot in (s for s in slots if s.role != OTHER_ROLE):
        for task in slot.tasks:
            r = _read_eval(run, slot, task)
            rows.append({"task": task, "cluster": run.cluster_of(task), "role": slot.role, "metric": r["metric"],
                         "value": float(r["value"]), "exact_match": r["metrics"].get("exact_match", np.nan), "n": r["n"]})
    return pd.DataFrame(rows)


def gate_scores(run: Run) -> pd.DataFrame:
    """Per-example scores of PT, each control and another task's control on each task's evaluation examples.

    The other task's control is the control of the task's first sibling (:func:`~layerwise.stages.slots.gate_other_control`),
    when the run has the ``other_task`` baseline.

    Returns:
        DataFrame ``task, role, id, metric, value, nll`` (``role``: ``PT``, ``control``, ``other control``;
        ``value``: the example's task-metric score; ``nll``: its response NLL without EOS, nats per
        token), the input of :func:`layerwise.gate.control_gate`.
    """
    evaluate(run, progress=False)
    run_models(run, states=False)
    rows = []
    for task in run.spec.tasks:
        models = [(PT_ROLE, run.slot(PT_ROLE, task)), (CONTROL_ROLE, run.slot(CONTROL_ROLE, task))]
        other = gate_other_control(run.slots, run.extra_slots, run.spec.tasks, task)
        models += [(OTHER_CONTROL, other)] if other else []
        for role, slot in models:
            ev, loss = _read_eval(run, slot, task), read_loss(run, slot, task)
            nll = dict(zip(loss["ids"], loss["loss_no_eos"]))
            rows += [{"task": task, "role": role, "id": i, "metric": ev["metric"], "value": v, "nll": nll[i]}
                     for i, v in zip(ev["ids"], ev["scores"])]
    return pd.DataFrame(rows)


def gate_table(run: Run, *, n_boot: int = 2000) -> pd.DataFrame:
    """The "learned its task" gate of every control (:func:`layerwise.gate.control_gate`), cached.

    Returns:
        One row per task with :data:`layerwise.gate.GATE_COLUMNS` plus ``cluster``. Cached in
        ``tables/gate-<key>.parquet``.
    """
    scores = gate_scores(run)
    parts = {"scores": content_key(scores.to_dict("list")), "n_boot": n_boot, "seed": run.spec.data.seed}
    compute = lambda: control_gate(scores, n_boot=n_boot, seed=run.spec.data.seed).assign(  # noqa: E731
        cluster=lambda d: d["task"].map(run.cluster_of))
    return cached_table(run.out / "tables", "gate", parts, compute, code=[control_gate, gate_scores], log=run.log, frozen=run.spec.frozen)
