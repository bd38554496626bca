"""The adapters stage: the multi-task mixture, then one LoRA adapter per model that needs one.

SFT is trained on the training splits of all tasks, held-out SFT on all but the spec's
``heldout_tasks`` (the paper's RQ3, §5), and each control on its own task alone (§3). Training
itself is :func:`layerwise.training.train_adapter`, which reuses an adapter already on disk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import training  # called as training.train_adapter, so tests can replace it
from ..cache import content_key, read_json, stale_result
from ..models import model_fingerprint
from ..tasks import cap_per_cluster
from ..spec import TrainingSpec
from .slots import SEED_MARK, adapter_name, adapter_role

if TYPE_CHECKING:
    from ..pipeline import Run

__all__ = ["Examples", "mixture", "adapter_jobs", "adapter_recipe", "adapter_kwargs", "train_one", "train_adapters",
           "planned_adapters", "training_log",
           "training_summary"]

#: Training examples as parallel lists: (prompts, targets, example ids).
Examples = tuple[list[str], list[str], list[str]]


def mixture(run: Run, exclude: tuple[str, ...] = ()) -> Examples:
    """Training examples of the multi-task mixture (prompts, targets, ids), tasks in spec order.

    With ``data.max_train_per_cluster`` the cluster's cap is spread over its tasks by
    :func:`layerwise.tasks.cap_per_cluster` (deterministic given the seed).

    Args:
        run: the run. exclude: tasks left out of the mixture (the held-out tasks).
    """
    chosen = {t: dd["train"] for t, dd in run.tasks.items() if t not in exclude}
    cap = run.spec.data.max_train_per_cluster
    plan = cap_per_cluster({t: len(tr) for t, tr in chosen.items()}, run.cluster_of, cap or None, seed=run.spec.data.seed)
    prompts: list[str] = []
    targets: list[str] = []
    ids: list[str] = []
    for t, tr in chosen.items():
        n = plan[t]
        prompts += list(tr["prompt"])[:n]
        targets += list(tr["target"])[:n]
        ids += list(tr["id"])[:n]
    return prompts, targets, ids


def adapter_jobs(run: Run) -> list[tuple[str, Examples]]:
    """The adapters the run needs, as (name, training examples), in training order.

    ``sft`` (unless an off-the-shelf experimental model replaces it) and ``sft-heldout`` (if tasks are
    held out) for every seed of ``training.seeds`` (replicates named ``sft+seed<k>``), then
    ``control-<slug>`` per task, then the control replicates ``control-<slug>+seed<k>`` of the
    control-seed ceiling. Each adapter's recipe is :func:`adapter_recipe`.
    """
    tr = run.spec.training
    first = tr.sft_seeds[0]
    jobs: list[tuple[str, Examples]] = []
    for seed in tr.sft_seeds:
        if not run.spec.experimental_model:
            jobs.append((adapter_name("sft", seed, first), mixture(run)))
        if run.spec.heldout_tasks:
            jobs.append((adapter_name("sft-heldout", seed, first), mixture(run, exclude=run.spec.heldout_tasks)))
    controls = []
    for name, dd in run.tasks.items():
        split = dd["train"]
        controls.append((f"control-{run.slug(name)}", (list(split["prompt"]), list(split["target"]), list(split["id"]))))
    jobs += controls
    for seed in tr.control_seeds:
        jobs += [(adapter_name(name, seed, tr.seed), ex) for name, ex in controls[: tr.ceiling_tasks]]
    return jobs


def adapter_recipe(run: Run, name: str) -> TrainingSpec:
    """The recipe one adapter is trained with: the spec's, with the adapter's own seed (the first of
    ``training.seeds`` for ``sft``/``sft-heldout``, the replicate's for ``...+seed<k>``) and, for a
    control, ``training.control_epochs``."""
    tr = run.spec.training
    base, _, seed = name.partition(SEED_MARK)
    control = base.startswith("control-")
    default = tr.seed if control else tr.sft_seeds[0]
    return tr.for_adapter(seed=int(seed) if seed else default, control=control)


def adapter_kwargs(run: Run, name: str, examples: Examples) -> dict[str, Any]:
    """The arguments :func:`layerwise.training.train_adapter` (and :func:`layerwise.training.adapter_location`)
    get for one adapter of :func:`adapter_jobs`: its examples, its recipe, the spec's dtype and grouping."""
    p, t, i = examples
    return {"name": name, "base_model": run.spec.base_model, "prompts": p, "targets": t, "example_ids": i,
            "spec": adapter_recipe(run, name), "adapters_dir": run.out / "adapters",
            "dtype": run.spec.training.dtype, "group_by_length": run.spec.training.group_by_length}


def train_one(run: Run, name: str, examples: Examples, progress: bool = True,
              callbacks: Sequence[Any] = ()) -> training.AdapterResult:
    """Train or reuse one adapter of :func:`adapter_jobs` (under ``<output>/adapters``), with a progress line.

    Args:
        run: the run. name, examples: one item of :func:`adapter_jobs`. progress: the Trainer's bar.
        callbacks: extra ``transformers.TrainerCallback`` objects (see :func:`layerwise.training.train_adapter`).

    Raises:
        StaleResult: the spec is ``frozen`` and the adapter is not on disk under its current key.
    """
    if run.spec.frozen:
        _, path = training.adapter_location(**adapter_kwargs(run, name, examples))
        if not (path / "layerwise_adapter.json").is_file():
            raise stale_result(path, f"the adapter {name}")
    t0 = time.perf_counter()
    res = training.train_adapter(**adapter_kwargs(run, name, examples), progress=progress and run.verbose,
                                 callbacks=callbacks)
    status = "reused" if res.reused else f"trained in {time.perf_counter() - t0:.0f} s"
    run.log(f"adapter {name}: {status} ({len(examples[0])} examples)")
    return res


def train_adapters(run: Run, progress: bool = True) -> dict[str, training.AdapterResult]:
    """Train or reuse every adapter of :func:`adapter_jobs` (under ``<output>/adapters``).

    Returns:
        Adapter name -> :class:`layerwise.training.AdapterResult`, in job order.
    """
    return {name: train_one(run, name, examples, progress) for name, examples in adapter_jobs(run)}


def planned_adapters(run: Run) -> dict[str, training.AdapterResult]:
    """Every adapter of :func:`adapter_jobs` at the folder :func:`layerwise.training.train_adapter` gives it,
    without training: the key is :func:`layerwise.training.adapter_key` of the same inputs.

    What a job on a cluster worker needs to find the adapters other jobs trained (their keys
    name the folders of the hidden states), before some of them exist. An adapter already on
    disk comes with its log and seconds (``reused=True``); one not yet trained has an empty log,
    ``reused=False`` and ``seconds`` NaN, and its ``path`` does not exist yet.

    Returns:
        Adapter name -> :class:`layerwise.training.AdapterResult`, in job order.
    """
    out: dict[str, training.AdapterResult] = {}
    for name, (p, t, i) in adapter_jobs(run):
        key, path = training.adapter_location(**adapter_kwargs(run, name, (p, t, i)))
        if (path / "layerwise_adapter.json").is_file():
            out[name] = training.AdapterResult(name, path, key, read_json(path / "training_log.json"), True,
                                               read_json(path / "layerwise_adapter.json")["seconds"])
        else:
            out[name] = training.AdapterResult(name, path, key, [], False, math.nan)
    return out


def training_log(run: Run) -> pd.DataFrame:
    """Tidy training log: ``adapter, role, task, step, epoch, loss, learning_rate`` (one row per logged step)."""
    slugs = {run.slug(t): t for t in run.spec.tasks}
    rows = []
    for name, res in run.adapters.items():
        role = adapter_role(name)
        base = name.partition(SEED_MARK)[0]
        task = slugs.get(base.removeprefix("control-")) if base.startswith("control-") else None
        for rec in res.log:
            rows.append({"adapter": name, "role": role, "task": task, **rec})
    return pd.DataFrame(rows)


def training_summary(run: Run) -> pd.DataFrame:
    """One row per adapter: examples, optimiser steps, first/last loss, seconds, reused."""
    return pd.DataFrame([training.adapter_summary(r) for r in run.adapters.values()])
