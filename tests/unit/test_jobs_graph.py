"""The job graph and its executors (in-process and Ray), on small jobs that write files."""

import pytest

from layerwise.jobs import Job, JobGraph, run_local
from jobs_fixtures import graph_of, write_output


def test_graph_checks_ids_kinds_deps_and_cycles():
    with pytest.raises(ValueError, match="appears twice"):
        JobGraph([Job("a", "fetch"), Job("a", "fetch")])
    with pytest.raises(ValueError, match="kind='bake'; valid kinds: fetch, train"):
        JobGraph([Job("a", "bake")])
    with pytest.raises(ValueError, match=r"needs \['b'\]"):
        JobGraph([Job("a", "fetch", deps=("b",))])
    with pytest.raises(ValueError, match="cycle"):
        JobGraph([Job("a", "fetch", deps=("b",)), Job("b", "fetch", deps=("a",))])


def test_local_runs_in_dependency_order(tmp_path):
    g = graph_of(tmp_path)
    assert g.order.index("table:all") == len(g) - 1 and g.counts()["train"] == 2
    report = run_local(g, write_output, log_dir=tmp_path / "logs")
    assert report.ok and len(report.done) == 6
    assert (tmp_path / "table:all.out").read_text() == "table:all"


def test_local_failure_names_job_error_and_log_and_the_rest_finishes(tmp_path):
    report = run_local(graph_of(tmp_path, a={"fail": True}), write_output, log_dir=tmp_path / "logs")
    assert [f.id for f in report.failed] == ["train:a"]
    assert "RuntimeError: train:a broke on purpose" == report.failed[0].error
    assert "about to fail" in report.failed[0].log.read_text()
    assert report.skipped == {"extract:a": "train:a", "table:all": "train:a"}
    assert set(report.done) == {"fetch:model", "train:b", "extract:b"}
    assert "FAILED train:a" in report.summary() and "skipped table:all" in report.summary()
