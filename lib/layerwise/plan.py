"""The run as a job graph: which jobs, what each writes, how to execute one, and what it will cost.

:func:`build_graph` turns a :class:`~layerwise.pipeline.Run` (and its companion runs of
``compare_models``) into a :class:`~layerwise.jobs.JobGraph`::

    fetch -> train (one per LoRA adapter: SFT, held-out SFT, each control)
          -> extract (one per (model, task): hidden states + response loss [+ re-templated states])
          -> evaluate (one per (model, task): the task-level metric; not for random-init)
          -> table (similarity, spectra, template variation: one aggregate each)
          -> notebook (one per chapter of the book)

The jobs are built from the spec alone (no model, no data), so :func:`plan_text` can show the
paper-scale graph on a laptop. Each job declares its outputs as glob patterns relative to the
run's ``output_dir``: the ``*`` is the content key, known once the model and data are there.
:func:`execute_job` is the one function an executor calls: it opens the run from the job's
parameters (the spec as a dict) and runs that job's piece, writing keyed artefacts atomically,
so a second execution (a Ray retry) only finds them. :func:`execute` runs a whole run with the
spec's executor: ``local`` runs the stages in this process as they always ran, ``ray`` runs the
graph with :func:`layerwise.jobs.run_ray`.

The estimates of :func:`estimate` come from measured throughput where there is one (this run's
training logs, then ``benchmarks/*.json``), else from FLOPs (2 x non-embedding parameters per
token for a forward pass, 3x that for training: Kaplan et al. 2020, "Scaling Laws for Neural
Language Models", §2.1) at a stated device rate; activation memory after Korthikanti et al. 2022,
"Reducing Activation Recomputation in Large Transformer Models", §4.1 (``s*b*h*(34 + 5*a*s/h)``
bytes per layer at 16-bit).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .cache import HELD_ENV
from .jobs import DEFAULT_RESOURCES, GraphReport, Job, JobGraph, run_local, run_ray
from .spec import PROJECT_ROOT, RunSpec, model_slug
from .tasks import get_task
from .stages.slots import adapter_name, siblings_of
from .vocab import CONTROL_ROLE, HELDOUT_ROLE, PT_ROLE, RANDOM_ROLE, SFT_ROLE

if TYPE_CHECKING:
    from .pipeline import Run

__all__ = ["KINDS", "TABLES", "fetch", "compute_local", "model_plan", "build_graph", "execute_job", "execute",
           "Throughput", "ModelShape", "model_shape", "estimate", "plan_table", "plan_text"]

#: Job kinds in the order of the run.
KINDS = tuple(DEFAULT_RESOURCES)
#: The aggregate tables: job name -> the :class:`~layerwise.pipeline.Run` method that computes and caches it.
TABLES = {"similarity": "similarity", "spectra": "spectra", "template-variation": "template_variation"}

_ROLE_ID = {PT_ROLE: "pt", SFT_ROLE: "sft", HELDOUT_ROLE: "sft-heldout", RANDOM_ROLE: "random-init", CONTROL_ROLE: "control"}


# ------------------------------------------------------------------------------------ local stages
def fetch(run: Run) -> None:
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


def compute_local(run: Run, *, evaluate: bool = True, stage_seconds: dict[str, float] | None = None,
                  prefix: str = "") -> None:
    """``executor: local``: every stage of a run in this process; then the same for each companion run.

    Companion runs skip the task-level evaluation and the template variation (the cross-model
    chapter reads similarity, response loss and spectra only), which keeps their cost to training
    and extraction. The graph of :func:`build_graph` has the same jobs.

    Args:
        run: the run. evaluate: run the task-level evaluation and the template variation.
        stage_seconds: if given, gets the wall seconds of each stage as it ends (``fetch``, ``train``,
            ``states + similarity``, ``evaluation + tables``; a companion's under ``<model>: <stage>``),
            also when a later stage raises (e.g. :class:`~layerwise.cache.TimeBudgetSpent`).
        prefix: put before the stage names in ``stage_seconds`` (a companion run's model).
    """
    times = stage_seconds if stage_seconds is not None else {}
    t0 = time.perf_counter()
    fetch(run)
    times[prefix + "fetch"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    run.train()
    times[prefix + "train"] = time.perf_counter() - t0
    print(f"[layerwise] adapters ready ({times[prefix + 'train']:.0f} s)", flush=True)
    t0 = time.perf_counter()
    df = run.cka()  # computes the hidden states it needs first; a cached table needs none
    times[prefix + "states + similarity"] = time.perf_counter() - t0
    print(f"[layerwise] hidden states + CKA table ready ({times[prefix + 'states + similarity']:.0f} s, {len(df)} rows)",
          flush=True)
    t0 = time.perf_counter()
    if evaluate:
        run.evaluate()
        run.template_variation()
    run.spectra()
    times[prefix + "evaluation + tables"] = time.perf_counter() - t0
    done = "task-level evaluation, template variation + spectra" if evaluate else "spectra"
    print(f"[layerwise] {done} ready ({times[prefix + 'evaluation + tables']:.0f} s)", flush=True)
    for companion in run.companions:
        print(f"[layerwise] cross-model companion run: {companion.spec.base_model} -> {companion.out}", flush=True)
        compute_local(companion, evaluate=False, stage_seconds=times, prefix=f"{companion.spec.base_model}: ")


# ------------------------------------------------------------------------------------ the graph
def model_plan(spec: RunSpec) -> list[tuple[str, str | None, tuple[str, ...]]]:
    """The models of a run from its spec alone: ``(role, adapter name or None, tasks)``, in
    :data:`~layerwise.vocab.ROLES` order, as :func:`layerwise.stages.slots.plan_slots` makes them.

    The adapter names are those of :func:`layerwise.stages.adapters.adapter_jobs` (``sft``,
    ``sft-heldout``, ``control-<task slug>``).
    """
    tasks = tuple(spec.tasks)
    out: list[tuple[str, str | None, tuple[str, ...]]] = [(PT_ROLE, None, tasks)]
    out.append((SFT_ROLE, None if spec.experimental_model else "sft", tasks))
    if spec.heldout_tasks:
        out.append((HELDOUT_ROLE, "sft-heldout", tasks))
    if "random_init" in spec.baselines:
        out.append((RANDOM_ROLE, None, tasks))
    out += [(CONTROL_ROLE, f"control-{get_task(t).slug}", (t,)) for t in tasks]
    return out


def _run_jobs(spec: RunSpec, rel: str, suffix: str, *, full: bool) -> list[Job]:
    """The jobs of one run (``full``: with evaluation and template variation, as the main run)."""
    params = {"spec": spec.to_dict()}
    fetch_id = f"fetch:{spec.base_model}{suffix}"
    jobs = [Job(fetch_id, "fetch", params, (), (f"{rel}run.json",))]
    train_id: dict[str, str] = {}
    for role, adapter, _ in model_plan(spec):
        if adapter:
            train_id[adapter] = f"train:{adapter}{suffix}"
            jobs.append(Job(train_id[adapter], "train", {**params, "adapter": adapter}, (fetch_id,),
                            (f"{rel}adapters/{adapter}-*/adapter_model.safetensors",)))
    # The replicates' adapters (SFT seeds after the first, control replicates): their models are run
    # by the table jobs (the stages compute what is missing), so the tables wait for their training.
    extra_train: list[str] = []
    for adapter in _replicate_adapters(spec):
        extra_train.append(f"train:{adapter}{suffix}")
        jobs.append(Job(extra_train[-1], "train", {**params, "adapter": adapter}, (fetch_id,),
                        (f"{rel}adapters/{adapter}-*/adapter_model.safetensors",)))
    variants = full and spec.data.n_template_variant > 0
    extract_ids: list[str] = []
    for role, adapter, tasks in model_plan(spec):
        deps = (train_id[adapter],) if adapter else (fetch_id,)
        label = role.replace(" ", "_")
        for task in tasks:
            slug = get_task(task).slug
            what = f"{_ROLE_ID[role]}/{slug}{suffix}"
            outputs = [f"{rel}hidden_states/{label}-*/{slug}-*.safetensors", f"{rel}evaluation/{label}-*/{slug}-*.json"]
            extract_ids.append(f"extract:{what}")
            jobs.append(Job(extract_ids[-1], "extract", {**params, "role": role, "task": task, "variants": variants},
                            deps, tuple(outputs)))
            if full and role != RANDOM_ROLE:
                jobs.append(Job(f"evaluate:{what}", "evaluate", {**params, "role": role, "task": task}, deps,
                                (f"{rel}evaluation/{label}-*/{slug}-metric-*.json",)))
    tables = ["similarity", "spectra"] + (["template-variation"] if variants else [])
    for name in tables:
        jobs.append(Job(f"table:{name}{suffix}", "table", {**params, "table": name}, tuple(extract_ids + extra_train),
                        (f"{rel}tables/{name}-*.parquet",)))
    return jobs


def _replicate_adapters(spec: RunSpec) -> list[str]:
    """Names of the replicate adapters of a spec (see :func:`layerwise.stages.adapters.adapter_jobs`):
    SFT and held-out SFT of every seed after the first, and the control replicates."""
    tr = spec.training
    first = tr.sft_seeds[0]
    names = []
    for seed in tr.sft_seeds[1:]:
        names += [] if spec.experimental_model else [adapter_name("sft", seed, first)]
        names += [adapter_name("sft-heldout", seed, first)] if spec.heldout_tasks else []
    for seed in tr.control_seeds:
        names += [adapter_name(f"control-{get_task(t).slug}", seed, tr.seed) for t in spec.tasks[: tr.ceiling_tasks]]
    return names


def build_graph(run: Run | RunSpec, *, notebooks: bool = True, book: dict[str, Any] | None = None) -> JobGraph:
    """The job graph of a run and its companion runs, from the spec alone (nothing is loaded or computed).

    Job ids are ``<kind>:<what>``: ``fetch:<model>``, ``train:<adapter>``, ``extract:<role>/<task>``,
    ``evaluate:<role>/<task>``, ``table:<name>``, ``notebook:<chapter>``; a companion run's jobs end
    in ``@<model slug>``. Parameters hold the spec as a dict (``spec``) and the job's piece
    (``adapter``, ``role`` and ``task``, ``table``, ``notebook``). Dependencies: training needs
    the fetch; a model's extraction and evaluation need its adapter's training (PT, random-init
    and an off-the-shelf experimental model: the fetch); a table needs every extraction of its
    run; a notebook every table and evaluation (of the companions too).

    Args:
        run: the run (or its spec).
        notebooks: add one ``notebook`` job per chapter of ``_toc.yml``.
        book: ``{"spec_path": ..., "overrides": [...], "book_dir": ...}``, what the notebook jobs
            pass to the notebooks; without it they are listed but cannot be executed.

    Returns:
        JobGraph. Outputs are glob patterns relative to the run's ``output_dir`` (``*``: a content key).
    """
    spec = run if isinstance(run, RunSpec) else run.spec
    jobs = _run_jobs(spec, "", "", full=True)
    for companion in spec.companion_specs():
        rel = Path(companion.output_path).relative_to(spec.output_path).as_posix() + "/"
        jobs += _run_jobs(companion, rel, f"@{model_slug(companion.base_model)}", full=False)
    if notebooks:
        from .book import notebook_names

        needs = tuple(j.id for j in jobs if j.kind in ("table", "evaluate"))
        jobs += [Job(f"notebook:{name}", "notebook", {"spec": spec.to_dict(), "notebook": name, **(book or {})},
                     needs, (f"executed/{name}.ipynb",)) for name in notebook_names()]
    return JobGraph(jobs)


# ------------------------------------------------------------------------------------ executing one job
_RUNS: dict[str, Run] = {}  # a worker process keeps the runs it opened: task data are loaded once


def _open(spec_dict: dict[str, Any]) -> Run:
    """The run of a job's spec, with its adapters *planned* (found by key, not trained here)."""
    from pydantic import TypeAdapter

    from .pipeline import Run
    from .stages.adapters import planned_adapters

    spec = TypeAdapter(RunSpec).validate_python(spec_dict)
    key = spec.key()
    if key not in _RUNS:
        # The driver holds the output_dir's run lock for the whole graph; a job runs under it (its
        # writes are keyed and atomic), so the worker takes no lock of its own.
        held = [p for p in os.environ.get(HELD_ENV, "").split(os.pathsep) if p]
        os.environ[HELD_ENV] = os.pathsep.join(held + [str(spec.output_path.resolve())])
        run = Run(spec)
        run.__dict__["adapters"] = planned_adapters(run)  # fills Run.adapters: no training on access
        _RUNS[key] = run
    return _RUNS[key]


def _slot(run: Run, role: str, task: str):
    """The slot of (role, task), restricted to that task; its adapter must be on disk."""
    slot = run.slot(role, task)
    if slot.adapter is not None and not (slot.adapter / "layerwise_adapter.json").is_file():
        raise RuntimeError(f"the adapter of {role} on {task} is not at {slot.adapter}: its training job has not "
                           "finished, or layerwise.training.adapter_key changed without planned_adapters")
    return dataclasses.replace(slot, tasks=(task,))


def execute_job(job: Job) -> None:
    """Run one job of :func:`build_graph` (the ``execute`` argument of :func:`layerwise.jobs.run_ray`).

    Opens the run from ``job.params["spec"]`` and computes what the job stands for, reusing what
    is on disk: the artefacts are keyed by content and written atomically, so running a job twice
    writes nothing new.

    Raises:
        RuntimeError: a model's adapter is missing (its training job did not finish).
        ValueError: a notebook job without the book's parameters; an unknown kind.
        Whatever the stage raises (see the stage modules).
    """
    from .stages import adapters, evaluation, states, variants

    run = _open(job.params["spec"])
    p = job.params
    if job.kind == "fetch":
        fetch(run)
    elif job.kind == "train":
        examples = dict(adapters.adapter_jobs(run))[p["adapter"]]
        res = adapters.train_one(run, p["adapter"], examples)
        run.adapters[p["adapter"]] = res
    elif job.kind == "extract":
        slot = _slot(run, p["role"], p["task"])
        states.run_models(run, slots=[slot])
        if p.get("variants") and p["task"] in run.variant_tasks:
            variants.run_template_variant(run, slots=[slot])
    elif job.kind == "evaluate":
        evaluation.evaluate(run, slots=[_slot(run, p["role"], p["task"])])
    elif job.kind == "table":
        getattr(run, TABLES[p["table"]])()
    elif job.kind == "notebook":
        if "spec_path" not in p:
            raise ValueError(f"job {job.id}: a notebook job needs spec_path, overrides and book_dir (build_graph(book=...))")
        from .book import _inputs_key, _notebook_key, _store_key, execute_notebook

        out = execute_notebook(p["notebook"], parameters={"spec_path": p["spec_path"], "overrides": list(p["overrides"])},
                               book_dir=Path(p["book_dir"]))
        _store_key(out, _notebook_key(p["notebook"], _inputs_key(p["spec_path"], p["overrides"])))
    else:
        raise ValueError(f"job {job.id}: kind={job.kind!r}; valid kinds: {', '.join(KINDS)}")


def execute(run: Run, *, notebooks: bool = False, book: dict[str, Any] | None = None, num_cpus: int | None = None,
            echo: Callable[[str], None] | None = print,
            stage_seconds: dict[str, float] | None = None) -> GraphReport | None:
    """Run a whole run with the spec's executor.

    ``executor: local``: :func:`compute_local` (every stage in this process, as the book always ran;
    ``notebooks`` is left to :func:`layerwise.book.build_book`). ``executor: ray``: the graph of
    :func:`build_graph` on Ray (:func:`layerwise.jobs.run_ray`) with the spec's ``ray`` section;
    job logs in ``<output_dir>/logs/``.

    Args:
        run: the run. notebooks, book: see :func:`build_graph` (ray only).
        num_cpus: CPUs of a local Ray cluster (None: all of this machine's).
        echo: progress lines (None: silent).
        stage_seconds: gets the wall seconds per stage (local; see :func:`compute_local`) or per job
            kind (ray).

    Returns:
        The :class:`~layerwise.jobs.GraphReport` (ray), or None (local).

    Raises:
        RuntimeError: a job failed (ray); the message is the report's summary (job, error, log).
    """
    if run.spec.executor == "local":
        compute_local(run, stage_seconds=stage_seconds)
        return None
    graph = build_graph(run, notebooks=notebooks, book=book)
    r = run.spec.ray
    t0 = time.perf_counter()
    report = run_ray(graph, execute_job, address=r.address, max_retries=r.max_retries, num_cpus=num_cpus,
                     resources={k: v.given() for k, v in r.resources.items()}, log_dir=run.out / "logs", echo=echo)
    if stage_seconds is not None:
        for job_id, seconds in report.seconds.items():
            kind = graph.jobs[job_id].kind
            stage_seconds[kind] = stage_seconds.get(kind, 0.0) + seconds
    if echo:
        echo(f"[layerwise] ray: {report.summary().splitlines()[0]} in {time.perf_counter() - t0:.0f} s")
    if not report.ok:
        raise RuntimeError(report.summary())
    return report


# ------------------------------------------------------------------------------------ estimates
#: bytes per parameter of each weight format.
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
#: The device assumed for GPU-hours when nothing is measured: an A100-class GPU at its dense bf16
#: peak (NVIDIA A100 datasheet, 312 TFLOP/s) and a model-FLOPs utilisation typical of LoRA
#: fine-tuning and batched inference of a 7B model with Hugging Face (an assumption, stated).
A100_BF16_TFLOPS = 312.0
ASSUMED_UTILISATION = 0.4
#: Characters per token of an English BPE tokenizer, when the model's tokenizer is not on disk (an assumption).
CHARS_PER_TOKEN = 4.0
#: Published shapes of models that may not be on disk (from their config.json on the hub).
KNOWN_SHAPES: dict[str, dict[str, int]] = {
    "meta-llama/Llama-2-7b-hf": {"hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 11008,
                                 "vocab_size": 32000, "num_attention_heads": 32, "num_key_value_heads": 32},
}


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """What the estimates need of a decoder-only transformer (LLaMA-style: gated MLP, GQA).

    Attributes:
        hidden, layers, intermediate, vocab, heads, kv_heads: from the model's config.
        source: where they came from (``config.json`` on disk, or the published config).
    """

    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    source: str

    @property
    def non_embedding_params(self) -> int:
        """Parameters of the transformer blocks: attention ``2h^2 + 2h*kv_dim`` + gated MLP ``3*h*i`` per layer."""
        kv_dim = self.hidden * self.kv_heads // self.heads
        return self.layers * (2 * self.hidden ** 2 + 2 * self.hidden * kv_dim + 3 * self.hidden * self.intermediate)

    @property
    def params(self) -> int:
        """All parameters (blocks + input and output embeddings, counted apart)."""
        return self.non_embedding_params + 2 * self.vocab * self.hidden

    def lora_params(self, r: int, modules: Sequence[str]) -> int:
        """LoRA parameters: ``r * (in + out)`` per targeted projection per layer (Hu et al. 2021, §4.1)."""
        h, kv = self.hidden, self.hidden * self.kv_heads // self.heads
        dims = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h), "gate_proj": (h, self.intermediate),
                "up_proj": (h, self.intermediate), "down_proj": (self.intermediate, h)}
        return self.layers * sum(r * sum(dims.get(m, (h, h))) for m in modules)


def model_shape(model: str) -> ModelShape:
    """The shape of a model: its ``config.json`` if the model is on disk, else :data:`KNOWN_SHAPES`.

    Raises:
        KeyError: the model is neither on disk nor in :data:`KNOWN_SHAPES` (the message names both).
    """
    from .models import ModelNotFoundError, resolve_model

    try:
        cfg = json.loads((resolve_model(model) / "config.json").read_text())
        cfg = cfg.get("text_config", cfg)
        source = "config.json on disk"
    except (ModelNotFoundError, FileNotFoundError, OSError):
        if model not in KNOWN_SHAPES:
            raise KeyError(f"model {model!r} is not on disk and its shape is not known; known: {list(KNOWN_SHAPES)}") from None
        cfg, source = KNOWN_SHAPES[model], "published config"
    heads = cfg["num_attention_heads"]
    return ModelShape(cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"], cfg["vocab_size"], heads,
                      cfg.get("num_key_value_heads") or heads, source)


@dataclasses.dataclass(frozen=True)
class Throughput:
    """Tokens per second of training and of forward passes, and where each number came from."""

    train: float
    forward: float
    train_source: str
    forward_source: str


def _measured_training(spec: RunSpec) -> float | None:
    """Training tokens/s of this run's finished adapters (total tokens over total seconds), or None."""
    tokens = seconds = 0.0
    for meta in spec.output_path.glob("adapters/*/layerwise_adapter.json"):
        m = json.loads(meta.read_text())
        if m.get("base_model") == spec.base_model and m.get("n_tokens_per_epoch") and m.get("seconds", 0) > 0:
            tokens += m["n_tokens_per_epoch"] * m["recipe"]["epochs"]
            seconds += m["seconds"]
    return tokens / seconds if seconds else None


def _bench(model: str) -> dict[str, Any]:
    """The ``benchmarks/*.json`` and ``benchmarks/results/*.json`` records for ``model`` (keys
    ``train_tokens_per_s``, ``forward_tokens_per_s``, ``gemm_tflops``; ``make bench`` writes them to
    ``benchmarks/results/bench_hotpath.json`` on this machine), merged over files in path order,
    each value with its file's path under ``benchmarks/``; {} if none."""
    out: dict[str, Any] = {}
    root = PROJECT_ROOT / "benchmarks"
    for path in sorted([*root.glob("*.json"), *root.glob("results/*.json")]):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for rec in data if isinstance(data, list) else [data]:
            if isinstance(rec, dict) and rec.get("model") in (model, None):
                out.update({k: (v, path.relative_to(root).as_posix()) for k, v in rec.items()
                            if k in ("train_tokens_per_s", "forward_tokens_per_s", "gemm_tflops")})
    return out


def throughput(spec: RunSpec, shape: ModelShape, device_tflops: float | None = None) -> tuple[Throughput, float, str]:
    """Training and forward tokens/s of ``spec.base_model``, each with its source.

    Order: this run's training logs (forward = 3 x training, the FLOP ratio), then
    ``benchmarks/*.json``, then FLOPs (2 x non-embedding parameters per token forward, x3 for
    training) at ``device_tflops`` (default: a bench file's measured GEMM rate, else
    :data:`A100_BF16_TFLOPS` x :data:`ASSUMED_UTILISATION`).

    Returns:
        (Throughput, effective TFLOP/s used for FLOP-based numbers, its source).
    """
    bench = _bench(spec.base_model)
    if device_tflops is not None:
        tflops, tsrc = device_tflops, "--device-tflops"
    elif "gemm_tflops" in bench:
        tflops, tsrc = float(bench["gemm_tflops"][0]), f"measured GEMM rate ({bench['gemm_tflops'][1]})"
    else:
        tflops = A100_BF16_TFLOPS * ASSUMED_UTILISATION
        tsrc = f"assumed A100-class bf16: {A100_BF16_TFLOPS:.0f} TFLOP/s peak x {ASSUMED_UTILISATION:.0%} utilisation"
    fwd_flops = 2.0 * shape.non_embedding_params
    flop_fwd, flop_train = tflops * 1e12 / fwd_flops, tflops * 1e12 / (3 * fwd_flops)
    flop_src = f"FLOPs at {tflops:.3g} TFLOP/s ({tsrc})"
    measured = _measured_training(spec)
    if measured:
        train, train_src = measured, "measured: this run's training logs"
    elif "train_tokens_per_s" in bench:
        train, train_src = float(bench["train_tokens_per_s"][0]), f"measured: benchmarks/{bench['train_tokens_per_s'][1]}"
    else:
        train, train_src = flop_train, flop_src
    if "forward_tokens_per_s" in bench:
        fwd, fwd_src = float(bench["forward_tokens_per_s"][0]), f"measured: benchmarks/{bench['forward_tokens_per_s'][1]}"
    elif measured:
        fwd, fwd_src = 3 * measured, "3 x measured training rate (forward = 1/3 of training FLOPs)"
    else:
        fwd, fwd_src = flop_fwd, flop_src
    return Throughput(train, fwd, train_src, fwd_src), tflops, tsrc


def _tokens_per_example(spec: RunSpec) -> tuple[dict[str, tuple[float, float]], str]:
    """Task -> (mean prompt tokens, mean target tokens) of its training examples, and the source."""
    from .tasks import pool_path

    if not all(pool_path(t).is_file() for t in spec.tasks):
        half = spec.training.max_length / 2
        return {t: (half, 0.0) for t in spec.tasks}, "max_length/2 (task pools not cached)"
    from .stages.data import load_split

    try:
        from .models import load_tokenizer

        tok = load_tokenizer(spec.base_model)
        count, how = (lambda text: len(tok(text, add_special_tokens=False)["input_ids"])), "measured with the model's tokenizer"
    except Exception:  # noqa: BLE001 - the tokenizer is not on disk: characters / assumed ratio
        count, how = (lambda text: len(text) / CHARS_PER_TOKEN), f"task pools, characters / {CHARS_PER_TOKEN:g} (tokenizer not on disk)"
    out = {}
    for t in spec.tasks:
        split = load_split(spec, t)["train"]
        tr = split.select(range(min(64, len(split))))
        out[t] = (sum(map(count, tr["prompt"])) / len(tr), sum(map(count, tr["target"])) / len(tr))
    return out, f"{how}, first {min(64, spec.data.n_train)} (at most) training examples per task"


def estimate(spec: RunSpec, graph: JobGraph | None = None, *, device_tflops: float | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Estimated time and memory of each job kind of a run (the main run; companions are listed apart).

    Tokens per job: ``n_train`` (the SFT mixture: the sum over its tasks, capped per cluster)
    x epochs x seeds x (prompt + target tokens) for training, each control ``n_train`` x
    ``control_epochs``; for extraction, ``n_test`` x prompt tokens for every (model, task) pair's
    hidden states, ``n_template_variant`` x prompt tokens more for PT's, SFT's and the controls'
    re-templated inputs, and ``n_eval`` x (prompt + target) for the response loss where it is read
    (the main design and the gate's other-task control; one pass gives the loss with and without
    EOS); ``n_eval`` x (prompt + 40 generated tokens) for an evaluation (the main design but
    random-init, and the gate's other-task control). Time = tokens / throughput of :func:`throughput`
    (tables and notebooks: not estimated, seconds to minutes). Memory per job: parameters x dtype
    bytes (bf16 on a GPU, fp32 on CPU) + LoRA weights, gradients and Adam moments in fp32
    (16 bytes per LoRA parameter) + activations (Korthikanti et al. 2022, §4.1, scaled from 16-bit).

    Returns:
        (DataFrame ``kind, jobs, tokens_per_job, est_hours, est_memory_gb, time_source``, note lines
        naming every source and assumption).
    """
    graph = graph or build_graph(spec, notebooks=True)
    shape = model_shape(spec.base_model)
    tp, tflops, tsrc = throughput(spec, shape, device_tflops)
    per_task, tok_src = _tokens_per_example(spec)
    tr = spec.training
    counts = Counter(j.kind for j in graph.jobs.values() if "@" not in j.id)
    n_sft = [spec.data.n_train * len(spec.tasks), spec.data.n_train * (len(spec.tasks) - len(spec.heldout_tasks))]
    if spec.data.max_train_per_cluster:
        n_sft = [min(n, spec.data.max_train_per_cluster * len({get_task(t).cluster for t in spec.tasks})) for n in n_sft]
    mean_prompt = sum(p for p, _ in per_task.values()) / len(per_task)
    mean_target = sum(t for _, t in per_task.values()) / len(per_task)
    n_adapters = {"sft": 0 if spec.experimental_model else n_sft[0], "sft-heldout": n_sft[1] if spec.heldout_tasks else 0}
    n_seeds, control_epochs = len(tr.sft_seeds), tr.control_epochs or tr.epochs
    n_controls = len(spec.tasks) + len(tr.control_seeds) * min(tr.ceiling_tasks, len(spec.tasks))
    train_tokens = (sum(n_adapters.values()) * n_seeds * tr.epochs
                    + spec.data.n_train * n_controls * control_epochs) * (mean_prompt + mean_target)
    # models run inside the table jobs (SFT seeds after the first, other-task controls, control replicates)
    extra = ((n_seeds - 1) * len(spec.tasks) * ((not spec.experimental_model) + bool(spec.heldout_tasks))
             + (sum(len(siblings_of(spec.tasks, t)) for t in spec.tasks)
                if "other_task" in spec.baselines and len(spec.tasks) > 1 else 0)
             + len(tr.control_seeds) * min(tr.ceiling_tasks, len(spec.tasks)))
    d = spec.data
    n_other = len(spec.tasks) if "other_task" in spec.baselines and len(spec.tasks) > 1 else 0  # the gate's other control
    n_main = counts.get("extract", 0)
    n_variant = 3 * len(spec.tasks) if d.n_template_variant else 0  # PT, SFT and the task's control, each task
    extract_total = ((n_main + extra) * d.n_test * mean_prompt + n_variant * d.n_template_variant * mean_prompt
                     + (n_main + n_other) * d.n_eval * (mean_prompt + mean_target))
    evaluate_tokens = d.n_eval * (mean_prompt + 40)
    gpu = tr.device.startswith("cuda") or (tr.device == "auto" and tp.train_source.startswith("FLOPs"))
    dtype = tr.dtype if tr.dtype != "auto" else ("bfloat16" if gpu else "float32")
    weights = shape.params * _DTYPE_BYTES[dtype]
    lora = shape.lora_params(tr.lora_r, [m for m in tr.target_modules if m != "auto"] or ["q_proj", "v_proj"]) * 16
    seq, b = min(tr.max_length, mean_prompt + mean_target), tr.batch_size
    act_train = shape.layers * seq * b * shape.hidden * (34 + 5 * shape.heads * seq / shape.hidden) * _DTYPE_BYTES[dtype] / 2
    eseq, eb = mean_prompt, spec.extraction.batch_size
    act_fwd = (shape.layers + 1) * eseq * eb * shape.hidden * 4 + eb * eseq * shape.vocab * 4  # kept states + logits
    rows = []
    for kind in KINDS:
        n = counts.get(kind, 0)
        if kind == "train":
            tokens, hours, mem, src = train_tokens / max(n, 1), train_tokens / tp.train / 3600, weights + lora + act_train, tp.train_source
        elif kind == "extract":
            tokens, hours = extract_total / max(n + extra, 1), extract_total / tp.forward / 3600
            mem, src = weights + act_fwd, tp.forward_source
        elif kind == "evaluate":
            tokens, hours = evaluate_tokens, (n + n_other) * evaluate_tokens / tp.forward / 3600
            mem, src = weights + act_fwd, tp.forward_source
        else:
            tokens, hours, mem, src = math.nan, math.nan, math.nan, "not estimated (reads the artefacts; seconds to minutes)"
        rows.append({"kind": kind, "jobs": n, "tokens_per_job": tokens, "est_hours": hours,
                     "est_memory_gb": mem / 1e9, "time_source": src})
    notes = [f"model {spec.base_model}: {shape.params / 1e9:.3g} B parameters ({shape.non_embedding_params / 1e9:.3g} B "
             f"non-embedding; shape from {shape.source}), weights in {dtype}",
             f"tokens per example: {tok_src}: prompt {mean_prompt:.0f}, target {mean_target:.0f} (mean over tasks)",
             f"training: SFT and held-out SFT x {n_seeds} seed(s) x {tr.epochs:g} epoch(s), {n_controls} controls "
             f"(incl. seed replicates) x {control_epochs:g} epoch(s); extraction time includes {extra} (model, task) "
             "pairs of the seed replicates and baselines, which run inside the table jobs",
             f"training throughput {tp.train:,.0f} tokens/s: {tp.train_source}",
             f"forward throughput {tp.forward:,.0f} tokens/s: {tp.forward_source}"]
    return pd.DataFrame(rows), notes


def gpu_hours(spec: RunSpec, table: pd.DataFrame) -> float:
    """GPU-hours of training + extraction + evaluation at A100-class bf16 (FLOPs at
    :data:`A100_BF16_TFLOPS` x :data:`ASSUMED_UTILISATION`), from the token counts of ``table``."""
    shape = model_shape(spec.base_model)
    rate = A100_BF16_TFLOPS * ASSUMED_UTILISATION * 1e12
    t = table.set_index("kind")
    flops = 6.0 * shape.non_embedding_params * t.loc["train", "tokens_per_job"] * t.loc["train", "jobs"]
    flops += 2.0 * shape.non_embedding_params * sum(t.loc[k, "tokens_per_job"] * t.loc[k, "jobs"] for k in ("extract", "evaluate"))
    return flops / rate / 3600


def plan_table(run: Run | RunSpec, *, device_tflops: float | None = None) -> pd.DataFrame:
    """The plan of a run for the book's settings table: one row per job kind.

    Returns:
        DataFrame ``kind, jobs, est. time, est. memory`` (time as ``"1.2 h"``/``"35 s"``, memory as
        ``"14.1 GB"``; ``-`` where not estimated); ``.attrs["notes"]`` holds the lines of
        :func:`estimate` that name every source and assumption.
    """
    spec = run if isinstance(run, RunSpec) else run.spec
    table, notes = estimate(spec, device_tflops=device_tflops)
    out = pd.DataFrame({"kind": table["kind"], "jobs": table["jobs"],
                        "est. time": [_duration(h) for h in table["est_hours"]],
                        "est. memory": ["-" if math.isnan(m) else f"{m:.2f} GB" for m in table["est_memory_gb"]]})
    out.attrs["notes"] = notes
    return out


def _duration(hours: float) -> str:
    if math.isnan(hours):
        return "-"
    s = hours * 3600
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{hours:.1f} h"


def plan_text(spec: RunSpec, *, device_tflops: float | None = None) -> str:
    """What ``layerwise plan`` prints: jobs by kind, kind-level dependencies, estimates with their sources."""
    graph = build_graph(spec, notebooks=True)
    lines = [f"plan of {spec.name!r} ({spec.base_model}, {len(spec.tasks)} tasks, executor: {spec.executor}): "
             f"{len(graph)} jobs"]
    main = Counter(j.kind for j in graph.jobs.values() if "@" not in j.id)
    comp = Counter(j.kind for j in graph.jobs.values() if "@" in j.id)
    lines.append("jobs by kind: " + ", ".join(f"{k} {main[k]}" for k in KINDS)
                 + (f"; companion runs ({', '.join(spec.compare_models)}): " + ", ".join(f"{k} {comp[k]}" for k in KINDS if comp[k])
                    if comp else ""))
    edges: dict[str, set[str]] = {}
    for job in graph.jobs.values():
        for d in job.deps:
            edges.setdefault(job.kind, set()).add(graph.jobs[d].kind)
    lines.append("dependencies: " + "; ".join(f"{k} <- {', '.join(sorted(edges[k], key=KINDS.index))}" for k in KINDS if k in edges))
    n_adapters, n_extract = main["train"], main["extract"]
    lines.append(f"adapters: {n_adapters} (SFT, held-out SFT and one control per task as the spec asks); "
                 f"extractions: {n_extract} (model, task) pairs; evaluations: {main['evaluate']}")
    table, notes = estimate(spec, graph, device_tflops=device_tflops)
    show = table.assign(tokens_per_job=table["tokens_per_job"].map(lambda v: "-" if math.isnan(v) else f"{v:,.0f}"),
                        est_time=table["est_hours"].map(_duration),
                        est_memory=table["est_memory_gb"].map(lambda m: "-" if math.isnan(m) else f"{m:.2f} GB"))
    lines.append(show[["kind", "jobs", "tokens_per_job", "est_time", "est_memory", "time_source"]].to_string(index=False))
    lines += notes
    total = table["est_hours"].sum(skipna=True)
    lines.append(f"estimated total (main run, jobs one after another on one device): {total:.3g} h")
    lines.append(f"estimated GPU-hours at A100-class bf16 ({A100_BF16_TFLOPS:.0f} TFLOP/s x {ASSUMED_UTILISATION:.0%} "
                 f"utilisation, assumed; training + extraction + evaluation): {gpu_hours(spec, table):.3g}")
    return "\n".join(lines)
