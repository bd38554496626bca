"""Checks of a run spec against what the library knows: tasks, measures, models, chat templates, devices.

:mod:`layerwise.spec` checks a spec on its own (types, ranges, YAML, consistency between keys) and
imports nothing from the task catalogue or the similarity measures. The checks here need those
registries, so they live where the registries are known:

* :func:`check_spec`: every name in a spec against its registry, before any computation; one line
  per problem naming the key, the value and the valid choices. ``Run.from_spec`` and the CLI call it
  (through :func:`load_checked_spec`).
* :func:`check_target_modules`: ``training.target_modules`` against the module names of a model,
  called by the fetch stage once the model's config is on disk (it needs the architecture).

Nothing here downloads anything: a Hugging Face model or dataset file is looked up in the local
cache only when the hub is switched off (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .spec import RunSpec, SpecError, read_spec

__all__ = ["check_spec", "check_model_name", "check_target_modules", "load_checked_spec"]

_FETCH_HINT = "run `make fetch` (HF_HUB_OFFLINE=0) for this spec on a machine with network access"


def _env_on(*names: str) -> bool:
    return any(os.environ.get(n, "").strip().lower() in ("1", "true", "yes", "on") for n in names)


def _hub_cached(repo_id: str, filename: str, repo_type: str = "model") -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename, repo_type=repo_type), str)


def check_model_name(name: str) -> str | None:
    """Why a model string cannot be used, or ``None`` if it can (nothing is downloaded).

    A model string is a packaged alias (``layerwise.models.MODEL_ALIASES``), a local folder with a
    ``config.json``, or a Hugging Face id ``org/name``. With the hub switched off
    (``HF_HUB_OFFLINE``) a hub id must already be in the local Hugging Face cache; with the hub on,
    it is resolved (and any error reported) by the fetch stage.

    Returns:
        str | None: the reason, phrased to follow ``"<key> = <value> is not valid; "``.
    """
    from .models import MODEL_ALIASES

    aliases = ", ".join(sorted(MODEL_ALIASES))
    if name in MODEL_ALIASES:
        return None
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return None
    if path.exists():
        return f"the path {str(path)!r} exists but holds no config.json (not a Hugging Face checkpoint folder)"
    if "/" in name and not name.startswith((".", "/", "~")):
        if not _env_on("HF_HUB_OFFLINE"):
            return None
        try:
            cached = _hub_cached(name, "config.json")
        except ValueError as exc:  # huggingface_hub's HFValidationError: not of the form org/name
            return f"it is not a valid Hugging Face model id ({exc})"
        if cached:
            return None
        return (f"it is not in the local Hugging Face cache and the hub is off (HF_HUB_OFFLINE=1): {_FETCH_HINT}, "
                f"or use a packaged alias ({aliases}) or a local checkpoint folder")
    near = difflib.get_close_matches(name, list(MODEL_ALIASES), n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return (f"{hint}it is not a packaged alias ({aliases}), a local folder with a config.json, "
            "or a Hugging Face id of the form org/name")


def _task_lines(spec: RunSpec) -> list[str]:
    from .tasks import check_task_names
    from .tasks.external import FLAN_HUB_REPO, hub_is_off, parse_external

    out = []
    for i, name in enumerate(spec.tasks):
        try:
            check_task_names([name])
        except (KeyError, ValueError, FileNotFoundError) as exc:
            out.append(f"tasks[{i}] = {name!r} is not valid; {exc.args[0] if exc.args else exc}")
            continue
        if name.startswith("flan2021:") and hub_is_off():
            filename = f"train/{parse_external(name).task}_10templates_train.jsonl"
            if not _hub_cached(FLAN_HUB_REPO, filename, repo_type="dataset"):
                out.append(f"tasks[{i}] = {name!r} is not valid; it needs {filename} of the hub dataset {FLAN_HUB_REPO}, "
                           f"which is not in the local Hugging Face cache, and the hub is off (HF_HUB_OFFLINE / "
                           f"HF_DATASETS_OFFLINE): {_FETCH_HINT}, or use local files (file:<path>) or registry tasks")
    return out


def _measure_lines(spec: RunSpec) -> list[str]:
    """Measure names against the registry (a Gram form is needed: the result table is computed from
    cached Gram matrices), and ``data.n_test`` against each measure's minimum number of examples."""
    from .similarity import MEASURES

    gram = sorted(n for n, m in MEASURES.items() if m.uses_grams)
    out = []
    for i, name in enumerate(spec.measures):
        if name == "all" or name in gram:
            continue
        if name in MEASURES:
            why = "it needs the feature matrices, and the result table is computed from cached Gram matrices"
        else:
            near = difflib.get_close_matches(name, gram, n=1)
            why = f"unknown measure{f' (did you mean {near[0]!r}?)' if near else ''}"
        out.append(f"measures[{i}] = {name!r} is not valid; {why}; choose from {gram + ['all']}")
    # the measures a run computes: the spec's (all = every Gram measure), and linear CKA always
    used = gram if "all" in spec.measures else sorted({"linear_cka", *(m for m in spec.measures if m in gram)})
    short = [f"{m} needs {MEASURES[m].min_rows}" for m in used if spec.data.n_test < MEASURES[m].min_rows]
    if short:
        out.append(f"data.n_test = {spec.data.n_test} is not valid; too few test examples for the measures: "
                   f"{', '.join(short)}")
    return out


def _model_lines(spec: RunSpec) -> list[str]:
    named = [("base_model", spec.base_model)]
    if spec.experimental_model:
        named.append(("experimental_model", spec.experimental_model))
    named += [(f"compare_models[{i}]", m) for i, m in enumerate(spec.compare_models)]
    out = []
    for key, name in named:
        why = check_model_name(name)
        if why:
            out.append(f"{key} = {name!r} is not valid; {why}")
    return out


def _device_lines(spec: RunSpec) -> list[str]:
    out = []
    for key, device in (("training.device", spec.training.device), ("extraction.device", spec.extraction.device)):
        if device in ("auto", "cpu"):
            continue
        from .models import select_device

        try:
            select_device(device)
        except ValueError as exc:
            out.append(f"{key} = {device!r} is not valid; {exc}")
            continue
        if device.startswith("cuda:"):
            import torch

            n = torch.cuda.device_count()
            if int(device.split(":")[1]) >= n:
                out.append(f"{key} = {device!r} is not valid; this machine has {n} CUDA device(s): cuda:0 ... cuda:{n - 1}")
    return out


def check_spec(spec: RunSpec) -> list[str]:
    """Check a spec's names against the registries, before any computation.

    Covers the task names (``layerwise.tasks``: registry names, ``flan2021:`` tasks, which must be
    in the local cache when the hub is off, ``file:`` tasks, whose files must exist), the measure
    names and each measure's minimum number of test examples (``layerwise.similarity.MEASURES``),
    the model strings (``base_model``, ``experimental_model``, ``compare_models``; see
    :func:`check_model_name`), the chat template (``layerwise.templates.CHAT_TEMPLATES``) and the
    devices (available on this machine). ``training.target_modules`` needs the model's
    architecture and is checked at fetch time (:func:`check_target_modules`).

    Args:
        spec: a spec that passed :func:`layerwise.spec.load_spec`.

    Returns:
        list[str]: one line per problem (``"<key> = <value> is not valid; <why and the valid
        choices>"``); empty if the spec is usable.
    """
    from .templates import CHAT_TEMPLATES

    out = _task_lines(spec) + _measure_lines(spec) + _model_lines(spec)
    if spec.data.chat_template not in CHAT_TEMPLATES:
        out.append(f"data.chat_template = {spec.data.chat_template!r} is not valid; choose one of {list(CHAT_TEMPLATES)}")
    return out + _device_lines(spec)


def load_checked_spec(path: str | os.PathLike[str] | None = None, overrides: Any = ()) -> RunSpec:
    """:func:`layerwise.spec.load_spec`, then :func:`check_spec`: the whole spec, before any compute.

    Args:
        path, overrides: see :func:`layerwise.spec.load_spec`.

    Returns:
        RunSpec: a spec whose every name is known to its registry.

    Raises:
        SpecError: every problem, one line each (:attr:`SpecError.lines`): those of the spec on its
            own, then (if it could be built) those of :func:`check_spec`.
        FileNotFoundError: the spec file does not exist.
    """
    spec, lines = read_spec(path, overrides)
    if spec is not None:
        lines = lines + check_spec(spec)
    if lines:
        raise SpecError(lines)
    return spec


def check_target_modules(model: str, target_modules: Sequence[str]) -> list[str]:
    """Check ``training.target_modules`` against the linear modules of a model (no weights loaded).

    The model is built from its ``config.json`` on the ``meta`` device (no memory, no weights) and
    :func:`layerwise.training.resolve_target_modules` looks the names up in it.

    Args:
        model: model string; must already be fetched (:func:`layerwise.models.resolve_model`
            fetches it if the hub is reachable).
        target_modules: ``training.target_modules`` (module name suffixes, or ``["auto"]``).

    Returns:
        list[str]: one line naming the missing module(s) and the model's linear module names, or
        empty.

    Raises:
        layerwise.models.ModelNotFoundError: the model cannot be resolved.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from .models import resolve_model
    from .training import resolve_target_modules

    config = AutoConfig.from_pretrained(str(resolve_model(model)))
    with torch.device("meta"):
        net = AutoModelForCausalLM.from_config(config)
    try:
        resolve_target_modules(net, list(target_modules))
    except ValueError as exc:
        return [f"training.target_modules = {list(target_modules)} is not valid for {model!r}; {exc}"]
    return []
