"""Command line: the same stages the notebooks call, driven by the same run spec.

    layerwise fetch  [--spec S] [--set key=value ...]   model + task data into the caches
    layerwise run    [--spec S] [--set ...]             fetch, train adapters, hidden states, CKA table
    layerwise book   [--spec S] [--set ...] [--book-dir D]  run, execute notebooks, build the HTML book
    layerwise notebook NAME [--spec S] [--set ...]      execute one notebook into the book folder

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

from .book import BOOK_ENV

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="layerwise", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in [
        ("fetch", "download/convert the base model and build the task data"),
        ("run", "fetch, train adapters, extract hidden states, compute the CKA table"),
        ("book", "run, execute all notebooks, build the HTML book"),
        ("notebook", "execute one notebook into the book folder"),
    ]:
        s = sub.add_parser(name, help=help_)
        if name == "notebook":
            s.add_argument("name", help="notebook name (file stem in notebooks/)")
        s.add_argument("--spec", default="specs/default.yaml", help="run spec YAML (default: specs/default.yaml)")
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one spec value, e.g. --set training.epochs=2 (repeatable)")
        if name in ("book", "notebook"):
            s.add_argument("--book-dir", default=None, help="Jupyter Book source folder (default: book/)")
    return p


def _fetch(run) -> None:
    """Fetch every model of the run (base, experimental, comparison models) and the task data.

    Each model that gets LoRA adapters (the base model and the ``compare_models``) is checked for
    ``training.target_modules`` as soon as its config is on disk.

    Raises:
        SpecError: a LoRA target module does not exist in a model (one line per model).
        layerwise.models.ModelNotFoundError: a model cannot be resolved.
    """
    from .models import resolve_model
    from .spec import SpecError
    from .validation import check_target_modules

    spec = run.spec
    trained = [spec.base_model] + [m for m in spec.compare_models if m != spec.base_model]
    bad: list[str] = []
    for model in trained + ([spec.experimental_model] if spec.experimental_model else []):
        t0 = time.perf_counter()
        path = resolve_model(model)
        print(f"[layerwise] model {model!r} ready at {path} ({time.perf_counter() - t0:.0f} s)", flush=True)
        if model in trained:
            bad += check_target_modules(model, spec.training.target_modules)
    if bad:
        raise SpecError(bad)
    t0 = time.perf_counter()
    sizes = {t: (len(d["train"]), len(d["test"])) for t, d in run.tasks.items()}
    print(f"[layerwise] task data ready ({time.perf_counter() - t0:.0f} s): "
          + ", ".join(f"{t} {a}+{b}" for t, (a, b) in sizes.items()), flush=True)


def _compute(run, *, evaluate: bool = True) -> None:
    """Every stage of a run; then the same for each companion run (cross-model chapter).

    Companion runs skip the task-level evaluation and the template variation (the cross-model
    chapter reads similarity, response loss and spectra only), which keeps their cost to training
    and extraction.
    """
    _fetch(run)
    t0 = time.perf_counter()
    run.train()
    print(f"[layerwise] adapters ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    t0 = time.perf_counter()
    run.run_models()
    df = run.cka()
    print(f"[layerwise] hidden states + CKA table ready ({time.perf_counter() - t0:.0f} s, {len(df)} rows)", flush=True)
    t0 = time.perf_counter()
    if evaluate:
        run.evaluate()
        run.template_variation()
    run.spectra()
    done = "task-level evaluation, template variation + spectra" if evaluate else "spectra"
    print(f"[layerwise] {done} ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    for companion in run.companions:
        print(f"[layerwise] cross-model companion run: {companion.spec.base_model} -> {companion.out}", flush=True)
        _compute(companion, evaluate=False)


def _report(lines: list[str]) -> None:
    for line in lines:
        print(f"layerwise: error: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code: 0, 2 for bad input (spec, overrides, model or
    spec file; one line per problem on stderr, no traceback), 1 for a failed notebook or another
    error with a one-line message."""
    args = _parser().parse_args(argv)
    for k, v in BOOK_ENV.items():
        if k not in ("TQDM_DISABLE", "LAYERWISE_CHART_MODE"):
            os.environ.setdefault(k, v)
    from .book import NotebookFailed, build_book, execute_notebook
    from .cache import OutputDirInUse
    from .models import ModelNotFoundError
    from .pipeline import Run
    from .spec import SpecError

    t_start = time.perf_counter()
    try:
        run = Run.from_spec(args.spec, args.overrides)
        if args.command == "fetch":
            _fetch(run)
        elif args.command == "run":
            _compute(run)
        elif args.command == "book":
            _compute(run)
            index = build_book(spec_path=args.spec, overrides=args.overrides,
                               book_dir=Path(args.book_dir) if args.book_dir else None)
            print(f"[layerwise] book built in {time.perf_counter() - t_start:.0f} s total", flush=True)
            print(index)
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
    except (KeyError, ValueError, NotebookFailed) as exc:
        _report([str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)])
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
