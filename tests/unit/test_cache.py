"""Content keys and atomic writes."""

import pytest

from layerwise.cache import atomic_path, atomic_write_json, content_key, read_json


def test_content_key_is_order_independent_and_sensitive():
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
    assert content_key({"a": 1.0}) == content_key({"a": 1})
    assert content_key({"a": 1}) != content_key({"a": 2})
    with pytest.raises(TypeError, match="cannot build a cache key"):
        content_key({"a": object()})


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_atomic_dir_replaces_whole_directory(tmp_path):
    target = tmp_path / "d"
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError):
        with atomic_path(target, is_dir=True) as tmp:
            (tmp / "b").write_text("2")
            raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


# ------------------------------------------------------------------ verified reads, orphans, lock
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from layerwise.cache import (FORMAT_KEY, CorruptArtefact, OutputDirInUse, RunLock, clean_orphans, discard_corrupt,
                             read_table, read_verified_json, safetensors_format, write_table)


def test_table_round_trip_and_every_kind_of_damage_is_detected(tmp_path):
    df = pd.DataFrame({"task": ["a", "b"], "value": [0.5, 0.25]})
    path = write_table(df, tmp_path / "t.parquet", "similarity/1")
    pd.testing.assert_frame_equal(read_table(path, "similarity/1", ["task", "value"]), df)
    with pytest.raises(CorruptArtefact, match="format tag"):
        read_table(path, "similarity/2")
    with pytest.raises(CorruptArtefact, match="missing columns"):
        read_table(path, "similarity/1", ["layer"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptArtefact, match="unreadable parquet"):
        read_table(path, "similarity/1")
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "none.parquet", "similarity/1")


def test_json_damage_is_detected(tmp_path):
    path = atomic_write_json(tmp_path / "e.json", {"loss": [1.0], "n": 1})
    assert read_verified_json(path, ["loss"])["n"] == 1
    with pytest.raises(CorruptArtefact, match="missing keys"):
        read_verified_json(path, ["loss", "metric"])
    path.write_text(path.read_text()[:5])
    with pytest.raises(CorruptArtefact, match="invalid JSON"):
        read_verified_json(path)


def test_safetensors_truncation_and_tag_are_detected(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "s.safetensors"
    save_file({"x": np.ones((3, 4), np.float32)}, str(path), metadata={FORMAT_KEY: "states/1"})
    assert safetensors_format(path, "states/1")[FORMAT_KEY] == "states/1"
    with pytest.raises(CorruptArtefact, match="format tag"):
        safetensors_format(path, "grams/1")
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(CorruptArtefact, match="truncated"):
        safetensors_format(path)
    path.write_bytes(b"\x01\x02")
    with pytest.raises(CorruptArtefact, match="header"):
        safetensors_format(path)
    discard_corrupt(CorruptArtefact(path, "test"))
    assert not path.exists()


def test_clean_orphans_removes_only_atomic_leftovers(tmp_path):
    (tmp_path / "tables").mkdir()
    keep = write_table(pd.DataFrame({"a": [1]}), tmp_path / "tables" / "x.parquet", "t/1")
    (tmp_path / "tables" / ".x.parquet.abc123.tmp").write_text("half")
    (tmp_path / ".adapter.q1w2.tmp").mkdir()
    (tmp_path / ".adapter.q1w2.tmp" / "weights").write_text("half")
    (tmp_path / ".adapter.old").mkdir()
    removed = clean_orphans(tmp_path)
    assert len(removed) == 3 and keep.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["tables", "x.parquet"]


def test_run_lock_keeps_a_second_process_out_and_dies_with_its_holder(tmp_path):
    code = ("import sys,time; from layerwise.cache import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputDirInUse, match=r"in use by pid \d+"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path) as lock:  # SIGKILL released it
        assert lock.acquire() is lock


def test_kill_point_kills_at_the_nth_matching_pass_and_once_with_a_marker(tmp_path):
    """The test-only kill hook: the n-th pass whose detail matches; with a marker file, once over retries."""
    code = ("from layerwise.cache import kill_point\n"
            "for i in range(3):\n"
            "    kill_point('train_step', '/x/.work/control-a')\n"
            "    kill_point('train_step', '/x/.work/sft-1')\n"
            "    print(i, flush=True)\n")
    marker = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "lib"),
           "LAYERWISE_KILL_AT": "train_step:2:/.work/sft-", "LAYERWISE_KILL_ONCE": str(marker)}

    def attempt() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)

    first = attempt()
    assert first.returncode == -9 and first.stdout.splitlines()[0] == "0" and "test kill" in first.stdout  # 2nd sft pass
    assert marker.read_text().startswith("killed at train_step:2:/.work/sft- (/x/.work/sft-1)")
    second = attempt()  # the retry: the marker exists, nothing kills it
    assert second.returncode == 0 and second.stdout.split() == ["0", "1", "2"]
