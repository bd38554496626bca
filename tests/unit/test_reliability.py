"""Every artefact kind is verified when read: a truncated, garbage or wrongly tagged file is reported
on stderr with its path, removed and recomputed (never used, never a crash); the run lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from layerwise.cache import HELD_ENV, CorruptArtefact, OutputDirInUse, RunLock, hold_run_lock, release_run_lock

ROOT = Path(__file__).resolve().parents[2]


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _garbage(p: Path) -> None:
    p.write_bytes(os.urandom(max(p.stat().st_size, 64)))


def _reported(capsys, path: Path) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "corrupt artefact" in ln]
    assert len(lines) == 1 and str(path) in lines[0], err
    return lines[0]


# ------------------------------------------------------------------ parquet tables (stages.cached)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tag"])
def test_cached_table_corrupt_is_reported_and_recomputed(tmp_path, capsys, damage):
    from layerwise.cache import write_table
    from layerwise.stages.cached import cached_table

    df = pd.DataFrame({"task": ["a", "b"], "value": [0.5, 0.25]})
    calls = []

    def compute():
        calls.append(1)
        return df

    cached_table(tmp_path, "t", {"x": 1}, compute, code=[compute])
    (path,) = tmp_path.glob("t-*.parquet")
    if damage == "truncate":
        _truncate(path)
    elif damage == "garbage":
        _garbage(path)
    else:
        write_table(df, path, "other-table/1")
    out = cached_table(tmp_path, "t", {"x": 1}, compute, code=[compute])
    pd.testing.assert_frame_equal(out, df, check_exact=True)
    assert len(calls) == 2
    _reported(capsys, path)
    assert cached_table(tmp_path, "t", {"x": 1}, compute, code=[compute]) is not None and len(calls) == 2


# ------------------------------------------------------------------ hidden states


def _states(tmp_path):
    from layerwise.extraction import save_states

    rng = np.random.default_rng(0)
    hidden = {"last": rng.normal(size=(3, 4, 5)).astype(np.float32), "mean": rng.normal(size=(3, 4, 5)).astype(np.float32)}
    ids = ["a", "b", "c", "d"]
    return save_states(tmp_path / "s.safetensors", hidden, ids, {"task": "t"}), hidden, ids


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tag", "ids", "nan"])
def test_hidden_states_corrupt_are_detected(tmp_path, capsys, damage):
    from safetensors.numpy import save_file

    from layerwise.extraction import STATES_FORMAT, has_states, load_states, save_states

    path, hidden, ids = _states(tmp_path)
    assert has_states(path, ids=ids)
    np.testing.assert_array_equal(load_states(path, "mean", ids)[0], hidden["mean"])
    if damage == "truncate":
        _truncate(path)
    elif damage == "garbage":
        _garbage(path)
    elif damage == "tag":
        save_file(hidden, str(path), metadata={"ids": json.dumps(ids), "meta": "{}", "layerwise_format": "old/0"})
    elif damage == "nan":
        bad = {k: v.copy() for k, v in hidden.items()}
        bad["last"][1, 2, 3] = np.nan
        save_file(bad, str(path), metadata={"ids": json.dumps(ids), "meta": "{}", "layerwise_format": STATES_FORMAT})
    if damage == "ids":
        save_states(path, hidden, ["a", "b", "c", "x"], {})
    pooling = "last"
    with pytest.raises(CorruptArtefact) as info:
        load_states(path, pooling, ids)
    assert info.value.path == path
    if damage != "nan":  # a non-finite value needs the tensor read: found by load_states, not the header check
        assert not has_states(path, ids=ids)
        assert "recomputing" in _reported(capsys, path)
        assert not path.exists()


# ------------------------------------------------------------------ Gram files


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tag", "values"])
def test_gram_file_corrupt_is_reported_and_recomputed(tmp_path, capsys, damage):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from layerwise.similarity.gram_cache import GramCache

    H = np.random.default_rng(1).normal(size=(3, 6, 8))
    cache = GramCache(tmp_path)
    assert cache.ensure("m", "t", lambda: H)
    path = cache.path("m", "t")
    want = GramCache(tmp_path).get("m", "t")
    if damage == "truncate":
        _truncate(path)
    elif damage == "garbage":
        _garbage(path)
    else:
        with safe_open(str(path), framework="np") as f:
            meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
        if damage == "tag":
            meta["format"] = "old-gram-v0"
        else:
            tensors["layer_001"][2, 2] = np.nan  # a NaN the file does not record: damaged values
        save_file(tensors, str(path), metadata=meta)
    fresh = GramCache(tmp_path)
    if damage == "values":  # same header: found when the values are read, recomputed from the remembered states
        assert not fresh.ensure("m", "t", lambda: H)
        got = fresh.get("m", "t")
    else:
        assert fresh.ensure("m", "t", lambda: H)
        got = fresh.get("m", "t")
    np.testing.assert_array_equal(got, want)
    _reported(capsys, path)
    fresh.check("m", "t")
    with pytest.raises(CorruptArtefact):  # without a source to recompute from, a damaged file is an error, not used
        _garbage(path)
        GramCache(tmp_path).get("m", "t")


# ------------------------------------------------------------------ task pools


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A cache root of its own (pools built there), sharing the fetched sources and models."""
    from layerwise.cache import cache_root

    shared = cache_root()
    root = tmp_path / "cache"
    root.mkdir()
    for sub in ("sources", "models", "gguf"):
        if (shared / sub).exists():
            (root / sub).symlink_to(shared / sub)
    monkeypatch.setenv("LAYERWISE_CACHE", str(root))
    return root


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tag"])
def test_task_pool_corrupt_is_reported_and_rebuilt(private_cache, capsys, damage):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from layerwise.tasks.loading import load_pool, pool_path

    name = "rt_sentence_polarity"
    want = load_pool(name).to_pandas()
    path = pool_path(name)
    assert path.is_relative_to(private_cache)
    capsys.readouterr()
    if damage == "truncate":
        _truncate(path)
    elif damage == "garbage":
        _garbage(path)
    else:
        pq.write_table(pa.Table.from_pandas(want, preserve_index=False), path)  # no format tag
    got = load_pool(name).to_pandas()
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    _reported(capsys, path)


# ------------------------------------------------------------------ the run lock


def test_second_run_on_a_locked_output_dir_fails_at_once_with_one_line(tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != HELD_ENV}
    env["PYTHONPATH"] = str(ROOT / "lib")
    with RunLock(out):
        proc = subprocess.run([sys.executable, "-m", "layerwise", "fetch", "--spec", str(ROOT / "specs/smoke.yaml"),
                               "--set", f"output_dir={out}"], capture_output=True, text=True, env=env, timeout=120,
                              cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "is in use by pid" in lines[0] and str(out) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_readers_share_the_lock_and_a_writer_excludes_them(tmp_path):
    out = tmp_path / "run"
    code = ("import sys; from layerwise.cache import hold_run_lock; "
            "hold_run_lock(sys.argv[1], shared=sys.argv[2] == 'r'); print('ok')")
    env = {k: v for k, v in os.environ.items() if k != HELD_ENV}
    env["PYTHONPATH"] = str(ROOT / "lib")

    def other(mode: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, str(out), mode], capture_output=True, text=True,
                              env={**env, **(extra_env or {})}, timeout=60)

    with RunLock(out, shared=True):  # a notebook has the run open
        assert other("r").stdout.strip() == "ok"  # another notebook: fine
        w = other("w")  # a computing run: refused
        assert w.returncode != 0 and "OutputDirInUse" in w.stderr
    with RunLock(out):  # a computing run (layerwise book) ...
        assert other("r").returncode != 0
        # ... whose notebook kernels inherit its lock through the environment
        assert other("r", {HELD_ENV: str(out.resolve())}).stdout.strip() == "ok"


def test_hold_run_lock_upgrades_and_cleans_orphans(tmp_path, monkeypatch):
    monkeypatch.setenv(HELD_ENV, "")
    out = tmp_path / "run"
    (out / "tables").mkdir(parents=True)
    orphan = out / "tables" / ".x.parquet.abc.tmp"
    orphan.write_text("half")
    lock = hold_run_lock(out, shared=True)
    assert lock is not None and lock.shared and orphan.exists()  # a reader never cleans
    assert hold_run_lock(out) is lock and not lock.shared and not orphan.exists()
    assert os.environ[HELD_ENV].split(os.pathsep)[-1] == str(out.resolve())
    lock.release()


def test_run_lock_error_names_the_holder(tmp_path):
    with RunLock(tmp_path):
        code = "import sys; from layerwise.cache import RunLock; RunLock(sys.argv[1]).acquire()"
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "lib")}, timeout=60)
    assert f"pid {os.getpid()}" in proc.stderr
    assert OutputDirInUse.__name__ in proc.stderr


def test_release_run_lock_hands_the_directory_to_a_writer(tmp_path, monkeypatch):
    """A reader that releases its lock (``Run.close``, ``with Run...``) lets a writer in without ending."""
    monkeypatch.setenv(HELD_ENV, "")
    out = tmp_path / "run"
    code = "import sys; from layerwise.cache import hold_run_lock; hold_run_lock(sys.argv[1]); print('ok')"
    env = {**{k: v for k, v in os.environ.items() if k != HELD_ENV}, "PYTHONPATH": str(ROOT / "lib")}

    def writer() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=env,
                              timeout=60)

    assert hold_run_lock(out, shared=True) is not None
    assert writer().returncode != 0
    assert release_run_lock(out) and not release_run_lock(out)  # released once; a second call is a no-op
    assert writer().stdout.strip() == "ok"
    assert str(out.resolve()) not in os.environ.get(HELD_ENV, "").split(os.pathsep)
