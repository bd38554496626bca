"""Sampling policy for the multi-task SFT mixture: a per-cluster cap spread over a cluster's tasks.

The paper capped the multi-task training data at 50k examples per Flan cluster (Zhao, Ziser & Cohen 2024,
EMNLP: the SFT mixture ``all_tasks_sample_50k`` of the authors' code),
so a cluster with many tasks does not dominate the mixture. :func:`cap_per_cluster` decides how many
training examples of each task go into the mixture; the pipeline then takes that many from the
start of each task's ``train`` split (which :func:`layerwise.tasks.load_task` already orders
deterministically from the seed). Control adapters are not affected.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence

from layerwise.tasks.lookup import get_task

__all__ = ["CapPlan", "cap_per_cluster", "DownsizeWarning"]


class DownsizeWarning(UserWarning):
    """A task was given fewer examples than requested because ``allow_downsize=True``."""


class CapPlan(dict):
    """``task -> n_keep`` (a plain dict), plus what decided it.

    Attributes:
        available: task -> examples available.
        requested: task -> examples asked for (before capping).
        downsized: task -> (requested, available) for the tasks cut to their size
            (``allow_downsize=True``).
        capped: cluster -> (demand, cap) for the clusters whose demand exceeded the cap.
        notes: one human-readable line per down-sizing and per capped cluster.
    """

    def __init__(self, keep, *, available, requested, downsized, capped, notes):
        super().__init__(keep)
        self.available = available
        self.requested = requested
        self.downsized = downsized
        self.capped = capped
        self.notes = notes


def _count(v) -> int:
    if isinstance(v, bool):
        raise TypeError(f"expected an example count or a sequence of ids, got {v!r}")
    if isinstance(v, int):
        if v < 0:
            raise ValueError(f"an example count must be >= 0, got {v}")
        return v
    if isinstance(v, Sequence) or hasattr(v, "__len__"):
        return len(v)
    raise TypeError(f"expected an example count or a sequence of ids, got {type(v).__name__}")


def _order(seed: int, cluster: str, tasks) -> list[str]:
    return sorted(tasks, key=lambda t: hashlib.sha256(f"cap|{seed}|{cluster}|{t}".encode()).digest())


def _spread(demand: dict[str, int], cap: int, seed: int, cluster: str) -> dict[str, int]:
    """Water-filling: every task gets min(demand, share), the share rising until ``cap`` is used;
    the units left by integer division go one each to tasks in a seed-determined order."""
    keep = {t: 0 for t in demand}
    open_ = {t for t, d in demand.items() if d > 0}
    left = cap
    while open_ and left >= len(open_):
        share = left // len(open_)
        full = {t for t in open_ if demand[t] - keep[t] <= share}
        if full:
            for t in full:
                left -= demand[t] - keep[t]
                keep[t] = demand[t]
            open_ -= full
        else:
            for t in open_:
                keep[t] += share
                left -= share
    for t in _order(seed, cluster, open_):
        if left == 0:
            break
        keep[t] += 1
        left -= 1
    return keep


def cap_per_cluster(
    examples_by_task: Mapping[str, int | Sequence],
    cluster_of: Mapping[str, str] | Callable[[str], str] | None,
    cap: int | None,
    seed: int = 0,
    *,
    requested: int | Mapping[str, int] | None = None,
    allow_downsize: bool = False,
    verbose: bool = True,
) -> CapPlan:
    """How many training examples of each task the multi-task mixture takes.

    Each task's demand is ``requested`` (or everything it has). Within a cluster whose total demand
    exceeds ``cap``, the cap is spread over the cluster's tasks as evenly as their sizes allow
    (small tasks keep all their examples, the rest share what is left equally; leftover single
    examples go to tasks in an order fixed by ``seed``). Clusters within the cap keep their demand.

    Args:
        examples_by_task: task -> number of available examples, or the examples' ids.
        cluster_of: task -> cluster id (mapping or function); ``None`` uses
            :func:`layerwise.tasks.get_task`.
        cap: maximum examples per cluster (the paper: 50,000), or ``None`` for no cap.
        seed: decides only who gets the leftover units.
        requested: examples wanted per task (one int for all, or a mapping); default all available.
        allow_downsize: a task with fewer examples than requested is an error unless this is True;
            then it contributes what it has, and the down-sizing is reported (``notes``, a
            :class:`DownsizeWarning`, a line on stderr).
        verbose: print the notes to stderr.

    Returns:
        CapPlan: ``task -> n_keep`` (a dict; also ``.notes``, ``.downsized``, ``.capped``). The
        result does not depend on the order of the tasks.

    Raises:
        ValueError: a task smaller than requested (without ``allow_downsize``; names the task, its
            size and the request), a cap < 1, or a negative count/request.
    """
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ValueError(f"cap must be an integer >= 1 or None, got {cap!r}")
    if cluster_of is None:
        cluster_fn = lambda t: get_task(t).cluster  # noqa: E731
    elif callable(cluster_of):
        cluster_fn = cluster_of
    else:
        cluster_fn = cluster_of.__getitem__
    available = {t: _count(v) for t, v in examples_by_task.items()}
    if requested is None:
        want = dict(available)
    elif isinstance(requested, Mapping):
        missing = sorted(set(available) - set(requested))
        if missing:
            raise ValueError(f"requested gives no count for tasks {missing}")
        want = {t: _count(requested[t]) for t in available}
    else:
        want = {t: _count(requested) for t in available}
    notes: list[str] = []
    downsized = {}
    demand = {}
    for t in sorted(available):
        if available[t] < want[t]:
            if not allow_downsize:
                raise ValueError(
                    f"task {t!r} has {available[t]} training examples, fewer than the {want[t]} requested; "
                    "request fewer, or allow down-sizing explicitly (allow_downsize=True)"
                )
            downsized[t] = (want[t], available[t])
            notes.append(f"task {t}: down-sized from {want[t]} to {available[t]} examples (all it has)")
        demand[t] = min(want[t], available[t])
    clusters: dict[str, dict[str, int]] = {}
    for t, d in demand.items():
        clusters.setdefault(cluster_fn(t), {})[t] = d
    keep: dict[str, int] = {}
    capped = {}
    for c, ds in sorted(clusters.items()):
        total = sum(ds.values())
        if cap is not None and total > cap:
            keep.update(_spread(ds, cap, seed, c))
            capped[c] = (total, cap)
            notes.append(f"cluster {c}: {total} examples capped at {cap} (" + ", ".join(f"{t} {keep[t]}" for t in sorted(ds)) + ")")
        else:
            keep.update(ds)
    for line in notes:
        if line.startswith("task "):
            warnings.warn(line, DownsizeWarning, stacklevel=2)
        if verbose:
            print(f"[layerwise.tasks] {line}", file=sys.stderr, flush=True)
    ordered = {t: keep[t] for t in available}
    return CapPlan(ordered, available=available, requested=want, downsized=downsized, capped=capped, notes=notes)
