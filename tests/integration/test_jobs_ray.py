"""The Ray executor on small jobs: same outputs as in-process, failures reported, a killed worker retried."""

import pytest

from jobs_fixtures import graph_of, write_output


def test_ray_matches_local_reports_failures_and_retries_a_killed_worker(tmp_path):
    pytest.importorskip("ray")
    from layerwise.jobs import run_ray

    ok = tmp_path / "ok"
    ok.mkdir()
    report = run_ray(graph_of(ok, b={"die_once": True}), write_output, num_cpus=2, log_dir=ok / "logs")
    assert report.ok, report.summary()
    assert (ok / "train:b.attempted").is_file()  # the first attempt was killed; Ray ran it again
    assert sorted(p.name for p in ok.glob("*.out")) == sorted(f"{j}.out" for j in graph_of(ok).jobs)

    bad = tmp_path / "bad"
    bad.mkdir()
    report = run_ray(graph_of(bad, a={"fail": True}), write_output, num_cpus=2, log_dir=bad / "logs")
    assert [f.id for f in report.failed] == ["train:a"] and "broke on purpose" in report.failed[0].error
    assert set(report.skipped) == {"extract:a", "table:all"} and "extract:b" in report.done
