"""One lookup for every task name form: registry tasks, ``flan2021:<task>`` and ``file:<path>``."""

from __future__ import annotations

from layerwise.tasks.external import external_info, is_external
from layerwise.tasks.registry import TASKS, TaskInfo, registry_task

__all__ = ["get_task"]


def get_task(name: str) -> TaskInfo:
    """The :class:`~layerwise.tasks.registry.TaskInfo` of task ``name``: a registry task,
    ``flan2021:<task>`` (cluster from :data:`~layerwise.tasks.registry.FLAN2021_TASKS`) or
    ``file:<path>[#cluster=<cluster>][&name=<name>]`` (cluster as given, else the Flan 2021 cluster
    of the file's task name, else ``"misc"``); see :mod:`layerwise.tasks.external`.

    Raises:
        KeyError: unknown name; the message lists the valid task names and the accepted forms.
        FileNotFoundError: a ``file:`` task whose files do not exist.
    """
    if name in TASKS:
        return TASKS[name]
    if is_external(name):
        return external_info(name)
    return registry_task(name)
