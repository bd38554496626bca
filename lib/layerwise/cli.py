"""Command line: the same stages the notebooks call, driven by the same run spec.

    layerwise fetch  [--spec S] [--set key=value ...]   model + task data into the caches
    layerwise run    [--spec S] [--set ...]             fetch, train adapters, hidden states, CKA table
    layerwise book   [--spec S] [--set ...] [--book-dir D]  run, execute notebooks, build the HTML book
    layerwise notebook NAME [--spec S] [--set ...]      execute one notebook into the book folder
    layerwise plan   [--spec S] [--set ...] [--device-tflops T]  the job graph and its estimated cost; runs nothing

``run`` and ``book`` use the spec's executor: ``executor: local`` (default) runs every stage in
this process; ``executor: ray`` runs the run's job graph (:mod:`layerwise.plan`) on a Ray cluster
(``ray.address``; none starts a local one), with the job logs in ``<output_dir>/logs/``.

``python -m layerwise ...`` works too. Every command validates the whole spec first
(:func:`layerwise.validation.load_checked_spec`: keys, types, values, task, measure and model names,
devices) and ``fetch`` (the first stage of ``run`` and ``book``) checks ``training.target_modules``
against each model it fetches, so a bad input costs seconds, not a training run. A bad input is
reported as one line per problem, ``layerwise: error: <key> = <value> is not valid; <why>``, and
exit status 2; a failed notebook or another error exits with 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from .book import BOOK_ENV
from .plan import execute, fetch

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="layerwise", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in [
        ("fetch", "download/convert the base model and build the task data"),
        ("run", "fetch, train adapters, extract hidden states, compute the CKA table"),
        ("book", "run, execute all notebooks, build the HTML book"),
        ("notebook", "execute one notebook into the book folder"),
        ("plan", "print the job graph (jobs by kind, dependencies, estimated time and memory); runs nothing"),
        ("verify", "recompute one task's slice of a committed run from scratch; print the largest differences"),
    ]:
        s = sub.add_parser(name, help=help_)
        if name == "notebook":
            s.add_argument("name", help="notebook name (file stem in notebooks/)")
        s.add_argument("--spec", default="specs/default.yaml", help="run spec YAML (default: specs/default.yaml)")
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one spec value, e.g. --set training.epochs=2 (repeatable)")
        if name in ("book", "notebook"):
            s.add_argument("--book-dir", default=None, help="Jupyter Book source folder (default: book/)")
        if name == "run":
            s.add_argument("--hours", type=float, default=None, metavar="H",
                           help="time budget of this piece: after H hours no new work starts (a training saves a "
                                "checkpoint and stops); what is done is kept, and the same command continues the "
                                "run (exit code 3 until it is complete). Each run appends a record to "
                                "<output_dir>/provenance.jsonl")
        if name == "verify":
            s.add_argument("--task", required=True, help="the task whose slice is recomputed")
            s.add_argument("--scratch", default=None, help="scratch folder (default: runs/verify/<spec name>-<task>)")
            s.add_argument("--tolerance", type=float, default=1e-6,
                           help="largest |difference| accepted (exit code 1 above it; default 1e-6)")
        if name == "plan":
            s.add_argument("--device-tflops", type=float, default=None,
                           help="effective device rate for FLOP-based estimates (default: a measured GEMM rate from "
                                "benchmarks/*.json, else an A100-class assumption; the output names the source)")
    return p


def _report(lines: list[str]) -> None:
    for line in lines:
        print(f"layerwise: error: {line}", file=sys.stderr)


def _computed_piece(run: Any, hours: float | None, command: str, **execute_kwargs: Any) -> tuple[int, str, dict]:
    """Compute what is missing (within ``hours`` if given) and append a provenance record.

    Returns ``(code, status, record)``: code 0 complete, 3 time budget spent. A failure is recorded,
    then raised.
    """
    from .cache import DEADLINE_ENV, TimeBudgetSpent
    from .provenance import append_piece, artefact_counts, piece_record

    if hours is not None:
        if not hours > 0:
            raise ValueError(f"--hours = {hours!r} is not valid; give a positive number of hours")
        os.environ[DEADLINE_ENV] = str(time.time() + hours * 3600)
    started, before, stages = time.time(), artefact_counts(run.out), {}
    status, code = "complete", 0
    try:
        execute(run, stage_seconds=stages, **execute_kwargs)
    except TimeBudgetSpent as exc:
        status, code = str(exc), 3
    except BaseException as exc:
        status = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise
    finally:
        os.environ.pop(DEADLINE_ENV, None)
        record = piece_record(run.spec, started=started, ended=time.time(), status=status, stage_seconds=stages,
                              before=before, after=artefact_counts(run.out), hours=hours, command=command)
        append_piece(run.out, record)
    return code, status, record


def _run_piece(run: Any, hours: float | None, t_start: float) -> int:
    """``layerwise run``: compute what is missing, within ``hours`` if given; append a provenance record.

    Returns the exit code: 0 complete, 3 time budget spent (run the same command again).
    """
    from .provenance import PROVENANCE_FILE

    if run.spec.frozen:  # reads committed results only: a check that they are complete, not a piece
        execute(run)
        print(f"[layerwise] frozen run: every result is present ({time.perf_counter() - t_start:.0f} s)", flush=True)
        return 0
    code, status, record = _computed_piece(run, hours, "run")
    elapsed, path = time.perf_counter() - t_start, run.out / PROVENANCE_FILE
    if code == 3:
        print(f"[layerwise] {status} after {elapsed:.0f} s; added {record['added']}; provenance in {path}. "
              "Run the same command again to continue.", flush=True)
    else:
        print(f"[layerwise] run done in {elapsed:.0f} s ({run.spec.executor}); provenance in {path}", flush=True)
    return code


def _book(run: Any, args: argparse.Namespace, t_start: float) -> Path:
    """``layerwise book``: compute what is missing, execute the chapters, build the book; returns its index.

    A computing run records two provenance pieces: the computation (before the notebooks, which show
    it) and the notebook execution with the book build (after it). A frozen run records nothing.
    """
    from .book import build_book
    from .provenance import NOTEBOOKS_COMMAND, append_piece, artefact_counts, piece_record
    from .spec import PROJECT_ROOT

    book = {"spec_path": str(Path(args.spec).resolve()) if Path(args.spec).exists() else args.spec,
            "overrides": list(args.overrides),
            "book_dir": str(Path(args.book_dir).resolve() if args.book_dir else PROJECT_ROOT / "book")}
    if run.spec.frozen:
        execute(run, notebooks=True, book=book)
    else:  # ray: the chapters too, as jobs; build_book then reuses them
        _computed_piece(run, None, "book", notebooks=True, book=book)
    started = time.time()
    index = build_book(spec_path=args.spec, overrides=args.overrides,
                       book_dir=Path(args.book_dir) if args.book_dir else None)
    if not run.spec.frozen:
        ended, counts = time.time(), artefact_counts(run.out)
        append_piece(run.out, piece_record(run.spec, started=started, ended=ended, status="complete",
                                           stage_seconds={"notebooks + book build": ended - started},
                                           before=counts, after=counts, hours=None, command=NOTEBOOKS_COMMAND))
    print(f"[layerwise] book built in {time.perf_counter() - t_start:.0f} s total", flush=True)
    return index


def _verify(args: argparse.Namespace) -> int:
    """``layerwise verify``: see :mod:`layerwise.verify`. Exit code 0 within ``--tolerance``, else 1."""
    import pandas as pd

    from .spec import PROJECT_ROOT, load_spec
    from .verify import verify_task

    spec = load_spec(args.spec, args.overrides)
    if args.task not in spec.tasks:
        raise KeyError(f"--task = {args.task!r} is not a task of {args.spec}; valid: {', '.join(spec.tasks)}")
    scratch = Path(args.scratch) if args.scratch else PROJECT_ROOT / "runs" / "verify" / f"{spec.name}-{args.task}"
    diffs = verify_task(args.spec, args.overrides, args.task, scratch)
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_rows", 40):
        print(diffs.head(20).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    worst = float(diffs["max_abs_diff"].max())
    verdict = "within" if worst <= args.tolerance else "ABOVE"
    print(f"[layerwise] verify {args.task}: {int(diffs['rows'].sum())} rows recomputed; largest |difference| "
          f"{worst:.3g} ({verdict} the tolerance {args.tolerance:g})", flush=True)
    return 0 if worst <= args.tolerance else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code: 0, 2 for bad input (spec, overrides, model or
    spec file; one line per problem on stderr, no traceback), 1 for a failed notebook or another
    error with a one-line message."""
    args = _parser().parse_args(argv)
    for k, v in BOOK_ENV.items():
        if k not in ("TQDM_DISABLE", "LAYERWISE_CHART_MODE"):
            os.environ.setdefault(k, v)
    from .book import NotebookFailed, execute_notebook
    from .cache import OutputDirInUse
    from .models import ModelNotFoundError
    from .pipeline import Run
    from .spec import SpecError

    t_start = time.perf_counter()
    try:
        if args.command == "plan":  # the spec alone: the models need not be on disk
            from .plan import plan_text
            from .spec import load_spec

            print(plan_text(load_spec(args.spec, args.overrides), device_tflops=args.device_tflops))
            return 0
        if args.command == "verify":
            return _verify(args)
        run = Run.from_spec(args.spec, args.overrides)
        if args.command == "fetch":
            fetch(run)
        elif args.command == "run":
            return _run_piece(run, args.hours, t_start)
        elif args.command == "book":
            print(_book(run, args, t_start))
        elif args.command == "notebook":
            from .spec import PROJECT_ROOT

            book_dir = Path(args.book_dir) if args.book_dir else PROJECT_ROOT / "book"
            print(execute_notebook(args.name, parameters={"spec_path": args.spec, "overrides": args.overrides},
                                   book_dir=book_dir))
    except SpecError as exc:
        _report(exc.lines)
        return 2
    except (ModelNotFoundError, FileNotFoundError, OutputDirInUse) as exc:
        _report([str(exc)])
        return 2
    except (KeyError, ValueError, NotebookFailed, RuntimeError) as exc:
        _report([str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)])
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
