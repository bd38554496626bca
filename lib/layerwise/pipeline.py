"""The MOSSA run: task data -> LoRA adapters -> hidden states -> CKA table, each stage cached.

:class:`Run` is what notebooks and the CLI use. Every stage computes what is missing and reuses
what is on disk (keyed by content), so the notebooks can call the stages freely and a second
``make book`` only reads. The three kinds of model of the paper's design (``paper.md`` §2):

* **PT** - the pre-trained base model, no adapter;
* **SFT** - the base plus one LoRA adapter trained on the training splits of *all* tasks (the
  multi-task instruction-tuned, "experimental" model);
* **control** - for each task ``t``, the base plus a LoRA adapter trained on task ``t`` alone.

For every task, hidden states of all three on the task's test prompts (same prompts, same order)
give CKA(PT, control_t) and CKA(SFT, control_t) per layer.
"""

from __future__ import annotations

import json
import os
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .cache import atomic_path, atomic_write_json, content_key
from .spec import RunSpec, load_spec

__all__ = ["Run", "COMPARISONS", "MODEL_ROLES"]

#: Model roles, in the order the book shows them.
MODEL_ROLES = ("PT", "SFT", "control")
#: The paper's two comparisons (experimental model vs the task's control).
COMPARISONS = {"PT vs control": ("PT", "control"), "SFT vs control": ("SFT", "control")}


def _write_parquet(df: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path


class Run:
    """One run of the book, defined by a :class:`~layerwise.spec.RunSpec`.

    Output layout under ``spec.output_path``::

        adapters/<sft|control-TASK>-<key>/      LoRA adapters (safetensors) + training logs
        hidden_states/<role>-<key>/<task>-<key>.safetensors
        tables/*.parquet                         tidy result tables the notebooks read
        run.json                                 the spec as run
    """

    def __init__(self, spec: RunSpec, *, verbose: bool = True):
        self.spec = spec
        self.verbose = verbose
        self.out = spec.output_path
        self.out.mkdir(parents=True, exist_ok=True)
        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        atomic_write_json(self.out / "run.json", spec.to_dict())

    @classmethod
    def from_spec(cls, path: str | os.PathLike[str] | None = None, overrides: Any = (), *, verbose: bool = True) -> "Run":
        """Load and validate a spec (see :func:`layerwise.spec.load_spec`) and open its run.

        ``verbose=False`` (used by the notebooks) silences the progress lines of the stages.
        """
        return cls(load_spec(path, overrides), verbose=verbose)

    def log(self, message: str) -> None:
        """Print a progress line (CLI runs); silent when ``verbose`` is False."""
        if self.verbose:
            print(f"[layerwise] {message}", flush=True)

    # ------------------------------------------------------------------ data
    @cached_property
    def tasks(self) -> dict[str, Any]:
        """Task name -> ``datasets.DatasetDict`` with ``train`` and ``test`` splits (see ``layerwise.tasks``)."""
        from .tasks import load_task

        d = self.spec.data
        return {
            t: load_task(t, n_train=d.n_train, n_test=d.n_test, seed=d.seed, max_input_chars=d.max_input_chars,
                         templates=d.templates)
            for t in self.spec.tasks
        }

    def task_table(self) -> pd.DataFrame:
        """One row per task: cluster, kind, provenance, split sizes, mean prompt length (characters)."""
        from .tasks import CLUSTERS, get_task

        rows = []
        for name, dd in self.tasks.items():
            info = get_task(name)
            rows.append(
                {
                    "task": name,
                    "cluster": info.cluster,
                    "cluster_name": CLUSTERS[info.cluster],
                    "kind": info.kind,
                    "dataset": info.dataset,
                    "source": info.source,
                    "origin_split": info.origin_split,
                    "licence": info.licence,
                    "n_train": len(dd["train"]),
                    "n_test": len(dd["test"]),
                    "prompt_chars_mean": float(np.mean([len(p) for p in dd["test"]["prompt"]])),
                }
            )
        return pd.DataFrame(rows)

    # ------------------------------------------------------------- adapters
    def _adapters_dir(self) -> Path:
        return self.out / "adapters"

    def train(self, progress: bool = True) -> dict[str, Any]:
        """Train or reuse the multi-task SFT adapter and one control adapter per task.

        Returns:
            dict: ``"sft"`` and ``"control-<task>"`` -> :class:`layerwise.training.AdapterResult`.
        """
        from .training import train_adapter

        results: dict[str, Any] = {}
        jobs: list[tuple[str, list[str], list[str], list[str]]] = []
        p_all: list[str] = []
        t_all: list[str] = []
        i_all: list[str] = []
        for name, dd in self.tasks.items():
            tr = dd["train"]
            p, t, i = list(tr["prompt"]), list(tr["target"]), list(tr["id"])
            jobs.append((f"control-{name}", p, t, i))
            p_all += p
            t_all += t
            i_all += i
        jobs.insert(0, ("sft", p_all, t_all, i_all))
        for name, p, t, i in jobs:
            t0 = time.perf_counter()
            res = train_adapter(name=name, base_model=self.spec.base_model, prompts=p, targets=t, example_ids=i,
                                spec=self.spec.training, adapters_dir=self._adapters_dir(),
                                progress=progress and self.verbose)
            status = "reused" if res.reused else f"trained in {time.perf_counter() - t0:.0f} s"
            self.log(f"adapter {name}: {status} ({len(p)} examples)")
            results[name] = res
        self.__dict__["adapters"] = results  # fill the cached property
        return results

    @cached_property
    def adapters(self) -> dict[str, Any]:
        """The adapters of this run (trained on first access)."""
        return self.train()

    def training_log(self) -> pd.DataFrame:
        """Tidy training log: ``adapter, role, task, step, epoch, loss, learning_rate``."""
        rows = []
        for name, res in self.adapters.items():
            role = "SFT" if name == "sft" else "control"
            task = None if name == "sft" else name.removeprefix("control-")
            for rec in res.log:
                rows.append({"adapter": name, "role": role, "task": task, **rec})
        return pd.DataFrame(rows)

    def training_summary(self) -> pd.DataFrame:
        """One row per adapter: examples, optimiser steps, first/last loss, seconds, reused."""
        from .training import adapter_summary

        return pd.DataFrame([adapter_summary(r) for r in self.adapters.values()])

    # ----------------------------------------------------- model passes
    def _model_plan(self) -> list[tuple[str, str, Path | None, list[str]]]:
        """(role, model key, adapter path, tasks) for every model that must be run."""
        from .models import model_fingerprint

        base_key = content_key(model_fingerprint(self.spec.base_model))
        plan: list[tuple[str, str, Path | None, list[str]]] = [
            ("PT", base_key, None, list(self.spec.tasks)),
            ("SFT", self.adapters["sft"].key, self.adapters["sft"].path, list(self.spec.tasks)),
        ]
        for t in self.spec.tasks:
            res = self.adapters[f"control-{t}"]
            plan.append(("control", res.key, res.path, [t]))
        return plan

    def _test_key(self, task: str) -> str:
        te = self.tasks[task]["test"]
        return content_key([list(te["id"]), list(te["prompt"]), list(te["target"])])

    def _states_path(self, role: str, model_key: str, task: str) -> Path:
        return self.out / "hidden_states" / f"{role}-{model_key}" / f"{task}-{self._test_key(task)}.safetensors"

    def _loss_path(self, role: str, model_key: str, task: str) -> Path:
        return self.out / "response_loss" / f"{role}-{model_key}" / f"{task}-{self._test_key(task)}.json"

    def run_models(self, progress: bool = True) -> None:
        """For every model (PT, SFT, each control) compute what is missing on its tasks' test splits:
        last-token hidden states and per-example response loss. Each model is loaded once."""
        from .extraction import last_token_hidden_states, save_states
        from .models import load_tokenizer
        from .training import load_adapter_model, response_token_loss

        tokenizer = load_tokenizer(self.spec.base_model)
        for role, key, adapter, tasks in self._model_plan():
            todo = [t for t in tasks if not (self._states_path(role, key, t).is_file() and self._loss_path(role, key, t).is_file())]
            if not todo:
                continue
            t0 = time.perf_counter()
            model = load_adapter_model(self.spec.base_model, adapter, device=self.spec.extraction.device)
            for task in todo:
                te = self.tasks[task]["test"]
                prompts, targets, ids = list(te["prompt"]), list(te["target"]), list(te["id"])
                sp = self._states_path(role, key, task)
                if not sp.is_file():
                    states = last_token_hidden_states(model, tokenizer, prompts, batch_size=self.spec.extraction.batch_size,
                                                      progress=progress and self.verbose, desc=f"{role} {task}")
                    save_states(sp, states, ids, {"role": role, "model_key": key, "task": task,
                                                  "base_model": self.spec.base_model,
                                                  "adapter": str(adapter) if adapter else None})
                lp = self._loss_path(role, key, task)
                if not lp.is_file():
                    losses = response_token_loss(model, tokenizer, prompts, targets,
                                                 batch_size=self.spec.extraction.batch_size)
                    atomic_write_json(lp, {"ids": ids, "loss": losses})
            self.log(f"{role:7s} {','.join(todo)}: states + loss in {time.perf_counter() - t0:.0f} s")
            del model

    def states(self, role: str, task: str) -> np.ndarray:
        """Hidden states ``(n_layers + 1, n_test, hidden_size)`` float32 of a model role on a task."""
        from .extraction import load_states

        if role not in MODEL_ROLES:
            raise KeyError(f"unknown model role {role!r}; valid: {MODEL_ROLES}")
        if task not in self.spec.tasks:
            raise KeyError(f"task {task!r} is not in this run; its tasks: {list(self.spec.tasks)}")
        key = {r: k for r, k, _, ts in self._model_plan() if task in ts}[role]
        path = self._states_path(role, key, task)
        if not path.is_file():
            self.run_models()
        states, ids, _ = load_states(path)
        expected = list(self.tasks[task]["test"]["id"])
        if ids != expected:
            raise RuntimeError(f"hidden states in {path} are for other examples than the test split of {task}")
        return states

    # -------------------------------------------------------------- tables
    def response_loss(self) -> pd.DataFrame:
        """Mean response-token NLL per (task, model role) on the task's test split.

        Columns: ``task, cluster, role, loss`` (nats per token), ``n``. The control's row answers
        whether the control learned its task (it should beat PT on its own task).
        """
        from .tasks import get_task

        self.run_models()
        rows = []
        for role, key, _, tasks in self._model_plan():
            for task in tasks:
                data = json.loads(self._loss_path(role, key, task).read_text())
                rows.append({"task": task, "cluster": get_task(task).cluster, "role": role,
                             "loss": float(np.mean(data["loss"])), "n": len(data["loss"])})
        return pd.DataFrame(rows)

    def cka(self) -> pd.DataFrame:
        """Linear CKA per task, layer and comparison: the tidy table every analysis reads.

        Columns: ``task, cluster, layer`` (1 = first block ... L = last block after the final norm;
        layer 0, the embedding of the last prompt token, is left out as in the paper: it is the same
        vector for every prompt that ends in the same answer-cue token, and the same in all models),
        ``comparison`` (``"PT vs control"`` / ``"SFT vs control"``), ``measure``, ``value``,
        ``n_examples``. Cached in ``tables/cka-<key>.parquet``.
        """
        from .similarity import cka_by_layer
        from .tasks import get_task

        self.run_models()
        plan = self._model_plan()
        key = content_key([(r, k, ts) for r, k, _, ts in plan] + [self._test_key(t) for t in self.spec.tasks])
        path = self.out / "tables" / f"cka-{key}.parquet"
        if path.is_file():
            return pd.read_parquet(path)
        rows = []
        for task in self.spec.tasks:
            control = self.states("control", task)
            for label, (role, _) in COMPARISONS.items():
                values = cka_by_layer(self.states(role, task)[1:], control[1:], measure="linear_cka")
                for layer, v in enumerate(values, start=1):
                    rows.append({"task": task, "cluster": get_task(task).cluster, "layer": layer,
                                 "comparison": label, "measure": "linear_cka", "value": float(v),
                                 "n_examples": control.shape[1]})
        df = pd.DataFrame(rows)
        _write_parquet(df, path)
        return df

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks L of the base model (hidden states have L + 1 entries)."""
        from transformers import AutoConfig

        from .models import resolve_model

        cfg = AutoConfig.from_pretrained(str(resolve_model(self.spec.base_model)))
        cfg = getattr(cfg, "text_config", cfg)
        return int(cfg.num_hidden_layers)
