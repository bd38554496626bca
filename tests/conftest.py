"""Shared test set-up: offline hubs, quiet libraries, 2 CPU threads."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import pytest

#: The tiers, by folder: tests/<tier>/... get the marker of that name (``-m "not smoke"`` etc.).
TIERS = ("unit", "integration", "smoke")


def pytest_collection_modifyitems(config, items):
    """Mark every test with its tier, taken from the folder it lives in."""
    for item in items:
        parts = item.path.parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


def tidy_table(curves, *, tasks=None, clusters="nli", measure="linear_cka", pooling="last",
               n_examples=100, first_layer=1):
    """The tidy similarity table (the columns ``Run.similarity`` writes) from per-task curves.

    Args:
        curves: comparison label -> array (n_tasks, n_layers) of values; rows in ``tasks`` order.
        tasks: task names (default ``task00, task01, ...``).
        clusters: one cluster for every task, a list (one per task) or a dict task -> cluster.
        first_layer: number of the first column's layer (1 = first block).

    Returns:
        DataFrame with columns ``task, cluster, layer, comparison, measure, pooling, value, n_examples``.
    """
    arrays = {c: np.atleast_2d(np.asarray(v, dtype=float)) for c, v in curves.items()}
    n_tasks, n_layers = next(iter(arrays.values())).shape
    tasks = list(tasks) if tasks is not None else [f"task{t:02d}" for t in range(n_tasks)]
    if isinstance(clusters, str):
        clusters = {t: clusters for t in tasks}
    elif not isinstance(clusters, dict):
        clusters = dict(zip(tasks, clusters))
    rows = [{"task": task, "cluster": clusters[task], "layer": first_layer + j, "comparison": comp,
             "measure": measure, "pooling": pooling, "value": float(vals[i, j]), "n_examples": n_examples}
            for i, task in enumerate(tasks) for j in range(n_layers) for comp, vals in arrays.items()]
    return pd.DataFrame(rows)


@pytest.fixture
def make_tidy_table():
    """The :func:`tidy_table` factory, as a fixture."""
    return tidy_table
