"""The table stages: similarity of every model with each task's control, and per-layer spectra.

Both are computed from the cached centred Gram matrices (:func:`~layerwise.stages.states.gram_stack`)
and cached as parquet files by :func:`~layerwise.stages.cached.cached_table`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .. import similarity as _similarity
from .. import spectra as _spectra
from ..similarity import MEASURES
from ..spectra import layer_spectra
from ..stats import shuffled_row_null
from ..similarity import center_gram, get_measure
from ..vocab import (CONTROL_ROLE, HALF_COLUMN, HELDOUT_ROLE, HELDOUT_SFT, OTHER_ROLE, PT, PT_ROLE, REPLICATE_ROLE,
                     SEED_COLUMN, SFT, SFT_ROLE, SIMILARITY_COLUMNS, comparison_name, null_name)
from .cached import cached_table
from .slots import ModelSlot
from .states import gram_stack, run_models, test_key

if TYPE_CHECKING:
    from ..pipeline import Run

__all__ = ["LINEAR_MEASURES", "BASELINE_ROLES", "Comparison", "measure_names", "comparison_plan", "similarity_table",
           "similarity_rows",
           "seed_table", "half_split", "halves_table", "findings_input", "cka_table", "spectra_table"]

#: Roles of the baseline comparisons appended to the similarity table, each the mean over its models on a task.
BASELINE_ROLES = (OTHER_ROLE, REPLICATE_ROLE)

#: The measures compared on mean-pooled states and given a shuffled-row null (linear kernels).
LINEAR_MEASURES = ("linear_cka", "debiased_cka")
#: Roles compared on mean-pooled states and given a shuffled-row null.
_CORE_ROLES = (PT_ROLE, SFT_ROLE)


def _with_states(run: Run, rows: Callable[..., pd.DataFrame], *args: Any) -> pd.DataFrame:
    """``rows(run, *args)`` once every model's hidden states are on disk (:func:`run_models`).

    The tables call it inside their compute step, so a table already cached is read without
    hidden states (a run rendered from committed results has none).
    """
    run_models(run)
    return rows(run, *args)


def measure_names(requested: Sequence[str]) -> list[str]:
    """The measures of a spec: ``requested``, or every measure with a Gram form if it holds ``"all"``;
    ``linear_cka`` (the paper's measure) first, always."""
    names = sorted(n for n, m in MEASURES.items() if m.uses_grams) if "all" in requested else list(requested)
    return ["linear_cka"] + [n for n in names if n != "linear_cka"]


@dataclass(frozen=True)
class Comparison:
    """One model compared with a task's control: which pooling, which measures, with a null or not."""

    task: str
    pooling: str
    role: str
    measures: tuple[str, ...]
    null: bool


def comparison_plan(roles: Sequence[str], tasks: Sequence[str], measures: Sequence[str], shuffled: bool) -> list[Comparison]:
    """Every comparison of the similarity table, in the table's row order.

    Per task: each role but the control on last-token states with all ``measures`` (PT and SFT
    with a shuffled-row null if ``shuffled``), then PT and SFT on mean-pooled states with the
    linear measures only (a robustness check).
    """
    others = [r for r in roles if r != CONTROL_ROLE]
    linear = tuple(m for m in measures if m in LINEAR_MEASURES)
    plan: list[Comparison] = []
    for task in tasks:
        plan += [Comparison(task, "last", r, tuple(measures), shuffled and r in _CORE_ROLES) for r in others]
        plan += [Comparison(task, "mean", r, linear, False) for r in _CORE_ROLES if r in others]
    return plan


def _layer_rows(c: Comparison, cluster: str, label: str, measure: str, values: NDArray[np.float64], n: int) -> list[dict[str, Any]]:
    """One table row per layer (layers numbered 1..L) of one comparison under one measure."""
    return [dict(zip(SIMILARITY_COLUMNS, (c.task, cluster, i + 1, label, measure, c.pooling, float(v), n)))
            for i, v in enumerate(values)]


def _similarity_rows(run: Run, measures: list[str], n_null: int, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """Compute the similarity table (see :func:`similarity_table`), or its rows of ``tasks`` only.

    The rows of a task are the same whether all tasks are computed or some: the shuffled-row
    null's permutations of the tasks left out are drawn (and not used), so every task gets the
    permutations of the whole table. ``layerwise verify`` recomputes one task's slice this way.
    """
    plan = comparison_plan(run.roles, run.spec.tasks, measures, "shuffled" in run.spec.baselines)
    linear = [m for m in measures if m in LINEAR_MEASURES]
    rng = np.random.default_rng(run.spec.data.seed)  # one generator, drawn in plan order
    rows: list[dict[str, Any]] = []
    for c in plan:
        cluster, n = run.cluster_of(c.task), len(run.tasks[c.task]["test"])
        if tasks is not None and c.task not in tasks:
            if c.null:
                [rng.permutation(n) for _ in range(n_null)]
            continue
        control = gram_stack(run, CONTROL_ROLE, c.task, c.pooling)
        model = gram_stack(run, c.role, c.task, c.pooling)
        for measure in c.measures:
            values = run.grams.compare(model[0], control[0], model[1], measure=measure)
            rows += _layer_rows(c, cluster, comparison_name(c.role), measure, values, n)
        if c.null:
            perms = [rng.permutation(n) for _ in range(n_null)]
            G_model, G_control = run.grams.get(*model), run.grams.get(*control)
            for measure in linear:
                rows += _layer_rows(c, cluster, null_name(c.role), measure,
                                    shuffled_row_null(measure, G_model, G_control, perms), n)
    rows += _baseline_rows(run, measures, tasks)
    return pd.DataFrame(rows)


def _baseline_rows(run: Run, measures: list[str], tasks: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows of the baseline comparisons (:data:`BASELINE_ROLES`) on last-token states, after the main rows.

    A task's value is the mean over the role's models on it: over its sibling tasks' controls for
    ``other-task control``, over the control seeds for ``control replicate``. ``tasks``: those only.
    """
    rows: list[dict[str, Any]] = []
    for task in run.spec.tasks if tasks is None else [t for t in run.spec.tasks if t in tasks]:
        cluster, n = run.cluster_of(task), len(run.tasks[task]["test"])
        control = gram_stack(run, CONTROL_ROLE, task)
        for role in BASELINE_ROLES:
            slots = [s for s in run.extra_slots if s.role == role and task in s.tasks]
            if not slots:
                continue
            c = Comparison(task, "last", role, tuple(measures), False)
            for measure in measures:
                values = np.mean([run.grams.compare(gram_stack(run, role, task, slot=s)[0], control[0], control[1],
                                                    measure=measure) for s in slots], axis=0)
                rows += _layer_rows(c, cluster, comparison_name(role), measure, values, n)
    return rows


def similarity_rows(run: Run, tasks: Sequence[str], *, n_null: int = 20) -> pd.DataFrame:
    """The rows of :func:`similarity_table` for ``tasks``, computed (never cached), with the states they need.

    Equal to those rows of the whole table (same comparisons, same shuffled-null permutations).
    Computes the hidden states of every model on ``tasks`` that are missing, and nothing else.

    Raises:
        KeyError: a task not in the run.
    """
    unknown = [t for t in tasks if t not in run.spec.tasks]
    if unknown:
        raise KeyError(f"tasks {unknown} are not in the run; valid: {list(run.spec.tasks)}")
    run_models(run, slots=[dataclasses.replace(s, tasks=tuple(t for t in s.tasks if t in tasks))
                           for s in run.slots + run.extra_slots if set(s.tasks) & set(tasks)])
    return _similarity_rows(run, measure_names(run.spec.measures), n_null, tasks)


def similarity_table(run: Run, *, n_null: int = 20) -> pd.DataFrame:
    """Similarity of every model with each task's control, per layer, measure and pooling.

    Comparisons: ``"<role> vs control"`` for every role of the run but ``control``, and - if
    the spec asks for the ``shuffled`` baseline - ``"shuffled <role> vs control"`` for PT and SFT:
    the mean over ``n_null`` random row permutations (:func:`layerwise.stats.shuffled_row_null`).
    Mean-pooled states are compared for PT and SFT with the linear measures only.

    Returns:
        DataFrame with columns :data:`layerwise.vocab.SIMILARITY_COLUMNS` (``task, cluster, layer,
        comparison, measure, pooling, value, n_examples``); layers 1..L (layer 0, the embedding of
        the last prompt token, is left out as in the paper). Cached in
        ``tables/similarity-<key>.parquet``.
    """
    measures = measure_names(run.spec.measures)
    parts = {"slots": [(s.role, s.key, s.tasks) for s in run.slots + run.extra_slots],
             "test_examples": [test_key(run, t) for t in run.spec.tasks],
             "measures": measures, "baselines": list(run.spec.baselines), "n_null": n_null, "seed": run.spec.data.seed}
    code = [comparison_plan, _layer_rows, _similarity_rows, _baseline_rows, _similarity, shuffled_row_null]
    return cached_table(run.out / "tables", "similarity", parts, lambda: _with_states(run, _similarity_rows, measures, n_null),
                        code=code, log=run.log, frozen=run.spec.frozen)


def _experimental_slots(run: Run) -> list[ModelSlot]:
    """The SFT and held-out SFT models of every seed (the first seed's from the main design)."""
    roles = (SFT_ROLE, HELDOUT_ROLE)
    return [s for s in run.slots + run.extra_slots if s.role in roles and s.adapter is not None]


def _seed_rows(run: Run) -> pd.DataFrame:
    """Compute the seed table (see :func:`seed_table`)."""
    measures = [m for m in measure_names(run.spec.measures) if m in LINEAR_MEASURES]
    rows: list[dict[str, Any]] = []
    for slot in _experimental_slots(run):
        for task in run.spec.tasks:
            cluster, n = run.cluster_of(task), len(run.tasks[task]["test"])
            control, model = gram_stack(run, CONTROL_ROLE, task), gram_stack(run, slot.role, task, slot=slot)
            c = Comparison(task, "last", slot.role, tuple(measures), False)
            for measure in measures:
                values = run.grams.compare(model[0], control[0], model[1], measure=measure)
                rows += [r | {SEED_COLUMN: slot.seed} for r in _layer_rows(c, cluster, comparison_name(slot.role), measure, values, n)]
    return pd.DataFrame(rows)


def seed_table(run: Run) -> pd.DataFrame:
    """SFT and held-out SFT vs control for every seed of ``training.seeds`` (last token, linear measures).

    Returns:
        The similarity columns plus ``seed`` (the adapter's training seed); empty when the run uses an
        off-the-shelf experimental model. Cached in ``tables/seeds-<key>.parquet``.
    """
    parts = {"slots": [(s.role, s.key, s.tasks, s.seed) for s in _experimental_slots(run)] + [
                 (s.role, s.key) for s in run.slots if s.role == CONTROL_ROLE],
             "test_examples": [test_key(run, t) for t in run.spec.tasks], "measures": list(run.spec.measures)}
    return cached_table(run.out / "tables", "seeds", parts, lambda: _with_states(run, _seed_rows),
                        code=[_seed_rows, _experimental_slots, _layer_rows, _similarity], log=run.log, frozen=run.spec.frozen)


def half_split(n: int, seed: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Two disjoint halves of ``n`` test examples (sorted row indices), drawn from ``seed``: A gets ``n // 2``."""
    perm = np.random.default_rng([seed, n]).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def _halves_rows(run: Run) -> pd.DataFrame:
    """Compute the split-half table (see :func:`halves_table`)."""
    measures = [m for m in measure_names(run.spec.measures) if m in LINEAR_MEASURES]
    rows: list[dict[str, Any]] = []
    for task in run.spec.tasks:
        cluster, n = run.cluster_of(task), len(run.tasks[task]["test"])
        G_control = run.grams.get(*gram_stack(run, CONTROL_ROLE, task))
        for role in (PT_ROLE, SFT_ROLE):
            G_model = run.grams.get(*gram_stack(run, role, task))
            for half, idx in zip("AB", half_split(n, run.spec.data.seed)):
                block = np.ix_(idx, idx)
                c = Comparison(task, "last", role, tuple(measures), False)
                for measure in measures:
                    m = get_measure(measure)
                    values = np.array([m.from_grams(center_gram(Gm[block]), center_gram(Gc[block]))
                                       for Gm, Gc in zip(G_model, G_control)])
                    rows += [r | {HALF_COLUMN: half} for r in _layer_rows(c, cluster, comparison_name(role), measure, values, len(idx))]
    return pd.DataFrame(rows)


def halves_table(run: Run) -> pd.DataFrame:
    """PT and SFT vs control on two disjoint halves of each task's test examples (:func:`half_split`).

    Used by F6, so that the PT value and ΔCKA it correlates come from different examples and share no
    noise. Linear measures, last token.

    Returns:
        The similarity columns plus ``half`` (``"A"`` or ``"B"``); ``n_examples`` is the half's size.
        Cached in ``tables/halves-<key>.parquet``.
    """
    parts = {"slots": [(s.role, s.key, s.tasks) for s in run.slots if s.role in (PT_ROLE, SFT_ROLE, CONTROL_ROLE)],
             "test_examples": [test_key(run, t) for t in run.spec.tasks], "measures": list(run.spec.measures),
             "seed": run.spec.data.seed}
    return cached_table(run.out / "tables", "halves", parts, lambda: _with_states(run, _halves_rows),
                        code=[_halves_rows, half_split, _layer_rows, _similarity], log=run.log, frozen=run.spec.frozen)


def findings_input(similarity: pd.DataFrame, seeds: pd.DataFrame) -> pd.DataFrame:
    """The similarity table with the experimental models' rows of every seed (the findings' input).

    The SFT and held-out SFT rows of the measures and pooling in ``seeds`` are replaced by ``seeds``'
    rows (one per seed, with a ``seed`` column); every other row gets ``seed`` = NaN. With one seed
    (or an empty ``seeds``) the table is ``similarity`` plus that column.
    """
    if seeds.empty:
        return similarity.assign(**{SEED_COLUMN: np.nan})
    replaced = (similarity["comparison"].isin(seeds["comparison"].unique())
                & similarity["measure"].isin(seeds["measure"].unique()) & (similarity["pooling"] == "last"))
    rest = similarity[~replaced].assign(**{SEED_COLUMN: np.nan})
    return pd.concat([rest, seeds[list(similarity.columns) + [SEED_COLUMN]]], ignore_index=True)


def cka_table(similarity: pd.DataFrame) -> pd.DataFrame:
    """The paper's table from a similarity table: linear CKA, last token, PT/SFT/held-out SFT vs control.

    Returns:
        The rows of ``similarity`` with ``measure == "linear_cka"``, ``pooling == "last"`` and
        no baseline comparison, without the ``pooling`` column; index reset.
    """
    df = similarity
    sub = df[(df["measure"] == "linear_cka") & (df["pooling"] == "last") & df["comparison"].isin([PT, SFT, HELDOUT_SFT])]
    return sub.drop(columns="pooling").reset_index(drop=True)


def _spectra_rows(run: Run) -> pd.DataFrame:
    """Compute the spectra table (see :func:`spectra_table`)."""
    frames = []
    for slot in run.slots:
        for task in slot.tasks:
            name, tkey = gram_stack(run, slot.role, task)
            _, summary = layer_spectra(grams=run.grams.get(name, tkey),
                                       labels={"role": slot.role, "task": task, "cluster": run.cluster_of(task)})
            summary["layer"] = summary["layer"] + 1  # Grams hold layers 1..L
            frames.append(summary)
    return pd.concat(frames, ignore_index=True)


def spectra_table(run: Run) -> pd.DataFrame:
    """Per-layer spectral summary of every model on every task (last-token states, layers 1..L).

    See :func:`layerwise.spectra.layer_spectra` for the columns (``role, task, cluster,
    layer``, ``effective_rank``, ``participation_ratio``, ``n_99``, ...). Cached in
    ``tables/spectra-<key>.parquet``.
    """
    parts = {"slots": [(s.role, s.key, s.tasks) for s in run.slots],
             "test_examples": [test_key(run, t) for t in run.spec.tasks]}
    return cached_table(run.out / "tables", "spectra", parts, lambda: _with_states(run, _spectra_rows),
                        code=[_spectra_rows, _spectra, _similarity], log=run.log, frozen=run.spec.frozen)
