"""The smoke run survives a SIGKILL at any stage, corrupt artefacts, and gives the same tables twice.

All tests compare every parquet under a ``tables/`` folder (the run's and its companions') with
``pandas.testing.assert_frame_equal(check_exact=True)`` against one uninterrupted reference run.

* crash-resume, in turn (``make test``): one cold run (empty ``output_dir``, private model and task
  cache) is SIGKILLed by the library's test-only hook (``LAYERWISE_KILL_AT=<point>:<n>[:<path
  text>]``, :func:`layerwise.cache.kill_point`) at 11 points, one after another, from the model
  build to the notebook execution of ``layerwise book``; each rerun continues the run and is
  killed at the next point. After every kill the tables written so far must equal the reference
  run's, and the finished run's tables must equal them all.
* crash-resume, one point at a time (``make test-crash``, about an hour): each of 13 points is
  killed in its own run and a plain rerun must finish with bit-identical tables. To stay
  affordable, a kill late in the pipeline starts from a copy of the reference run without the
  artefacts of its stage and the ones after it (earlier inputs are reused); training kills remove
  the SFT adapters, so real training is killed.
* two cold runs (empty output_dirs) give bit-identical tables;
* a corrupt artefact of every kind in a finished run is reported with its path and recomputed.

Set ``LAYERWISE_SMOKE_REFERENCE=<dir>`` to a finished smoke run made with ``--set
training.save_steps=2`` to skip computing the reference (it is copied, never changed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from layerwise.cache import HELD_ENV, KILL_ENV

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "smoke.yaml"
#: Checkpoints every 2 optimiser steps (not part of any key), so training kills can hit a checkpoint.
SETS = ["training.save_steps=2"]


def run_smoke(out: Path, env_extra: dict[str, str] | None = None, *,
              book_dir: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m layerwise run`` of the smoke spec into ``out`` (niced, offline); with ``book_dir``,
    ``python -m layerwise book`` into that folder."""
    env = {k: v for k, v in os.environ.items() if k not in (HELD_ENV, KILL_ENV)}
    env.update(PYTHONPATH=str(ROOT / "lib"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TQDM_DISABLE="1", **(env_extra or {}))
    command = ["book", "--book-dir", str(book_dir)] if book_dir else ["run"]
    cmd = ["nice", "-n", "10", sys.executable, "-m", "layerwise", *command, "--spec", str(SPEC), "--set",
           f"output_dir={out}"]
    for s in SETS:
        cmd += ["--set", s]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=7200)


def tables(out: Path) -> dict[str, pd.DataFrame]:
    """Every parquet table under a ``tables/`` folder of a run, by path relative to the run without the
    content key (so a reference run made by other code is still comparable)."""
    found = {}
    for p in sorted(out.rglob("*.parquet")):
        rel = p.relative_to(out)
        if "tables" in rel.parts:
            name = str(rel.parent / rel.name.rsplit("-", 1)[0])
            assert name not in found, f"two tables named {name} in {out}"
            found[name] = pd.read_parquet(p)
    return found


def assert_same_tables(reference: Path, other: Path, *, partial: bool = False) -> int:
    """Every table of ``other`` equals the reference's (``partial``: ``other`` may lack some); returns
    how many were compared."""
    want, got = tables(reference), tables(other)
    got = {k: v for k, v in got.items() if k not in BOOK_ONLY}
    if partial:
        assert set(got) <= set(want), sorted(set(got) - set(want))
    else:
        assert want and sorted(got) == sorted(want), (sorted(want), sorted(got))
    for name in got:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)
    return len(got)


#: Tables that only the findings chapter computes (``layerwise book``), never ``layerwise run``: the
#: reference run has none to compare them with.
BOOK_ONLY = {"tables/gate", "tables/halves", "tables/seeds"}


def private_cache(tmp_path: Path) -> dict[str, str]:
    """A cold model and task cache under ``tmp_path`` (the downloaded sources are linked, not copied)."""
    from layerwise.cache import cache_root

    cache = tmp_path / "cache"
    cache.mkdir()
    for sub in ("sources", "gguf"):
        if (cache_root() / sub).exists():
            (cache / sub).symlink_to(cache_root() / sub)
    return {"LAYERWISE_CACHE": str(cache)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    given = os.environ.get("LAYERWISE_SMOKE_REFERENCE")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = run_smoke(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _copy_without(reference: Path, dest: Path, remove: list[str]) -> Path:
    """A copy of the reference run without the paths matching the glob patterns ``remove`` (at any depth)."""
    shutil.copytree(reference, dest, ignore=shutil.ignore_patterns(".lock"))
    for pattern in remove:
        for p in sorted(dest.rglob(pattern), key=lambda q: len(q.parts)):
            if p.exists():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    return dest


DOWNSTREAM = ["hidden_states", "evaluation", "grams", "tables"]
#: (id, LAYERWISE_KILL_AT, what to remove from the reference copy first; None = empty output_dir and a cold cache)
KILLS = [
    ("fetch-model-build", "write:1:/models/", None),
    ("fetch-task-pool", "write:2:/tasks/", None),
    ("train-sft-mid-step", "train_step:3", ["sft-*", "sft+*"] + DOWNSTREAM),
    ("train-first-checkpoint", "checkpoint:1", ["sft-*", "sft+*"] + DOWNSTREAM),
    ("train-third-checkpoint", "checkpoint:3", ["sft-*", "sft+*"] + DOWNSTREAM),
    ("adapter-save", "write:1:/adapters/sft", ["sft-*", "sft+*"] + DOWNSTREAM),
    ("states-first", "write:1:/hidden_states/", DOWNSTREAM),
    ("states-later", "write:7:/hidden_states/", DOWNSTREAM),
    ("loss-json", "write:3:/evaluation/", DOWNSTREAM),
    ("grams", "write:4:/grams/", ["grams", "tables"]),
    ("tables-first", "write:1:/tables/", ["tables"]),
    ("tables-later", "write:3:/tables/", ["tables"]),
    ("companion-model", "write:2:/compare/", ["compare"]),
]


#: (stage, LAYERWISE_KILL_AT) in the order one cold run reaches them; each point is counted from the
#: start of the process that the previous kill's rerun started, and the last one is in ``layerwise book``.
CHAIN = [
    ("fetch: the model build", "write:1:/models/"),
    ("fetch: a task pool", "write:2:/tasks/"),
    ("training: mid-step", "train_step:3"),
    ("training: inside a checkpoint", "checkpoint:1"),
    ("training: an adapter's save", "write:1:/adapters/"),
    ("extraction: hidden states", "write:2:/hidden_states/"),
    ("evaluation: a loss JSON", "write:2:/evaluation/"),
    ("similarity: a Gram file", "write:3:/grams/"),
    ("tables", "write:2:/tables/"),
    ("the companion run", "write:2:/compare/"),
    ("notebook execution", "write:2:/executed/"),
]


def test_a_run_killed_at_eleven_points_in_turn_gives_the_same_tables(reference, tmp_path):
    env, out, book = private_cache(tmp_path), tmp_path / "run", tmp_path / "book"
    compared = []
    for stage, point in CHAIN:
        killed = run_smoke(out, {**env, KILL_ENV: point}, book_dir=book if stage == "notebook execution" else None)
        assert killed.returncode == -9, f"{stage}: not killed at {point}: rc {killed.returncode}\n{killed.stderr[-2000:]}"
        assert f"test kill at {point}" in killed.stdout, stage
        assert "Traceback" not in killed.stderr, (stage, killed.stderr[-2000:])
        compared.append(assert_same_tables(reference, out, partial=True))
    rerun = run_smoke(out, env, book_dir=book)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr
    assert (book / "_build" / "html" / "index.html").is_file()
    assert_same_tables(reference, out)
    assert BOOK_ONLY <= set(tables(out)), sorted(tables(out))  # the book made them, after its kill
    assert compared == sorted(compared) and compared[-1] > compared[0], compared  # the kills reach later stages
    assert not [p for p in out.rglob(".*") if p.name.endswith((".tmp", ".old"))]  # orphans cleaned


@pytest.mark.crash
@pytest.mark.parametrize("point, remove", [(k, r) for _, k, r in KILLS], ids=[i for i, _, _ in KILLS])
def test_kill_then_rerun_gives_the_same_tables(reference, tmp_path, point, remove):
    env: dict[str, str] = {}
    if remove is None:  # a cold start: models and task pools are built in a private cache
        env = private_cache(tmp_path)
        out = tmp_path / "run"
    else:
        out = _copy_without(reference, tmp_path / "run", remove)
    killed = run_smoke(out, {**env, KILL_ENV: point})
    assert killed.returncode == -9, f"not killed at {point}: rc {killed.returncode}\n{killed.stderr[-2000:]}"
    assert f"test kill at {point}" in killed.stdout
    rerun = run_smoke(out, env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr
    if point == "checkpoint:3":  # killed while saving sft's checkpoint-6: that one is discarded, 4 resumed
        assert "corrupt artefact, recomputing:" in rerun.stderr and "/checkpoint-6 (" in rerun.stderr, rerun.stderr[-2000:]
        assert "sft: resuming from checkpoint-4" in rerun.stdout
    assert_same_tables(reference, out)
    assert not [p for p in out.rglob(".*") if p.name.endswith((".tmp", ".old"))]  # orphans cleaned


def test_two_cold_runs_give_identical_tables(reference, tmp_path):
    proc = run_smoke(tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_tables(reference, tmp_path / "run")


def test_corrupt_artefacts_of_every_kind_are_reported_and_recomputed(reference, tmp_path):
    """One damaged file of each kind; the tables other than the damaged one are removed, so the rerun
    reads every input kind again (a cached table never reads its inputs)."""
    out = _copy_without(reference, tmp_path / "run", [])

    def first(pattern: str, where: str) -> Path:
        return sorted(p for p in out.glob(pattern) if p.is_file() and "/compare/" not in str(p) and where in str(p))[0]

    damaged = {
        "hidden states (truncated)": first("hidden_states/*/*.safetensors", "SFT"),
        "Gram file (garbage)": first("grams/*/*.safetensors", ""),
        "loss JSON (truncated)": first("evaluation/*/*.json", "PT-"),
        "evaluation JSON (garbage)": next(p for p in sorted(out.glob("evaluation/*/*-metric-*.json"))),
        "table (truncated)": first("tables/*.parquet", ""),
        "adapter (truncated weights)": first("adapters/control-*/adapter_model.safetensors", ""),
    }
    for p in out.glob("tables/*.parquet"):  # every other table is recomputed: that reads the damaged inputs
        if p != damaged["table (truncated)"]:
            p.unlink()
    for what, p in damaged.items():
        data = p.read_bytes()
        p.write_bytes(os.urandom(len(data)) if "garbage" in what else data[: len(data) // 2])
    proc = run_smoke(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if "corrupt artefact, recomputing:" in ln]
    for what, p in damaged.items():
        if what.startswith("loss"):
            continue  # read by the notebooks, checked below
        reported = p.parent if what.startswith("adapter") else p
        assert any(f"recomputing: {reported} (" in ln for ln in lines), (what, lines)
    assert_same_tables(reference, out)
    # `layerwise run` makes no response-loss table; the notebooks read the loss JSONs through Run.response_loss
    loss_json = damaged["loss JSON (truncated)"]
    check = subprocess.run(
        [sys.executable, "-c", "import sys; from layerwise.pipeline import Run; "
         "r = Run.from_spec(sys.argv[1], [f'output_dir={sys.argv[2]}'] + sys.argv[3:], verbose=False); "
         "print(r.response_loss().to_json())", str(SPEC), str(out), *SETS],
        capture_output=True, text=True, cwd=ROOT, timeout=1800,
        env={**{k: v for k, v in os.environ.items() if k != HELD_ENV}, "PYTHONPATH": str(ROOT / "lib")})
    assert check.returncode == 0, check.stderr[-3000:]
    assert f"corrupt artefact, recomputing: {loss_json} (invalid JSON" in check.stderr, check.stderr[-3000:]
    assert loss_json.is_file()
