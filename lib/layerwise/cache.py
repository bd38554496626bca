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
]


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
