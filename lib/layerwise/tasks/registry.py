"""Task registry: the 12 Flan 2021 clusters, the Flan 2021 task list, and the offline task suite.

Everything here comes from the catalogue file ``layerwise/data/tasks.yaml`` (read and checked by
:mod:`layerwise.catalogue`). ``TASKS`` holds every task that :func:`layerwise.tasks.load_task` can
build offline from a pinned registry package (:mod:`layerwise.sources`), with its provenance.
``FLAN2021_TASKS`` lists the paper's own Flan 2021 tasks by cluster (Zhao, Ziser & Cohen 2024,
EMNLP: the list of the authors' code; the clusters of Wei et al. 2022, ICLR), for the hub route and the task-suite chapter.
Names of the ``flan2021:`` / ``file:`` forms are resolved by :func:`layerwise.tasks.get_task`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from layerwise import catalogue
from layerwise.sources import SOURCES

__all__ = [
    "CLUSTERS",
    "FLAN2021_TASKS",
    "TaskInfo",
    "TASKS",
    "registry_task",
    "task_names",
    "flan2021_cluster",
]

#: the 12 Flan 2021 task clusters: id -> display name (order as in the FLAN paper's figure).
CLUSTERS: dict[str, str] = catalogue.clusters()

#: the 69 Flan 2021 task names used by the paper's code, by cluster.
#: On the hub (``Muennighoff/flan``) each is ``{task}_10templates``.
FLAN2021_TASKS: dict[str, tuple[str, ...]] = catalogue.flan2021_tasks()


def flan2021_cluster(flan_task: str) -> str:
    """Cluster id of a Flan 2021 task name (``"rte"`` -> ``"nli"``).

    Raises:
        KeyError: not one of the 69 names (the message lists them).
    """
    for cluster, names in FLAN2021_TASKS.items():
        if flan_task in names:
            return cluster
    valid = sorted(n for names in FLAN2021_TASKS.values() for n in names)
    raise KeyError(f"unknown Flan 2021 task {flan_task!r}; valid names: {', '.join(valid)}")


@dataclass(frozen=True)
class TaskInfo:
    """Provenance and kind of one task.

    Attributes:
        name: task id (``"squad_v1"``).
        cluster: a key of :data:`CLUSTERS`.
        kind: ``"classification"`` (prompt lists ``OPTIONS``, target is one of them) or
            ``"generation"`` (free-text target, no options).
        source: the pinned package the data comes from (``"bigbench==1.0.0"``).
        dataset: the original dataset.
        citation: short citation of the original dataset (and of the packaging, if relevant).
        licence: the data's licence as far as known; "check" where the terms are unclear.
        origin_split: which split of the original dataset the package holds.
        description: one line on what an example is and how it was mapped.
        flan_task: the Flan 2021 task this is, or stands in for (``None`` if none is close).
        match: ``"exact"`` (same dataset as Flan 2021), ``"near"`` (same data, other form) or
            ``"analog"`` (different dataset, same cluster).
        source_name: the :data:`layerwise.sources.SOURCES` key whose pin is :attr:`source`
            (``"bigbench"``); ``None`` for ``flan2021:`` / ``file:`` tasks.
        builder: the builder of :data:`layerwise.tasks.pools.BUILDER_FUNCTIONS` that makes the pool
            (``""`` for ``flan2021:`` / ``file:`` tasks).
        builder_args: the builder's keyword arguments besides the source folder.
        slug: a short form of :attr:`name` that is safe in file names (the name itself for
            registry tasks, ``flan2021-<task>`` / ``file-<task>`` for the external forms); defaults
            to :attr:`name`.
    """

    name: str
    cluster: str
    kind: str
    source: str
    dataset: str
    citation: str
    licence: str
    origin_split: str
    description: str
    flan_task: str | None = None
    match: str = "analog"
    source_name: str | None = None
    builder: str = ""
    builder_args: Mapping[str, object] = field(default_factory=dict, hash=False)
    slug: str = ""

    def __post_init__(self) -> None:
        if not self.slug:
            object.__setattr__(self, "slug", self.name)


def _task_info(name: str, entry: dict) -> TaskInfo:
    return TaskInfo(
        name=name, cluster=entry["cluster"], kind=entry["kind"], source=SOURCES[entry["source"]].pin,
        dataset=entry["dataset"], citation=entry["citation"], licence=entry["licence"],
        origin_split=entry["origin_split"], description=entry["description"], flan_task=entry.get("flan_task"),
        match=entry["match"], source_name=entry["source"], builder=entry["builder"],
        builder_args=dict(entry.get("builder_args", {})),
    )


#: the offline tasks: name -> :class:`TaskInfo`, in catalogue order.
TASKS: dict[str, TaskInfo] = {name: _task_info(name, e) for name, e in catalogue.task_entries().items()}


def registry_task(name: str) -> TaskInfo:
    """The :class:`TaskInfo` of the registry task ``name`` (for the ``flan2021:`` / ``file:`` forms
    too, use :func:`layerwise.tasks.get_task`).

    Raises:
        KeyError: not a registry task; the message lists the valid task names and the other forms.
    """
    if name in TASKS:
        return TASKS[name]
    raise KeyError(
        f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}; "
        "or 'flan2021:<Flan 2021 task>' or 'file:<path>[#cluster=<cluster>]'"
    )


def task_names(cluster: str | None = None) -> list[str]:
    """Names of the registered tasks (sorted), optionally only those of one cluster.

    Args:
        cluster: a key of :data:`CLUSTERS`, or ``None`` for all tasks.

    Raises:
        KeyError: unknown cluster; the message lists the valid cluster ids.
    """
    if cluster is None:
        return sorted(TASKS)
    if cluster not in CLUSTERS:
        raise KeyError(f"unknown cluster {cluster!r}; valid clusters: {', '.join(CLUSTERS)}")
    return sorted(n for n, t in TASKS.items() if t.cluster == cluster)
