"""The MOSSA run: task data -> LoRA adapters -> hidden states -> similarity tables, each stage cached.

:class:`Run` is what notebooks and the CLI use. Every stage computes what is missing and reuses
what is on disk (keyed by content), so the notebooks can call the stages freely and a second
``make book`` only reads. The models of the paper's design (``paper.md`` §2, §8):

* **PT** - the pre-trained base model, no adapter;
* **SFT** - the experimental model: the base plus one LoRA adapter trained on the training splits
  of *all* tasks (multi-task instruction tuning), or an off-the-shelf instruction-tuned checkpoint
  named by ``experimental_model``;
* **held-out SFT** - the same recipe without the spec's ``heldout_tasks`` (the paper's RQ3);
* **control** - for each task ``t``, the base plus a LoRA adapter trained on task ``t`` alone;
* **random-init** - the base architecture with untrained weights (a baseline).

For every task, the hidden states of each model on the task's test prompts (same prompts, same
order) are compared with those of the task's control, layer by layer.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .cache import atomic_path, atomic_write_json, content_key
from .validation import RunSpec, load_checked_spec as load_spec  # spec + registry checks (check_spec)

__all__ = ["Run", "ModelSlot", "ROLES", "comparison_name", "NULL_PREFIX"]

#: Model roles, in the order the book shows them.
ROLES = ("PT", "SFT", "held-out SFT", "random-init", "control")
#: Cap on generated tokens in the task-level evaluation (each task: its longest reference + 4).
_MAX_NEW_TOKENS = 40
#: Prefix of the shuffled-row null comparisons ("shuffled SFT vs control", ...).
NULL_PREFIX = "shuffled "


def comparison_name(role: str) -> str:
    """Name of the comparison of a model role with the task's control, e.g. ``"PT vs control"``."""
    return f"{role} vs control"


@dataclass(frozen=True)
class ModelSlot:
    """One model of the run and the tasks it is run on.

    Attributes:
        role: one of :data:`ROLES`.
        model: model string to load (the base model, or ``experimental_model``).
        key: content key of the weights (base fingerprint or adapter key).
        adapter: LoRA adapter directory, or None.
        random_init: load the architecture with untrained weights.
        tasks: tasks whose test prompts this model is run on.
    """

    role: str
    model: str
    key: str
    adapter: Path | None
    random_init: bool
    tasks: tuple[str, ...]

    @property
    def label(self) -> str:
        """Folder name of this model's cached outputs."""
        return f"{self.role.replace(' ', '_')}-{self.key}"


def _write_parquet(df: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path


class Run:
    """One run of the book, defined by a :class:`~layerwise.spec.RunSpec`.

    Output layout under ``spec.output_path``::

        adapters/<sft|sft-heldout|control-TASK>-<key>/   LoRA adapters (safetensors) + training logs
        hidden_states/<role>-<key>/<task>-<key>.safetensors   last-token and mean-pooled states
        grams/<role>-<key>-<pooling>/<task>-<key>.safetensors centred Gram matrices per layer
        evaluation/<role>-<key>/<task>-<key>.json           response loss on the evaluation examples
        tables/*.parquet                                     tidy result tables the notebooks read
        run.json                                             the spec as run
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

    @cached_property
    def companions(self) -> list["Run"]:
        """The companion runs of ``spec.compare_models`` (same tasks and recipe, another base model).

        See :meth:`layerwise.spec.RunSpec.companion_specs`; their outputs live under
        ``<output_dir>/compare/<model slug>/``. Empty when the spec compares no other model.
        """
        return [Run(s, verbose=self.verbose) for s in self.spec.companion_specs()]

    def log(self, message: str) -> None:
        """Print a progress line (CLI runs); silent when ``verbose`` is False."""
        if self.verbose:
            print(f"[layerwise] {message}", flush=True)

    # ------------------------------------------------------------------ data
    @cached_property
    def tasks(self) -> dict[str, Any]:
        """Task name -> ``datasets.DatasetDict`` with ``train`` and ``test`` splits (see ``layerwise.tasks``)."""
        return {t: self._load_task(t) for t in self.spec.tasks}

    def _load_task(self, task: str, template_shift: int = 0):
        """``load_task`` with the spec's data settings (``template_shift``: see ``load_task``)."""
        from .tasks import load_task

        d = self.spec.data
        return load_task(task, n_train=d.n_train, n_test=d.n_test, seed=d.seed, max_input_chars=d.max_input_chars,
                         templates=d.templates, chat_template=d.chat_template, allow_downsize=d.allow_downsize,
                         template_shift=template_shift)

    def slug(self, task: str) -> str:
        """File-name-safe form of a task name (``flan2021:x`` and ``file:...`` names contain ``:``/``/``)."""
        from .tasks import get_task

        return get_task(task).slug

    def cluster_of(self, task: str) -> str:
        """Flan 2021 cluster id of a task."""
        from .tasks import get_task

        return get_task(task).cluster

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
                    "held_out": name in self.spec.heldout_tasks,
                    "n_train": len(dd["train"]),
                    "n_test": len(dd["test"]),
                    "prompt_chars_mean": float(np.mean([len(p) for p in dd["test"]["prompt"]])),
                }
            )
        return pd.DataFrame(rows)

    # ------------------------------------------------------------- adapters
    def _mixture(self, exclude: tuple[str, ...] = ()) -> tuple[list[str], list[str], list[str]]:
        """Training examples of the multi-task mixture (prompts, targets, ids).

        With ``data.max_train_per_cluster`` the cluster's cap is spread over its tasks by
        :func:`layerwise.tasks.cap_per_cluster` (deterministic given the seed).
        """
        from .tasks import cap_per_cluster

        chosen = {t: dd["train"] for t, dd in self.tasks.items() if t not in exclude}
        cap = self.spec.data.max_train_per_cluster
        plan = cap_per_cluster({t: len(tr) for t, tr in chosen.items()}, self.cluster_of, cap or None, seed=self.spec.data.seed)
        prompts: list[str] = []
        targets: list[str] = []
        ids: list[str] = []
        for t, tr in chosen.items():
            n = plan[t]
            prompts += list(tr["prompt"])[:n]
            targets += list(tr["target"])[:n]
            ids += list(tr["id"])[:n]
        return prompts, targets, ids

    def train(self, progress: bool = True) -> dict[str, Any]:
        """Train or reuse the multi-task SFT adapter(s) and one control adapter per task.

        Returns:
            dict: ``"sft"``, ``"sft-heldout"`` (if the spec holds out tasks) and
            ``"control-<task>"`` -> :class:`layerwise.training.AdapterResult`.
        """
        from .training import train_adapter

        jobs: list[tuple[str, tuple[list[str], list[str], list[str]]]] = []
        if not self.spec.experimental_model:
            jobs.append(("sft", self._mixture()))
        if self.spec.heldout_tasks:
            jobs.append(("sft-heldout", self._mixture(exclude=self.spec.heldout_tasks)))
        for name, dd in self.tasks.items():
            tr = dd["train"]
            jobs.append((f"control-{self.slug(name)}", (list(tr["prompt"]), list(tr["target"]), list(tr["id"]))))
        results: dict[str, Any] = {}
        for name, (p, t, i) in jobs:
            t0 = time.perf_counter()
            res = train_adapter(name=name, base_model=self.spec.base_model, prompts=p, targets=t, example_ids=i,
                                spec=self.spec.training, adapters_dir=self.out / "adapters",
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
            role = {"sft": "SFT", "sft-heldout": "held-out SFT"}.get(name, "control")
            slugs = {self.slug(t): t for t in self.spec.tasks}
            task = slugs.get(name.removeprefix("control-")) if role == "control" else None
            for rec in res.log:
                rows.append({"adapter": name, "role": role, "task": task, **rec})
        return pd.DataFrame(rows)

    def training_summary(self) -> pd.DataFrame:
        """One row per adapter: examples, optimiser steps, first/last loss, seconds, reused."""
        from .training import adapter_summary

        return pd.DataFrame([adapter_summary(r) for r in self.adapters.values()])

    # ------------------------------------------------------------- models
    @cached_property
    def slots(self) -> list[ModelSlot]:
        """Every model of the run (see :class:`ModelSlot`), in :data:`ROLES` order."""
        from .models import model_fingerprint

        spec = self.spec
        tasks = tuple(spec.tasks)
        base_key = content_key(model_fingerprint(spec.base_model))
        out = [ModelSlot("PT", spec.base_model, base_key, None, False, tasks)]
        if spec.experimental_model:
            key = content_key(model_fingerprint(spec.experimental_model))
            out.append(ModelSlot("SFT", spec.experimental_model, key, None, False, tasks))
        else:
            res = self.adapters["sft"]
            out.append(ModelSlot("SFT", spec.base_model, res.key, res.path, False, tasks))
        if spec.heldout_tasks:
            res = self.adapters["sft-heldout"]
            out.append(ModelSlot("held-out SFT", spec.base_model, res.key, res.path, False, tasks))
        if "random_init" in spec.baselines:
            out.append(ModelSlot("random-init", spec.base_model, content_key([base_key, "random-init", 0]), None, True, tasks))
        for t in tasks:
            res = self.adapters[f"control-{self.slug(t)}"]
            out.append(ModelSlot("control", spec.base_model, res.key, res.path, False, (t,)))
        return out

    def slot(self, role: str, task: str) -> ModelSlot:
        """The model of ``role`` that is run on ``task`` (for ``control``: that task's control).

        Raises:
            KeyError: unknown role or task, or a role this run does not have (lists the valid ones).
        """
        if task not in self.spec.tasks:
            raise KeyError(f"task {task!r} is not in this run; its tasks: {list(self.spec.tasks)}")
        for s in self.slots:
            if s.role == role and task in s.tasks:
                return s
        raise KeyError(f"this run has no model of role {role!r}; its roles: {self.roles}")

    @property
    def roles(self) -> list[str]:
        """Roles present in this run, in :data:`ROLES` order."""
        have = {s.role for s in self.slots}
        return [r for r in ROLES if r in have]

    def _test_key(self, task: str) -> str:
        te = self.tasks[task]["test"]
        return content_key([list(te["id"]), list(te["prompt"]), list(te["target"])])

    def _states_path(self, slot: ModelSlot, task: str) -> Path:
        return self.out / "hidden_states" / slot.label / f"{self.slug(task)}-{self._test_key(task)}.safetensors"

    def _loss_path(self, slot: ModelSlot, task: str) -> Path:
        key = content_key([self._test_key(task), self.spec.data.n_eval])
        return self.out / "evaluation" / slot.label / f"{self.slug(task)}-{key}.json"

    def _load(self, slot: ModelSlot):
        from .models import load_random_init, load_tokenizer
        from .training import load_adapter_model

        device = self.spec.extraction.device
        if slot.random_init:
            model = load_random_init(slot.model, device=device)
        else:
            model = load_adapter_model(slot.model, slot.adapter, device=device)
        return model, load_tokenizer(slot.model)

    def run_models(self, progress: bool = True) -> None:
        """For every model compute what is missing on its tasks: hidden states on the test prompts
        (last token and mean pooled) and the response loss on the first ``data.n_eval`` test
        examples. Each model is loaded once."""
        from .extraction import has_states
        from .training import response_token_loss

        n_eval = self.spec.data.n_eval
        for slot in self.slots:
            todo = [t for t in slot.tasks if not (has_states(self._states_path(slot, t)) and self._loss_path(slot, t).is_file())]
            if not todo:
                continue
            t0 = time.perf_counter()
            model, tokenizer = self._load(slot)
            for task in todo:
                te = self.tasks[task]["test"]
                prompts, targets, ids = list(te["prompt"]), list(te["target"]), list(te["id"])
                sp = self._states_path(slot, task)
                if not has_states(sp):
                    self._extract(model, tokenizer, slot, task, te, sp, progress=progress, desc=f"{slot.role} {task}")
                lp = self._loss_path(slot, task)
                if not lp.is_file():
                    losses = response_token_loss(model, tokenizer, prompts[:n_eval], targets[:n_eval],
                                                 batch_size=self.spec.extraction.batch_size)
                    atomic_write_json(lp, {"ids": ids[:n_eval], "loss": losses})
            self.log(f"{slot.role:12s} {','.join(todo)}: states + loss in {time.perf_counter() - t0:.0f} s")
            del model

    def _extract(self, model: Any, tokenizer: Any, slot: ModelSlot, task: str, examples: Any, path: Path, *,
                 progress: bool, desc: str, **meta: Any) -> None:
        """Hidden states of ``slot``'s model on ``examples`` (a task split: ``prompt``, ``id``), saved to ``path``."""
        from .extraction import prompt_hidden_states, save_states

        states = prompt_hidden_states(model, tokenizer, list(examples["prompt"]), batch_size=self.spec.extraction.batch_size,
                                      progress=progress and self.verbose, desc=desc)
        save_states(path, states, list(examples["id"]),
                    {"role": slot.role, "model": slot.model, "model_key": slot.key, "task": task,
                     "adapter": str(slot.adapter) if slot.adapter else None, "random_init": slot.random_init, **meta})

    def _eval_path(self, slot: ModelSlot, task: str) -> Path:
        key = content_key([self._test_key(task), self.spec.data.n_eval, "task-metric", _MAX_NEW_TOKENS])
        return self.out / "evaluation" / slot.label / f"{self.slug(task)}-metric-{key}.json"

    def evaluate(self, progress: bool = True) -> pd.DataFrame:
        """Task-level evaluation of PT, SFT, held-out SFT and each control on the first ``n_eval``
        test examples, with the task's metric (:mod:`layerwise.evaluation`: accuracy by option
        scoring for classification, token F1 for short-answer QA, ROUGE-L for other generation).

        Returns:
            DataFrame ``task, cluster, role, metric, value, n`` (plus ``exact_match`` where
            defined). Per (model, task) results are cached in ``evaluation/``.
        """
        from .evaluation import evaluate_task
        from .tasks import get_task

        n_eval = self.spec.data.n_eval
        slots = [s for s in self.slots if s.role != "random-init"]
        for slot in slots:
            todo = [t for t in slot.tasks if not self._eval_path(slot, t).is_file()]
            if not todo:
                continue
            t0 = time.perf_counter()
            model, tokenizer = self._load(slot)
            for task in todo:
                ev = self.tasks[task]["test"].select(range(min(n_eval, len(self.tasks[task]["test"]))))
                longest = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in ev["target"])
                res = evaluate_task(model, tokenizer, ev, kind=get_task(task).kind, task=task,
                                    batch_size=self.spec.extraction.batch_size, max_new_tokens=min(_MAX_NEW_TOKENS, longest + 4))
                atomic_write_json(self._eval_path(slot, task), {k: v for k, v in res.items() if k != "predictions"}
                                  | {"predictions": res["predictions"][:5]})
            self.log(f"{slot.role:12s} {','.join(todo)}: evaluated in {time.perf_counter() - t0:.0f} s")
            del model
        rows = []
        for slot in slots:
            for task in slot.tasks:
                r = json.loads(self._eval_path(slot, task).read_text())
                rows.append({"task": task, "cluster": self.cluster_of(task), "role": slot.role, "metric": r["metric"],
                             "value": float(r["value"]), "exact_match": r["metrics"].get("exact_match", np.nan), "n": r["n"]})
        return pd.DataFrame(rows)

    def states(self, role: str, task: str, pooling: str = "last") -> np.ndarray:
        """Hidden states ``(n_layers + 1, n_test, hidden_size)`` float32 of a model role on a task.

        Args:
            role: one of :attr:`roles`.
            task: a task of the run.
            pooling: ``"last"`` (last prompt token) or ``"mean"`` (mean over prompt tokens).

        Raises:
            KeyError: unknown role, task or pooling.
            RuntimeError: the cached states belong to other examples (a corrupted cache).
        """
        from .extraction import load_states

        slot = self.slot(role, task)
        path = self._states_path(slot, task)
        if not path.is_file():
            self.run_models()
        states, ids, _ = load_states(path, pooling)
        if ids != list(self.tasks[task]["test"]["id"]):
            raise RuntimeError(f"hidden states in {path} are for other examples than the test split of {task}")
        return states

    # -------------------------------------------------------------- grams
    @cached_property
    def grams(self):
        """:class:`layerwise.similarity.GramCache` of this run (``<output>/grams``)."""
        from .similarity import GramCache

        return GramCache(self.out / "grams", max_in_memory=8)

    def gram_stack(self, role: str, task: str, pooling: str = "last") -> tuple[str, str]:
        """Make sure the centred Grams of (role, task, pooling) for layers 1..L are cached.

        Returns:
            (model name, task name) under which :attr:`grams` holds them.
        """
        slot = self.slot(role, task)
        name, tkey = f"{slot.label}-{pooling}", f"{self.slug(task)}-{self._test_key(task)}"
        self.grams.ensure(name, tkey, lambda: self.states(role, task, pooling)[1:],
                          metadata={"role": role, "task": task, "pooling": pooling})
        return name, tkey

    def measure_names(self) -> list[str]:
        """The spec's measures (``all`` = every measure with a Gram form)."""
        from .similarity import MEASURES

        names = sorted(n for n, m in MEASURES.items() if m.uses_grams) if "all" in self.spec.measures else list(self.spec.measures)
        return ["linear_cka"] + [n for n in names if n != "linear_cka"]  # the paper's measure always

    # -------------------------------------------------------------- tables
    def response_loss(self) -> pd.DataFrame:
        """Mean response-token NLL per (task, model role) on the first ``n_eval`` test examples.

        Columns: ``task, cluster, role, loss`` (nats per token), ``n``. A control should beat PT on
        its own task; if it does not, its CKA comparisons say little.
        """
        self.run_models()
        rows = []
        for slot in self.slots:
            for task in slot.tasks:
                data = json.loads(self._loss_path(slot, task).read_text())
                rows.append({"task": task, "cluster": self.cluster_of(task), "role": slot.role,
                             "loss": float(np.mean(data["loss"])), "n": len(data["loss"])})
        return pd.DataFrame(rows)

    def similarity(self, *, n_null: int = 20) -> pd.DataFrame:
        """Similarity of every model with each task's control, per layer, measure and pooling.

        Comparisons: ``"<role> vs control"`` for every role of the run but ``control``, and - if
        the spec asks for the ``shuffled`` baseline - ``"shuffled <role> vs control"`` for PT and SFT:
        the mean over ``n_null`` random row permutations (the value the estimator gives when the
        examples are not paired at all). Mean-pooled states are compared for PT and SFT with the
        linear measures only (a robustness check).

        Returns:
            DataFrame with columns ``task, cluster, layer`` (1 = first block ... L = after the final
            norm; layer 0, the embedding of the last prompt token, is left out as in the paper: it
            is the same vector for every prompt that ends in the same answer-cue token),
            ``comparison, measure, pooling, value, n_examples``. Cached in
            ``tables/similarity-<key>.parquet``.
        """
        from .similarity import get_measure

        self.run_models()
        measures = self.measure_names()
        key = content_key([[(s.role, s.key, s.tasks) for s in self.slots], [self._test_key(t) for t in self.spec.tasks],
                           measures, list(self.spec.baselines), n_null, 2])
        path = self.out / "tables" / f"similarity-{key}.parquet"
        if path.is_file():
            return pd.read_parquet(path)
        t0 = time.perf_counter()
        others = [r for r in self.roles if r != "control"]
        linear = [m for m in measures if m in ("linear_cka", "debiased_cka")]
        rng = np.random.default_rng(self.spec.data.seed)
        rows: list[dict[str, Any]] = []
        for task in self.spec.tasks:
            cluster = self.cluster_of(task)
            for pooling, roles, ms in (("last", others, measures), ("mean", [r for r in ("PT", "SFT") if r in others], linear)):
                cm, ct = self.gram_stack("control", task, pooling)
                GC = self.grams.get(cm, ct)
                n = GC.shape[1]
                for role in roles:
                    rm, rt = self.gram_stack(role, task, pooling)
                    for mname in ms:
                        values = self.grams.compare(rm, cm, rt, measure=mname)
                        rows += [{"task": task, "cluster": cluster, "layer": i + 1, "comparison": comparison_name(role),
                                  "measure": mname, "pooling": pooling, "value": float(v), "n_examples": n}
                                 for i, v in enumerate(values)]
                    if pooling == "last" and "shuffled" in self.spec.baselines and role in ("PT", "SFT"):
                        GR = self.grams.get(rm, rt)
                        perms = [rng.permutation(n) for _ in range(n_null)]
                        for mname in linear:
                            m = get_measure(mname)
                            for layer in range(GR.shape[0]):
                                vals = [m.from_grams(GR[layer][np.ix_(p, p)], GC[layer]) for p in perms]
                                rows.append({"task": task, "cluster": cluster, "layer": layer + 1,
                                             "comparison": NULL_PREFIX + comparison_name(role), "measure": mname,
                                             "pooling": pooling, "value": float(np.mean(vals)), "n_examples": n})
        df = pd.DataFrame(rows)
        _write_parquet(df, path)
        self.log(f"similarity table: {len(df)} rows in {time.perf_counter() - t0:.0f} s")
        return df

    # ------------------------------------------------------- template variation
    #: Models run on the re-templated inputs (the comparisons of the paper need only these).
    VARIANT_ROLES = ("PT", "SFT", "control")

    @cached_property
    def variant_tasks(self) -> dict[str, Any]:
        """Task -> the first ``data.n_template_variant`` test examples rendered with another template.

        Each example gets template ``(chosen + 1) mod n_templates`` (see ``load_task``'s
        ``template_shift``): the same ids, targets and order, another instruction. Tasks whose
        prompts come from their source (``flan2021:``, ``file:``) have no templates of ours and are
        left out. Empty when ``data.n_template_variant`` is 0.

        Raises:
            RuntimeError: the re-templated examples are not the test split's first examples.
        """
        n = self.spec.data.n_template_variant
        out: dict[str, Any] = {}
        if not n:
            return out
        for task in self.spec.tasks:
            test = self.tasks[task]["test"]
            if min(test["template_id"]) < 0:
                continue
            variant = self._load_task(task, template_shift=1)["test"].select(range(min(n, len(test))))
            if list(variant["id"]) != list(test["id"][:len(variant)]):
                raise RuntimeError(f"re-templated examples of {task} are not the first examples of its test split")
            out[task] = variant
        return out

    def _variant_path(self, slot: ModelSlot, task: str) -> Path:
        v = self.variant_tasks[task]
        key = content_key([list(v["id"]), list(v["prompt"]), "template-variant"])
        return self.out / "hidden_states" / slot.label / f"{self.slug(task)}-variant-{key}.safetensors"

    def run_template_variant(self, progress: bool = True) -> None:
        """Hidden states of PT, SFT and the controls on the re-templated inputs (:attr:`variant_tasks`), cached."""
        from .extraction import has_states

        for slot in self.slots:
            if slot.role not in self.VARIANT_ROLES:
                continue
            todo = [t for t in slot.tasks if t in self.variant_tasks and not has_states(self._variant_path(slot, t))]
            if not todo:
                continue
            t0 = time.perf_counter()
            model, tokenizer = self._load(slot)
            for task in todo:
                self._extract(model, tokenizer, slot, task, self.variant_tasks[task], self._variant_path(slot, task),
                              progress=progress, desc=f"{slot.role} {task} (other template)", template_shift=1)
            self.log(f"{slot.role:12s} {','.join(todo)}: states on other templates in {time.perf_counter() - t0:.0f} s")
            del model

    def template_variation(self) -> pd.DataFrame:
        """CKA with the controls on the same examples under two instruction templates.

        For every task of :attr:`variant_tasks` (its first ``n`` test examples), layers 1..L, and
        linear and debiased CKA (last-token states):

        * ``template = "original"``: PT vs control and SFT vs control on the usual prompts;
        * ``template = "other"``: the same comparisons when every model reads the prompts
          rendered with another template;
        * ``template = "across"``, comparison ``"<role>: original vs other template"``: each model
          with itself across the two templates (how much the instruction alone moves its states).

        Returns:
            DataFrame with columns ``task, cluster, layer, comparison, template, measure, value,
            n_examples``; empty (same columns) when the spec asks for no template variation.
            Cached in ``tables/template-variation-<key>.parquet``.
        """
        from .extraction import load_states
        from .similarity import centered_grams, similarity_by_layer_from_grams

        cols = ["task", "cluster", "layer", "comparison", "template", "measure", "value", "n_examples"]
        if not self.variant_tasks:
            return pd.DataFrame(columns=cols)
        self.run_models()
        self.run_template_variant()
        slots = [(s.role, s.key, s.tasks) for s in self.slots if s.role in self.VARIANT_ROLES]
        key = content_key([slots, {t: self._variant_path(self.slot("PT", t), t).name for t in self.variant_tasks},
                           [self._test_key(t) for t in self.variant_tasks], 1])
        path = self.out / "tables" / f"template-variation-{key}.parquet"
        if path.is_file():
            return pd.read_parquet(path)
        rows: list[dict[str, Any]] = []
        for task, variant in self.variant_tasks.items():
            n = len(variant)
            grams: dict[tuple[str, str], np.ndarray] = {}
            for role in self.VARIANT_ROLES:
                slot = self.slot(role, task)
                grams[role, "original"] = centered_grams(self.states(role, task)[1:, :n])
                grams[role, "other"] = centered_grams(load_states(self._variant_path(slot, task))[0][1:])
            pairs = [(f"{role} vs control", template, (role, template), ("control", template))
                     for template in ("original", "other") for role in ("PT", "SFT")]
            pairs += [(f"{role}: original vs other template", "across", (role, "original"), (role, "other"))
                      for role in self.VARIANT_ROLES]
            for comparison, template, a, b in pairs:
                for measure in ("linear_cka", "debiased_cka"):
                    values = similarity_by_layer_from_grams(grams[a], grams[b], measure=measure)
                    rows += [{"task": task, "cluster": self.cluster_of(task), "layer": i + 1, "comparison": comparison,
                              "template": template, "measure": measure, "value": float(v), "n_examples": n}
                             for i, v in enumerate(values)]
        df = pd.DataFrame(rows, columns=cols)
        _write_parquet(df, path)
        return df

    def cka(self) -> pd.DataFrame:
        """Linear CKA of PT and SFT (and held-out SFT) with each task's control: the paper's table.

        The subset of :meth:`similarity` with ``measure == "linear_cka"``, last-token pooling and
        no baselines; columns ``task, cluster, layer, comparison, measure, value, n_examples``.
        """
        df = self.similarity()
        keep = [comparison_name(r) for r in ("PT", "SFT", "held-out SFT")]
        sub = df[(df["measure"] == "linear_cka") & (df["pooling"] == "last") & df["comparison"].isin(keep)]
        return sub.drop(columns="pooling").reset_index(drop=True)

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks L of the base model (hidden states have L + 1 entries)."""
        from transformers import AutoConfig

        from .models import resolve_model

        cfg = AutoConfig.from_pretrained(str(resolve_model(self.spec.base_model)))
        cfg = getattr(cfg, "text_config", cfg)
        return int(cfg.num_hidden_layers)

    # ------------------------------------------------------------ analyses
    def spectra(self) -> pd.DataFrame:
        """Per-layer spectral summary of every model on every task (last-token states, layers 1..L).

        From the cached centred Grams (:mod:`layerwise.spectra`): columns ``role, task, cluster,
        layer`` (1..L), ``effective_rank`` (Roy & Vetterli 2007), ``participation_ratio``, ``n_99``
        (directions for 99 % of the variance, as SVCCA), ``var_top_1``, ``var_top_10`` and more.
        Cached in ``tables/spectra-<key>.parquet``.
        """
        from .spectra import spectra_from_grams

        self.run_models()
        key = content_key([[(s.role, s.key, s.tasks) for s in self.slots], [self._test_key(t) for t in self.spec.tasks], 1])
        path = self.out / "tables" / f"spectra-{key}.parquet"
        if path.is_file():
            return pd.read_parquet(path)
        frames = []
        for slot in self.slots:
            for task in slot.tasks:
                name, tkey = self.gram_stack(slot.role, task)
                _, summary = spectra_from_grams(self.grams.get(name, tkey),
                                                labels={"role": slot.role, "task": task, "cluster": self.cluster_of(task)})
                summary["layer"] = summary["layer"] + 1  # Grams hold layers 1..L
                frames.append(summary)
        df = pd.concat(frames, ignore_index=True)
        _write_parquet(df, path)
        return df

    def template_findings(self, *, measure: str = "linear_cka", n_boot: int = 2000) -> dict[str, pd.DataFrame]:
        """The paper's findings on the template-variation examples, with the original and with the other template.

        Both tables come from the same first ``data.n_template_variant`` test examples (biased
        CKA depends on the number of examples, so the usual findings are not the reference).
        Findings that need the held-out SFT model are absent (it is not run on the variants).

        Returns:
            ``{"original template (first n)": findings, "other template": findings}`` (see
            :meth:`findings`); empty when the spec asks for no template variation.
        """
        from .analysis import evaluate_findings, findings_table

        tv = self.template_variation()
        if tv.empty:
            return {}
        n = int(tv["n_examples"].iloc[0])
        out = {}
        for template, label in (("original", f"original template (first {n})"), ("other", "other template")):
            sub = tv[tv["template"] == template].drop(columns="template").assign(pooling="last")
            out[label] = findings_table(evaluate_findings(sub, measure=measure, pooling="last",
                                                          heldout_tasks=self.spec.heldout_tasks, n_boot=n_boot,
                                                          seed=self.spec.data.seed))
        return out

    def findings(self, *, measure: str = "linear_cka", pooling: str = "last", n_boot: int = 2000) -> pd.DataFrame:
        """The paper's findings with this run's verdicts (see :func:`layerwise.analysis.evaluate_findings`)."""
        from .analysis import evaluate_findings, findings_table

        return findings_table(evaluate_findings(self.similarity(), measure=measure, pooling=pooling,
                                                heldout_tasks=self.spec.heldout_tasks, n_boot=n_boot,
                                                seed=self.spec.data.seed))
