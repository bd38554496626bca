"""The run spec: one YAML file that drives every notebook and CLI command.

A spec names the base model, the tasks, the sizes, the training recipe, the seeds and the output
folder. ``specs/default.yaml`` is what ``make book`` uses; ``specs/smoke.yaml`` runs the whole book
on a tiny random model in minutes. Single values are overridden with dotted ``key=value`` strings
(``training.epochs=2``, ``base_model=meta-llama/Llama-2-7b-hf``); values are parsed as YAML.

:func:`load_spec` checks everything this layer can know without the registries, and reports
*every* problem at once, one line each, naming the key, the value and the valid choices
(:class:`SpecError`):

* YAML: syntax errors with their line and column, a key written twice (in the file or in one
  ``--set`` value), the same key given twice with ``--set``, a whole section set to null;
* types and ranges (field types are checked by ``pydantic``, strictly: ``"3"`` is not an integer,
  ``yes`` is a boolean only where YAML makes it one), finite numbers only (no NaN or infinity),
  non-negative seeds, device and dtype names, ``target_modules`` syntax, non-empty ``name``,
  ``output_dir``, ``tasks`` and ``measures``;
* consistency between keys (``n_eval <= n_test``, ``heldout_tasks`` within ``tasks``, no name
  listed twice, distinct folders for ``compare_models``).

Checks that need a registry (task names, measure names and their minimum number of examples, model
names, chat templates, device availability) live in :mod:`layerwise.validation`, which
``Run.from_spec`` and the CLI call before any computation; ``target_modules`` is checked against
the model's own module names when the model is fetched.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import field, fields
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from .cache import content_key

__all__ = [
    "SpecError",
    "DataSpec",
    "TrainingSpec",
    "ExtractionSpec",
    "ResourceSpec",
    "RaySpec",
    "EXECUTORS",
    "RunSpec",
    "load_spec",
    "read_spec",
    "apply_overrides",
    "model_slug",
    "DEVICES",
    "DTYPES",
    "BASELINES",
    "PRESETS",
    "SECTIONS",
    "PROJECT_ROOT",
]

#: The repository root (``lib/layerwise/spec.py`` -> two levels up from ``lib``).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SpecError(ValueError):
    """A run spec has an unknown key, a value of the wrong type, or an impossible value.

    Attributes:
        lines: one self-contained line per problem (key, value, valid choices); ``str(error)`` is
            these lines joined by newlines.
    """

    def __init__(self, lines: str | Sequence[str]):
        self.lines = [lines] if isinstance(lines, str) else [str(line) for line in lines]
        super().__init__("\n".join(self.lines))


# --------------------------------------------------------------------------------------------
# Field types: what each key accepts (checked by pydantic; messages rewritten by _describe)
# --------------------------------------------------------------------------------------------

#: Device names a spec accepts: ``auto`` (CUDA if available, else CPU), ``cpu``, ``mps``, ``cuda``
#: or ``cuda:N``. Whether the device exists on this machine is checked in ``layerwise.validation``.
DEVICES = ("auto", "cpu", "mps", "cuda", "cuda:N")
_DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
#: Floating-point formats of the model weights: ``auto`` = fp32 on CPU, bf16 (fp16 without bf16
#: support) on CUDA, the choice of ``layerwise.models``.
DTYPES = ("auto", "float32", "bfloat16")
#: Extra reference models a run can add next to PT and SFT.
BASELINES = ("random_init", "shuffled", "other_task")
#: Largest seed + 1: numpy's legacy seeding (used by ``transformers.set_seed``) takes 32-bit seeds.
_SEED_LIMIT = 2**32
_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _choice(*valid: str):
    def check(value: str) -> str:
        if value not in valid:
            raise ValueError(f"choose one of {list(valid)}")
        return value

    return AfterValidator(check)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("it must not be empty")
    return value


def _device(value: str) -> str:
    if not _DEVICE_RE.fullmatch(value):
        raise ValueError(f"choose one of {list(DEVICES)}")
    return value


def _module_name(value: str) -> str:
    if not _MODULE_RE.fullmatch(value):
        raise ValueError("a LoRA target is a module name such as q_proj (letters, digits and _), or auto")
    return value


def _names(value: Any) -> Any:
    """Lists arrive as YAML lists, or as ``a,b`` strings from ``--set``; both become tuples."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value) if isinstance(value, list) else value


def _float_text(value: Any) -> Any:
    """``5e-5`` is a string in YAML 1.1 (PyYAML), a number in YAML 1.2 and to every user."""
    return float(value) if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()) else value


PositiveInt = Annotated[int, Strict(), Field(gt=0)]
Count = Annotated[int, Strict(), Field(ge=0)]
Seed = Annotated[int, Strict(), Field(ge=0, lt=_SEED_LIMIT)]
PositiveFloat = Annotated[float, BeforeValidator(_float_text), Strict(), Field(gt=0)]
Probability = Annotated[float, BeforeValidator(_float_text), Strict(), Field(ge=0, lt=1)]
Flag = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]
Name = Annotated[str, Strict(), AfterValidator(_not_blank)]
Names = Annotated[tuple[Name, ...], BeforeValidator(_names)]
NonEmptyNames = Annotated[tuple[Name, ...], BeforeValidator(_names), Field(min_length=1)]
Device = Annotated[str, Strict(), AfterValidator(_device)]
Dtype = Annotated[str, Strict(), _choice(*DTYPES)]
ModuleNames = Annotated[tuple[Annotated[str, Strict(), AfterValidator(_module_name)], ...],
                        BeforeValidator(_names), Field(min_length=1)]

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True, config=_CONFIG)
class DataSpec:
    """Task data sizes and sampling.

    Attributes:
        n_train: training examples per task (control adapters and the multi-task SFT mixture).
        n_test: test examples per task; hidden states and CKA use exactly these, in this order.
            Each measure of ``measures`` needs a minimum number (``layerwise.validation``).
        seed: seed of the deterministic train/test split and template choice (0 <= seed < 2**32).
        max_input_chars: the task input (document, passage, data record) is cut to this many
            characters; the instruction and the answer cue at the end of the prompt are never cut.
        templates: ``"all"`` (template per example chosen from the seed) or ``"first"``.
        n_eval: test examples per task used for the task-level evaluation and the response loss
            (the first ``n_eval`` of the test split; generation is the expensive part).
        max_train_per_cluster: cap on training examples per task cluster in the multi-task SFT
            mixture (the paper: 50,000); 0 = no cap.
        chat_template: wrap every prompt (base model included) in a chat format: ``none``,
            ``llama2`` (the paper's), ``gemma`` or ``chatml`` (``layerwise.templates``).
        allow_downsize: a task with fewer examples than ``n_train + n_test`` is cut to what it has
            (reported) instead of being an error.
        n_template_variant: the template-variation check (robustness chapter): the first this
            many test examples of each task (all of them if ``n_test`` is smaller; the chapter
            states the number used) are rendered again with another of the task's templates and
            PT, SFT and the controls are run on them; 0 = no check.
    """

    n_train: PositiveInt = 64
    n_test: PositiveInt = 200
    seed: Seed = 0
    max_input_chars: PositiveInt = 1200
    templates: Annotated[str, Strict(), _choice("all", "first")] = "all"
    n_eval: PositiveInt = 32
    max_train_per_cluster: Count = 0
    chat_template: Text = "none"
    allow_downsize: Flag = False
    n_template_variant: Count = 0

    def problems(self) -> list[str]:
        """Inconsistencies between keys of this section, one line each (empty if none)."""
        out = []
        if self.n_template_variant and min(self.n_template_variant, self.n_test) < 4:
            out.append(f"data.n_template_variant = {self.n_template_variant} is not valid; it must be 0 (no check) or "
                       f"at least 4, with data.n_test >= 4 (debiased CKA needs 4 examples; data.n_test = {self.n_test})")
        if self.n_eval > self.n_test:
            out.append(f"data.n_eval = {self.n_eval} is not valid; it must be <= data.n_test = {self.n_test} "
                       "(evaluation uses test examples)")
        return out


@dataclass(frozen=True, config=_CONFIG)
class TrainingSpec:
    """LoRA recipe shared by the multi-task SFT adapter and every control adapter.

    The paper's recipe (Section 4 of the paper): LoRA on ``q_proj,v_proj``, r=8, alpha=16, dropout 0,
    lr 5e-5 cosine, 3 epochs, effective batch 16, cutoff 1024 tokens. The CPU default keeps the
    LoRA shape and raises the learning rate because it trains on far fewer examples.

    Attributes:
        lora_r, lora_alpha, lora_dropout: LoRA rank, scaling numerator (scale = alpha / r), dropout
            in [0, 1).
        target_modules: names of the linear modules that get LoRA, or ``[auto]`` (the
            architecture's query/value projections). The syntax is checked here; that the modules
            exist in the model is checked when the model is fetched
            (:func:`layerwise.validation.check_target_modules`).
        learning_rate: peak learning rate of the cosine schedule (no warm-up).
        epochs: passes over the training data.
        batch_size: examples per device step; ``grad_accum`` steps make one optimiser update.
        grad_accum: gradient-accumulation steps (effective batch = batch_size * grad_accum).
        max_length: prompt + response token cap; longer examples are an error, not silently cut
            (prompts are already bounded by ``data.max_input_chars``).
        seed: seed of LoRA initialisation and data order (0 <= seed < 2**32).
        seeds: seeds of the SFT and held-out SFT adapters, one adapter each (replicates, so that
            intervals include seed noise); empty = ``[seed]``. The first is the book's SFT model.
        control_epochs: passes of each control over its task's training examples (0 = ``epochs``):
            a control sees one task's examples, far fewer than the multi-task mixture, so it needs
            more passes to become a specialist.
        control_seeds: extra seeds of the control adapters of the first ``ceiling_tasks`` tasks:
            the control-seed ceiling (CKA between two controls of one task); empty = no ceiling.
        ceiling_tasks: how many tasks (the first, in spec order) get the control replicates.
        group_by_length: batch training examples of similar length together (less padding, so
            fewer token slots per epoch; it changes which examples share a batch, hence the adapter).
        save_steps: checkpoint every this many optimiser steps (resume point after a kill).
        device: one of :data:`DEVICES`.
        dtype: one of :data:`DTYPES`.
    """

    lora_r: PositiveInt = 8
    lora_alpha: PositiveInt = 16
    lora_dropout: Probability = 0.0
    target_modules: ModuleNames = ("q_proj", "v_proj")
    learning_rate: PositiveFloat = 1e-3
    epochs: PositiveFloat = 1.0
    batch_size: PositiveInt = 8
    grad_accum: PositiveInt = 1
    max_length: PositiveInt = 512
    seed: Seed = 42
    seeds: Annotated[tuple[Seed, ...], BeforeValidator(_names)] = ()
    control_epochs: Annotated[float, BeforeValidator(_float_text), Strict(), Field(ge=0)] = 0.0
    control_seeds: Annotated[tuple[Seed, ...], BeforeValidator(_names)] = ()
    ceiling_tasks: Count = 4
    group_by_length: Flag = False
    save_steps: PositiveInt = 25
    device: Device = "auto"
    dtype: Dtype = "auto"

    def problems(self) -> list[str]:
        """Inconsistencies between keys of this section, one line each (empty if none)."""
        if "auto" in self.target_modules and len(self.target_modules) > 1:
            return [f"training.target_modules = {list(self.target_modules)} is not valid; "
                    "auto stands alone (the architecture's query/value projections)"]
        return (_twice("training.target_modules", self.target_modules) + _twice("training.seeds", self.seeds)
                + _twice("training.control_seeds", self.control_seeds))

    @property
    def sft_seeds(self) -> tuple[int, ...]:
        """Seeds of the SFT (and held-out SFT) adapters: ``seeds``, or ``(seed,)``."""
        return self.seeds or (self.seed,)

    def recipe(self) -> dict[str, Any]:
        """The settings that determine one adapter's weights: everything but where it runs
        (``device``, ``dtype``, ``save_steps``) and the keys that choose which adapters a run trains
        (``seeds``, ``control_epochs``, ``control_seeds``, ``ceiling_tasks``; each adapter's own seed and
        epochs are in ``seed`` and ``epochs``, see :meth:`for_adapter`)."""
        d = dataclasses.asdict(self)
        for k in ("device", "dtype", "save_steps", "seeds", "control_epochs", "control_seeds", "ceiling_tasks",
                  "group_by_length"):  # group_by_length enters the adapter key in train_adapter, when on
            d.pop(k)
        return d

    def for_adapter(self, *, seed: int | None = None, control: bool = False) -> "TrainingSpec":
        """This recipe as one adapter trains it: with its own ``seed``, and ``control_epochs`` for a control.

        Args:
            seed: the adapter's seed (None = ``seed``).
            control: the adapter is a control (trained on one task).
        """
        epochs = self.control_epochs if control and self.control_epochs else self.epochs
        return dataclasses.replace(self, seed=self.seed if seed is None else seed, epochs=epochs)


@dataclass(frozen=True, config=_CONFIG)
class ExtractionSpec:
    """Hidden-state extraction.

    Attributes:
        batch_size: prompts per forward pass (left-padded; results equal batch size 1).
        device: one of :data:`DEVICES`.
        dtype: one of :data:`DTYPES`.
    """

    batch_size: PositiveInt = 8
    device: Device = "auto"
    dtype: Dtype = "auto"

    def problems(self) -> list[str]:
        """Inconsistencies between keys of this section (none are possible)."""
        return []


#: Where a run's jobs run: ``local`` (in this process, one after another) or ``ray`` (on a Ray
#: cluster, see :mod:`layerwise.jobs` and :mod:`layerwise.plan`).
EXECUTORS = ("local", "ray")
#: Job kinds that ``ray.resources`` may set (the kinds of :data:`layerwise.jobs.DEFAULT_RESOURCES`).
JOB_KINDS = ("fetch", "train", "extract", "evaluate", "table", "notebook")
_BYTES_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _bytes(value: Any) -> Any:
    """``memory: 16GiB`` / ``16GB`` / ``500MB`` / a plain number of bytes -> bytes (an int)."""
    if isinstance(value, str):
        m = _BYTES_RE.fullmatch(value)
        if not m:
            raise ValueError("give a number of bytes or a size such as 16GiB, 16GB, 512MiB")
        return int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])
    return value


def _job_kinds(value: Any) -> Any:
    if isinstance(value, Mapping):
        bad = [k for k in value if k not in JOB_KINDS]
        if bad:
            raise ValueError(f"unknown job kind(s) {bad}; choose from {list(JOB_KINDS)}")
    return value


@dataclass(frozen=True, config=_CONFIG)
class ResourceSpec:
    """What one job of a kind asks Ray for; a key left out (null) keeps the kind's default
    (:data:`layerwise.jobs.DEFAULT_RESOURCES`).

    Attributes:
        num_cpus: CPU cores (fractions allowed, >= 0).
        num_gpus: GPUs (fractions share a GPU, >= 0); ``1`` for training runs one adapter per GPU.
        memory: bytes of memory Ray reserves for the job (a number, or ``16GiB``, ``16GB``, ``512MiB``).
    """

    num_cpus: Annotated[float, BeforeValidator(_float_text), Field(ge=0)] | None = None
    num_gpus: Annotated[float, BeforeValidator(_float_text), Field(ge=0)] | None = None
    memory: Annotated[int, BeforeValidator(_bytes), Strict(), Field(ge=0)] | None = None

    def given(self) -> dict[str, float]:
        """The keys set in the spec (not null), as Ray's options."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True, config=_CONFIG)
class RaySpec:
    """The Ray cluster of ``executor: ray``.

    Attributes:
        address: an existing cluster: ``auto`` (the cluster this machine belongs to, e.g. after
            ``ray start``), ``<host>:6379`` or ``ray://<host>:10001``; null starts a local cluster on
            127.0.0.1 for the duration of the run.
        max_retries: times Ray reruns a job whose worker died (a killed process, a lost node); a
            job that raises is not retried. Safe because every artefact is written atomically
            under a content key.
        resources: job kind (``fetch, train, extract, evaluate, table, notebook``) -> its
            :class:`ResourceSpec`, over the defaults.
    """

    address: Annotated[str, Strict(), AfterValidator(_not_blank)] | None = None
    max_retries: Count = 3
    resources: Annotated[dict[str, ResourceSpec], BeforeValidator(_job_kinds)] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """Inconsistencies between keys of this section (none are possible)."""
        return []


@dataclass(frozen=True, config=_CONFIG)
class RunSpec:
    """Everything one run of the book depends on.

    Attributes:
        name: short name shown in the book (not empty).
        base_model: model string (alias, local path or Hugging Face id; see ``layerwise.models``).
        tasks: task names from the task registry (``layerwise.tasks.TASKS``); at least one.
        output_dir: where adapters, hidden states and tables go (relative to the project root;
            not empty, and not the project root or a folder above it).
        data, training, extraction: sub-specs (see their classes).
        threads: torch CPU threads (0 = leave torch's default).
        description: free text for the book's front page.
        preset: ``cpu`` (small CPU budget) or ``paper`` (the paper's recipe, Section 4 of the
            paper); a preset fills the ``data`` and ``training`` settings the spec does not set
            itself.
        heldout_tasks: tasks left out of a second multi-task model ("held-out SFT") for the
            unseen-task analysis (the paper's RQ3); must be in ``tasks``; empty = no such model.
        experimental_model: optional model string of an off-the-shelf instruction-tuned checkpoint
            used as the experimental model instead of training the SFT adapter (e.g. compare
            ``X-Instruct`` with ``X`` against the controls); empty = train the SFT adapter.
        baselines: extra reference models: ``random_init`` (same architecture, untrained weights)
            and ``shuffled`` (rows of the experimental model's states permuted: the null).
        measures: similarity measures computed for the result table (names from
            ``layerwise.similarity.MEASURES``), or ``[all]`` for every measure with a Gram form;
            at least one.
        gate: ``enforce`` (default): a task whose control fails the "learned its task" gate
            (:mod:`layerwise.gate`) is left out of every verdict; ``report``: the gate is computed and
            shown, and no task is left out (for machinery checks such as the smoke run, whose random
            model learns nothing).
        executor: ``local`` (default: every stage in this process) or ``ray`` (the run as a job
            graph on a Ray cluster, :mod:`layerwise.plan`); the results are the same.
        ray: the cluster and the resources of each job kind (:class:`RaySpec`), read when
            ``executor: ray``.
        compare_models: other base models (model strings) for the cross-model chapter. Each one
            gets a *companion run* (:meth:`companion_specs`): this spec with only the base model
            changed, so tasks, data, templates and recipe are identical and the models' curves and
            bands can be compared in relative depth.
        frozen: ``false`` (default): compute whatever is missing. ``true``: only read results already
            in ``output_dir`` (a committed run, e.g. ``results/reference``): no adapter is trained,
            no model is run and no table is computed; a result that is missing, or whose key no
            longer matches the code, the library versions or the spec, stops the run with
            :class:`~layerwise.cache.StaleResult`, which names it.
    """

    name: Name = "default"
    base_model: Name = "gemma-3-270m"
    tasks: NonEmptyNames = ()
    output_dir: Name = "runs/default"
    data: DataSpec = field(default_factory=DataSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    extraction: ExtractionSpec = field(default_factory=ExtractionSpec)
    threads: Count = 0
    description: Text = ""
    preset: Annotated[str, Strict(), _choice("cpu", "paper")] = "cpu"
    heldout_tasks: Names = ()
    experimental_model: Text = ""
    baselines: Annotated[tuple[Annotated[str, Strict(), _choice(*BASELINES)], ...], BeforeValidator(_names)] = BASELINES
    measures: NonEmptyNames = ("linear_cka", "debiased_cka")
    compare_models: Names = ()
    gate: Annotated[str, Strict(), _choice("enforce", "report")] = "enforce"
    executor: Annotated[str, Strict(), _choice(*EXECUTORS)] = "local"
    ray: RaySpec = field(default_factory=RaySpec)
    frozen: Flag = False

    def problems(self) -> list[str]:
        """Inconsistencies between keys, one line each (empty if none).

        Only what the spec itself can know; names are checked against the registries by
        :func:`layerwise.validation.check_spec`.
        """
        out: list[str] = []
        if not self.tasks:
            out.append("tasks = [] is not valid; list at least one task, e.g. tasks: [rt_sentence_polarity, squad_v1]")
        for key in ("tasks", "heldout_tasks", "baselines", "measures", "compare_models"):
            out += _twice(key, getattr(self, key))
        stray = [t for t in self.heldout_tasks if t not in self.tasks]
        if stray:
            out.append(f"heldout_tasks = {list(self.heldout_tasks)} is not valid; {stray} are not in tasks "
                       f"{list(self.tasks)}")
        elif self.heldout_tasks and set(self.heldout_tasks) == set(self.tasks):
            out.append(f"heldout_tasks = {list(self.heldout_tasks)} is not valid; it holds out every task, so the "
                       "held-out SFT model would have no training data")
        root = PROJECT_ROOT.resolve()
        if self.output_path.resolve() in (root, *root.parents):
            out.append(f"output_dir = {self.output_dir!r} is not valid; it is the project root {str(root)!r} or a "
                       "folder above it: name a folder of its own, e.g. runs/<name>")
        slugs = []
        for model in self.compare_models:
            try:
                slugs.append(model_slug(model))
            except SpecError as exc:
                out.append(f"compare_models = {list(self.compare_models)} is not valid; {exc}")
        if len(set(slugs)) != len(slugs) and len(set(self.compare_models)) == len(self.compare_models):
            out.append(f"compare_models = {list(self.compare_models)} is not valid; they map to the same folder "
                       f"names {slugs}")
        return out + self.data.problems() + self.training.problems() + self.extraction.problems() + self.ray.problems()

    def validate(self) -> None:
        """Raise :class:`SpecError` listing every line of :meth:`problems` (types and ranges are
        checked when the spec is built)."""
        lines = self.problems()
        if lines:
            raise SpecError(lines)

    def companion_specs(self) -> list["RunSpec"]:
        """One spec per model of ``compare_models``: this spec with only the base model changed.

        The companion's name is ``"<name> / <model>"`` and its output folder
        ``<output_dir>/compare/<model slug>`` (see :func:`model_slug`); it has no companions of its
        own (a model equal to this spec's base model is skipped: `make book BASE_MODEL=X` with X
        among ``compare_models`` compares X with the remaining ones), and it trains its own SFT
        adapter even if this spec uses an off-the-shelf
        ``experimental_model`` (a checkpoint of one base model is not an instruction-tuned version
        of another).

        Returns:
            list of validated :class:`RunSpec`, in ``compare_models`` order (empty if none).
        """
        out = []
        for model in self.compare_models:
            if model == self.base_model:  # e.g. `BASE_MODEL=` set to the spec's comparison model
                continue
            companion = dataclasses.replace(
                self, base_model=model, name=f"{self.name} / {model}", experimental_model="", compare_models=(),
                output_dir=str(Path(self.output_dir) / "compare" / model_slug(model)),
            )
            companion.validate()
            out.append(companion)
        return out

    @property
    def output_path(self) -> Path:
        """Absolute output folder (``output_dir`` resolved against the project root)."""
        p = Path(self.output_dir).expanduser()
        return p if p.is_absolute() else PROJECT_ROOT / p

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (tuples as lists), suitable for YAML and cache keys."""
        return _plain(dataclasses.asdict(self))

    def key(self) -> str:
        """Content key of the whole spec."""
        return content_key(self.to_dict())


#: The sections of a spec (keys holding a mapping of settings) and their classes.
SECTIONS: dict[str, type] = {"data": DataSpec, "training": TrainingSpec, "extraction": ExtractionSpec, "ray": RaySpec}


def model_slug(model: str) -> str:
    """A folder name for a model string: ``"meta-llama/Llama-2-7b-hf"`` -> ``"meta-llama--Llama-2-7b-hf"``.

    Path separators become ``--``; other characters outside ``[A-Za-z0-9._-]`` become ``-``.

    Raises:
        SpecError: the model string is empty or has no usable character.
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(model).strip().strip("/").replace("/", "--")).strip("-.")
    if not slug:
        raise SpecError(f"model string {model!r} gives no usable folder name")
    return slug


#: Named recipes. A preset fills the ``data`` / ``training`` keys a spec does not set itself.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # Small CPU budget: the paper's LoRA shape, a higher learning rate for few steps.
    "cpu": {"data": {}, "training": {}},
    # The paper's recipe (Section 4 of the paper, read from the authors' LLaMA-Factory configuration).
    "paper": {
        "data": {"n_test": 10_000, "max_train_per_cluster": 50_000, "max_input_chars": 100_000,
                 "chat_template": "llama2", "allow_downsize": True},
        "training": {
            "lora_r": 8,
            "lora_alpha": 16,
            "lora_dropout": 0.0,
            "target_modules": ["q_proj", "v_proj"],
            "learning_rate": 5e-5,
            "epochs": 3,
            "batch_size": 4,
            "grad_accum": 4,
            "max_length": 1024,
            "seed": 42,
        },
    },
}


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _twice(key: str, values: Sequence[str]) -> list[str]:
    dup = sorted({v for v in values if values.count(v) > 1})
    return [f"{key} = {list(values)} is not valid; {dup} listed twice"] if dup else []


def _show(value: Any) -> str:
    return repr(list(value) if isinstance(value, tuple) else value)


# --------------------------------------------------------------------------------------------
# YAML: duplicate keys and syntax errors, with their position
# --------------------------------------------------------------------------------------------


def _position(exc: yaml.YAMLError, within: str) -> str:
    """``YAML syntax error at line L, column C: <problem> (<context> at line L', column C')``."""
    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}{within}"

    problem, context = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    text = f"YAML syntax error{' at ' + at(problem) if problem else ''}: {getattr(exc, 'problem', None) or exc}"
    if getattr(exc, "context", None):
        text += f" ({exc.context}{' at ' + at(context) if context else ''})"
    return text


def _duplicates(node: yaml.Node, path: str = "") -> list[str]:
    out = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, yaml.Mark] = {}
        for key, value in node.value:
            name = f"{path}{key.value}" if isinstance(key, yaml.ScalarNode) else f"{path}?"
            here = key.start_mark
            if name in seen:
                first = seen[name]
                where = (f"line {here.line + 1}, columns {first.column + 1} and {here.column + 1}"
                         if first.line == here.line else f"lines {first.line + 1} and {here.line + 1}")
                out.append(f"key {name!r} is written twice ({where}); keep one")
            seen.setdefault(name, here)
            out += _duplicates(value, f"{name}.")
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += _duplicates(item, f"{path.rstrip('.')}[{i}].")
    return out


def _parse_yaml(text: str, source: str, within: str = "") -> Any:
    """Parse YAML; a syntax error or a duplicate key is a :class:`SpecError` naming ``source``
    and the position (``within``: what the position counts in, e.g. " of the value")."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        dup = _duplicates(node) if node is not None else []
        if dup:
            raise SpecError([f"{source}: {d}" for d in dup])
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: {_position(exc, within)}") from None


# --------------------------------------------------------------------------------------------
# Overrides, presets, building
# --------------------------------------------------------------------------------------------


def _override_items(overrides: Sequence[str] | Mapping[str, Any]) -> tuple[list[tuple[str, Any]], list[str]]:
    if isinstance(overrides, Mapping):
        return list(overrides.items()), []
    items: list[tuple[str, Any]] = []
    errors: list[str] = []
    given: set[str] = set()
    for o in overrides:
        key, eq, text = str(o).partition("=")
        key = key.strip()
        if not eq or not key or any(not p for p in key.split(".")):
            errors.append(f"--set {o!r} is not of the form key=value (e.g. training.epochs=2)")
            continue
        if key in given:
            errors.append(f"--set {key}=... is given twice; give each key once")
            continue
        given.add(key)
        try:
            items.append((key, _parse_yaml(text, f"--set {o!r}", " of the value") if text.strip() else ""))
        except SpecError as exc:
            errors += exc.lines
    return items, errors


def apply_overrides(data: dict[str, Any], overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of raw spec data with dotted overrides applied.

    Args:
        data: raw mapping as read from YAML.
        overrides: ``["training.epochs=2", "base_model=x"]`` (values parsed as YAML; a value that
            is empty after ``=`` is the empty string) or a mapping ``{"training.epochs": 2}``.

    Raises:
        SpecError: listing every override that is not of the form ``key=value``, whose value is
            not valid YAML (with its position) or writes a key twice, whose key is given twice, or
            that descends into a value that is not a section.
    """
    out = copy.deepcopy(data)
    items, errors = _override_items(overrides)
    for key, value in items:
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                errors.append(f"override {key!r}: {p!r} is not a section")
                break
        else:
            node[parts[-1]] = value
    if errors:
        raise SpecError(errors)
    return out


def _apply_preset(data: dict[str, Any]) -> dict[str, Any]:
    """Fill ``data``/``training`` keys the spec leaves unset from its ``preset`` (default ``cpu``).

    An unknown preset or a section that is not a mapping is left for the field checks to report.
    """
    preset = PRESETS.get(data.get("preset", "cpu")) if isinstance(data.get("preset", "cpu"), str) else None
    out = dict(data)
    for section, defaults in (preset or {}).items():
        given = out.get(section, {})
        if isinstance(given, dict):
            out[section] = {**defaults, **given}
    return out


def _valid_keys(cls: type, prefix: str) -> str:
    return f"valid keys{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(f.name for f in fields(cls))}"


def _describe(err: Mapping[str, Any]) -> str:
    """One line for one pydantic error: ``<key> = <value> is not valid; <why>``."""
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc).replace(".[", "[")
    key = re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", key)
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "unexpected_keyword_argument":
        cls = SECTIONS.get(loc[0], RunSpec) if len(loc) > 1 else RunSpec
        if loc[:2] == ["ray", "resources"] and len(loc) == 4:  # ray.resources.<kind>.<key>
            cls = ResourceSpec
        names = [f.name for f in fields(cls)]
        near = difflib.get_close_matches(loc[-1], names, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        prefix = ".".join(loc[:-1]) + "." if len(loc) > 1 else ""
        return f"unknown spec key {key!r}{hint}; {_valid_keys(cls, prefix)}"
    why = {
        "int_type": "it must be an integer",
        "int_from_float": "it must be an integer",
        "float_type": "it must be a number",
        "finite_number": "it must be a finite number (not NaN or infinity)",
        "string_type": "it must be a string",
        "bool_type": "it must be true or false",
        "tuple_type": "it must be a list",
        "dataclass_type": "it must be a mapping of settings (e.g. epochs: 2), not null or a single value",
        "too_short": "it must not be empty",
        "greater_than": f"it must be > {ctx.get('gt')}",
        "greater_than_equal": f"it must be >= {ctx.get('ge')}",
        "less_than": f"it must be < {ctx.get('lt')}",
        "less_than_equal": f"it must be <= {ctx.get('le')}",
    }.get(kind)
    if why is None:
        why = str(err["msg"]).removeprefix("Value error, ")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and isinstance(value, float):
        why += " (and finite)"
    return f"{key} = {_show(value)} is not valid; {why}"


_BUILD = TypeAdapter(RunSpec)


def _build(data: dict[str, Any]) -> tuple[RunSpec | None, list[str]]:
    lines = [f"{k} = None is not valid; a whole section cannot be null: remove the key for the defaults, or set "
             f"single values ({k}.<key>=<value>)" for k in SECTIONS if k in data and data[k] is None]
    data = {k: v for k, v in data.items() if not (k in SECTIONS and v is None)}
    try:
        spec = _BUILD.validate_python(data)
    except ValidationError as exc:
        return None, lines + [_describe(e) for e in exc.errors()]
    return spec, lines + spec.problems()


def read_spec(path: str | os.PathLike[str] | None = None, overrides: Any = ()) -> tuple[RunSpec | None, list[str]]:
    """Read and override a run spec, and list its problems instead of raising them.

    The spec is built whenever its keys and types allow, so that a caller can check it further
    (:func:`layerwise.validation.check_spec`) and report every problem at once.

    Args:
        path, overrides: see :func:`load_spec`.

    Returns:
        tuple: the spec (``None`` if keys or types are wrong) and the problem lines (empty if none).

    Raises:
        SpecError: the file or an override is not valid YAML, writes a key twice, or is not a
            mapping (nothing can be built from it).
        FileNotFoundError: the spec file does not exist (the message lists the files in ``specs/``).
    """
    p = Path(path) if path is not None else PROJECT_ROOT / "specs" / "default.yaml"
    if not p.is_absolute() and not p.exists():
        p = PROJECT_ROOT / p
    if not p.is_file():
        available = sorted(str(s.relative_to(PROJECT_ROOT)) for s in (PROJECT_ROOT / "specs").glob("*.yaml"))
        raise FileNotFoundError(f"run spec {str(path)!r} not found; available: {available}")
    data = _parse_yaml(p.read_text(encoding="utf-8"), str(p))
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise SpecError(f"{p} is not valid; it must hold a YAML mapping (key: value lines) at top level")
    env_model = os.environ.get("LAYERWISE_BASE_MODEL")
    if env_model:
        data = apply_overrides(data, {"base_model": env_model})
    return _build(_apply_preset(apply_overrides(data, overrides or ())))


def load_spec(path: str | os.PathLike[str] | None = None, overrides: Any = ()) -> RunSpec:
    """Read, override and validate a run spec (everything but the registry checks).

    Args:
        path: YAML file; relative paths are tried against the current directory, then the project
            root. ``None`` means ``specs/default.yaml``.
        overrides: see :func:`apply_overrides`. ``$LAYERWISE_BASE_MODEL`` (if set) overrides
            ``base_model`` before these.

    Returns:
        RunSpec: validated spec. Task, measure and model names, the chat template and the devices
        are checked against their registries by :func:`layerwise.validation.check_spec`.

    Raises:
        SpecError: every problem found, one line each (:attr:`SpecError.lines`): YAML syntax
            (with line and column), duplicate keys, unknown keys, wrong types, impossible or
            non-finite values, inconsistent keys.
        FileNotFoundError: the spec file does not exist (the message lists the files in ``specs/``).
    """
    spec, lines = read_spec(path, overrides)
    if lines:
        raise SpecError(lines)
    return spec
