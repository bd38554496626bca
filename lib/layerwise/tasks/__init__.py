"""Offline NLP tasks for the MOSSA/CKA pipeline: registry, builders, sampling and prompts.

Public API::

    from layerwise.tasks import CLUSTERS, TASKS, TaskInfo, get_task, load_task, task_names

* :data:`CLUSTERS`: the 12 Flan 2021 cluster ids -> display names.
* :data:`TASKS`: the offline task registry (name -> :class:`TaskInfo` with provenance), read from
  the catalogue ``layerwise/data/tasks.yaml`` (:mod:`layerwise.catalogue`).
* :data:`FLAN2021_TASKS`: the paper's 69 Flan 2021 task names by cluster.
* :func:`load_task`: fetch, build (cached), sample and render one task as a ``DatasetDict``; also
  ``flan2021:<task>`` (the hub) and ``file:<path>`` (local alpaca files), see
  :mod:`layerwise.tasks.external`.
* :func:`check_task_names`: validate names of any of these forms before any work.
* :func:`cap_per_cluster`: the per-cluster cap of the multi-task mixture (:mod:`layerwise.tasks.sampling`).
* :func:`build` / :data:`BUILDERS`: a task's pool from a source folder (:mod:`layerwise.tasks.pools`;
  the builders themselves are in :mod:`layerwise.tasks.builders` and
  :mod:`layerwise.tasks.corpus_builders`).
* :mod:`layerwise.tasks.suite`: provenance, coverage and prompt-length tables for the task-suite chapter.

Modules, lowest layer first (each imports only those above it): ``records`` (pool columns and row
checks), ``registry`` (catalogue -> :class:`TaskInfo`), ``builders`` / ``corpus_builders``, ``pools``,
``external``, ``lookup``, ``sampling``, ``loading``, ``suite``.
"""

from layerwise.tasks.external import check_task_names, external_pools, parse_external, read_task_file
from layerwise.tasks.loading import (POOL_VERSION, TASK_FEATURES, Sampling, build_suite, load_pool, load_task, pool_path,
                                    sample_pool)
from layerwise.tasks.lookup import get_task
from layerwise.tasks.pools import BUILDER_FUNCTIONS, BUILDERS, build
from layerwise.tasks.records import POOL_FEATURES
from layerwise.tasks.registry import CLUSTERS, FLAN2021_TASKS, TASKS, TaskInfo, flan2021_cluster, task_names
from layerwise.tasks.sampling import CapPlan, DownsizeWarning, cap_per_cluster

__all__ = [
    "CLUSTERS",
    "FLAN2021_TASKS",
    "TASKS",
    "TaskInfo",
    "BUILDERS",
    "BUILDER_FUNCTIONS",
    "POOL_FEATURES",
    "TASK_FEATURES",
    "POOL_VERSION",
    "build",
    "build_suite",
    "flan2021_cluster",
    "get_task",
    "task_names",
    "load_pool",
    "load_task",
    "pool_path",
    "sample_pool",
    "Sampling",
    "check_task_names",
    "external_pools",
    "parse_external",
    "read_task_file",
    "cap_per_cluster",
    "CapPlan",
    "DownsizeWarning",
]
