"""One cached-table helper: a parquet file named by a content key of everything that made it.

A table's key is built from *named* parts (what the table was computed from: model keys, test
examples, measures, ...) plus two parts added here, so that no hand-set version number is needed:

* ``code`` - a hash of the source code of the functions and modules that compute the table
  (:func:`code_digest`): editing that code changes the key, and the table is recomputed;
* ``libraries`` - the installed versions of torch, transformers and peft (they produce the
  hidden states and adapters the table is computed from).
"""

from __future__ import annotations

import hashlib
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Any

import pandas as pd

from ..cache import CorruptArtefact, check_deadline, content_key, discard_corrupt, read_table, stale_result, write_table

__all__ = ["LIBRARIES", "code_digest", "library_versions", "table_key", "cached_table"]

#: Third-party packages whose versions enter every table key.
LIBRARIES = ("torch", "transformers", "peft")


def _sources(obj: FunctionType | type | ModuleType) -> list[str]:
    """Source text of a function, class or module; a package contributes every ``.py`` file in it."""
    if isinstance(obj, ModuleType) and hasattr(obj, "__path__"):  # a package: all its modules
        return [p.read_text(encoding="utf-8") for d in obj.__path__ for p in sorted(Path(d).rglob("*.py"))]
    return [inspect.getsource(obj)]


def code_digest(code: Sequence[FunctionType | type | ModuleType]) -> str:
    """SHA-256 hex digest of the source code of ``code`` (functions, classes, modules or packages).

    Args:
        code: the objects whose source computes a table, in a fixed order.

    Returns:
        64 lowercase hex characters; any edit of any of the sources changes it.

    Raises:
        TypeError: an object has no Python source (e.g. a builtin).
    """
    h = hashlib.sha256()
    for obj in code:
        try:
            texts = _sources(obj)
        except (TypeError, OSError) as e:
            raise TypeError(f"code={obj!r} has no Python source to hash ({e})") from None
        for text in texts:
            h.update(text.encode("utf-8"))
            h.update(b"\0")
    return h.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Installed versions of :data:`LIBRARIES` (``None`` if one is not installed); nothing is imported."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def table_key(key_parts: Mapping[str, Any], code: Sequence[FunctionType | type | ModuleType]) -> str:
    """Content key of a table: the named ``key_parts``, the code digest and the library versions.

    Args:
        key_parts: name -> JSON-like value (see :func:`layerwise.cache.content_key`); the names
            ``"code"`` and ``"libraries"`` are reserved.
        code: what computes the table (see :func:`code_digest`).

    Returns:
        16 lowercase hex characters.

    Raises:
        ValueError: ``key_parts`` uses a reserved name.
        TypeError: a part has no stable JSON form, or an object of ``code`` has no source.
    """
    reserved = {"code", "libraries"} & set(key_parts)
    if reserved:
        raise ValueError(f"key_parts uses the reserved name(s) {sorted(reserved)}; these are added by table_key")
    return content_key({**key_parts, "code": code_digest(code), "libraries": library_versions()})


def cached_table(
    out_dir: Path,
    name: str,
    key_parts: Mapping[str, Any],
    compute: Callable[[], pd.DataFrame],
    *,
    code: Sequence[FunctionType | type | ModuleType],
    log: Callable[[str], None] | None = None,
    frozen: bool = False,
) -> pd.DataFrame:
    """Read ``<out_dir>/<name>-<key>.parquet`` if it exists, else compute the table and write it.

    Args:
        out_dir: folder of the tables (created if missing).
        name: table name, the file's prefix (e.g. ``"similarity"``).
        key_parts: named inputs of the table (see :func:`table_key`).
        compute: builds the table; called only when the file is missing.
        code: the functions/modules that compute the table; their source enters the key.
        log: called with one line (rows, seconds) after a computation, if given.
        frozen: never compute: a missing table raises (the spec's ``frozen``).

    Returns:
        The table: as computed, or as read back from the parquet file. A file that fails its check
        (unreadable, another format tag: see :func:`layerwise.cache.read_table`) is reported with its
        path, removed and recomputed.

    Raises:
        ValueError, TypeError: see :func:`table_key` (raised before any compute).
        StaleResult: ``frozen`` and the table is not on disk (or fails its check).
        TimeBudgetSpent: the table must be computed and the run's deadline has passed.
    """
    path = Path(out_dir) / f"{name}-{table_key(key_parts, code)}.parquet"
    fmt = f"{name}-table/1"
    if path.is_file():
        try:
            return read_table(path, fmt)
        except CorruptArtefact as err:
            discard_corrupt(err)
    if frozen:
        raise stale_result(path, f"the {name} table")
    check_deadline(f"the {name} table")
    t0 = time.perf_counter()
    df = compute()
    write_table(df, path, fmt)
    if log is not None:
        log(f"{name} table: {len(df)} rows in {time.perf_counter() - t0:.0f} s")
    return df
