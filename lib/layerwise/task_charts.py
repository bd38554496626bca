"""Altair charts of the task-suite chapter (cluster coverage, pool sizes, prompt lengths).

They take the tables of :mod:`layerwise.tasks.suite` and return ``alt.Chart`` objects with
tooltips; rendering is set up by :func:`layerwise.charts.setup_altair`.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

__all__ = ["cluster_coverage_chart", "pool_sizes_chart", "prompt_length_chart"]

_WIDTH = 430


def cluster_coverage_chart(coverage: pd.DataFrame) -> alt.Chart:
    """Tasks per Flan 2021 cluster: in the paper's Flan 2021 list, in the offline registry, in this run.

    Args:
        coverage: :func:`layerwise.tasks.suite.cluster_coverage`.
    """
    long = coverage.melt(
        id_vars=["cluster_name"], value_vars=["flan2021_tasks", "registry_tasks", "run_tasks"], var_name="set", value_name="tasks"
    )
    long["set"] = long["set"].map({"flan2021_tasks": "Flan 2021 (paper)", "registry_tasks": "offline registry", "run_tasks": "this run"})
    return (
        alt.Chart(long, title="Tasks per Flan 2021 cluster")
        .mark_bar()
        .encode(
            y=alt.Y("cluster_name:N", sort=list(coverage["cluster_name"]), title=None),
            x=alt.X("tasks:Q", title="tasks"),
            color=alt.Color("set:N", title=None, sort=["Flan 2021 (paper)", "offline registry", "this run"]),
            yOffset=alt.YOffset("set:N", sort=["Flan 2021 (paper)", "offline registry", "this run"]),
            tooltip=["cluster_name", "set", "tasks"],
        )
        .properties(width=_WIDTH)
    )


def pool_sizes_chart(provenance: pd.DataFrame) -> alt.Chart:
    """Full pool size per task (log scale), coloured by cluster; tasks whose pool is not built are left out.

    Args:
        provenance: :func:`layerwise.tasks.suite.provenance_table` (task, cluster_name, pool_size, source).
    """
    data = provenance.dropna(subset=["pool_size"]).astype({"pool_size": "int64"})
    return (
        alt.Chart(data, title="Examples available per task (full pool)")
        .mark_bar()
        .encode(
            y=alt.Y("task:N", sort=list(data["task"]), title=None),
            x=alt.X("pool_size:Q", scale=alt.Scale(type="log"), title="examples (log scale)"),
            color=alt.Color("cluster_name:N", title="cluster"),
            tooltip=["task", "cluster_name", "pool_size", "source"],
        )
        .properties(width=_WIDTH)
    )


def prompt_length_chart(lengths: pd.DataFrame, unit: str = "chars") -> alt.Chart:
    """Distribution of prompt lengths per task (box plot over both splits).

    Args:
        lengths: :func:`layerwise.tasks.suite.prompt_lengths` (task, cluster, split, chars[, tokens]).
        unit: ``"chars"`` or ``"tokens"``.

    Raises:
        ValueError: ``unit`` is not a column of ``lengths``.
    """
    if unit not in ("chars", "tokens") or unit not in lengths:
        raise ValueError(f"unit must be a length column of the table ('chars' or 'tokens'), got {unit!r}")
    title = {"chars": "characters", "tokens": "tokens"}[unit]
    return (
        alt.Chart(lengths, title=f"Prompt length per task ({title})")
        .mark_boxplot(extent="min-max")
        .encode(
            y=alt.Y("task:N", sort=list(dict.fromkeys(lengths["task"])), title=None),
            x=alt.X(f"{unit}:Q", title=title),
            color=alt.Color("cluster:N", title="cluster"),
        )
        .properties(width=_WIDTH)
    )
