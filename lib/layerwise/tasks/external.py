"""Tasks from outside the offline registry: Flan 2021 from the hub and local alpaca-format files.

Two name forms are accepted wherever a task name is (``load_task``, ``get_task``, a spec's ``tasks``):

``flan2021:<task>``
    The paper's own data: ``{task}_10templates`` of the Hugging Face dataset ``Muennighoff/flan``
    (files ``train/<task>_10templates_train.jsonl`` and ``test/<task>_10templates_test.jsonl``,
    records ``{"inputs", "targets", "task"}``; FLAN's ten templates are already applied). ``<task>``
    is one of the 69 names of :data:`layerwise.tasks.FLAN2021_TASKS`, which also gives the cluster.
    The files are fetched with ``huggingface_hub`` into its usual cache; with ``HF_HUB_OFFLINE=1`` or
    ``HF_DATASETS_OFFLINE=1`` only that cache is used, and a missing file is an error that says the
    hub is off.

``file:<path>[#cluster=<cluster>][&name=<name>]``
    Local task files in the alpaca format (``instruction``, ``input``, ``output``) that the
    authors' processed copy (``flan_v1/<task>_{train,validation,test}.json``) uses; records in the
    Flan hub form (``inputs``, ``targets``) are read too. ``.json`` (a list of records), ``.jsonl``
    (one record per line) and ``.parquet`` are read. ``<path>`` is

    * one file: its records form one pool, split into train/test by the usual hash of the ids;
    * ``<folder>/<task>`` with files ``<folder>/<task>_train.<ext>`` and ``<folder>/<task>_test.<ext>``
      (``_validation`` when there is no ``_test``): train comes from the first, test from the
      second, as the authors split them;
    * a folder holding exactly one such ``<task>_train`` / ``<task>_test`` pair.

    The cluster is ``cluster=`` if given (a key of :data:`layerwise.tasks.CLUSTERS`), else the Flan
    2021 cluster when ``<task>`` (or the file's stem, less ``_10templates``) is a Flan 2021 task name,
    else ``"misc"``. ``name=`` sets the short name used in file names and tables (default: the
    task stem). Relative paths are resolved against the current directory.

Prompts of these tasks are written by the source, so no project template is applied (``template_id``
is ``-1``); :func:`layerwise.templates.render_given` joins instruction and input and shortens only
the input, or the middle of a single text, so the end of the prompt is always kept.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow.parquet as pq

from layerwise.cache import atomic_path, cache_root, content_key
from layerwise.sources import is_offline, offline_error
from layerwise.tasks.records import POOL_FEATURES
from layerwise.tasks.registry import CLUSTERS, FLAN2021_TASKS, TASKS, TaskInfo, flan2021_cluster

__all__ = [
    "FLAN_HUB_REPO",
    "FILE_EXTENSIONS",
    "ExternalTask",
    "parse_external",
    "is_external",
    "external_info",
    "external_pools",
    "flan_record_to_example",
    "alpaca_record_to_example",
    "read_task_file",
    "check_task_names",
    "hub_is_off",
]

FLAN_HUB_REPO = "Muennighoff/flan"
FILE_EXTENSIONS = (".jsonl", ".json", ".parquet")
_FLAN_NAMES = {n for names in FLAN2021_TASKS.values() for n in names}
_SLUG_RE = re.compile(r"[^A-Za-z0-9_.-]+")
_FORMS = "a registry task name, 'flan2021:<Flan 2021 task>' or 'file:<path>[#cluster=<cluster>][&name=<name>]'"


@dataclass(frozen=True)
class ExternalTask:
    """A parsed ``flan2021:`` or ``file:`` name.

    Attributes:
        name: the name as given (the key used everywhere).
        kind: ``"flan2021"`` or ``"file"``.
        task: the Flan 2021 task, or the file task's stem.
        cluster: the cluster id.
        slug: a short name safe for file names (``flan2021-rte``, ``file-rte``).
        path: for files: the path as given, resolved.
    """

    name: str
    kind: str
    task: str
    cluster: str
    slug: str
    path: Path | None = None


def is_external(name: str) -> bool:
    """True for ``flan2021:...`` and ``file:...`` names."""
    return isinstance(name, str) and name.startswith(("flan2021:", "file:"))


def _stem(p: Path) -> str:
    name = p.name
    for ext in FILE_EXTENSIONS:
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name


def _flan_base(stem: str) -> str:
    for suffix in ("_train", "_validation", "_test"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem.removesuffix("_10templates")


def parse_external(name: str) -> ExternalTask:
    """Parse a ``flan2021:`` / ``file:`` name (no file is read; existence is not checked).

    Raises:
        KeyError: an unknown Flan 2021 task or cluster (the message lists the valid ones), or not an
            external name at all.
        ValueError: a malformed ``file:`` name (empty path, unknown option).
    """
    if name.startswith("flan2021:"):
        task = name.removeprefix("flan2021:").removesuffix("_10templates")
        if task not in _FLAN_NAMES:
            raise KeyError(f"unknown Flan 2021 task {task!r} in {name!r}; valid names: {', '.join(sorted(_FLAN_NAMES))}")
        return ExternalTask(name, "flan2021", task, flan2021_cluster(task), f"flan2021-{task}")
    if not name.startswith("file:"):
        raise KeyError(f"{name!r} is not of the form {_FORMS}")
    body = name.removeprefix("file:")
    path_text, _, frag = body.partition("#")
    if not path_text:
        raise ValueError(f"{name!r}: no path after 'file:'; expected {_FORMS}")
    opts: dict[str, str] = {}
    for part in filter(None, frag.split("&")):
        key, eq, value = part.partition("=")
        if not eq or key not in ("cluster", "name") or not value:
            raise ValueError(f"{name!r}: bad option {part!r}; accepted: 'cluster=<cluster>' and 'name=<name>', joined by '&'")
        opts[key] = value
    path = Path(path_text).expanduser()
    if path.suffix in FILE_EXTENSIONS:
        task = _flan_base(_stem(path))
    elif path.is_dir() and len(stems := _train_stems(path)) == 1:
        task = stems[0].removesuffix("_10templates")
    else:
        task = path.name.removesuffix("_10templates")
    if "cluster" in opts:
        cluster = opts["cluster"]
        if cluster not in CLUSTERS:
            raise KeyError(f"unknown cluster {cluster!r} in {name!r}; valid clusters: {', '.join(CLUSTERS)}")
    elif task in _FLAN_NAMES:
        cluster = flan2021_cluster(task)
    else:
        cluster = "misc"
    slug = "file-" + _SLUG_RE.sub("-", opts.get("name", task) or "task").strip("-")
    return ExternalTask(name, "file", task, cluster, slug, path.resolve())


def check_task_names(names) -> None:
    """Check task names before any work: registry names, ``flan2021:<task>`` and ``file:<path>...``.

    Raises:
        KeyError: an unknown name (the message lists the valid registry names and the accepted
            forms), an unknown Flan 2021 task (lists the 69 names) or an unknown cluster.
        ValueError: a malformed ``file:`` name, or a name listed twice.
        FileNotFoundError: a ``file:`` task whose files do not exist (names the paths looked for).
    """
    if isinstance(names, str):
        names = [names]
    names = list(names)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"task names listed twice: {dup}")
    for n in names:
        if n in TASKS:
            continue
        if not is_external(n):
            raise KeyError(f"unknown task {n!r}; use {_FORMS}. Valid registry tasks: {', '.join(sorted(TASKS))}")
        ext = parse_external(n)
        if ext.kind == "file":
            _file_layout(ext)


def external_info(name: str) -> TaskInfo:
    """The :class:`TaskInfo` of a ``flan2021:`` or ``file:`` task (provenance as far as known)."""
    ext = parse_external(name)
    if ext.kind == "flan2021":
        return TaskInfo(
            name=name, cluster=ext.cluster, kind="generation", source=f"huggingface:{FLAN_HUB_REPO}",
            dataset=f"Flan 2021 {ext.task} ({ext.task}_10templates)",
            citation="Wei et al. 2022, ICLR (FLAN); hub copy by N. Muennighoff", licence="per original dataset; check",
            origin_split="Flan 2021 train (train) and test (test) files",
            description="prompt and target as FLAN rendered them (10 templates)", flan_task=ext.task, match="exact",
            slug=ext.slug,
        )
    layout = _file_layout(ext)
    split = ", ".join(f"{s}: {p.name}" for s, p in layout.items())
    return TaskInfo(
        name=name, cluster=ext.cluster, kind="generation", source=f"file:{ext.path}",
        dataset=f"local task files ({ext.task})", citation="given by the user", licence="given by the user; check",
        origin_split=split, description="alpaca records (instruction, input -> output) from local files",
        flan_task=ext.task if ext.task in _FLAN_NAMES else None, match="exact" if ext.task in _FLAN_NAMES else "analog",
        slug=ext.slug,
    )


def _train_stems(folder: Path) -> list[str]:
    return sorted({_stem(p).removesuffix("_train") for p in folder.iterdir() if _stem(p).endswith("_train") and p.suffix in FILE_EXTENSIONS})


def _find(prefix: Path, suffix: str) -> Path | None:
    for ext in FILE_EXTENSIONS:
        p = prefix.parent / f"{prefix.name}{suffix}{ext}"
        if p.is_file():
            return p
    return None


def _file_layout(ext: ExternalTask) -> dict[str, Path]:
    """``{"all": file}`` or ``{"train": file, "test": file}`` for a ``file:`` task.

    Raises:
        FileNotFoundError: nothing found (names what was looked for).
        ValueError: a folder holding several tasks, or a file of an unknown type.
    """
    path = ext.path
    if path.is_file():
        if path.suffix not in FILE_EXTENSIONS:
            raise ValueError(f"{path}: unknown task file type {path.suffix!r}; expected one of {', '.join(FILE_EXTENSIONS)}")
        return {"all": path}
    prefix = path
    if path.is_dir():
        stems = _train_stems(path)
        if len(stems) != 1:
            raise ValueError(
                f"{path}: expected exactly one <task>_train file in the folder, found {stems or 'none'}; "
                f"name the task as 'file:{path}/<task>'"
            )
        prefix = path / stems[0]
    train = _find(prefix, "_train")
    test = _find(prefix, "_test") or _find(prefix, "_validation")
    if train is None or test is None:
        looked = f"{prefix}_train{{{','.join(FILE_EXTENSIONS)}}} and {prefix}_test (or _validation)"
        raise FileNotFoundError(f"task {ext.name!r}: no task file {path}, and no {looked}")
    return {"train": train, "test": test}


# ------------------------------------------------------------------------------------------ records


def _text(rec: dict, key: str, where: str, required: bool) -> str:
    value = rec.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {key!r} must be a string, got {type(value).__name__} ({value!r:.80})")
    return value


def alpaca_record_to_example(rec, where: str) -> dict:
    """One alpaca record (``instruction``, optional ``input``, ``output``) -> pool row fields
    (``question`` = instruction, ``input`` = input, ``target`` = output). Records with ``inputs`` /
    ``targets`` (the Flan hub form) are taken as instruction / output.

    Raises:
        ValueError: not a JSON object, or a missing / non-string field (names ``where``).
    """
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: expected a JSON object with 'instruction', 'input', 'output', got {type(rec).__name__}")
    if "instruction" in rec or "output" in rec:
        return {"question": _text(rec, "instruction", where, True), "input": _text(rec, "input", where, False),
                "target": _text(rec, "output", where, True)}
    if "inputs" in rec or "targets" in rec:
        return flan_record_to_example(rec, where)
    raise ValueError(f"{where}: no 'instruction'/'output' (alpaca) or 'inputs'/'targets' (Flan) fields; keys: {sorted(rec)}")


def flan_record_to_example(rec, where: str) -> dict:
    """One ``Muennighoff/flan`` record (``inputs``, ``targets``, ``task``) -> pool row fields:
    ``question`` = the rendered FLAN prompt, ``input`` = ``""``, ``target`` = ``targets``.

    Raises:
        ValueError: not a JSON object, or ``inputs``/``targets`` missing or not strings.
    """
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: expected a JSON object with 'inputs', 'targets', got {type(rec).__name__}")
    return {"question": _text(rec, "inputs", where, True), "input": "", "target": _text(rec, "targets", where, True)}


def _records(path: Path):
    """Yield (where, record) from a .json / .jsonl / .parquet task file."""
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: record on line {i} is not valid JSON ({e})") from e
                yield f"{path}: record on line {i}", rec
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
        for i, rec in enumerate(data, 1):
            yield f"{path}: record {i}", rec
    elif path.suffix == ".parquet":
        for i, rec in enumerate(pq.read_table(path).to_pylist(), 1):
            yield f"{path}: record {i}", rec
    else:
        raise ValueError(f"{path}: unknown task file type {path.suffix!r}; expected one of {', '.join(FILE_EXTENSIONS)}")


def read_task_file(path, prefix: str = "", convert=alpaca_record_to_example) -> datasets.Dataset:
    """Read one task file into a pool (:data:`layerwise.tasks.POOL_FEATURES`; ids ``<prefix><n>``,
    n = record number from 1). Empty prompts or targets are dropped, repeated prompts too.

    Raises:
        FileNotFoundError: no such file.
        ValueError: malformed file or record (names the file and the record number / line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} does not exist")
    out: dict[str, list] = {k: [] for k in POOL_FEATURES}
    seen: set[tuple[str, str]] = set()
    for n, (where, rec) in enumerate(_records(path), 1):
        ex = {k: v.strip() for k, v in convert(rec, where).items()}  # the source's own line breaks are kept
        key = (ex["input"], ex["question"])
        if not (ex["input"] or ex["question"]) or not ex["target"] or key in seen:
            continue
        seen.add(key)
        for k, v in (("id", f"{prefix}{n:06d}"), ("options", []), *ex.items()):
            out[k].append(v)
    return datasets.Dataset.from_dict(out, features=POOL_FEATURES)


def _drop_overlap(train: datasets.Dataset, test: datasets.Dataset) -> datasets.Dataset:
    seen = set(zip(test["input"], test["question"]))
    keep = [i for i, k in enumerate(zip(train["input"], train["question"])) if k not in seen]
    return train.select(keep) if len(keep) < len(train) else train


# ------------------------------------------------------------------------------------------ hub


def hub_is_off() -> bool:
    """True if the hub is switched off: ``LAYERWISE_OFFLINE``, ``HF_HUB_OFFLINE`` or
    ``HF_DATASETS_OFFLINE`` is set (see :func:`layerwise.sources.is_offline`)."""
    return is_offline(datasets_too=True)


def _hub_download(filename: str, *, local_files_only: bool) -> str:
    """The one network call: a file of ``Muennighoff/flan`` via ``huggingface_hub`` (cached)."""
    from huggingface_hub import hf_hub_download

    return hf_hub_download(FLAN_HUB_REPO, filename, repo_type="dataset", local_files_only=local_files_only)


def _flan_file(ext: ExternalTask, split: str) -> Path | None:
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    filename = f"{split}/{ext.task}_10templates_{split}.jsonl"
    off = hub_is_off()
    try:
        return Path(_hub_download(filename, local_files_only=off))
    except EntryNotFoundError as e:  # LocalEntryNotFoundError is a subclass: a file missing from the cache
        if not isinstance(e, LocalEntryNotFoundError):
            return None
        failure = e
    except OSError as e:
        failure = e
    if off:
        raise offline_error(f"{filename} of the hub dataset {FLAN_HUB_REPO} (task {ext.name!r})", "the local Hugging Face cache") from failure
    raise RuntimeError(f"task {ext.name!r}: cannot fetch {filename} from the hub dataset {FLAN_HUB_REPO}: {failure}") from failure


def _flan_pools(ext: ExternalTask) -> dict[str, datasets.Dataset]:
    out = {}
    for split in ("train", "test"):
        path = _flan_file(ext, split) or (_flan_file(ext, "validation") if split == "test" else None)
        if path is None:
            raise RuntimeError(f"the hub dataset {FLAN_HUB_REPO} has no {split} file for {ext.task}_10templates")
        key = content_key({"file": str(path.resolve()), "size": path.stat().st_size, "v": 1})
        cached = cache_root() / "tasks" / f"{ext.slug}-{split}-{key}.parquet"
        if not cached.is_file():
            pool = read_task_file(path, f"{split}-", flan_record_to_example)
            with atomic_path(cached) as tmp:
                pq.write_table(pool.data.table, tmp)
            print(f"[layerwise.tasks] {ext.name}: {split} pool of {len(pool)} examples -> {cached}", file=sys.stderr, flush=True)
        table = pq.read_table(cached).cast(POOL_FEATURES.arrow_schema)
        out[split] = datasets.Dataset(datasets.table.InMemoryTable(table))
    out["train"] = _drop_overlap(out["train"], out["test"])
    return out


def external_pools(name: str) -> dict[str, datasets.Dataset]:
    """The example pools of an external task: ``{"all": pool}`` (one file, split by hash later) or
    ``{"train": pool, "test": pool}`` (the source's own split; train examples whose prompt also
    occurs in test are dropped). Columns as :data:`layerwise.tasks.POOL_FEATURES`, with the
    instruction (or the whole Flan prompt) in ``question`` and the alpaca input in ``input``.

    Raises:
        KeyError / ValueError: bad name (see :func:`parse_external`), malformed file (names the file
            and record).
        FileNotFoundError: missing local files.
        RuntimeError: the hub is off or unreachable and the Flan file is not cached.
    """
    ext = parse_external(name)
    if ext.kind == "flan2021":
        return _flan_pools(ext)
    layout = _file_layout(ext)
    if "all" in layout:
        return {"all": read_task_file(layout["all"])}
    pools = {s: read_task_file(p, f"{s}-") for s, p in layout.items()}
    pools["train"] = _drop_overlap(pools["train"], pools["test"])
    return pools
