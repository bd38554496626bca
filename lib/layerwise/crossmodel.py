"""Cross-model comparison: the same analyses for several base models, in relative depth.

Models differ in depth (Gemma 3 270M has 18 blocks, SmolLM2-135M 30, Llama 2 7B 32), so their
curves and bands are compared on *relative depth* ``layer / L`` (0 = the embeddings, 1 = the last
block), as the layer-bands chapter does for one model against the paper. The inputs are the
tidy similarity tables of :meth:`layerwise.pipeline.Run.similarity`, one per model, computed on
the same tasks with the same recipe (the companion runs of ``RunSpec.compare_models``).

Three questions, each answered by a table:

* **Profiles** (:func:`depth_profiles`): median and interquartile range over tasks of each
  comparison, and of ΔCKA = CKA(SFT, control) − CKA(PT, control), per layer and model.
* **Profile shape** (:func:`profile_correlation`): Pearson correlation of two models' median
  ΔCKA profiles after linear interpolation onto a common grid of relative depths, with a paired
  task-bootstrap interval (both models ran the same tasks).
* **Bands** (:func:`bands_by_model`, :func:`band_agreement`): the boundaries of
  :func:`layerwise.bands.find_bands` per model in relative depth, and whether two models agree
  (both transitions identifiable and both boundaries' relative intervals overlap).
* **Cluster ranking** (:func:`cluster_rank_agreement`): Spearman correlation of the models'
  per-cluster mean CKA with the controls (the paper's RQ1 ranking), with a paired task-bootstrap
  interval.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .analysis import task_layer_matrix
from .bands import PT, SFT, Bands
from .stats import percentile_ci, spearman
from .vocab import CONTROL_ROLE, PT_ROLE, SFT_ROLE

__all__ = [
    "DELTA",
    "runs_overview",
    "depth_profiles",
    "profile_correlation",
    "bands_by_model",
    "band_agreement",
    "cluster_rank_agreement",
]

#: Label of the ΔCKA series in :func:`depth_profiles`.
DELTA = "ΔCKA (SFT − PT)"


def runs_overview(runs: Sequence[Any]) -> pd.DataFrame:
    """One row per run (model) of the cross-model chapter: what was compared and whether its controls are specialists.

    Args:
        runs: :class:`layerwise.pipeline.Run` objects (the main run and its companions), already
            computed (hidden states and response losses cached).

    Returns:
        DataFrame with columns ``model, n_layers, depth_step`` (``1 / L``), ``instruction_tuned``
        (True when the "pre-trained" checkpoint is itself instruction-tuned, so PT is only a
        stand-in), ``n_tasks, controls_beat_PT, SFT_beats_PT`` (tasks, of ``n_tasks``, whose
        response-token loss is lower under the control / SFT model than under PT).
    """
    from .models import model_info

    rows = []
    for run in runs:
        loss = run.response_loss().pivot_table(index="task", columns="role", values="loss")
        L = run.n_layers
        rows.append({
            "model": run.spec.base_model, "n_layers": L, "depth_step": 1 / L,
            "instruction_tuned": bool(model_info(run.spec.base_model).get("instruction_tuned", False)),
            "n_tasks": len(loss),
            "controls_beat_PT": int((loss[CONTROL_ROLE] < loss[PT_ROLE]).sum()),
            "SFT_beats_PT": int((loss[SFT_ROLE] < loss[PT_ROLE]).sum()) if SFT_ROLE in loss else 0,
        })
    return pd.DataFrame(rows)


def _check_models(sims: Mapping[str, pd.DataFrame], need: int = 1) -> None:
    if len(sims) < need:
        raise ValueError(f"need similarity tables of at least {need} model(s), got {len(sims)}: {list(sims)}")


def _matrix(sim: pd.DataFrame, comparison: str, tasks: Sequence[str] | None, **kw: Any) -> pd.DataFrame:
    """:func:`layerwise.analysis.task_layer_matrix` of some tasks; an error if none is left."""
    m = task_layer_matrix(sim, comparison, tasks=list(tasks) if tasks is not None else None, **kw)
    if m.empty:
        raise ValueError(f"no rows for comparison {comparison!r} and tasks {tasks}")
    return m


def _delta_matrix(sim: pd.DataFrame, tasks: Sequence[str] | None, **kw: Any) -> pd.DataFrame:
    e = _matrix(sim, SFT, tasks, **kw)
    r = _matrix(sim, PT, tasks, **kw)
    common = e.index.intersection(r.index)
    return e.loc[common] - r.loc[common]


def depth_profiles(
    sims: Mapping[str, pd.DataFrame],
    *,
    comparisons: Sequence[str] = (PT, SFT),
    delta: bool = True,
    measure: str = "linear_cka",
    pooling: str = "last",
    tasks: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Median and quartiles over tasks, per model, series and layer, with the layer's relative depth.

    Args:
        sims: model label -> similarity table (one per model; layers 1..L of that model).
        comparisons: comparisons to profile (e.g. ``"PT vs control"``).
        delta: also profile ΔCKA = CKA(SFT, control) − CKA(PT, control) per task (series
            :data:`DELTA`).
        measure, pooling: which rows to read. tasks: restrict to these tasks (default: all).

    Returns:
        DataFrame with columns ``model, series, layer, n_layers, depth`` (``layer / L``, in
        (0, 1]), ``median, q25, q75, n_tasks``.

    Raises:
        ValueError: no model; a measure, pooling or comparison missing from a table.
    """
    _check_models(sims)
    frames = []
    for model, sim in sims.items():
        mats = {c: _matrix(sim, c, tasks, measure=measure, pooling=pooling) for c in comparisons}
        if delta:
            mats[DELTA] = _delta_matrix(sim, tasks, measure=measure, pooling=pooling)
        for series, m in mats.items():
            L = int(max(m.columns))
            v = m.to_numpy(dtype=np.float64)
            frames.append(pd.DataFrame({
                "model": model, "series": series, "layer": m.columns.astype(int), "n_layers": L,
                "depth": m.columns.astype(float) / L,
                "median": np.nanmedian(v, axis=0), "q25": np.nanquantile(v, 0.25, axis=0),
                "q75": np.nanquantile(v, 0.75, axis=0), "n_tasks": np.sum(np.isfinite(v), axis=0),
            }))
    return pd.concat(frames, ignore_index=True)


def _paired_task_bootstrap(statistic: Callable[[np.ndarray], float], n_tasks: int, n_boot: int, level: float,
                           seed: int | None) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of ``statistic(task_indices)`` with a percentile task bootstrap.

    Both models' values are indexed by the same resampled tasks (paired). Replicates where the
    statistic is undefined (NaN) are left out; with none left the interval is NaN.
    """
    est = statistic(np.arange(n_tasks))
    rng = np.random.default_rng(seed)
    boot = np.array([statistic(rng.integers(0, n_tasks, n_tasks)) for _ in range(int(n_boot))])
    boot = boot[np.isfinite(boot)]
    lo, hi = percentile_ci(boot, level) if boot.size else (float("nan"), float("nan"))
    return float(est), float(lo), float(hi)


def _on_grid(curve: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A per-layer curve (layers 1..L at depths l/L) linearly interpolated at relative depths ``grid``."""
    L = curve.shape[-1]
    depth = np.arange(1, L + 1) / L
    return np.interp(grid, depth, curve)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b / den) if den > 0 else float("nan")


def profile_correlation(
    sims: Mapping[str, pd.DataFrame],
    *,
    measure: str = "linear_cka",
    pooling: str = "last",
    tasks: Sequence[str] | None = None,
    n_grid: int = 50,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Do two models' median ΔCKA profiles have the same shape over relative depth?

    For every pair of models: both median-over-tasks ΔCKA curves are interpolated linearly onto
    ``n_grid`` relative depths spanning the range both cover (from the larger of ``1/L_a`` and
    ``1/L_b`` to 1), and their Pearson correlation is taken. The interval resamples tasks with
    replacement, the same tasks for both models (paired: the models ran the same test inputs).

    Args:
        sims: model label -> similarity table. n_grid: number of grid points (>= 3).
        measure, pooling, tasks: as :func:`depth_profiles`. n_boot, level, seed: bootstrap.

    Returns:
        DataFrame, one row per pair: ``model_a, model_b, r, low, high, n_tasks, n_boot``.

    Raises:
        ValueError: fewer than 2 models, fewer than 2 tasks common to a pair, ``n_grid < 3``.
    """
    _check_models(sims, 2)
    if n_grid < 3:
        raise ValueError(f"n_grid must be >= 3, got {n_grid}")
    deltas = {m: _delta_matrix(s, tasks, measure=measure, pooling=pooling) for m, s in sims.items()}
    rows = []
    for a, b in combinations(deltas, 2):
        common = deltas[a].index.intersection(deltas[b].index)
        if len(common) < 2:
            raise ValueError(f"models {a!r} and {b!r} share {len(common)} task(s); need at least 2")
        va = deltas[a].loc[common].to_numpy(dtype=np.float64)
        vb = deltas[b].loc[common].to_numpy(dtype=np.float64)
        grid = np.linspace(max(1 / va.shape[1], 1 / vb.shape[1]), 1.0, n_grid)

        def r_of(idx: np.ndarray) -> float:
            return _pearson(_on_grid(np.nanmedian(va[idx], axis=0), grid), _on_grid(np.nanmedian(vb[idx], axis=0), grid))

        est, lo, hi = _paired_task_bootstrap(r_of, len(common), n_boot, level, seed)
        rows.append({"model_a": a, "model_b": b, "r": est, "low": lo, "high": hi,
                     "n_tasks": len(common), "n_boot": int(n_boot)})
    return pd.DataFrame(rows)


def bands_by_model(bands: Mapping[str, Bands]) -> pd.DataFrame:
    """The bands of each model in layers and in relative depth.

    Args:
        bands: model label -> :class:`layerwise.bands.Bands`.

    Returns:
        DataFrame, one row per model: ``model, n_layers, shared, transition, refinement``
        (``"first-last"`` layers), ``last_shared, last_shared_low, last_shared_high,
        last_transition, last_transition_low, last_transition_high`` (layers; intervals from the
        task bootstrap), the same six as fractions of depth with a ``rel_`` prefix, ``rise`` and
        ``identifiable``.

    Raises:
        ValueError: no model.
    """
    _check_models(bands)
    rows = []
    for model, b in bands.items():
        row: dict[str, Any] = {"model": model, "n_layers": b.n_layers}
        row.update({band: f"{s}-{e}" for band, (s, e) in b.layers.items()})
        for key, value in (("last_shared", b.last_shared), ("last_transition", b.last_transition)):
            lo, hi = b.ci.get(key, (float("nan"), float("nan")))
            row.update({key: value, f"{key}_low": lo, f"{key}_high": hi})
        row.update(b.relative())
        row.update({"rise": b.rise, "identifiable": bool(b.identifiable)})
        rows.append(row)
    return pd.DataFrame(rows)


def band_agreement(a: Bands, b: Bands, names: tuple[str, str] = ("first", "second")) -> tuple[str, str]:
    """Do two models place their bands at the same relative depth?

    ``agree`` when both transitions are identifiable and, for both boundaries (last shared and
    last transition layer), the two models' task-bootstrap intervals in relative depth overlap
    (each widened by half a layer, ``0.5 / L``, the resolution of a boundary between layers, so
    that 5 of 18 and 9 of 30 can agree);
    ``differ`` when both are identifiable and a boundary's intervals are disjoint; ``inconclusive``
    when either transition is not identifiable (its boundaries are then not bands) or an interval
    is missing (no bootstrap).

    Args:
        a, b: the two models' :class:`layerwise.bands.Bands`. names: their labels in the reason.

    Returns:
        ``(verdict, reason)``: verdict one of ``agree``, ``differ``, ``inconclusive``; reason a
        sentence with the numbers.
    """
    if not (a.identifiable and b.identifiable):
        which = [n for n, x in zip(names, (a, b)) if not x.identifiable]
        return "inconclusive", f"no identifiable transition for {' and '.join(which)}"
    parts, disjoint = [], False
    for key, label in (("last_shared", "end of shared band"), ("last_transition", "end of transition band")):
        (alo, ahi), (blo, bhi) = a.ci.get(key, (np.nan, np.nan)), b.ci.get(key, (np.nan, np.nan))
        if not np.all(np.isfinite([alo, ahi, blo, bhi])):
            return "inconclusive", "a boundary has no bootstrap interval"
        # half a layer each side: a boundary after layer l of L is only resolved to within 1 / (2L)
        ra = ((alo - 0.5) / a.n_layers, (ahi + 0.5) / a.n_layers)
        rb = ((blo - 0.5) / b.n_layers, (bhi + 0.5) / b.n_layers)
        overlap = ra[0] <= rb[1] and rb[0] <= ra[1]
        disjoint |= not overlap
        parts.append(f"{label}: [{ra[0]:.2f}, {ra[1]:.2f}] vs [{rb[0]:.2f}, {rb[1]:.2f}]"
                     f" ({'overlap' if overlap else 'disjoint'})")
    return ("differ" if disjoint else "agree"), "; ".join(parts) + " (relative depth)"


def cluster_rank_agreement(
    sims: Mapping[str, pd.DataFrame],
    *,
    comparison: str = PT,
    measure: str = "linear_cka",
    pooling: str = "last",
    tasks: Sequence[str] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int | None = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Do two models rank the task clusters alike by CKA with the controls (the paper's RQ1)?

    Each model's value per cluster is the mean over the cluster's tasks of the task's mean CKA
    over all layers (as :func:`layerwise.analysis.cluster_ranking`). For each pair of models the
    Spearman correlation of these values over the clusters both have is reported, with a paired
    task-bootstrap interval (resampled tasks feed both models; a cluster no resampled task
    belongs to is left out of that replicate; replicates with fewer than 3 clusters are dropped).

    Returns:
        ``(values, agreement)``: ``values`` has columns ``model, cluster, value, rank`` (1 =
        highest); ``agreement`` one row per pair: ``model_a, model_b, rho, low, high, n_clusters,
        n_tasks``.

    Raises:
        ValueError: fewer than 2 models; a pair shares fewer than 3 clusters.
    """
    _check_models(sims, 2)
    per_task = {}
    for model, sim in sims.items():
        m = _matrix(sim, comparison, tasks, measure=measure, pooling=pooling)
        clusters = sim.drop_duplicates("task").set_index("task")["cluster"]
        per_task[model] = pd.DataFrame({"value": m.mean(axis=1), "cluster": clusters.reindex(m.index)})
    values = []
    for model, t in per_task.items():
        c = t.groupby("cluster")["value"].mean().sort_values(ascending=False)
        values.append(pd.DataFrame({"model": model, "cluster": c.index, "value": c.to_numpy(),
                                    "rank": np.arange(1, len(c) + 1)}))
    rows = []
    for a, b in combinations(per_task, 2):
        common = per_task[a].index.intersection(per_task[b].index)
        ta, tb = per_task[a].loc[common], per_task[b].loc[common]
        n_clusters = ta["cluster"].nunique()
        if n_clusters < 3:
            raise ValueError(f"models {a!r} and {b!r} share {n_clusters} cluster(s); a rank correlation needs >= 3")

        def rho_of(idx: np.ndarray) -> float:
            ca = ta.iloc[idx].groupby("cluster")["value"].mean()
            cb = tb.iloc[idx].groupby("cluster")["value"].mean()
            if len(ca) < 3 or ca.nunique() < 2 or cb.nunique() < 2:
                return float("nan")
            return spearman(ca.to_numpy(), cb.loc[ca.index].to_numpy())

        est, lo, hi = _paired_task_bootstrap(rho_of, len(common), n_boot, level, seed)
        rows.append({"model_a": a, "model_b": b, "rho": est, "low": lo, "high": hi,
                     "n_clusters": int(n_clusters), "n_tasks": len(common)})
    return pd.concat(values, ignore_index=True), pd.DataFrame(rows)
