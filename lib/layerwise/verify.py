"""Recompute one task's slice of a committed run from scratch and compare it with the committed tables.

``layerwise verify --spec specs/reference.yaml --task T`` (``make reference-verify TASK=T``): in a
scratch folder, the task's control adapters (the control and its seed replicates) are trained again
from the task data; every other adapter is copied from the committed run (the SFT adapters train on
all tasks, hours of work; they are checked by their keys and files, see
:func:`layerwise.training.check_adapter`). Then every model's hidden states on the task's test inputs
are extracted again, and the task's rows of the similarity table are computed
(:func:`layerwise.stages.tables.similarity_rows`) and compared with the committed table, row by row.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .stages.slots import SEED_MARK

__all__ = ["KEY_COLUMNS", "copy_adapters", "compare_rows", "verify_task"]

#: The columns that identify a row of the similarity table.
KEY_COLUMNS = ["task", "cluster", "layer", "comparison", "measure", "pooling"]


def copy_adapters(src: Path, dst: Path, *, except_control_of: str) -> list[str]:
    """Copy the finished adapter folders of ``src`` to ``dst`` but the controls of one task (by slug).

    The controls left out are ``control-<slug>-<key>`` and its replicates ``control-<slug>+seed<k>-<key>``.

    Returns:
        The names of the folders copied.
    """
    copied = []
    for marker in sorted(Path(src).glob("*/layerwise_adapter.json")):
        folder = marker.parent
        name = folder.name.rsplit("-", 1)[0]
        if name == f"control-{except_control_of}" or name.startswith(f"control-{except_control_of}{SEED_MARK}"):
            continue
        shutil.copytree(folder, Path(dst) / folder.name, dirs_exist_ok=True)
        copied.append(folder.name)
    return copied


def compare_rows(committed: pd.DataFrame, recomputed: pd.DataFrame) -> pd.DataFrame:
    """Row-by-row differences of two similarity tables on :data:`KEY_COLUMNS`.

    Returns:
        One row per (comparison, measure, pooling): ``rows``, ``max_abs_diff`` (over layers),
        ``layer_of_max``, ``committed`` and ``recomputed`` values at that layer; sorted by
        ``max_abs_diff``, largest first.

    Raises:
        ValueError: the two tables do not hold the same rows (names the first missing key).
    """
    a = committed.set_index(KEY_COLUMNS)["value"]
    b = recomputed.set_index(KEY_COLUMNS)["value"]
    missing = a.index.symmetric_difference(b.index)
    if len(missing):
        raise ValueError(f"the committed and the recomputed rows differ: {len(missing)} rows in one only, "
                         f"e.g. {dict(zip(KEY_COLUMNS, missing[0]))}")
    d = pd.DataFrame({"committed": a, "recomputed": b.reindex(a.index)}).reset_index()
    d["abs_diff"] = (d["committed"] - d["recomputed"]).abs()
    top = d.loc[d.groupby(["comparison", "measure", "pooling"])["abs_diff"].idxmax()]
    out = top.assign(rows=d.groupby(["comparison", "measure", "pooling"]).size().reindex(
        pd.MultiIndex.from_frame(top[["comparison", "measure", "pooling"]])).to_numpy())
    out = out.rename(columns={"abs_diff": "max_abs_diff", "layer": "layer_of_max"})
    cols = ["comparison", "measure", "pooling", "rows", "max_abs_diff", "layer_of_max", "committed", "recomputed"]
    return out[cols].sort_values("max_abs_diff", ascending=False, ignore_index=True)


def verify_task(spec_path: str, overrides: Sequence[str], task: str, scratch: Path,
                log=print) -> pd.DataFrame:  # noqa: ANN001 - a print-like callable
    """Recompute ``task``'s slice of the run of ``spec_path`` in ``scratch``; compare with its committed tables.

    Args:
        spec_path, overrides: the committed run's spec (read with ``frozen=true``: its tables must
            be there, see :class:`~layerwise.cache.StaleResult`).
        task: a task of the run.
        scratch: an empty or earlier scratch folder (a rerun reuses what it finished).
        log: progress lines.

    Returns:
        :func:`compare_rows` of the task's committed and recomputed similarity rows.

    Raises:
        KeyError: ``task`` is not in the run.
        StaleResult: the committed run lacks its similarity table or adapters for the current code.
    """
    from .pipeline import Run
    from .stages.tables import similarity_rows
    from .validation import load_checked_spec

    base = load_checked_spec(spec_path, overrides)
    with Run(dataclasses.replace(base, frozen=True), verbose=False) as committed:
        if task not in committed.spec.tasks:
            raise KeyError(f"task = {task!r} is not in the run; valid: {', '.join(committed.spec.tasks)}")
        table = committed.similarity()
        table = table[table["task"] == task]
        slug = committed.slug(task)
        source = committed.out / "adapters"
    scratch = Path(scratch)
    copied = copy_adapters(source, scratch / "adapters", except_control_of=slug)
    log(f"[layerwise] verify {task}: {len(copied)} adapters copied from {source}; its controls are trained again")
    spec = dataclasses.replace(base, output_dir=str(scratch), frozen=False)
    spec.validate()
    with Run(spec) as run:
        run.train()
        rows = similarity_rows(run, [task])
    return compare_rows(table, rows)
