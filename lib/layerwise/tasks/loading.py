"""Example pools (built once, cached as parquet) and the deterministic train/test sampling."""

from __future__ import annotations

import hashlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow.parquet as pq

from layerwise.cache import (FORMAT_KEY, CorruptArtefact, atomic_path, cache_root, content_key, discard_corrupt,
                            read_tagged_parquet)
from layerwise.sources import fetch_source
from layerwise.templates import (TEMPLATE_MODES, check_chat_template, choose_template, n_templates, render_given,
                                 render_prompt, wrap_prompt)
from layerwise.tasks.external import external_pools
from layerwise.tasks.lookup import get_task
from layerwise.tasks.pools import build
from layerwise.tasks.records import POOL_FEATURES
from layerwise.tasks.registry import CLUSTERS, TASKS
from layerwise.tasks.sampling import DownsizeWarning

__all__ = ["build_suite", "load_pool", "load_task", "pool_path", "sample_pool", "Sampling", "POOL_VERSION", "TASK_FEATURES"]

def _pool_code_digest() -> str:
    """SHA-256 of the source of the pool builders (an edit of any of them rebuilds the cached pools)."""
    from layerwise.stages.cached import code_digest
    from layerwise.tasks import builders, corpus_builders, external, generators, pools, records

    return code_digest([pools, builders, corpus_builders, external, records, generators])


#: Digest of the pool builders' source code, part of every pool's cache key (computed, never hand-set).
POOL_VERSION = _pool_code_digest()

#: Format tag of a cached pool (parquet schema metadata ``layerwise_format``).
POOL_FORMAT = "layerwise-task-pool/1"

TASK_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "task": datasets.Value("string"),
        "cluster": datasets.Value("string"),
        "prompt": datasets.Value("string"),
        "target": datasets.Value("string"),
        "options": datasets.Sequence(datasets.Value("string")),
        "template_id": datasets.Value("int64"),
    }
)


def pool_path(name: str) -> Path:
    """Cache file of task ``name``'s full example pool: ``cache_root()/tasks/<name>-<key>.parquet``;
    the key covers the task, its source pin and :data:`POOL_VERSION` (the builders' code digest)."""
    info = get_task(name)
    key = content_key({"task": name, "source": info.source, "pool_version": POOL_VERSION})
    return cache_root() / "tasks" / f"{name}-{key}.parquet"


def load_pool(name: str) -> datasets.Dataset:
    """The full example pool of task ``name`` (columns as in :mod:`layerwise.tasks.records`).

    Built once from the fetched source and cached as parquet (atomic write, format tag
    :data:`POOL_FORMAT`); later calls read the parquet file, verified: a file that fails its check is
    reported on stderr with its path, removed and rebuilt.

    Raises:
        KeyError: unknown task.
        RuntimeError: the source cannot be fetched (see :func:`layerwise.sources.fetch_source`).
    """
    info = get_task(name)
    path = pool_path(name)
    if path.is_file():
        try:
            return _read_pool(path)
        except CorruptArtefact as err:
            discard_corrupt(err)  # reported with its path, removed, rebuilt below
    root = fetch_source(info.source_name)
    pool = build(name, root)
    table = pool.data.table
    meta = dict(table.schema.metadata or {})
    meta[FORMAT_KEY.encode()] = POOL_FORMAT.encode()
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)
    print(f"[layerwise.tasks] {name}: built pool of {len(pool)} examples -> {path}", file=sys.stderr, flush=True)
    return _read_pool(path)


def _read_pool(path: Path) -> datasets.Dataset:
    """Read a cached pool, verified: readable parquet, format tag :data:`POOL_FORMAT`, the columns and
    types of ``POOL_FEATURES``, at least one example, unique ids.

    Raises:
        CorruptArtefact: a check fails (the reason names it).
    """
    table = read_tagged_parquet(path, POOL_FORMAT)
    try:
        table = table.cast(POOL_FEATURES.arrow_schema)
    except Exception as exc:
        raise CorruptArtefact(path, f"columns {table.column_names} do not fit the pool schema: {exc}".splitlines()[0]) from None
    if table.num_rows == 0 or len(set(table.column("id").to_pylist())) != table.num_rows:
        raise CorruptArtefact(path, f"{table.num_rows} rows with duplicate or no ids")
    return datasets.Dataset(datasets.table.InMemoryTable(table))


def _rank(seed: int, task: str, ids: list[str]) -> list[int]:
    def key(i: int) -> bytes:
        return hashlib.sha256(f"split|{seed}|{task}|{ids[i]}".encode()).digest()

    return sorted(range(len(ids)), key=key)


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class Sampling:
    """How :func:`sample_pool` samples and renders a task (the keyword arguments of :func:`load_task`,
    which documents each). Checked when made.

    Raises:
        ValueError: a count, seed or shift that is not a non-negative integer, ``max_input_chars``
            < 1, an unknown ``templates`` mode or chat template (names the argument and the choices).
    """

    n_train: int
    n_test: int
    seed: int = 0
    max_input_chars: int = 1500
    templates: str = "all"
    chat_template: str = "none"
    allow_downsize: bool = False
    template_shift: int = 0

    def __post_init__(self) -> None:
        for arg, lo in (("n_train", 0), ("n_test", 0), ("seed", 0), ("max_input_chars", 1), ("template_shift", 0)):
            _check_int(arg, getattr(self, arg), lo)
        if self.templates not in TEMPLATE_MODES:
            raise ValueError(f"templates must be one of {TEMPLATE_MODES}, got {self.templates!r}")
        check_chat_template(self.chat_template)


def _downsize(name: str, have: dict[str, int], n_train: int, n_test: int, allow: bool) -> tuple[int, int]:
    """Sizes to take: the requested ones, or (``allow``) smaller ones with a reported warning."""
    if "all" in have:
        total = have["all"]
        if n_train + n_test <= total:
            return n_train, n_test
        msg = (f"task {name!r} has {total} examples, fewer than the n_train={n_train} + n_test={n_test} "
               f"= {n_train + n_test} requested")
        if not allow:
            raise ValueError(msg + "; request fewer, or allow down-sizing explicitly (allow_downsize=True)")
        new_test = total * n_test // (n_train + n_test)
        new = (total - new_test, new_test)
    else:
        if n_train <= have["train"] and n_test <= have["test"]:
            return n_train, n_test
        msg = (f"task {name!r} has {have['train']} train and {have['test']} test examples, fewer than the "
               f"n_train={n_train} / n_test={n_test} requested")
        if not allow:
            raise ValueError(msg + "; request fewer, or allow down-sizing explicitly (allow_downsize=True)")
        new = (min(n_train, have["train"]), min(n_test, have["test"]))
    line = f"{msg}; down-sized to n_train={new[0]}, n_test={new[1]} (allow_downsize=True)"
    warnings.warn(line, DownsizeWarning, stacklevel=3)
    print(f"[layerwise.tasks] {line}", file=sys.stderr, flush=True)
    return new


def sample_pool(pool: datasets.Dataset, name: str, how: Sampling, test_pool: datasets.Dataset | None = None) -> datasets.DatasetDict:
    """Split a pool into disjoint train/test samples and render their prompts, as ``how`` says
    (see :func:`load_task`, which documents the returned columns).

    Every example gets a rank from a hash of (seed, task, id); test is the first ``n_test`` by
    rank and train the next ``n_train``. So test does not depend on ``n_train``, a larger
    ``n_test`` extends a smaller one, and the two never share an id. With ``test_pool`` (a source
    that has its own test split), test is the first ``n_test`` of ``test_pool`` by rank and train
    the first ``n_train`` of ``pool``.

    Registry tasks get the project's templates (:func:`layerwise.templates.render_prompt`);
    ``flan2021:`` / ``file:`` tasks keep the source's prompt (:func:`layerwise.templates.render_given`,
    ``template_id`` -1). Then every prompt is wrapped in ``chat_template``
    (:func:`layerwise.templates.wrap_prompt`). ``template_shift`` (see :func:`load_task`) moves
    every registry example to template ``(chosen + shift) mod n_templates``.

    Raises:
        KeyError: unknown task.
        ValueError: too few examples and ``how.allow_downsize`` is False.
    """
    info = get_task(name)
    n_train, n_test, seed, max_input_chars = how.n_train, how.n_test, how.seed, how.max_input_chars
    allow_downsize, template_shift = how.allow_downsize, how.template_shift
    given = name not in TASKS
    if test_pool is None:
        n_train, n_test = _downsize(name, {"all": len(pool)}, n_train, n_test, allow_downsize)
        order = _rank(seed, name, pool["id"])
        parts = {"test": (pool, order[:n_test]), "train": (pool, order[n_test : n_test + n_train])}
    else:
        n_train, n_test = _downsize(name, {"train": len(pool), "test": len(test_pool)}, n_train, n_test, allow_downsize)
        parts = {
            "test": (test_pool, _rank(seed, name, test_pool["id"])[:n_test]),
            "train": (pool, _rank(seed, name, pool["id"])[:n_train]),
        }
    out = {}
    for split, (src, idx) in parts.items():
        rows = {k: [] for k in TASK_FEATURES}
        for ex in src.select(idx):
            if given:
                tid = -1
                prompt = render_given(ex["question"], ex["input"], max_input_chars=max_input_chars)
            else:
                tid = (choose_template(name, ex["id"], seed, how.templates) + template_shift) % n_templates(name)
                prompt = render_prompt(name, tid, ex["input"], ex["question"], ex["options"], max_input_chars=max_input_chars)
            rows["id"].append(ex["id"])
            rows["task"].append(name)
            rows["cluster"].append(info.cluster)
            rows["prompt"].append(wrap_prompt(prompt, how.chat_template))
            rows["target"].append(ex["target"])
            rows["options"].append(list(ex["options"]))
            rows["template_id"].append(tid)
        out[split] = datasets.Dataset.from_dict(rows, features=TASK_FEATURES)
    return datasets.DatasetDict({"train": out["train"], "test": out["test"]})


def load_task(
    name: str,
    *,
    n_train: int,
    n_test: int,
    seed: int = 0,
    max_input_chars: int = 1500,
    templates: str = "all",
    chat_template: str = "none",
    allow_downsize: bool = False,
    template_shift: int = 0,
) -> datasets.DatasetDict:
    """Instruction-formatted train/test samples of one task.

    Registry tasks: fetches the task's source if it is not cached
    (:func:`layerwise.sources.fetch_source`), builds the full example pool once and caches it as
    parquet under ``cache_root()/tasks/`` (:func:`load_pool`), then samples (:func:`sample_pool`).
    ``flan2021:<task>`` and ``file:<path>[#cluster=..]`` tasks are read by
    :mod:`layerwise.tasks.external` (the hub's or the files' own train/test split where there is
    one) and keep the source's prompts.

    Args:
        name: a task of :data:`layerwise.tasks.TASKS`, ``flan2021:<task>`` or ``file:<path>``.
        n_train: number of training examples (for the control / SFT adapters).
        n_test: number of test examples (for hidden-state extraction).
        seed: sampling and template seed.
        max_input_chars: limit on the task's main input text; the instruction, options, second
            field and answer cue are never cut (for prompts given by the source: the middle of the
            prompt is cut, its start and end kept).
        templates: ``"all"`` (template per example chosen from (seed, id)) or ``"first"``.
        chat_template: wrap every prompt in this chat template (a key of
            :data:`layerwise.templates.CHAT_TEMPLATES`: ``none``, ``llama2``, ``gemma``, ``chatml``).
        allow_downsize: if the task has fewer examples than requested, take fewer (train and test
            scaled in proportion; for a source split, each capped at its size) with a
            :class:`DownsizeWarning` and a line on stderr, instead of raising.
        template_shift: render each example with template ``(chosen + template_shift) mod
            n_templates`` instead of the chosen one: the same examples, ids, targets and order
            with other instructions (the template-variation check; ``0`` = the usual prompts).
            Prompts given by a ``flan2021:`` / ``file:`` source are not affected.

    Returns:
        DatasetDict with splits ``train`` and ``test``; columns ``id`` (str), ``task`` (str),
        ``cluster`` (str), ``prompt`` (str, ends with the answer cue, then the chat template's
        assistant opening if any; target not included), ``target`` (str), ``options`` (list[str],
        ``[]`` for generation tasks), ``template_id`` (int64; -1: prompt given by the source). Same
        arguments give identical rows in identical order; train and test share no id.

    Raises:
        KeyError: unknown task (the message lists valid names and forms).
        ValueError: the pool has fewer than ``n_train + n_test`` examples and ``allow_downsize``
            is False (names the task, the available and the requested counts), an invalid argument
            value (unknown chat template: lists the valid ones), or a malformed local file (names
            the file and the record).
        FileNotFoundError: a ``file:`` task's files do not exist.
        RuntimeError: the source cannot be fetched (for ``flan2021:``: the hub is off or unreachable).
    """
    how = Sampling(n_train=n_train, n_test=n_test, seed=seed, max_input_chars=max_input_chars, templates=templates,
                   chat_template=chat_template, allow_downsize=allow_downsize, template_shift=template_shift)
    get_task(name)  # both checks fail before any download
    if name not in TASKS:
        pools = external_pools(name)
        if "all" in pools:
            return sample_pool(pools["all"], name, how)
        return sample_pool(pools["train"], name, how, test_pool=pools["test"])
    return sample_pool(load_pool(name), name, how)


def build_suite(names: list[str] | None = None) -> dict[str, int]:
    """Fetch the sources and build (or read) the cached pools of ``names`` (default: all tasks).

    A task whose source cannot be fetched on this machine (for example no ``apt-get`` for the
    Debian Bibles) is skipped with a one-line message on stderr naming the task, the reason and the
    clusters the suite then lacks.

    Returns:
        dict: task name -> pool size, for the tasks that were built.

    Raises:
        KeyError: an unknown task name.
    """
    names = list(names) if names is not None else sorted(TASKS)
    infos = {n: get_task(n) for n in names}
    sizes: dict[str, int] = {}
    for n in names:
        try:
            sizes[n] = len(load_pool(n))
        except RuntimeError as e:
            print(f"[layerwise.tasks] skipping {n}: {e}", file=sys.stderr, flush=True)
    lacking = sorted({infos[n].cluster for n in names} - {infos[n].cluster for n in sizes}, key=list(CLUSTERS).index)
    if lacking:
        print(f"[layerwise.tasks] the suite lacks the clusters: {', '.join(lacking)}", file=sys.stderr, flush=True)
    return sizes
