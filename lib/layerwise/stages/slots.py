"""The models of the design (the paper's §3): one :class:`ModelSlot` per model and its tasks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..cache import content_key
from ..models import model_fingerprint
from ..spec import RunSpec
from ..training import AdapterResult
from ..vocab import CONTROL_ROLE, HELDOUT_ROLE, PT_ROLE, RANDOM_ROLE, ROLES, SFT_ROLE

__all__ = ["ModelSlot", "plan_slots", "find_slot", "present_roles", "adapter_role"]


@dataclass(frozen=True)
class ModelSlot:
    """One model of the run and the tasks it is run on.

    Attributes:
        role: one of :data:`layerwise.vocab.ROLES`.
        model: model string to load (the base model, or ``experimental_model``).
        key: content key of the weights (base fingerprint or adapter key).
        adapter: LoRA adapter directory, or None.
        random_init: load the architecture with untrained weights.
        tasks: tasks whose test prompts this model is run on.
    """

    role: str
    model: str
    key: str
    adapter: Path | None
    random_init: bool
    tasks: tuple[str, ...]

    @property
    def label(self) -> str:
        """Folder name of this model's cached outputs."""
        return f"{self.role.replace(' ', '_')}-{self.key}"


def adapter_role(adapter_name: str) -> str:
    """Model role of an adapter name: ``"sft"`` -> SFT, ``"sft-heldout"`` -> held-out SFT, else control."""
    return {"sft": SFT_ROLE, "sft-heldout": HELDOUT_ROLE}.get(adapter_name, CONTROL_ROLE)


def plan_slots(spec: RunSpec, adapters: Mapping[str, AdapterResult], slug: Callable[[str], str]) -> list[ModelSlot]:
    """Every model of a run, in :data:`~layerwise.vocab.ROLES` order.

    PT (the base model), SFT (the ``"sft"`` adapter, or ``spec.experimental_model``), held-out SFT
    (if the spec holds out tasks), random-init (if a baseline), and one control per task.

    Args:
        spec: the run's spec.
        adapters: adapter name (``"sft"``, ``"sft-heldout"``, ``"control-<slug>"``) -> result.
        slug: task name -> file-name-safe slug (names the control adapters).

    Raises:
        KeyError: an adapter the spec needs is missing from ``adapters``.
    """
    tasks = tuple(spec.tasks)
    base_key = content_key(model_fingerprint(spec.base_model))
    out = [ModelSlot(PT_ROLE, spec.base_model, base_key, None, False, tasks)]
    if spec.experimental_model:
        key = content_key(model_fingerprint(spec.experimental_model))
        out.append(ModelSlot(SFT_ROLE, spec.experimental_model, key, None, False, tasks))
    else:
        res = adapters["sft"]
        out.append(ModelSlot(SFT_ROLE, spec.base_model, res.key, res.path, False, tasks))
    if spec.heldout_tasks:
        res = adapters["sft-heldout"]
        out.append(ModelSlot(HELDOUT_ROLE, spec.base_model, res.key, res.path, False, tasks))
    if "random_init" in spec.baselines:
        out.append(ModelSlot(RANDOM_ROLE, spec.base_model, content_key([base_key, RANDOM_ROLE, 0]), None, True, tasks))
    for t in tasks:
        res = adapters[f"control-{slug(t)}"]
        out.append(ModelSlot(CONTROL_ROLE, spec.base_model, res.key, res.path, False, (t,)))
    return out


def present_roles(slots: Sequence[ModelSlot]) -> list[str]:
    """Roles that ``slots`` have, in :data:`~layerwise.vocab.ROLES` order."""
    have = {s.role for s in slots}
    return [r for r in ROLES if r in have]


def find_slot(slots: Sequence[ModelSlot], role: str, task: str, tasks: Sequence[str]) -> ModelSlot:
    """The model of ``role`` that is run on ``task`` (for ``control``: that task's control).

    Args:
        slots: the run's slots. role: a model role. task: a task. tasks: the run's tasks.

    Raises:
        KeyError: unknown role or task, or a role the run does not have (lists the valid ones).
    """
    if task not in tasks:
        raise KeyError(f"task {task!r} is not in this run; its tasks: {list(tasks)}")
    for s in slots:
        if s.role == role and task in s.tasks:
            return s
    raise KeyError(f"this run has no model of role {role!r}; its roles: {present_roles(slots)}")
