"""Cache locations, content keys and atomic writes.

Everything the pipeline computes (converted models, task datasets, LoRA adapters, hidden states,
result tables) is written through the helpers here, so that

* a file either exists complete or not at all (write to a temporary sibling, then ``os.replace``),
  which makes an interrupted run lose nothing already finished and never leave a half file that a
  later run would trust;
* every artefact is keyed by a content hash of the configuration that produced it, so a changed
  setting produces a new artefact instead of silently reusing a stale one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "cache_root",
    "content_key",
    "atomic_path",
    "atomic_write_text",
    "atomic_write_json",
    "read_json",
    "FORMAT_KEY",
    "CorruptArtefact",
    "write_table",
    "read_table",
    "read_tagged_parquet",
    "read_verified_json",
    "safetensors_format",
    "discard_corrupt",
    "clean_orphans",
    "RunLock",
    "OutputDirInUse",
    "hold_run_lock",
    "HELD_ENV",
    "DEADLINE_ENV",
    "TimeBudgetSpent",
    "deadline_passed",
    "check_deadline",
    "StaleResult",
    "stale_result",
    "release_run_lock",
    "KILL_ENV",
    "KILL_ONCE_ENV",
    "kill_point",
]

#: Metadata key of the format tag every table and tensor file of a run carries.
FORMAT_KEY = "layerwise_format"


def cache_root() -> Path:
    """Root of the shared download/model cache.

    ``$LAYERWISE_CACHE`` if set, else ``$XDG_CACHE_HOME/layerwise`` (default ``~/.cache/layerwise``).
    Shared by every clone and run spec on the machine: it holds only inputs (source packages,
    converted base models), never run results.

    Returns:
        Path: the directory (created if missing).
    """
    env = os.environ.get("LAYERWISE_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(xdg) / "layerwise"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _canonical(obj: Any) -> Any:
    """Turn ``obj`` into JSON-serialisable data with a stable form (paths to str, sets sorted)."""
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(_canonical(v) for v in obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)  # 3.0 and 3 must hash alike (YAML vs Python defaults)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot build a cache key from a value of type {type(obj).__name__}: {obj!r}")


def content_key(obj: Any, length: int = 16) -> str:
    """Stable hexadecimal key of a JSON-like configuration.

    Args:
        obj: nested dicts/lists of str, int, float, bool, None or Path. Dict order does not matter.
        length: number of hex characters kept from the SHA-256 digest.

    Returns:
        str: ``length`` lowercase hex characters.

    Raises:
        TypeError: if ``obj`` holds a value that has no stable JSON form.
    """
    text = json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it onto ``target`` only if the block succeeds.

    Args:
        target: final file or directory path. Its parent is created.
        is_dir: create (and later move) a temporary *directory* instead of a file path.

    Yields:
        Path: the temporary location to write to.

    On an exception inside the block the temporary file/directory is removed and ``target`` is left
    as it was (absent or the previous complete version). For directories an existing ``target`` is
    replaced.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        kill_point("write", str(target))
        if is_dir:
            if target.exists():
                import shutil

                old = target.with_name(f".{target.name}.old")
                if old.exists():
                    shutil.rmtree(old)
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        else:
            os.replace(tmp, target)
    except BaseException:
        import shutil

        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically. Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically. Returns the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ------------------------------------------------------------------ verified reads


class CorruptArtefact(Exception):
    """An artefact on disk is truncated, unreadable, of another format, or fails its content check.

    Attributes:
        path: the artefact.
        reason: one line saying what is wrong.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def discard_corrupt(err: CorruptArtefact) -> None:
    """Report a corrupt artefact on stderr (one line with its path) and remove it, so it is recomputed.

    A directory artefact (an adapter) is removed whole. Never raises for a file already gone.
    """
    import shutil
    import sys

    print(f"[layerwise] corrupt artefact, recomputing: {err.path} ({err.reason})", file=sys.stderr, flush=True)
    if err.path.is_dir():
        shutil.rmtree(err.path, ignore_errors=True)
    else:
        err.path.unlink(missing_ok=True)


def write_table(df: Any, path: str | os.PathLike[str], fmt: str) -> Path:
    """Write a DataFrame as parquet atomically, with the format tag ``fmt`` in the schema metadata.

    Args:
        df: ``pandas.DataFrame`` (index dropped).
        path: target ``.parquet`` file.
        fmt: format tag, e.g. ``"similarity/1"``; :func:`read_table` checks it.

    Returns:
        Path: ``path``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[FORMAT_KEY.encode()] = fmt.encode()
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)
    return Path(path)


def read_table(path: str | os.PathLike[str], fmt: str, columns: "tuple[str, ...] | list[str]" = (),
               min_rows: int = 0) -> Any:
    """Read a parquet table written by :func:`write_table`, checking its tag, columns and values.

    Args:
        path: the ``.parquet`` file.
        fmt: the format tag it must carry.
        columns: columns it must have.
        min_rows: fewest rows it may have.

    Returns:
        pandas.DataFrame.

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptArtefact: unreadable (truncated) parquet, another format tag, a missing column, or fewer
            than ``min_rows`` rows.
    """
    path = Path(path)
    table = read_tagged_parquet(path, fmt)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise CorruptArtefact(path, f"missing columns {missing}")
    if table.num_rows < min_rows:
        raise CorruptArtefact(path, f"{table.num_rows} rows, expected at least {min_rows}")
    return table.to_pandas()


def read_tagged_parquet(path: str | os.PathLike[str], fmt: str) -> Any:
    """Read a parquet file as a ``pyarrow.Table`` and check its format tag (schema metadata ``layerwise_format``).

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptArtefact: unreadable (truncated, garbage) parquet, or another format tag.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise CorruptArtefact(path, f"unreadable parquet: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    tag = (table.schema.metadata or {}).get(FORMAT_KEY.encode(), b"").decode()
    if tag != fmt:
        raise CorruptArtefact(path, f"format tag {tag!r}, expected {fmt!r}")
    return table


def read_verified_json(path: str | os.PathLike[str], required: "tuple[str, ...] | list[str]" = ()) -> Any:
    """Read a JSON object and check that it has the ``required`` keys.

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptArtefact: not valid JSON (e.g. truncated), not an object, or a required key missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptArtefact(path, f"invalid JSON: {exc}") from None
    if required:
        if not isinstance(obj, dict):
            raise CorruptArtefact(path, f"expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in required if k not in obj]
        if missing:
            raise CorruptArtefact(path, f"missing keys {missing}")
    return obj


def safetensors_format(path: str | os.PathLike[str], fmt: str | None = None) -> dict[str, str]:
    """Check that a safetensors file is whole and return its metadata.

    Reads the header (8-byte length + JSON) and checks that the file is exactly as long as the
    header says (a truncated write fails this), that every tensor's byte range lies inside it, and -
    if ``fmt`` is given - that the metadata's format tag equals ``fmt``.

    Returns:
        dict: the ``__metadata__`` of the file (empty if none).

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptArtefact: header unreadable, file shorter or longer than the header says, or another tag.
    """
    import struct

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n <= 0 or 8 + n > size:
                raise ValueError(f"header length {n} does not fit a file of {size} bytes")
            header = json.loads(f.read(n))
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise CorruptArtefact(path, f"unreadable safetensors header: {exc}") from None
    meta = header.pop("__metadata__", None) or {}
    end = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
    if 8 + n + end != size:
        raise CorruptArtefact(path, f"{size} bytes on disk, the header describes {8 + n + end} (truncated?)")
    if fmt is not None and meta.get(FORMAT_KEY) != fmt:
        raise CorruptArtefact(path, f"format tag {meta.get(FORMAT_KEY)!r}, expected {fmt!r}")
    return dict(meta)


# ------------------------------------------------------------------ orphans and the run lock


def clean_orphans(root: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files and folders that :func:`atomic_path` leaves when a process is killed.

    These are the hidden siblings named ``.<target>.<random>.tmp`` and ``.<target>.old`` below
    ``root``. Call it only while holding the :class:`RunLock` of ``root`` (no other writer).

    Returns:
        list[Path]: what was removed.
    """
    import shutil

    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for p in sorted(root.rglob(".*"), key=lambda q: len(q.parts), reverse=True):
        if (p.name.endswith(".tmp") or p.name.endswith(".old")) and p.exists():
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


#: A Unix time (seconds) after which the run stops starting work, set by ``layerwise run --hours``:
#: training saves a checkpoint at its next optimizer step and stops, and no other model, task or
#: table is started. What is done is kept; the same command continues from there.
DEADLINE_ENV = "LAYERWISE_DEADLINE"


class TimeBudgetSpent(RuntimeError):
    """The run reached ``$LAYERWISE_DEADLINE``; everything finished so far is on disk."""


def deadline_passed() -> bool:
    """True when ``$LAYERWISE_DEADLINE`` is set and in the past (one environment look-up otherwise)."""
    import time

    deadline = os.environ.get(DEADLINE_ENV)
    return bool(deadline) and time.time() >= float(deadline)


def check_deadline(before: str) -> None:
    """Raise :class:`TimeBudgetSpent` if the deadline has passed; ``before`` names the work not started.

    Raises:
        TimeBudgetSpent: ``$LAYERWISE_DEADLINE`` is in the past.
    """
    if deadline_passed():
        raise TimeBudgetSpent(f"time budget spent before {before}")


class StaleResult(RuntimeError):
    """A frozen run (spec ``frozen: true``) lacks a result: it is missing, or its key no longer matches."""


def stale_result(path: Path, what: str) -> StaleResult:
    """The error of a frozen run that would have to compute ``path`` (``what`` says what it is).

    The message names the file, the files of the same kind that are present (computed by other
    code, library versions or spec: stale) and how to recompute.
    """
    prefix = path.name.rsplit("-", 1)[0]
    present = sorted(p.name for p in path.parent.glob(f"{prefix}-*") if p != path) if path.parent.is_dir() else []
    stale = f"; present, stale: {', '.join(present)}" if present else ""
    return StaleResult(f"frozen run: {what} {path} is not in the results (missing, or computed by other code, library "
                       f"versions or spec){stale}; set frozen=false to recompute it")


class OutputDirInUse(RuntimeError):
    """Another process holds the run lock of an output directory."""


class RunLock:
    """A lock on a run's output directory, held for the life of the process or the block.

    The lock is an ``fcntl.flock`` on ``<output_dir>/.lock``; the kernel releases it when the holding
    process ends, even on SIGKILL, so a killed run never leaves a stale lock. A writer takes it
    exclusively; readers (``shared=True``) share it with each other but not with a writer. The file
    records the writer's pid and start time for the message a second run prints.

    Raises:
        OutputDirInUse: on :meth:`acquire`, when another process holds the lock in a conflicting mode.
    """

    def __init__(self, output_dir: str | os.PathLike[str], *, shared: bool = False):
        self.path = Path(output_dir) / ".lock"
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock (re-entrant within one object) and return ``self``."""
        import fcntl
        import time

        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OutputDirInUse(f"output_dir {self.path.parent} is in use by {holder}; wait for that run "
                                 "to finish or set another output_dir") from None
        if not self.shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        self._fd = fd
        return self

    def upgrade(self) -> "RunLock":
        """Turn a held shared lock into an exclusive one (no-op if already exclusive).

        Raises:
            OutputDirInUse: another process shares the lock.
        """
        import fcntl

        if self._fd is None:
            self.shared = False
            return self.acquire()
        if self.shared:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputDirInUse(f"output_dir {self.path.parent} is open in another process (a notebook?); "
                                     "close it or set another output_dir") from None
            self.shared = False
        return self

    def release(self) -> None:
        """Release the lock (the file stays; it is only a handle)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


#: Environment variable listing (``os.pathsep``-separated) the output directories whose lock an
#: ancestor process holds; set by :func:`hold_run_lock` so that the notebook kernels a ``layerwise
#: book`` starts open the run it holds without waiting for its lock.
HELD_ENV = "LAYERWISE_HELD_LOCKS"

_HELD: dict[Path, RunLock] = {}


def hold_run_lock(output_dir: str | os.PathLike[str], *, shared: bool = False) -> RunLock | None:
    """Hold the :class:`RunLock` of ``output_dir`` until this process ends (once per process and directory).

    A writer (``shared=False``) holds it exclusively and, the first time, removes the orphan
    temporaries of killed writers (:func:`clean_orphans`); a reader shares it. A later exclusive
    request upgrades a shared lock. Nothing is taken when an ancestor process holds the lock
    (``output_dir`` listed in ``$LAYERWISE_HELD_LOCKS``, e.g. a notebook kernel of ``layerwise book``).

    Returns:
        The held lock, or None when an ancestor holds it.

    Raises:
        OutputDirInUse: another process holds the lock in a conflicting mode.
    """
    out = Path(output_dir).resolve()
    inherited = os.environ.get(HELD_ENV, "")
    if str(out) in inherited.split(os.pathsep) and out not in _HELD:
        return None
    lock = _HELD.get(out)
    if lock is None:
        lock = RunLock(out, shared=shared).acquire()
        _HELD[out] = lock
        if not shared:
            clean_orphans(out)
    elif lock.shared and not shared:
        lock.upgrade()
        clean_orphans(out)
    if not lock.shared:
        held = [p for p in inherited.split(os.pathsep) if p]
        if str(out) not in held:
            os.environ[HELD_ENV] = os.pathsep.join(held + [str(out)])
    return lock


def release_run_lock(output_dir: str | os.PathLike[str]) -> bool:
    """Release the lock this process holds on ``output_dir`` through :func:`hold_run_lock`.

    Lets a notebook or a script that opened a run hand the directory to another process (a
    ``layerwise book`` rebuild) without ending. Does nothing when this process holds no lock there
    (or an ancestor holds it).

    Returns:
        True when a lock was released.
    """
    out = Path(output_dir).resolve()
    lock = _HELD.pop(out, None)
    if lock is None:
        return False
    lock.release()
    held = [p for p in os.environ.get(HELD_ENV, "").split(os.pathsep) if p and p != str(out)]
    if held:
        os.environ[HELD_ENV] = os.pathsep.join(held)
    else:
        os.environ.pop(HELD_ENV, None)
    return True


# ------------------------------------------------------------------ test-only kill points

#: Test-only: ``LAYERWISE_KILL_AT=<point>:<n>[:<text>]`` makes the process SIGKILL itself the ``n``-th
#: time it passes the named :func:`kill_point` (with ``<text>`` in its detail, if given; e.g.
#: ``write:2:/tables/`` kills in the second write of a table). Unset, every kill point does nothing.
KILL_ENV = "LAYERWISE_KILL_AT"
#: Test-only, with :data:`KILL_ENV`: a marker file. The kill happens only if the file does not exist,
#: and creates it first, so a retried process (a Ray worker restarted with the same environment)
#: is killed once in all, not once per process.
KILL_ONCE_ENV = "LAYERWISE_KILL_ONCE"
_KILL_COUNT: list[int] = [0]


def kill_point(name: str, detail: str = "") -> None:
    """A named place where the crash-resume tests may kill the process (see :data:`KILL_ENV`).

    Points: ``write`` (an atomic write, after the temporary is complete and before it is moved into
    place; ``detail`` is the target path), ``train_step`` (a training micro-batch; ``detail`` is the
    adapter's training folder), ``checkpoint`` (inside a training checkpoint, after the adapter
    weights and before the optimiser and trainer state are saved; ``detail`` as for ``train_step``).
    Inert (one environment look-up) unless ``$LAYERWISE_KILL_AT`` is set; see also
    :data:`KILL_ONCE_ENV`.
    """
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    point, n, text = (spec.split(":", 2) + [""])[:3]
    if point != name or text not in detail:
        return
    _KILL_COUNT[0] += 1
    if _KILL_COUNT[0] == int(n):
        import signal

        once = os.environ.get(KILL_ONCE_ENV)
        if once:
            if Path(once).exists():
                return
            Path(once).write_text(f"killed at {spec} ({detail}), pid {os.getpid()}")
        print(f"[layerwise] test kill at {spec} ({detail})", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
