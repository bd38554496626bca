"""Analyses of the similarity table: selections, task x layer matrices, cluster aggregates, layer thirds.

Every function takes the tidy table of :meth:`layerwise.pipeline.Run.similarity` (columns
``task, cluster, layer, comparison, measure, pooling, value``) and returns plain DataFrames; the
notebooks only display them. The paper's findings and their verdicts live in
:mod:`layerwise.findings` (one registered function per finding), which builds on this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .vocab import PT, SFT

__all__ = [
    "PAPER_CLUSTER_GROUPS",
    "select",
    "task_layer_matrix",
    "layer_thirds",
    "cluster_layer_means",
    "delta_by_cluster",
    "cluster_ranking",
]

#: The paper's reading of its Fig. 3 under PT: clusters whose tasks pre-training
#: already encodes well ("high") and poorly ("low"). NLI, RC + commonsense and misc. are not
#: characterised by the paper.
PAPER_CLUSTER_GROUPS: dict[str, tuple[str, ...]] = {
    "high": ("closed_book_qa", "commonsense", "paraphrase", "sentiment"),
    "low": ("coreference", "reading_comprehension", "struct_to_text", "summarization", "translation"),
}

def select(sim: pd.DataFrame, *, measure: str = "linear_cka", pooling: str = "last",
           comparisons: list[str] | None = None, tasks: list[str] | None = None) -> pd.DataFrame:
    """Rows of one measure and pooling (and optionally some comparisons / tasks).

    Raises:
        ValueError: the measure, pooling or a comparison is not in the table (lists what is).
    """
    for col, want in (("measure", [measure]), ("pooling", [pooling]), ("comparison", comparisons or [])):
        have = sorted(sim[col].unique())
        missing = [w for w in want if w not in have]
        if missing:
            raise ValueError(f"{col} {missing} not in the similarity table; it has {have}")
    out = sim[(sim["measure"] == measure) & (sim["pooling"] == pooling)]
    if comparisons is not None:
        out = out[out["comparison"].isin(comparisons)]
    if tasks is not None:
        out = out[out["task"].isin(tasks)]
    return out


def task_layer_matrix(sim: pd.DataFrame, comparison: str, **kw: Any) -> pd.DataFrame:
    """``(n_tasks, n_layers)`` matrix of one comparison (rows: tasks sorted; columns: layers 1..L)."""
    sub = select(sim, comparisons=[comparison], **kw)
    return sub.pivot_table(index="task", columns="layer", values="value").sort_index()


def layer_thirds(n_layers: int) -> dict[str, list[int]]:
    """Early, middle and late thirds of layers 1..L (early = first floor(L/3), late = last floor(L/3)).

    Used by the findings that the paper states for "early" and "upper" layers without a rule; the
    band rule (:mod:`layerwise.bands`) is used where the paper names bands.
    """
    k = max(1, n_layers // 3)
    layers = list(range(1, n_layers + 1))
    return {"early": layers[:k], "middle": layers[k:n_layers - k], "late": layers[n_layers - k:]}


def cluster_layer_means(sim: pd.DataFrame, comparison: str, **kw: Any) -> pd.DataFrame:
    """Mean over a cluster's tasks per layer: columns ``cluster, layer, value, n_tasks``."""
    sub = select(sim, comparisons=[comparison], **kw)
    g = sub.groupby(["cluster", "layer"])["value"]
    return g.mean().to_frame("value").join(g.size().rename("n_tasks")).reset_index()


def delta_by_cluster(sim: pd.DataFrame, *, experimental: str = SFT, reference: str = PT, **kw: Any) -> pd.DataFrame:
    """ΔCKA = CKA(experimental, control) − CKA(reference, control), mean over each cluster's tasks per layer.

    The paper's Figure 3 differences. Columns ``cluster, layer, delta, n_tasks``.
    """
    e = task_layer_matrix(sim, experimental, **kw)
    r = task_layer_matrix(sim, reference, **kw).loc[e.index]
    d = (e - r).stack().rename("delta").reset_index()
    clusters = sim.drop_duplicates("task").set_index("task")["cluster"]
    d["cluster"] = d["task"].map(clusters)
    g = d.groupby(["cluster", "layer"])["delta"]
    return g.mean().to_frame("delta").join(g.size().rename("n_tasks")).reset_index()


def cluster_ranking(sim: pd.DataFrame, comparison: str = PT, *, layers: list[int] | None = None, **kw: Any) -> pd.DataFrame:
    """Clusters ranked by mean CKA with the controls (over the given layers and the cluster's tasks).

    Columns ``cluster, value, n_tasks, rank, paper_group`` (``high`` / ``low`` / ``-`` from
    :data:`PAPER_CLUSTER_GROUPS`), sorted by ``value`` descending.
    """
    sub = select(sim, comparisons=[comparison], **kw)
    if layers is not None:
        sub = sub[sub["layer"].isin(layers)]
    per_task = sub.groupby(["cluster", "task"])["value"].mean().reset_index()
    g = per_task.groupby("cluster")["value"]
    out = g.mean().to_frame("value").join(g.size().rename("n_tasks")).reset_index()
    out = out.sort_values("value", ascending=False).reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    group = {c: k for k, cs in PAPER_CLUSTER_GROUPS.items() for c in cs}
    out["paper_group"] = out["cluster"].map(group).fillna("-")
    return out
