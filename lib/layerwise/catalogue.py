"""The task catalogue as data: ``data/tasks.yaml`` and ``data/sources.yaml``, read and checked once.

``tasks.yaml`` holds the 12 Flan 2021 task clusters, the paper's 69 Flan 2021 task names by cluster
(Zhao, Ziser & Cohen 2024, EMNLP: the list of the authors' code; clusters of Wei et al. 2022, ICLR) and one entry per offline task
(cluster, kind, source, builder, provenance, templates). ``sources.yaml`` holds the pinned packages
the tasks are built from. This module only reads and checks the files; :mod:`layerwise.sources`,
:mod:`layerwise.templates` and :mod:`layerwise.tasks.registry` turn the entries into their objects,
and :mod:`layerwise.tasks.pools` checks each entry's builder. It imports nothing from the library,
so every layer may read the catalogue.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CatalogueError", "PACKAGE_DIR", "DATA_DIR", "read", "clusters", "flan2021_tasks", "task_entries",
           "source_entries", "TASK_KINDS", "MATCHES"]

#: the ``layerwise`` package folder (a generator script's path is relative to it).
PACKAGE_DIR = Path(__file__).parent

#: the folder of the catalogue files (package data).
DATA_DIR = PACKAGE_DIR / "data"

TASK_KINDS = ("classification", "generation")
MATCHES = ("exact", "near", "analog")

_TASK_REQUIRED = ("cluster", "kind", "source", "builder", "dataset", "citation", "licence", "origin_split",
                  "description", "match", "templates")
_TASK_OPTIONAL = ("builder_args", "flan_task")
_SOURCE_REQUIRED = ("package", "version", "filename", "sha256", "members", "licence")
_SOURCE_OPTIONAL = ("registry", "debs", "requirements", "script")


class CatalogueError(ValueError):
    """A catalogue file that breaks its schema (one line: file, entry, key, value, valid choices)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key written twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise CatalogueError(f"{node.start_mark.name}: key {key!r} written twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@cache
def read(filename: str) -> dict[str, Any]:
    """The parsed catalogue file ``DATA_DIR / filename`` (cached: read once per process).

    Raises:
        FileNotFoundError: no such file.
        CatalogueError: a YAML syntax error (with its position), a duplicate key, or not a mapping.
    """
    path = DATA_DIR / filename
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise CatalogueError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from e
    if not isinstance(data, dict):
        raise CatalogueError(f"{path}: expected a mapping at the top, got {type(data).__name__}")
    return data


def _section(filename: str, key: str) -> dict:
    value = read(filename).get(key)
    if not isinstance(value, dict) or not value:
        raise CatalogueError(f"{DATA_DIR / filename}: key {key!r} must be a non-empty mapping, got {value!r:.80}")
    return value


def _check_keys(where: str, entry: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where}: expected a mapping, got {entry!r:.80}")
    missing = [k for k in required if k not in entry]
    if missing:
        raise CatalogueError(f"{where}: missing key(s) {', '.join(missing)}")
    unknown = sorted(set(entry) - set(required) - set(optional))
    if unknown:
        raise CatalogueError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(required + optional)}")


def _choice(where: str, key: str, value: Any, valid) -> None:
    if value not in valid:
        raise CatalogueError(f"{where}: key {key!r} = {value!r}; valid choices: {', '.join(map(str, valid))}")


def _strings(where: str, key: str, value: Any, *, minimum: int = 1) -> None:
    if not isinstance(value, list) or len(value) < minimum or not all(isinstance(v, str) and v for v in value):
        raise CatalogueError(f"{where}: key {key!r} must be a list of at least {minimum} non-empty strings, got {value!r:.80}")


@cache
def clusters() -> dict[str, str]:
    """The 12 Flan 2021 task clusters, id -> display name, in catalogue order.

    Raises:
        CatalogueError: not a mapping of strings to strings.
    """
    out = _section("tasks.yaml", "clusters")
    if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in out.items()):
        raise CatalogueError(f"{DATA_DIR / 'tasks.yaml'}: clusters must map ids to display names, got {out!r:.120}")
    return dict(out)


@cache
def flan2021_tasks() -> dict[str, tuple[str, ...]]:
    """The Flan 2021 task names by cluster (every cluster of :func:`clusters`, in its order).

    Raises:
        CatalogueError: a cluster missing or unknown, or a name listed twice.
    """
    raw = _section("tasks.yaml", "flan2021_tasks")
    where = f"{DATA_DIR / 'tasks.yaml'}: flan2021_tasks"
    if list(raw) != list(clusters()):
        raise CatalogueError(f"{where}: clusters {list(raw)} differ from the clusters {list(clusters())}")
    names: list[str] = []
    for cluster, tasks in raw.items():
        _strings(f"{where}.{cluster}", "tasks", tasks)
        names += tasks
    if len(set(names)) != len(names):
        raise CatalogueError(f"{where}: task(s) listed twice: {sorted({n for n in names if names.count(n) > 1})}")
    return {c: tuple(t) for c, t in raw.items()}


@cache
def source_entries() -> dict[str, dict[str, Any]]:
    """The entries of ``sources.yaml``: source name -> fields of :class:`layerwise.sources.Source`
    (lists as lists; ``registry`` defaults to ``"pypi"``).

    Raises:
        CatalogueError: a missing or unknown key, or a value of the wrong form.
    """
    out = {}
    for name, entry in _section("sources.yaml", "sources").items():
        where = f"{DATA_DIR / 'sources.yaml'}: source {name!r}"
        _check_keys(where, entry, _SOURCE_REQUIRED, _SOURCE_OPTIONAL)
        _choice(where, "registry", entry.get("registry", "pypi"), ("pypi", "debian", "npm", "generate"))
        _strings(where, "members", entry["members"])
        for key in ("package", "version", "licence"):
            if not isinstance(entry[key], str) or not entry[key]:
                raise CatalogueError(f"{where}: key {key!r} must be a non-empty string, got {entry[key]!r}")
        if entry.get("registry") == "generate" and not (PACKAGE_DIR / entry.get("script", "")).is_file():
            raise CatalogueError(f"{where}: key 'script' = {entry.get('script')!r} is not a file of the layerwise package")
        out[name] = dict(entry)
    return out


@cache
def task_entries() -> dict[str, dict[str, Any]]:
    """The entries of ``tasks.yaml``'s ``tasks``: task name -> entry, in catalogue order, checked
    against the clusters, the sources and the Flan 2021 names (the builders are checked by
    :mod:`layerwise.tasks.pools`, the templates by :func:`layerwise.templates.check_templates`).

    Raises:
        CatalogueError: a missing or unknown key, an unknown cluster, kind, source, match or Flan
            2021 task, or fewer than three templates.
    """
    flan = {n: c for c, names in flan2021_tasks().items() for n in names}
    out = {}
    for name, entry in _section("tasks.yaml", "tasks").items():
        where = f"{DATA_DIR / 'tasks.yaml'}: task {name!r}"
        _check_keys(where, entry, _TASK_REQUIRED, _TASK_OPTIONAL)
        _choice(where, "cluster", entry["cluster"], list(clusters()))
        _choice(where, "kind", entry["kind"], TASK_KINDS)
        _choice(where, "source", entry["source"], sorted(source_entries()))
        _choice(where, "match", entry["match"], MATCHES)
        if entry.get("flan_task") is not None:
            _choice(where, "flan_task", entry["flan_task"], sorted(flan))
        if not isinstance(entry.get("builder_args", {}), dict):
            raise CatalogueError(f"{where}: key 'builder_args' must be a mapping, got {entry['builder_args']!r:.80}")
        _strings(where, "templates", entry["templates"], minimum=3)
        out[name] = dict(entry)
    return out
