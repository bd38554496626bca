"""The run spec: one YAML file that drives every notebook and CLI command.

A spec names the base model, the tasks, the sizes, the training recipe, the seeds and the output
folder. ``specs/default.yaml`` is what ``make book`` uses; ``specs/smoke.yaml`` runs the whole book
on a tiny random model in minutes. Single values are overridden with dotted ``key=value`` strings
(``training.epochs=2``, ``base_model=meta-llama/Llama-2-7b-hf``); values are parsed as YAML.

Unknown keys, wrong types and impossible values are rejected by :func:`load_spec` before any long
computation starts, with a message naming the bad key or value and the valid choices.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from .cache import content_key

__all__ = [
    "SpecError",
    "DataSpec",
    "TrainingSpec",
    "ExtractionSpec",
    "RunSpec",
    "load_spec",
    "apply_overrides",
    "PROJECT_ROOT",
]

#: The repository root (``lib/layerwise/spec.py`` -> two levels up from ``lib``).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SpecError(ValueError):
    """A run spec has an unknown key, a value of the wrong type, or an impossible value."""


@dataclass(frozen=True)
class DataSpec:
    """Task data sizes and sampling.

    Attributes:
        n_train: training examples per task (control adapters and the multi-task SFT mixture).
        n_test: test examples per task; hidden states and CKA use exactly these, in this order.
        seed: seed of the deterministic train/test split and template choice.
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

    n_train: int = 64
    n_test: int = 200
    seed: int = 0
    max_input_chars: int = 1200
    templates: str = "all"
    n_eval: int = 32
    max_train_per_cluster: int = 0
    chat_template: str = "none"
    allow_downsize: bool = False
    n_template_variant: int = 0

    def validate(self) -> None:
        _positive(self, "n_train", "n_test", "max_input_chars", "n_eval")
        if self.n_template_variant < 0 or (self.n_template_variant and min(self.n_template_variant, self.n_test) < 4):
            raise SpecError(f"data.n_template_variant must be 0 (no check) or at least 4, with data.n_test >= 4 "
                            f"(debiased CKA needs 4 examples); got n_template_variant = {self.n_template_variant}, "
                            f"n_test = {self.n_test}")
        if self.n_eval > self.n_test:
            raise SpecError(f"data.n_eval = {self.n_eval} exceeds data.n_test = {self.n_test}: evaluation uses test examples")
        _choice("data.templates", self.templates, ("all", "first"))
        if self.max_train_per_cluster < 0:
            raise SpecError(f"data.max_train_per_cluster must be >= 0 (0 = no cap), got {self.max_train_per_cluster}")


@dataclass(frozen=True)
class TrainingSpec:
    """LoRA recipe shared by the multi-task SFT adapter and every control adapter.

    The paper's recipe (``paper.md`` §4): LoRA on ``q_proj,v_proj``, r=8, alpha=16, dropout 0,
    lr 5e-5 cosine, 3 epochs, effective batch 16, cutoff 1024 tokens. The CPU default keeps the
    LoRA shape and raises the learning rate because it trains on far fewer examples.

    Attributes:
        lora_r, lora_alpha, lora_dropout: LoRA rank, scaling numerator (scale = alpha / r), dropout.
        target_modules: names of the linear modules that get LoRA (must exist in the model).
        learning_rate: peak learning rate of the cosine schedule (no warm-up).
        epochs: passes over the training data.
        batch_size: examples per device step; ``grad_accum`` steps make one optimiser update.
        grad_accum: gradient-accumulation steps (effective batch = batch_size * grad_accum).
        max_length: prompt + response token cap; longer examples are an error, not silently cut
            (prompts are already bounded by ``data.max_input_chars``).
        seed: seed of LoRA initialisation and data order.
        save_steps: checkpoint every this many optimiser steps (resume point after a kill).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
    """

    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    learning_rate: float = 1e-3
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    seed: int = 42
    save_steps: int = 25
    device: str = "auto"

    def validate(self) -> None:
        _positive(self, "lora_r", "lora_alpha", "learning_rate", "epochs", "batch_size", "grad_accum",
                  "max_length", "save_steps")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise SpecError(f"training.lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if not self.target_modules:
            raise SpecError("training.target_modules must name at least one module, e.g. [q_proj, v_proj]")

    def recipe(self) -> dict[str, Any]:
        """The settings that determine an adapter's weights (everything but ``device``/``save_steps``)."""
        d = dataclasses.asdict(self)
        d.pop("device")
        d.pop("save_steps")
        return d


@dataclass(frozen=True)
class ExtractionSpec:
    """Hidden-state extraction.

    Attributes:
        batch_size: prompts per forward pass (left-padded; results equal batch size 1).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
    """

    batch_size: int = 8
    device: str = "auto"

    def validate(self) -> None:
        _positive(self, "batch_size")


@dataclass(frozen=True)
class RunSpec:
    """Everything one run of the book depends on.

    Attributes:
        name: short name shown in the book.
        base_model: model string (alias, local path or Hugging Face id; see ``layerwise.models``).
        tasks: task names from the task registry (``layerwise.tasks.TASKS``).
        output_dir: where adapters, hidden states and tables go (relative to the project root).
        data, training, extraction: sub-specs (see their classes).
        threads: torch CPU threads (0 = leave torch's default).
        description: free text for the book's front page.
        preset: ``cpu`` (small CPU budget) or ``paper`` (the paper's recipe, ``paper.md`` §4); a
            preset fills the ``data`` and ``training`` settings the spec does not set itself.
        heldout_tasks: tasks left out of a second multi-task model ("held-out SFT") for the
            unseen-task analysis (the paper's RQ3); must be in ``tasks``; empty = no such model.
        experimental_model: optional model string of an off-the-shelf instruction-tuned checkpoint
            used as the experimental model instead of training the SFT adapter (e.g. compare
            ``X-Instruct`` with ``X`` against the controls); empty = train the SFT adapter.
        baselines: extra reference models: ``random_init`` (same architecture, untrained weights)
            and ``shuffled`` (rows of the experimental model's states permuted: the null).
        measures: similarity measures computed for the result table (names from
            ``layerwise.similarity.MEASURES``), or ``[all]`` for every measure with a Gram form.
        compare_models: other base models (model strings) for the cross-model chapter. Each one
            gets a *companion run* (:meth:`companion_specs`): this spec with only the base model
            changed, so tasks, data, templates and recipe are identical and the models' curves and
            bands can be compared in relative depth.
    """

    name: str = "default"
    base_model: str = "gemma-3-270m"
    tasks: tuple[str, ...] = ()
    output_dir: str = "runs/default"
    data: DataSpec = field(default_factory=DataSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    extraction: ExtractionSpec = field(default_factory=ExtractionSpec)
    threads: int = 0
    description: str = ""
    preset: str = "cpu"
    heldout_tasks: tuple[str, ...] = ()
    experimental_model: str = ""
    baselines: tuple[str, ...] = ("random_init", "shuffled")
    measures: tuple[str, ...] = ("linear_cka", "debiased_cka")
    compare_models: tuple[str, ...] = ()

    def validate(self) -> None:
        if not self.tasks:
            raise SpecError("spec lists no tasks; add e.g. `tasks: [rt_sentence_polarity, squad_v1]`")
        if len(set(self.tasks)) != len(self.tasks):
            dup = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
            raise SpecError(f"tasks listed twice in the spec: {dup}")
        from .tasks import check_task_names

        try:
            check_task_names(list(self.tasks))
        except (KeyError, ValueError, FileNotFoundError) as exc:
            raise SpecError(exc.args[0] if exc.args else str(exc)) from None
        if self.threads < 0:
            raise SpecError(f"threads must be >= 0, got {self.threads}")
        _choice("preset", self.preset, tuple(PRESETS))
        stray = [t for t in self.heldout_tasks if t not in self.tasks]
        if stray:
            raise SpecError(f"heldout_tasks {stray} are not in the spec's tasks {list(self.tasks)}")
        if self.heldout_tasks and len(self.heldout_tasks) == len(self.tasks):
            raise SpecError("heldout_tasks holds out every task: the held-out SFT model would have no training data")
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise SpecError(f"unknown baseline(s) {bad}; valid: {list(BASELINES)}")
        from .similarity import measure_names

        valid_measures = measure_names()
        bad = [m for m in self.measures if m != "all" and m not in valid_measures]
        if bad:
            raise SpecError(f"unknown measure(s) {bad}; valid: {valid_measures + ['all']}")
        if len(set(self.compare_models)) != len(self.compare_models):
            raise SpecError(f"compare_models lists a model twice: {list(self.compare_models)}")
        slugs = [model_slug(m) for m in self.compare_models]
        if len(set(slugs)) != len(slugs):
            raise SpecError(f"compare_models {list(self.compare_models)} map to the same folder names {slugs}")
        self.data.validate()
        self.training.validate()
        self.extraction.validate()

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


def model_slug(model: str) -> str:
    """A folder name for a model string: ``"meta-llama/Llama-2-7b-hf"`` -> ``"meta-llama--Llama-2-7b-hf"``.

    Path separators become ``--``; other characters outside ``[A-Za-z0-9._-]`` become ``-``.

    Raises:
        SpecError: the model string is empty or has no usable character.
    """
    import re

    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(model).strip().strip("/").replace("/", "--")).strip("-.")
    if not slug:
        raise SpecError(f"model string {model!r} gives no usable folder name")
    return slug


#: Extra reference models a run can add next to PT and SFT.
BASELINES = ("random_init", "shuffled")

#: Named recipes. A preset fills the ``data`` / ``training`` keys a spec does not set itself.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # Small CPU budget: the paper's LoRA shape, a higher learning rate for few steps.
    "cpu": {"data": {}, "training": {}},
    # The paper's recipe (paper.md section 4, read from the authors' LLaMA-Factory configuration).
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


def _positive(obj: Any, *names: str) -> None:
    section = {DataSpec: "data", TrainingSpec: "training", ExtractionSpec: "extraction"}[type(obj)]
    for n in names:
        v = getattr(obj, n)
        if not v > 0:
            raise SpecError(f"{section}.{n} must be > 0, got {v!r}")


def _choice(key: str, value: Any, valid: tuple[Any, ...]) -> None:
    if value not in valid:
        raise SpecError(f"{key} = {value!r} is not valid; choose one of {list(valid)}")


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Check ``value`` against a dataclass field type (int/float/str/bool/tuple[str,...]/sub-spec)."""
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise SpecError(f"{key} must be a mapping of settings, got {value!r}")
        return _build(typ, value, prefix=f"{key}.")
    if get_origin(typ) is tuple:
        (inner, _ellipsis) = get_args(typ)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{key} must be a list, got {value!r}")
        return tuple(_coerce(f"{key}[]", v, inner) for v in value)
    if typ is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{key} must be true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{key} must be an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{key} must be a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise SpecError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported spec field type {typ!r} for {key}")


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise SpecError(
            f"unknown spec key(s) {[prefix + k for k in unknown]}; valid keys"
            f"{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(valid)}"
        )
    kwargs = {k: _coerce(prefix + k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...] | dict[str, Any]) -> dict[str, Any]:
    """Return a copy of raw spec data with dotted overrides applied.

    Args:
        data: raw mapping as read from YAML.
        overrides: ``["training.epochs=2", "base_model=x"]`` (values parsed as YAML) or a mapping
            ``{"training.epochs": 2}``.

    Raises:
        SpecError: an override is not of the form ``key=value``.
    """
    import copy

    out = copy.deepcopy(data)
    items: list[tuple[str, Any]] = []
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        for o in overrides:
            if "=" not in o:
                raise SpecError(f"override {o!r} is not of the form key=value (e.g. training.epochs=2)")
            k, v = o.split("=", 1)
            items.append((k.strip(), yaml.safe_load(v) if v.strip() else ""))
    for key, value in items:
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SpecError(f"override {key!r}: {p!r} is not a section")
        node[parts[-1]] = value
    return out


def _apply_preset(data: dict[str, Any]) -> dict[str, Any]:
    """Fill ``data``/``training`` keys the spec leaves unset from its ``preset`` (default ``cpu``)."""
    name = data.get("preset", "cpu")
    if name not in PRESETS:
        raise SpecError(f"preset = {name!r} is not valid; choose one of {list(PRESETS)}")
    out = dict(data)
    for section, defaults in PRESETS[name].items():
        given = out.get(section) or {}
        if not isinstance(given, dict):
            raise SpecError(f"{section} must be a mapping of settings, got {given!r}")
        out[section] = {**defaults, **given}
    return out


def load_spec(path: str | os.PathLike[str] | None = None, overrides: Any = ()) -> RunSpec:
    """Read, override and validate a run spec.

    Args:
        path: YAML file; relative paths are tried against the current directory, then the project
            root. ``None`` means ``specs/default.yaml``.
        overrides: see :func:`apply_overrides`. ``$LAYERWISE_BASE_MODEL`` (if set) overrides
            ``base_model`` before these.

    Returns:
        RunSpec: validated spec.

    Raises:
        SpecError: unknown key, wrong type, impossible value, unknown task.
        FileNotFoundError: the spec file does not exist (the message lists the files in ``specs/``).
    """
    p = Path(path) if path is not None else PROJECT_ROOT / "specs" / "default.yaml"
    if not p.is_absolute() and not p.exists():
        p = PROJECT_ROOT / p
    if not p.is_file():
        available = sorted(str(s.relative_to(PROJECT_ROOT)) for s in (PROJECT_ROOT / "specs").glob("*.yaml"))
        raise FileNotFoundError(f"run spec {str(path)!r} not found; available: {available}")
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise SpecError(f"{p} must hold a YAML mapping at top level")
    env_model = os.environ.get("LAYERWISE_BASE_MODEL")
    if env_model:
        data = apply_overrides(data, {"base_model": env_model})
    data = apply_overrides(data, overrides or ())
    data = _apply_preset(data)
    spec = _build(RunSpec, data)
    spec.validate()
    return spec
