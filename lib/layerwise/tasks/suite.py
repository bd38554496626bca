"""Tables about the task suite for the task-suite chapter: provenance, cluster coverage, pool sizes,
prompt lengths and one example prompt per task. Everything is computed from the registry, the
cached pools and the sampled tasks; nothing is typed in.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import pyarrow.parquet as pq

from layerwise.tasks.external import external_pools
from layerwise.tasks.loading import load_pool, pool_path
from layerwise.tasks.lookup import get_task
from layerwise.tasks.registry import CLUSTERS, FLAN2021_TASKS, TASKS

__all__ = ["pool_size", "task_provenance", "PROVENANCE_COLUMNS", "provenance_table", "cluster_coverage", "prompt_lengths", "length_summary", "example_prompts"]


def pool_size(name: str, *, build: bool = False) -> int | None:
    """Examples in the full pool of task ``name`` (for ``file:`` / ``flan2021:`` tasks: train +
    test pools). Registry tasks: read from the cached parquet file's metadata, or ``None`` if the
    pool is not built yet (``build=True`` builds it)."""
    if name not in TASKS:
        return sum(len(p) for p in external_pools(name).values())
    path = pool_path(name)
    if path.is_file():
        return pq.ParquetFile(path).metadata.num_rows
    return len(load_pool(name)) if build else None


#: the provenance columns of :func:`task_provenance`, in order.
PROVENANCE_COLUMNS = ("task", "cluster", "cluster_name", "kind", "match", "flan_task", "dataset", "citation", "licence",
                      "source", "origin_split", "description")


def task_provenance(name: str) -> dict[str, str]:
    """The provenance of task ``name`` (any name form) as one table row: :data:`PROVENANCE_COLUMNS`
    (``flan_task`` is ``""`` when there is none).

    Raises:
        KeyError: unknown task.
    """
    info = get_task(name)
    return {"task": name, "cluster": info.cluster, "cluster_name": CLUSTERS[info.cluster], "kind": info.kind,
            "match": info.match, "flan_task": info.flan_task or "",
            **{k: getattr(info, k) for k in ("dataset", "citation", "licence", "source", "origin_split", "description")}}


def provenance_table(names=None, *, build: bool = False) -> pd.DataFrame:
    """One row per task (default: every registry task, by cluster order): :data:`PROVENANCE_COLUMNS`
    and ``pool_size`` (``<NA>`` for pools not built unless ``build``)."""
    names = list(names) if names is not None else sorted(TASKS, key=lambda t: (list(CLUSTERS).index(TASKS[t].cluster), t))
    rows = [{**task_provenance(n), "pool_size": pool_size(n, build=build)} for n in names]
    df = pd.DataFrame(rows)
    if len(df):
        df["pool_size"] = df["pool_size"].astype("Int64")
    return df


def cluster_coverage(run_tasks=()) -> pd.DataFrame:
    """One row per Flan 2021 cluster: ``cluster, cluster_name, flan2021_tasks`` (count in the
    paper's list), ``registry_tasks`` (offline tasks available), ``exact`` (of those, the same
    dataset as Flan 2021), ``run_tasks`` (tasks of this run) and ``registry_names``."""
    run_clusters = [get_task(t).cluster for t in run_tasks]
    rows = []
    for c, label in CLUSTERS.items():
        reg = sorted(t for t, i in TASKS.items() if i.cluster == c)
        rows.append(
            {
                "cluster": c,
                "cluster_name": label,
                "flan2021_tasks": len(FLAN2021_TASKS[c]),
                "registry_tasks": len(reg),
                "exact": sum(TASKS[t].match == "exact" for t in reg),
                "run_tasks": run_clusters.count(c),
                "registry_names": ", ".join(reg),
            }
        )
    return pd.DataFrame(rows)


def prompt_lengths(tasks: Mapping, tokenizer=None) -> pd.DataFrame:
    """Tidy prompt lengths: one row per (task, split, example) with ``task, cluster, split, id,
    chars`` and, with a ``tokenizer``, ``tokens`` (as the model sees the prompt, special tokens
    included).

    Args:
        tasks: task name -> ``DatasetDict`` with ``train`` / ``test`` (``Run.tasks``).
        tokenizer: a Hugging Face tokenizer, or ``None`` for characters only.
    """
    rows = []
    for name, dd in tasks.items():
        for split in ("train", "test"):
            ds = dd[split]
            prompts = list(ds["prompt"])
            toks = [len(x) for x in tokenizer(prompts)["input_ids"]] if tokenizer is not None and prompts else [None] * len(prompts)
            for i, p, t in zip(ds["id"], prompts, toks):
                rows.append({"task": name, "cluster": get_task(name).cluster, "split": split, "id": i, "chars": len(p), "tokens": t})
    df = pd.DataFrame(rows, columns=["task", "cluster", "split", "id", "chars", "tokens"])
    if tokenizer is None:
        df = df.drop(columns="tokens")
    return df


def length_summary(lengths: pd.DataFrame) -> pd.DataFrame:
    """Per task: median, 90th percentile and maximum prompt length (characters, and tokens if
    present), over both splits."""
    cols = [c for c in ("chars", "tokens") if c in lengths]
    agg = {}
    for c in cols:
        agg[f"{c}_median"] = (c, "median")
        agg[f"{c}_p90"] = (c, lambda s: s.quantile(0.9))
        agg[f"{c}_max"] = (c, "max")
    out = lengths.groupby("task", sort=False).agg(**agg).reset_index()
    return out.round(0).astype({k: "int64" for k in agg})


def example_prompts(tasks: Mapping, split: str = "test", max_target_chars: int = 300) -> list[dict]:
    """The first example of each task's ``split``: ``task, cluster, template_id, prompt, target``
    (target shortened to ``max_target_chars``)."""
    out = []
    for name, dd in tasks.items():
        ds = dd[split]
        if len(ds) == 0:
            continue
        ex = ds[0]
        target = ex["target"] if len(ex["target"]) <= max_target_chars else ex["target"][:max_target_chars] + " …"
        out.append({"task": name, "cluster": ex["cluster"], "template_id": ex["template_id"], "prompt": ex["prompt"], "target": target})
    return out
