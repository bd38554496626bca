"""The MOSSA run: task data -> LoRA adapters -> hidden states -> similarity tables, each stage cached.

:class:`Run` is what notebooks and the CLI use: a thin facade whose methods delegate to the stage
modules of :mod:`layerwise.stages` (data, adapters, slots, states, evaluation, tables, variants).
Every stage computes what is missing and reuses what is on disk (keyed by content), so the
notebooks can call the stages freely and a second ``make book`` only reads. The models of the
paper's design (§3; see :mod:`layerwise.vocab`):

* **PT** - the pre-trained base model, no adapter;
* **SFT** - the experimental model: the base plus one LoRA adapter trained on the training splits
  of *all* tasks (multi-task instruction tuning), or an off-the-shelf instruction-tuned checkpoint
  named by ``experimental_model``;
* **held-out SFT** - the same recipe without the spec's ``heldout_tasks`` (the paper's RQ3, §5);
* **control** - for each task ``t``, the base plus a LoRA adapter trained on task ``t`` alone;
* **random-init** - the base architecture with untrained weights (a baseline).

For every task, the hidden states of each model on the task's test prompts (same prompts, same
order) are compared with those of the task's control, layer by layer.
"""

from __future__ import annotations

import os
from functools import cached_property
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .findings import evaluate as evaluate_findings, findings_table
from .cache import atomic_write_json, hold_run_lock, release_run_lock
from .models import resolve_model
from .similarity import GramCache
from .spec import RunSpec
from .validation import load_checked_spec  # the spec, then its cross-checks against the registries
from .stages import adapters as _adapters
from .stages import data as _data
from .stages import evaluation as _evaluation
from .stages import states as _states
from .stages import tables as _tables
from .stages import variants as _variants
from .stages.slots import ModelSlot, find_slot, plan_extra_slots, plan_slots, present_roles
from .tasks import get_task
from .training import AdapterResult
from .vocab import NULL_PREFIX, ROLES, comparison_name

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

__all__ = ["Run", "ModelSlot", "ROLES", "comparison_name", "NULL_PREFIX"]  # the last three re-exported from vocab


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

    #: Models run on the re-templated inputs (see :mod:`layerwise.stages.variants`).
    VARIANT_ROLES = _variants.VARIANT_ROLES

    def __init__(self, spec: RunSpec, *, verbose: bool = True):
        self.spec = spec
        self.verbose = verbose
        self.out = spec.output_path
        self.out.mkdir(parents=True, exist_ok=True)
        # a computing run (CLI) holds the output_dir exclusively and removes killed writers' temporaries;
        # a reader (notebook, verbose=False) shares it, or inherits the lock of the `layerwise book` that started it
        hold_run_lock(self.out, shared=not verbose)
        if spec.threads:
            import torch  # deferred: importing torch takes seconds, and only this setting needs it here

            torch.set_num_threads(spec.threads)
        if not spec.frozen:  # a frozen run reads committed results and writes nothing into them
            atomic_write_json(self.out / "run.json", spec.to_dict())

    @classmethod
    def from_spec(cls, path: str | os.PathLike[str] | None = None, overrides: Sequence[str] | Mapping[str, Any] = (), *,
                  verbose: bool = True) -> Run:
        """Load a spec, validate it whole (:func:`layerwise.validation.load_checked_spec`) and open its run.

        ``verbose=False`` (used by the notebooks) silences the progress lines of the stages.
        """
        return cls(load_checked_spec(path, overrides), verbose=verbose)

    def close(self) -> None:
        """Release this run's lock on its output directory (and its companions'); see :class:`~layerwise.cache.RunLock`.

        A run holds the lock for its process's life unless closed; ``with Run.from_spec(...) as run:``
        closes it at the end of the block. Results already read stay usable; computing more after
        ``close`` is not safe, since another process may then write the same directory.
        """
        for companion in self.__dict__.get("companions", []):
            companion.close()
        release_run_lock(self.out)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @cached_property
    def companions(self) -> list[Run]:
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
    def tasks(self) -> dict[str, DatasetDict]:
        """Task name -> ``datasets.DatasetDict`` with ``train`` and ``test`` splits (see ``layerwise.tasks``)."""
        return {t: _data.load_split(self.spec, t) for t in self.spec.tasks}

    def slug(self, task: str) -> str:
        """File-name-safe form of a task name (``flan2021:x`` and ``file:...`` names contain ``:``/``/``)."""
        return get_task(task).slug

    def cluster_of(self, task: str) -> str:
        """Flan 2021 cluster id of a task."""
        return get_task(task).cluster

    def task_table(self) -> pd.DataFrame:
        """One row per task: cluster, kind, provenance, split sizes, mean prompt length (characters)."""
        return _data.task_table(self)

    # ------------------------------------------------------------- adapters
    def _mixture(self, exclude: tuple[str, ...] = ()) -> tuple[list[str], list[str], list[str]]:
        """Training examples of the multi-task mixture (see :func:`layerwise.stages.adapters.mixture`)."""
        return _adapters.mixture(self, exclude)

    def train(self, progress: bool = True) -> dict[str, AdapterResult]:
        """Train or reuse the multi-task SFT adapter(s) and one control adapter per task.

        Returns:
            dict: ``"sft"``, ``"sft-heldout"`` (if the spec holds out tasks) and
            ``"control-<task>"`` -> :class:`layerwise.training.AdapterResult`.
        """
        results = _adapters.train_adapters(self, progress)
        self.__dict__["adapters"] = results  # fill the cached property
        return results

    @cached_property
    def adapters(self) -> dict[str, AdapterResult]:
        """The adapters of this run (trained on first access)."""
        return self.train()

    def training_log(self) -> pd.DataFrame:
        """Tidy training log: ``adapter, role, task, step, epoch, loss, learning_rate``."""
        return _adapters.training_log(self)

    def training_summary(self) -> pd.DataFrame:
        """One row per adapter: examples, optimiser steps, first/last loss, seconds, reused."""
        return _adapters.training_summary(self)

    # ------------------------------------------------------------- models
    @cached_property
    def slots(self) -> list[ModelSlot]:
        """The models of the main design (see :class:`ModelSlot`), in :data:`~layerwise.vocab.ROLES` order."""
        return plan_slots(self.spec, self.adapters, self.slug)

    @cached_property
    def extra_slots(self) -> list[ModelSlot]:
        """The models of the replicates and baselines: SFT seeds after the first, other-task controls,
        control replicates (see :func:`layerwise.stages.slots.plan_extra_slots`)."""
        return plan_extra_slots(self.spec, self.adapters, self.slug)

    def slot(self, role: str, task: str) -> ModelSlot:
        """The model of ``role`` that is run on ``task`` (for ``control``: that task's control).

        Raises:
            KeyError: unknown role or task, or a role this run does not have (lists the valid ones).
        """
        return find_slot(self.slots, role, task, self.spec.tasks)

    @property
    def roles(self) -> list[str]:
        """Roles present in this run, in :data:`~layerwise.vocab.ROLES` order."""
        return present_roles(self.slots)

    def run_models(self, progress: bool = True) -> None:
        """Hidden states and response loss of every model on its tasks, what is missing (see
        :func:`layerwise.stages.states.run_models`)."""
        _states.run_models(self, progress)

    def evaluate(self, progress: bool = True) -> pd.DataFrame:
        """Task-level evaluation of PT, SFT, held-out SFT and each control on the first ``n_eval``
        test examples, with the task's metric (:mod:`layerwise.evaluation`: accuracy by option
        scoring for classification, token F1 for short-answer QA, ROUGE-L for other generation).

        Returns:
            DataFrame ``task, cluster, role, metric, value, n`` (plus ``exact_match`` where
            defined). Per (model, task) results are cached in ``evaluation/``.
        """
        return _evaluation.evaluate(self, progress)

    def states(self, role: str, task: str, pooling: str = "last") -> NDArray[np.float32]:
        """Hidden states ``(n_layers + 1, n_test, hidden_size)`` float32 of a model role on a task.

        Args:
            role: one of :attr:`roles`.
            task: a task of the run.
            pooling: ``"last"`` (last prompt token) or ``"mean"`` (mean over prompt tokens).

        Raises:
            KeyError: unknown role, task or pooling.
            RuntimeError: the cached states belong to other examples (a corrupted cache).
        """
        return _states.states(self, role, task, pooling)

    # -------------------------------------------------------------- grams
    @cached_property
    def grams(self) -> GramCache:
        """:class:`layerwise.similarity.GramCache` of this run (``<output>/grams``)."""
        return GramCache(self.out / "grams", max_in_memory=8)

    def gram_stack(self, role: str, task: str, pooling: str = "last") -> tuple[str, str]:
        """Make sure the centred Grams of (role, task, pooling) for layers 1..L are cached.

        Returns:
            (model name, task name) under which :attr:`grams` holds them.
        """
        return _states.gram_stack(self, role, task, pooling)

    def measure_names(self) -> list[str]:
        """The spec's measures (``all`` = every measure with a Gram form), ``linear_cka`` first."""
        return _tables.measure_names(self.spec.measures)

    # -------------------------------------------------------------- tables
    def response_loss(self) -> pd.DataFrame:
        """Mean response-token NLL per (task, model role) on the first ``n_eval`` test examples.

        Columns: ``task, cluster, role, loss`` (nats per token), ``n``. A control should beat PT on
        its own task; if it does not, its CKA comparisons say little.
        """
        return _states.response_loss(self)

    def similarity(self, *, n_null: int = 20) -> pd.DataFrame:
        """Similarity of every model with each task's control, per layer, measure and pooling.

        See :func:`layerwise.stages.tables.similarity_table`: columns ``task, cluster, layer,
        comparison, measure, pooling, value, n_examples``; the shuffled-row null (``n_null``
        permutations) for PT and SFT if the spec asks for the ``shuffled`` baseline.
        """
        return _tables.similarity_table(self, n_null=n_null)

    @cached_property
    def variant_tasks(self) -> dict[str, Dataset]:
        """Task -> the first ``data.n_template_variant`` test examples rendered with another template
        (see :func:`layerwise.stages.variants.variant_tasks`)."""
        return _variants.variant_tasks(self)

    def run_template_variant(self, progress: bool = True) -> None:
        """Hidden states of PT, SFT and the controls on the re-templated inputs (:attr:`variant_tasks`), cached."""
        _variants.run_template_variant(self, progress)

    def template_variation(self) -> pd.DataFrame:
        """CKA with the controls on the same examples under two instruction templates.

        See :func:`layerwise.stages.variants.template_variation_table`: columns ``task, cluster,
        layer, comparison, template, measure, value, n_examples``; empty when the spec asks for no
        template variation.
        """
        return _variants.template_variation_table(self)

    def cka(self) -> pd.DataFrame:
        """Linear CKA of PT and SFT (and held-out SFT) with each task's control: the paper's table.

        The subset of :meth:`similarity` with ``measure == "linear_cka"``, last-token pooling and
        no baselines; columns ``task, cluster, layer, comparison, measure, value, n_examples``.
        """
        return _tables.cka_table(self.similarity())

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks L of the base model (hidden states have L + 1 entries)."""
        from transformers import AutoConfig  # deferred: importing transformers takes seconds

        cfg = AutoConfig.from_pretrained(str(resolve_model(self.spec.base_model)))
        cfg = getattr(cfg, "text_config", cfg)
        return int(cfg.num_hidden_layers)

    # ------------------------------------------------------------ analyses
    def spectra(self) -> pd.DataFrame:
        """Per-layer spectral summary of every model on every task (last-token states, layers 1..L).

        See :func:`layerwise.stages.tables.spectra_table`: columns ``role, task, cluster, layer``
        (1..L), ``effective_rank`` (Roy & Vetterli 2007), ``participation_ratio``, ``n_99``,
        ``var_top_1``, ``var_top_10`` and more.
        """
        return _tables.spectra_table(self)

    def template_findings(self, *, measure: str = "linear_cka", n_boot: int = 2000) -> dict[str, pd.DataFrame]:
        """The paper's findings on the template-variation examples, with the original and with the other template.

        Both tables come from the same first ``data.n_template_variant`` test examples (biased
        CKA depends on the number of examples, so the usual findings are not the reference).
        Findings that need the held-out SFT model are absent (it is not run on the variants).

        Returns:
            ``{"original template (first n)": findings, "other template": findings}`` (see
            :meth:`findings`); empty when the spec asks for no template variation.
        """
        tv = self.template_variation()
        if tv.empty:
            return {}
        n = int(tv["n_examples"].iloc[0])
        out = {}
        for template, label in (("original", f"original template (first {n})"), ("other", "other template")):
            sub = tv[tv["template"] == template].drop(columns="template").assign(pooling="last")
            out[label] = self._findings(sub, measure=measure, pooling="last", n_boot=n_boot,
                                        exclude_tasks=self.gate_failures())
        return out

    def findings(self, *, measure: str = "linear_cka", pooling: str = "last", n_boot: int = 2000) -> pd.DataFrame:
        """The paper's findings with this run's verdicts (see :func:`layerwise.findings.evaluate`).

        The input holds every SFT seed (:meth:`seeds`), so intervals include seed noise, and F6
        reads the split-half table (:meth:`halves`).
        """
        sim = _tables.findings_input(self.similarity(), self.seeds())
        halves = self.halves()
        halves = halves[(halves["measure"] == measure) & (halves["pooling"] == pooling)]
        return self._findings(sim, measure=measure, pooling=pooling, n_boot=n_boot,
                              halves=None if halves.empty else halves, exclude_tasks=self.gate_failures())

    def gate(self, *, n_boot: int = 2000) -> pd.DataFrame:
        """Did each control learn its task? (see :func:`layerwise.stages.evaluation.gate_table`)."""
        return _evaluation.gate_table(self, n_boot=n_boot)

    def gate_failures(self) -> list[str]:
        """Tasks left out of the verdicts: those whose control failed the gate (none with ``gate: report``)."""
        if self.spec.gate == "report":
            return []
        g = self.gate()
        return list(g.loc[~g["passed"], "task"])

    def seeds(self) -> pd.DataFrame:
        """SFT and held-out SFT vs control for every training seed (see :func:`layerwise.stages.tables.seed_table`)."""
        return _tables.seed_table(self)

    def halves(self) -> pd.DataFrame:
        """PT and SFT vs control on two disjoint halves of the test examples (see
        :func:`layerwise.stages.tables.halves_table`)."""
        return _tables.halves_table(self)

    def _findings(self, similarity: pd.DataFrame, *, measure: str, pooling: str, n_boot: int,
                  halves: pd.DataFrame | None = None, exclude_tasks: Sequence[str] = ()) -> pd.DataFrame:
        return findings_table(evaluate_findings(similarity, measure=measure, pooling=pooling,
                                                heldout_tasks=self.spec.heldout_tasks, n_boot=n_boot,
                                                seed=self.spec.data.seed, halves=halves, exclude_tasks=exclude_tasks))
