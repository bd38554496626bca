"""Execute the notebooks with papermill and build the Jupyter Book (version 1).

The notebooks' source of truth is ``notebooks/NAME.py`` (jupytext percent format, one cell tagged
``parameters``). :func:`execute_notebook` reads it, injects the run spec as parameters and writes
the executed copy ``<book_dir>/executed/NAME.ipynb``; :func:`build_book` runs them in ``_toc.yml``
order and calls ``jupyter-book build`` with execution off, so the book shows exactly the outputs
papermill produced. A failing notebook stops the run: its partial copy is moved to
``build/failed/NAME.ipynb`` and the error names the notebook and the cell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from .spec import PROJECT_ROOT

__all__ = ["NotebookFailed", "notebook_names", "execute_notebook", "build_book", "BOOK_ENV"]

#: Environment for notebook kernels and the book build: offline hubs, no progress-bar noise.
BOOK_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "PYTHONWARNINGS": "ignore",
    "LAYERWISE_CHART_MODE": "book",
}


class NotebookFailed(RuntimeError):
    """A notebook raised during execution; the message names it, the cell and the error."""


def notebook_names(toc: Path = PROJECT_ROOT / "_toc.yml") -> list[str]:
    """Notebook names in book order, read from ``_toc.yml`` entries ``root:``/``file: executed/NAME``."""
    data = yaml.safe_load(Path(toc).read_text(encoding="utf-8"))
    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                f = node.get(key)
                if isinstance(f, str) and f.startswith("executed/"):
                    names.append(f.split("/", 1)[1])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(data)
    return names


def execute_notebook(
    name: str,
    *,
    parameters: dict[str, Any],
    book_dir: Path,
    timeout: int = 3600,
) -> Path:
    """Execute ``notebooks/NAME.py`` with papermill into ``book_dir/executed/NAME.ipynb``.

    Args:
        name: notebook name (file stem in ``notebooks/``).
        parameters: values injected after the ``parameters`` cell.
        book_dir: Jupyter Book source folder.
        timeout: seconds allowed per cell.

    Returns:
        Path of the executed notebook.

    Raises:
        FileNotFoundError: no ``notebooks/NAME.py`` (the message lists the notebooks).
        NotebookFailed: a cell raised; the partial notebook is in ``build/failed/NAME.ipynb``.
    """
    import jupytext
    import papermill as pm

    src = PROJECT_ROOT / "notebooks" / f"{name}.py"
    if not src.is_file():
        have = sorted(p.stem for p in (PROJECT_ROOT / "notebooks").glob("*.py"))
        raise FileNotFoundError(f"notebook {name!r} not found in notebooks/; available: {have}")
    nb = jupytext.read(src)
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    out = Path(book_dir) / "executed" / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.ipynb")
    os.environ.update(BOOK_ENV)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            nb,
            str(tmp),
            parameters=parameters,
            kernel_name="python3",
            language="python",
            progress_bar=False,
            cwd=str(PROJECT_ROOT),
            execution_timeout=timeout,
            start_timeout=120,
        )
    except pm.PapermillExecutionError as exc:
        failed = PROJECT_ROOT / "build" / "failed" / f"{name}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp), failed)
        raise NotebookFailed(
            f"FAILED notebooks/{name}.py: {exc.ename}: {exc.evalue} (cell {exc.exec_count}); "
            f"executed copy with the traceback: {failed}"
        ) from exc
    _hide_parameter_cells(tmp)
    from .cache import kill_point

    kill_point("write", str(out))  # test-only (inert unless $LAYERWISE_KILL_AT), as before every atomic write
    os.replace(tmp, out)
    print(f"[layerwise] executed {name} in {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def _inputs_key(spec_path: str, overrides: Sequence[str]) -> str:
    """Key of everything a notebook's output depends on besides its own source: the validated spec,
    the library's source code and the result tables on disk (names, sizes, modification times)."""
    from .cache import content_key
    from .spec import load_spec

    spec = load_spec(spec_path, list(overrides))
    import hashlib

    lib = sorted((p.relative_to(PROJECT_ROOT).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
                 for p in (PROJECT_ROOT / "lib" / "layerwise").rglob("*.py"))
    tables = []
    for companion in [spec, *spec.companion_specs()]:  # the cross-model chapter reads the companions' tables
        out = companion.output_path
        tables += sorted((p.relative_to(out).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                         for sub in ("tables", "adapters", "evaluation") if (out / sub).is_dir()
                         for p in (out / sub).rglob("*") if p.is_file() and ".work" not in p.parts)
    return content_key({"spec": spec.to_dict(), "lib": lib, "tables": tables, "env": os.environ.get("LAYERWISE_CHART_MODE", "book")})


def _notebook_key(name: str, inputs: str) -> str:
    from .cache import content_key

    src = (PROJECT_ROOT / "notebooks" / f"{name}.py").read_text(encoding="utf-8")
    return content_key({"source": src, "inputs": inputs})


def _stored_key(path: Path) -> str | None:
    """The input key recorded in an executed notebook (None if absent or unreadable)."""
    import nbformat

    if not path.is_file():
        return None
    try:
        return nbformat.read(str(path), as_version=4).metadata.get("layerwise", {}).get("inputs_key")
    except Exception:  # a corrupt file is simply re-executed
        return None


def _store_key(path: Path, key: str) -> None:
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["layerwise"] = {"inputs_key": key}
    tmp = path.with_name(f".{path.name}.key.tmp")
    nbformat.write(nb, str(tmp))
    os.replace(tmp, path)


def _hide_parameter_cells(path: Path) -> None:
    """Tag the default and injected parameter cells ``remove-cell``: the notebook shows the spec itself."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            cell.metadata["tags"] = sorted(set(tags) | {"remove-cell"})
    nbformat.write(nb, str(path))


def build_book(
    *,
    spec_path: str,
    overrides: Sequence[str] = (),
    book_dir: Path | None = None,
    notebooks: Sequence[str] | None = None,
) -> Path:
    """Execute every notebook in ``_toc.yml`` order and build the HTML book with Jupyter Book 1.

    Args:
        spec_path: run spec passed to every notebook (relative to the project root or absolute).
        overrides: ``key=value`` spec overrides passed to every notebook.
        book_dir: Jupyter Book source folder (default ``book/``); the static pages of ``book/`` are
            copied there if it is another folder.
        notebooks: subset of notebook names to (re-)execute; default all.

    Returns:
        Path of the built ``index.html``.

    Raises:
        NotebookFailed: a notebook failed (nothing later is executed, the book is not built).
        RuntimeError: ``jupyter-book build`` failed; its output is in the message.
    """
    from .charts import write_vega_bundle

    book_dir = Path(book_dir) if book_dir else PROJECT_ROOT / "book"
    default_dir = PROJECT_ROOT / "book"
    if book_dir.resolve() != default_dir.resolve():
        book_dir.mkdir(parents=True, exist_ok=True)
        for page in default_dir.glob("*.md"):
            shutil.copy2(page, book_dir / page.name)
    write_vega_bundle(book_dir / "_static")
    params = {"spec_path": str(spec_path), "overrides": list(overrides)}
    inputs = _inputs_key(spec_path, overrides)
    chapters = notebook_names()
    for stale in sorted((book_dir / "executed").glob("*.ipynb")):
        if stale.stem not in chapters:  # a renamed or removed chapter must not stay in the book
            print(f"[layerwise] removing {stale.name}: not in _toc.yml", flush=True)
            stale.unlink()
    for name in notebooks or chapters:
        out = book_dir / "executed" / f"{name}.ipynb"
        key = _notebook_key(name, inputs)
        if notebooks is None and _stored_key(out) == key:
            print(f"[layerwise] {name}: unchanged, not re-executed", flush=True)
            continue
        execute_notebook(name, parameters=params, book_dir=book_dir)
        _store_key(out, key)
    cmd = [
        str(Path(sys.executable).parent / "jupyter-book"), "build", str(book_dir),
        "--config", str(PROJECT_ROOT / "_config.yml"), "--toc", str(PROJECT_ROOT / "_toc.yml"),
        "--path-output", str(book_dir),
        "--warningiserror", "--keep-going",
    ]
    env = {**os.environ, **BOOK_ENV}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    index = book_dir / "_build" / "html" / "index.html"
    if not index.is_file():
        raise RuntimeError(f"jupyter-book reported success but {index} is missing:\n{result.stdout[-2000:]}")
    return index
