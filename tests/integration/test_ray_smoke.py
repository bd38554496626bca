"""The smoke run on a local Ray cluster (127.0.0.1, 2 CPUs): the same tables as in-process, bit for bit,
also when a worker is killed in the middle of a training job and Ray retries it."""

import glob
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from layerwise.pipeline import Run
from layerwise.cache import KILL_ENV, KILL_ONCE_ENV
from layerwise.plan import build_graph, execute
from layerwise.spec import PROJECT_ROOT

pytest.importorskip("ray")

#: Adapters of an earlier smoke run (copied so that the equality test spends its time on the jobs after
#: training; the kill test trains for real).
CACHED = PROJECT_ROOT / "runs" / "smoke"


def _open(out: Path, executor: str, *, skip_adapters: tuple[str, ...] = (), overrides: tuple[str, ...] = ()) -> Run:
    """The smoke run into ``out``, with the cached adapters copied in (but those named in ``skip_adapters``)."""
    for src in CACHED.glob("**/adapters/*/layerwise_adapter.json"):
        folder = src.parent
        if folder.name.rsplit("-", 1)[0] in skip_adapters and "compare" not in folder.parts:
            continue
        dst = out / folder.relative_to(CACHED)
        shutil.copytree(folder, dst)
    return Run.from_spec("specs/smoke.yaml", [f"output_dir={out}", f"executor={executor}", *overrides])


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    """Every parquet table of the run and of its companion runs, by path relative to ``out``."""
    return {p.relative_to(out).as_posix(): pd.read_parquet(p) for p in sorted(out.glob("**/tables/*.parquet"))}


def _assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame], n: int = 5) -> None:
    """Same table files (names carry the content keys), equal bit for bit; ``n`` tables of ``b``."""
    assert len(b) == n and set(b) <= set(a)
    for name in b:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


@pytest.fixture(scope="module")
def local_tables(tmp_path_factory):
    """The smoke run in-process (``executor: local``): its tables and wall time."""
    out = tmp_path_factory.mktemp("local")
    run = _open(out, "local")
    t0 = time.perf_counter()
    execute(run)
    print(f"\nsmoke run, executor local: {time.perf_counter() - t0:.1f} s (adapters reused)")
    return _tables(out)


def test_ray_tables_equal_local_bit_for_bit_and_jobs_write_their_outputs(local_tables, tmp_path):
    run = _open(tmp_path, "ray")
    t0 = time.perf_counter()
    report = execute(run, num_cpus=2, echo=None)
    print(f"\nsmoke run, executor ray (2 CPUs): {time.perf_counter() - t0:.1f} s (adapters reused), "
          f"{len(report.done)} jobs")
    assert report.ok
    _assert_same(local_tables, _tables(tmp_path))  # similarity, spectra, template variation + 2 of the companion
    graph = build_graph(run, notebooks=False)
    assert set(report.done) == set(graph.jobs)
    for job in graph.jobs.values():  # every declared output is on disk
        for pattern in job.outputs:
            assert glob.glob(str(tmp_path / pattern)), f"{job.id}: no file matches {pattern}"
    assert (tmp_path / "logs" / "extract__pt_squad_v1.log").is_file()


def test_a_worker_killed_mid_training_is_retried_and_the_tables_do_not_change(local_tables, tmp_path, monkeypatch):
    marker = tmp_path / "killed"
    # the SFT training job SIGKILLs its worker in its second micro-batch (after one optimizer step), once in all
    monkeypatch.setenv(KILL_ENV, "train_step:2:/.work/sft-")
    monkeypatch.setenv(KILL_ONCE_ENV, str(marker))
    # Without the companion run (its tables are in the first test): the run's own 3 tables, in half the time.
    run = _open(tmp_path / "run", "ray", skip_adapters=("sft",), overrides=("compare_models=[]",))
    t0 = time.perf_counter()
    report = execute(run, num_cpus=2, echo=None)
    print(f"\nsmoke run, executor ray, SFT trained and its worker killed once: {time.perf_counter() - t0:.1f} s")
    assert report.ok, report.summary()
    assert marker.read_text().startswith("killed at train_step:2:/.work/sft- (") and "/.work/sft-" in marker.read_text()
    log = (tmp_path / "run" / "logs" / "train__sft.log").read_text()
    assert log.count("--- train:sft started") == 2  # the killed attempt and Ray's retry
    assert len(list((tmp_path / "run" / "adapters").glob("sft-[0-9a-f]*/adapter_model.safetensors"))) == 1
    _assert_same(local_tables, _tables(tmp_path / "run"), n=3)
