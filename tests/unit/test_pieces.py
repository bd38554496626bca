"""Runs in pieces: the deadline, frozen results (never recomputed, stale ones named) and the provenance file."""

import os

import pandas as pd
import pytest

from layerwise.cache import (DEADLINE_ENV, StaleResult, TimeBudgetSpent, check_deadline, deadline_passed,
                             stale_result, write_table)
from layerwise.provenance import append_piece, artefact_counts, code_commit, read_pieces
from layerwise.stages.cached import cached_table, table_key


def test_deadline_from_the_environment(monkeypatch):
    monkeypatch.delenv(DEADLINE_ENV, raising=False)
    assert not deadline_passed()
    check_deadline("anything")  # no deadline: nothing happens
    monkeypatch.setenv(DEADLINE_ENV, "1e12")  # far in the future
    assert not deadline_passed()
    monkeypatch.setenv(DEADLINE_ENV, "1")  # 1970
    with pytest.raises(TimeBudgetSpent, match="time budget spent before the similarity table"):
        check_deadline("the similarity table")


def test_cached_table_computes_nothing_after_the_deadline_but_reads_what_is_there(tmp_path, monkeypatch):
    df = pd.DataFrame({"a": [1.0, 2.0]})
    assert cached_table(tmp_path, "t", {"x": 1}, lambda: df, code=[table_key]).equals(df)
    monkeypatch.setenv(DEADLINE_ENV, "1")
    assert cached_table(tmp_path, "t", {"x": 1}, lambda: 1 / 0, code=[table_key]).equals(df)  # cached: read
    with pytest.raises(TimeBudgetSpent, match="the t table"):
        cached_table(tmp_path, "t", {"x": 2}, lambda: df, code=[table_key])


def test_frozen_cached_table_reads_and_names_stale_files(tmp_path):
    df = pd.DataFrame({"a": [1.0]})
    first = cached_table(tmp_path, "similarity", {"x": 1}, lambda: df, code=[table_key])
    assert cached_table(tmp_path, "similarity", {"x": 1}, lambda: 1 / 0, code=[table_key], frozen=True).equals(first)
    with pytest.raises(StaleResult) as err:  # another key (the code or the spec changed): never computed
        cached_table(tmp_path, "similarity", {"x": 2}, lambda: df, code=[table_key], frozen=True)
    msg = str(err.value)
    key1, key2 = table_key({"x": 1}, [table_key]), table_key({"x": 2}, [table_key])
    assert f"the similarity table {tmp_path}/similarity-{key2}.parquet is not in the results" in msg
    assert f"present, stale: similarity-{key1}.parquet" in msg and "set frozen=false" in msg
    assert len(msg.splitlines()) == 1
    assert "present" not in str(stale_result(tmp_path / "none" / "gate-0.parquet", "the gate table"))


def test_frozen_spec_key_is_a_strict_flag():
    from layerwise.spec import SpecError, load_spec

    assert load_spec("specs/smoke.yaml").frozen is False
    assert load_spec("specs/smoke.yaml", ["frozen=true"]).frozen is True
    with pytest.raises(SpecError, match="frozen"):
        load_spec("specs/smoke.yaml", ["frozen=sometimes"])


def test_provenance_appends_one_json_line_per_piece(tmp_path):
    assert read_pieces(tmp_path) == []
    append_piece(tmp_path, {"status": "time budget spent", "n": 1})
    append_piece(tmp_path, {"status": "complete", "n": 2})
    assert [r["n"] for r in read_pieces(tmp_path)] == [1, 2]
    (tmp_path / "provenance.jsonl").write_text('{"n": 1}\nnot json\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_pieces(tmp_path)


def test_artefact_counts_skip_unfinished_training(tmp_path):
    (tmp_path / "adapters" / "sft-1").mkdir(parents=True)
    (tmp_path / "adapters" / "sft-1" / "layerwise_adapter.json").write_text("{}")
    (tmp_path / "adapters" / ".work" / "x").mkdir(parents=True)
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "tables" / "t-1.parquet", "t-table/1")
    assert artefact_counts(tmp_path) == {"adapters": 1, "hidden_states": 0, "evaluations": 0, "tables": 1}


def test_code_commit_names_a_commit_in_this_checkout():
    c = code_commit()
    assert c["commit"] is None or (len(c["commit"]) == 40 and isinstance(c["dirty"], bool))
    assert code_commit(os.path.sep + "nonexistent") == {"commit": None, "dirty": None}


def test_a_frozen_run_writes_nothing_into_its_results(tmp_path, monkeypatch):
    from layerwise.cache import HELD_ENV
    from layerwise.pipeline import Run
    from layerwise.spec import load_spec

    monkeypatch.setenv(HELD_ENV, "")
    with Run(load_spec("specs/smoke.yaml", [f"output_dir={tmp_path / 'a'}", "frozen=true"]), verbose=False):
        pass
    assert not (tmp_path / "a" / "run.json").exists()
    with Run(load_spec("specs/smoke.yaml", [f"output_dir={tmp_path / 'b'}"]), verbose=False):
        pass
    assert (tmp_path / "b" / "run.json").is_file()


def _record(command, wall, added, artefacts, stages):
    return {"started": "2026-12-03T15:00:00Z", "command": command, "status": "complete", "wall_seconds": wall,
            "stage_seconds": stages, "added": added, "artefacts": artefacts,
            "machine": {"cpu": "CPU X", "cores": 2, "torch_threads": 2, "device": "cpu", "dtype": "float32"}}


def test_time_table_and_summary_read_the_pieces():
    from layerwise.provenance import time_summary, time_table

    assert "No provenance records" in time_summary([]) and time_table([]).empty
    cold = _record("book", 3000.0, {"adapters": 3, "tables": 2}, {"adapters": 3, "tables": 2},
                   {"fetch": 60.0, "train": 2400.0})
    warm = _record("book", 30.0, {"adapters": 0, "tables": 0}, {"adapters": 3, "tables": 2}, {"fetch": 30.0})
    nb = _record("book: notebooks", 600.0, {}, {"adapters": 3, "tables": 2}, {"notebooks + book build": 600.0})
    t = time_table([cold, warm, nb])
    assert list(t.columns) == ["started", "command", "status", "minutes", "stages", "added"]
    assert t["minutes"].tolist() == [50.0, 0.5, 10.0] and t["started"].tolist()[0] == "2026-12-03 15:00"
    assert t["stages"].tolist()[:2] == ["fetch 1.0 · train 40.0", "fetch 0.5"]
    assert t["added"].tolist() == ["3 adapters, 2 tables", "nothing", "nothing"]
    s = time_summary([cold, warm, nb])
    assert "**50 min** in 1 piece(s)" in s and "CPU X, 2 cores" in s and "took 10 min" in s
    assert "not the time from cold" not in s
    resumed = _record("run", 120.0, {"adapters": 1}, {"adapters": 4}, {"train": 120.0})
    assert "not the time from cold" in time_summary([resumed])
    assert "recorded after it ends" in time_summary([cold])
    assert "No recorded piece added artefacts" in time_summary([warm, nb])
