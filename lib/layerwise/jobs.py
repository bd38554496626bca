"""The run as a job graph, executed in-process or on a Ray cluster.

A :class:`Job` is one unit of the run (fetch, one adapter's training, one (model, task)
extraction, ...): a kind, JSON-able parameters, the jobs it needs, and the artefacts it writes. A
:class:`JobGraph` holds the jobs of a run; an executor runs them in dependency order:

* :func:`run_local` - one after another in this process (the default, ``executor: local``);
* :func:`run_ray` - on Ray (``executor: ray``): a job is submitted as soon as every job it needs
  has finished, with the resources of its kind; a failed job is reported with its id, its error
  and its log, the jobs that need it are skipped, and every other job still runs.

Jobs are idempotent: every artefact is written atomically under a content-hash key, so running a
job twice (a Ray retry after a worker died, or a rerun after a kill) writes the same bytes or
finds them already there. That is what makes Ray's retries safe. Workers must see the run's
``output_dir`` (a shared filesystem on a multi-node cluster).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Job", "JobGraph", "JobFailure", "GraphReport", "DEFAULT_RESOURCES", "run_local", "run_ray"]

#: Resources a job of each kind asks Ray for, unless the spec says otherwise (``ray.resources``).
#: Training and extraction hold a model; tables and notebooks are light.
DEFAULT_RESOURCES: dict[str, dict[str, float]] = {
    "fetch": {"num_cpus": 1},
    "train": {"num_cpus": 1, "num_gpus": 0},
    "extract": {"num_cpus": 1, "num_gpus": 0},
    "evaluate": {"num_cpus": 1, "num_gpus": 0},
    "table": {"num_cpus": 1},
    "notebook": {"num_cpus": 1},
}


@dataclass(frozen=True)
class Job:
    """One unit of work of a run.

    Attributes:
        id: unique name, ``"<kind>:<what>"`` (e.g. ``"train:control-squad_v1"``).
        kind: one of :data:`DEFAULT_RESOURCES`' keys.
        params: JSON-able arguments the executing function needs.
        deps: ids of the jobs whose artefacts this job reads.
        outputs: the artefacts it writes (paths relative to the run's output directory).
    """

    id: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


@dataclass
class JobFailure:
    """A job that raised: its id, the error's one-line form, the traceback, and its log file."""

    id: str
    error: str
    traceback: str
    log: Path | None


@dataclass
class GraphReport:
    """What an executor did.

    Attributes:
        done: ids of the jobs that finished, in finishing order.
        failed: the jobs that raised (after Ray's retries).
        skipped: id -> the failed job it needed (directly or through another job).
        seconds: wall time of each finished job.
    """

    done: list[str] = field(default_factory=list)
    failed: list[JobFailure] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every job finished."""
        return not self.failed and not self.skipped

    def summary(self) -> str:
        """Lines a person reads: counts, then one line per failed and skipped job."""
        lines = [f"{len(self.done)} jobs done, {len(self.failed)} failed, {len(self.skipped)} skipped"]
        lines += [f"FAILED {f.id}: {f.error}" + (f" (log: {f.log})" if f.log else "") for f in self.failed]
        lines += [f"skipped {j}: needs {dep}, which failed" for j, dep in self.skipped.items()]
        return "\n".join(lines)


class JobGraph:
    """The jobs of a run and their dependencies (a directed acyclic graph).

    Raises:
        ValueError: on construction, a duplicate id, an unknown kind, a dependency that is not a job
            of the graph, or a cycle (the message names the jobs).
    """

    def __init__(self, jobs: list[Job]):
        self.jobs: dict[str, Job] = {}
        for job in jobs:
            if job.id in self.jobs:
                raise ValueError(f"job id {job.id!r} appears twice")
            if job.kind not in DEFAULT_RESOURCES:
                raise ValueError(f"job {job.id!r}: kind={job.kind!r}; valid kinds: {', '.join(DEFAULT_RESOURCES)}")
            self.jobs[job.id] = job
        for job in jobs:
            missing = [d for d in job.deps if d not in self.jobs]
            if missing:
                raise ValueError(f"job {job.id!r} needs {missing}, which are not jobs of the graph")
        self.order = self._topological_order()

    def _topological_order(self) -> list[str]:
        indegree = {j: len(job.deps) for j, job in self.jobs.items()}
        users: dict[str, list[str]] = {j: [] for j in self.jobs}
        for j, job in self.jobs.items():
            for d in job.deps:
                users[d].append(j)
        ready = [j for j in self.jobs if indegree[j] == 0]  # insertion order: deterministic
        order: list[str] = []
        while ready:
            j = ready.pop(0)
            order.append(j)
            for u in users[j]:
                indegree[u] -= 1
                if indegree[u] == 0:
                    ready.append(u)
        if len(order) != len(self.jobs):
            raise ValueError(f"the job graph has a cycle among {sorted(set(self.jobs) - set(order))}")
        return order

    def counts(self) -> Counter[str]:
        """Number of jobs of each kind."""
        return Counter(job.kind for job in self.jobs.values())

    def dependents(self, job_id: str) -> set[str]:
        """Every job that needs ``job_id``, directly or through other jobs."""
        out: set[str] = set()
        frontier = [job_id]
        while frontier:
            cur = frontier.pop()
            for j, job in self.jobs.items():
                if cur in job.deps and j not in out:
                    out.add(j)
                    frontier.append(j)
        return out

    def __len__(self) -> int:
        return len(self.jobs)


@contextlib.contextmanager
def _job_log(log_dir: Path | None, job_id: str) -> Iterator[Path | None]:
    """Send the job's stdout and stderr to ``<log_dir>/<job id>.log`` (appending: a retry adds to it)."""
    if log_dir is None:
        yield None
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / (job_id.replace(":", "__").replace("/", "_") + ".log")
    with open(path, "a", encoding="utf-8") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f"--- {job_id} started {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}", flush=True)
        yield path


def _call(execute: Callable[[Job], Any], job: Job, log_dir: Path | None) -> float:
    """Run one job with its log; return its wall time in seconds (exceptions propagate)."""
    t0 = time.perf_counter()
    with _job_log(log_dir, job.id):
        execute(job)
    return time.perf_counter() - t0


def _fail(report: GraphReport, graph: JobGraph, job_id: str, exc: BaseException, log_dir: Path | None) -> None:
    tb = "".join(traceback.format_exception(exc))
    first = f"{type(exc).__name__}: {exc}".splitlines()[0]
    log = log_dir / (job_id.replace(":", "__").replace("/", "_") + ".log") if log_dir else None
    if log is not None:
        with open(log, "a", encoding="utf-8") as f:
            f.write(tb)
    report.failed.append(JobFailure(job_id, first, tb, log))
    for j in graph.dependents(job_id):
        report.skipped.setdefault(j, job_id)


def run_local(graph: JobGraph, execute: Callable[[Job], Any], *, log_dir: Path | None = None,
              echo: Callable[[str], None] | None = None) -> GraphReport:
    """Run every job of ``graph`` in this process, in dependency order.

    Args:
        graph: the jobs.
        execute: called with each :class:`Job`; raises to fail it.
        log_dir: where each job's stdout/stderr goes (``<job id>.log``); None keeps them on the console.
        echo: called with one progress line per job (``[3/41] train:sft (12 s)``).

    Returns:
        GraphReport: a failed job does not stop the jobs that do not need it.
    """
    report = GraphReport()
    for i, job_id in enumerate(graph.order, 1):
        if job_id in report.skipped:
            continue
        try:
            report.seconds[job_id] = _call(execute, graph.jobs[job_id], log_dir)
            report.done.append(job_id)
            if echo:
                echo(f"[{i}/{len(graph)}] {job_id} ({report.seconds[job_id]:.0f} s)")
        except Exception as exc:  # noqa: BLE001 - a job's failure is reported, the others go on
            _fail(report, graph, job_id, exc, log_dir)
            if echo:
                echo(f"[{i}/{len(graph)}] {job_id} FAILED: {report.failed[-1].error}")
    return report


def _remote_call(execute: Callable[[Job], Any], job: Job, log_dir: str | None) -> float:
    """The function Ray runs on a worker (module level, so it pickles by reference)."""
    return _call(execute, job, Path(log_dir) if log_dir else None)


def run_ray(graph: JobGraph, execute: Callable[[Job], Any], *, address: str | None = None,
            resources: Mapping[str, Mapping[str, float]] | None = None, max_retries: int = 3,
            num_cpus: int | None = None, log_dir: Path | None = None,
            echo: Callable[[str], None] | None = None) -> GraphReport:
    """Run ``graph`` on Ray: each job as a Ray task, submitted once every job it needs has finished.

    Args:
        graph: the jobs.
        execute: called with each :class:`Job` on a worker; must be importable there (a module-level
            function of this package).
        address: an existing cluster (``"auto"``, or ``"ray://host:10001"`` / ``"host:6379"``); None starts
            a local one on 127.0.0.1 that ends with this call.
        resources: kind -> Ray resources (``num_cpus``, ``num_gpus``, ``memory`` in bytes), over
            :data:`DEFAULT_RESOURCES`.
        max_retries: Ray retries of a task whose worker died (a killed process, a lost node).
            Exceptions raised by the job itself are not retried: they are errors, reported once.
        num_cpus: CPUs of a local cluster (None: all of this machine's).
        log_dir: where each job's stdout/stderr goes, on the shared filesystem.
        echo: progress lines, as in :func:`run_local`.

    Returns:
        GraphReport.

    Raises:
        ImportError: Ray is not installed (``pip install ray``).
    """
    import ray

    res = {k: dict(v) for k, v in DEFAULT_RESOURCES.items()}
    for kind, r in (resources or {}).items():
        res.setdefault(kind, {}).update(r)
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            # A local cluster: its workers import from the same paths as this process.
            kwargs.update(address="local", _node_ip_address="127.0.0.1",
                          runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
            if num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
        else:
            kwargs["address"] = address
        ray.init(**kwargs)
    remote = ray.remote(_remote_call)
    report = GraphReport()
    pending: dict[Any, str] = {}
    submitted: set[str] = set()
    log = str(log_dir) if log_dir else None

    def submit_ready() -> None:
        finished = set(report.done)
        for job_id in graph.order:
            job = graph.jobs[job_id]
            if job_id in submitted or job_id in report.skipped or not all(d in finished for d in job.deps):
                continue
            opts = {k: v for k, v in res.get(job.kind, {}).items() if v}
            ref = remote.options(max_retries=max_retries, retry_exceptions=False, name=job_id, **opts).remote(
                execute, job, log)
            pending[ref] = job_id
            submitted.add(job_id)

    try:
        submit_ready()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            job_id = pending.pop(ref)
            try:
                report.seconds[job_id] = float(ray.get(ref))
                report.done.append(job_id)
                if echo:
                    echo(f"[{len(report.done)}/{len(graph)}] {job_id} ({report.seconds[job_id]:.0f} s)")
            except Exception as exc:  # noqa: BLE001
                cause = getattr(exc, "cause", None) or exc  # RayTaskError wraps the job's own exception
                _fail(report, graph, job_id, cause if isinstance(cause, BaseException) else exc, log_dir)
                if echo:
                    echo(f"{job_id} FAILED: {report.failed[-1].error}")
            submit_ready()
    finally:
        if started_here:
            ray.shutdown()
    return report

