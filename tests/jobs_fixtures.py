"""Job functions for the executor tests (a module, so Ray workers can import them)."""

import os
import signal
from pathlib import Path

from layerwise.jobs import Job, JobGraph


def write_output(job):
    """Write the job's id into its output file; fail on purpose for jobs with ``fail``; die once for ``die_once``."""
    out = Path(job.params["dir"])
    if job.params.get("fail"):
        print("about to fail")
        raise RuntimeError(f"{job.id} broke on purpose")
    if job.params.get("die_once"):
        marker = out / f"{job.id}.attempted"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-job, as when a node is lost
    for dep in job.deps:
        assert (out / f"{dep}.out").is_file(), f"{job.id} ran before {dep}"
    (out / f"{job.id}.out").write_text(job.id)


def graph_of(tmp_path, **flags):
    """fetch -> two trainings -> two extractions -> one table; ``flags`` adds params to train:a / train:b."""
    d = str(tmp_path)
    jobs = [Job("fetch:model", "fetch", {"dir": d}),
            Job("train:a", "train", {"dir": d, **flags.get("a", {})}, deps=("fetch:model",)),
            Job("train:b", "train", {"dir": d, **flags.get("b", {})}, deps=("fetch:model",)),
            Job("extract:a", "extract", {"dir": d}, deps=("train:a",)),
            Job("extract:b", "extract", {"dir": d}, deps=("train:b",)),
            Job("table:all", "table", {"dir": d}, deps=("extract:a", "extract:b"))]
    return JobGraph(jobs)
