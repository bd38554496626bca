"""Provenance of a run's pieces: which code, spec, libraries and machine computed its results.

A long run (the reference run) is computed in pieces, each a ``layerwise run --hours H`` that stops
starting work at its deadline and is continued by the same command. Every piece appends one JSON
line to ``<output_dir>/provenance.jsonl``: the commit of the code, the spec's content key, the
versions of torch, transformers and peft, the machine (cores, CPU, threads, device, dtype), the wall
seconds of each stage, what the piece added (adapters, hidden-state files, evaluations, tables) and
how it ended. The file is append-only; a reader gets one record per piece, in order.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache import atomic_write_text
from .spec import PROJECT_ROOT

if TYPE_CHECKING:
    import pandas as pd

    from .spec import RunSpec

__all__ = ["PROVENANCE_FILE", "ARTEFACT_GLOBS", "artefact_counts", "code_commit", "machine", "piece_record",
           "append_piece", "read_pieces", "time_table", "time_summary", "NOTEBOOKS_COMMAND"]

#: The provenance file, under the run's output directory.
PROVENANCE_FILE = "provenance.jsonl"

#: The ``command`` of the record that ``layerwise book`` appends after its notebook execution and build.
NOTEBOOKS_COMMAND = "book: notebooks"

#: What a piece may add, counted before and after it: name -> glob under the output directory.
ARTEFACT_GLOBS: dict[str, str] = {
    "adapters": "**/adapters/*/layerwise_adapter.json",
    "hidden_states": "**/hidden_states/*/*.safetensors",
    "evaluations": "**/evaluation/*/*.json",
    "tables": "**/tables/*.parquet",
}


def artefact_counts(output_dir: Path) -> dict[str, int]:
    """Number of finished artefacts of each kind of :data:`ARTEFACT_GLOBS` under ``output_dir``."""
    return {kind: sum(1 for p in Path(output_dir).glob(pattern) if ".work" not in p.parts)
            for kind, pattern in ARTEFACT_GLOBS.items()}


def code_commit(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The git commit of the code (``commit``; None outside a git checkout) and whether ``lib/`` had
    uncommitted changes (``dirty``)."""
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", "lib")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def machine(spec: RunSpec) -> dict[str, Any]:
    """The machine of a piece: cores, CPU model, torch threads, and the device and dtype of the spec."""
    import torch

    from .models import compute_settings

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    cs = compute_settings(spec.extraction.device, spec.training.dtype)
    return {"cores": os.cpu_count(), "cpu": cpu, "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": cs.device, "dtype": cs.dtype,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def piece_record(spec: RunSpec, *, started: float, ended: float, status: str, stage_seconds: Mapping[str, float],
                 before: Mapping[str, int], after: Mapping[str, int], hours: float | None,
                 command: str = "run") -> dict[str, Any]:
    """One provenance record (see the module docstring).

    Args:
        spec: the run's spec. started, ended: Unix times of the piece.
        command: what the piece was: ``"run"`` (``layerwise run``), ``"book"`` (the computing part of
            ``layerwise book``) or ``"book: notebooks"`` (its notebook execution and book build).
        status: ``"complete"``, ``"time budget spent: ..."`` or ``"failed: ..."``.
        stage_seconds: wall seconds per stage (:func:`layerwise.plan.compute_local`).
        before, after: :func:`artefact_counts` at the start and the end.
        hours: the piece's time budget (None: none).
    """
    from .stages.cached import library_versions

    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ended)),
        "wall_seconds": round(ended - started, 1),
        "hours_budget": hours,
        "command": command,
        "status": status,
        **code_commit(),
        "spec_name": spec.name,
        "spec_key": spec.key(),
        "libraries": {k: v for k, v in library_versions().items() if k in ("torch", "transformers", "peft")},
        "machine": machine(spec),
        "stage_seconds": {k: round(v, 1) for k, v in stage_seconds.items()},
        "added": {k: after.get(k, 0) - before.get(k, 0) for k in after},
        "artefacts": dict(after),
    }


def append_piece(output_dir: Path, record: Mapping[str, Any]) -> Path:
    """Append ``record`` as one line to ``<output_dir>/provenance.jsonl`` (rewritten atomically)."""
    path = Path(output_dir) / PROVENANCE_FILE
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    atomic_write_text(path, old + json.dumps(record, sort_keys=True) + "\n")
    return path


def read_pieces(output_dir: Path) -> list[dict[str, Any]]:
    """The provenance records of a run, in order (empty if it has none).

    Raises:
        ValueError: a line is not a JSON object (the file names itself and the line).
    """
    path = Path(output_dir) / PROVENANCE_FILE
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {i} is not JSON ({err})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}: line {i} is not a JSON object")
            out.append(rec)
    return out


def time_table(pieces: list[Mapping[str, Any]]) -> pd.DataFrame:
    """The wall time of each piece of a run, one row per provenance record, in order.

    Args:
        pieces: :func:`read_pieces`.

    Returns:
        Columns ``started`` (UTC, ``YYYY-MM-DD HH:MM``), ``command``, ``status``, ``minutes`` (the
        piece's wall minutes, float64), ``stages`` (wall minutes per stage as text, e.g. ``"fetch 0.4 ·
        train 54.3"``; the numbers are in the file), ``added`` (artefacts the piece added, e.g. ``"3
        adapters, 40 hidden_states"``, or ``"nothing"``). No rows for a run without records.
    """
    import pandas as pd

    rows = []
    for rec in pieces:
        stages = " · ".join(f"{k} {float(v) / 60:.1f}" for k, v in (rec.get("stage_seconds") or {}).items())
        added = {k: v for k, v in (rec.get("added") or {}).items() if v}
        rows.append({"started": str(rec.get("started", "")).replace("T", " ")[:16],
                     "command": rec.get("command", "run"), "status": str(rec.get("status", "")).split(":")[0],
                     "minutes": float(rec.get("wall_seconds", float("nan"))) / 60, "stages": stages,
                     "added": ", ".join(f"{v} {k}" for k, v in added.items()) or "nothing"})
    return pd.DataFrame(rows, columns=["started", "command", "status", "minutes", "stages", "added"])


def time_summary(pieces: list[Mapping[str, Any]]) -> str:
    """One paragraph (Markdown) on what computing a run took, read from its provenance records.

    It names the number of pieces that added artefacts and their summed wall minutes (the run's cost
    from cold, when its first piece started from an empty ``output_dir``), the machine and dtype of
    the last piece, and the last recorded notebook execution and book build. Returns a sentence saying
    that nothing was recorded for a run without records (results copied in, or computed before
    records were kept).
    """
    if not pieces:
        return ("No provenance records: these results were copied in or computed before records were kept, "
                "so this book cannot say how long they took to compute.")
    computing = [r for r in pieces if r.get("command", "run") != NOTEBOOKS_COMMAND]
    adding = [r for r in computing if any((r.get("added") or {}).values())]
    minutes = sum(float(r.get("wall_seconds", 0.0)) for r in adding) / 60
    m = (pieces[-1].get("machine") or {})
    where = (f"{m.get('cpu', 'unknown CPU')}, {m.get('cores', '?')} cores, {m.get('torch_threads', '?')} torch "
             f"threads, {m.get('device', '?')} {m.get('dtype', '?')}")
    if adding:
        parts = [f"Computing this run's results took **{minutes:.0f} min** in {len(adding)} piece(s) that added "
                 f"artefacts ({where}; the first started {adding[0]['started']})."]
    else:
        parts = ["No recorded piece added artefacts: the results were computed by pieces that left no record "
                 "(killed outright, or run before records were kept) or were copied in, so this book cannot say "
                 f"how long they took. The records are of later pieces ({where})."]
    if adding and adding[0].get("added") != adding[0].get("artefacts"):
        parts.append("The first recorded piece found artefacts already present, so this is not the time from cold.")
    books = [r for r in pieces if r.get("command") == NOTEBOOKS_COMMAND]
    if books:
        parts.append(f"The last recorded notebook execution and book build took "
                     f"{float(books[-1].get('wall_seconds', 0.0)) / 60:.0f} min (it is recorded after the build, "
                     "so the build that renders this page is not yet among the records).")
    else:
        parts.append("The notebook execution and book build of this render are recorded after it ends, so they are "
                     "not included here.")
    return " ".join(parts)
