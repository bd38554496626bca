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
from ..vocab import CONTROL_ROLE, HELDOUT_ROLE, OTHER_ROLE, PT_ROLE, RANDOM_ROLE, REPLICATE_ROLE, ROLES, SFT_ROLE

__all__ = ["ModelSlot", "SIBLINGS", "SEED_MARK", "adapter_name", "plan_slots", "plan_extra_slots", "siblings_of",
           "gate_other_control", "gate_other_keys",
           "find_slot", "present_roles", "adapter_role"]

#: How many other tasks' controls are run on each task's inputs (the other-task baseline).
SIBLINGS = 2
#: Separates an adapter's name from the seed of a replicate (``sft+seed43``, ``control-squad_v1+seed7``).
SEED_MARK = "+seed"


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
        seed: the adapter's training seed (None for models without an adapter).
    """

    role: str
    model: str
    key: str
    adapter: Path | None
    random_init: bool
    tasks: tuple[str, ...]
    seed: int | None = None

    @property
    def label(self) -> str:
        """Folder name of this model's cached outputs."""
        return f"{self.role.replace(' ', '_')}-{self.key}"


def adapter_name(base: str, seed: int, first_seed: int) -> str:
    """Name of an adapter: ``base`` for the first seed, ``base + SEED_MARK + seed`` for a replicate."""
    return base if seed == first_seed else f"{base}{SEED_MARK}{seed}"


def adapter_role(adapter_name: str) -> str:
    """Model role of an adapter name: ``sft`` -> SFT, ``sft-heldout`` -> held-out SFT, ``control-<slug>``
    -> control, ``control-<slug>+seed<k>`` -> control replicate (SFT replicates keep their role)."""
    base, _, seed = adapter_name.partition(SEED_MARK)
    role = {"sft": SFT_ROLE, "sft-heldout": HELDOUT_ROLE}.get(base, CONTROL_ROLE)
    return REPLICATE_ROLE if role == CONTROL_ROLE and seed else role


def siblings_of(tasks: Sequence[str], task: str, n: int = SIBLINGS) -> list[str]:
    """The tasks whose controls are run on ``task``'s inputs: the next ``n`` tasks in spec order, cyclically
    (fewer when the run has fewer other tasks)."""
    i = list(tasks).index(task)
    return [tasks[(i + k) % len(tasks)] for k in range(1, min(n, len(tasks) - 1) + 1)]


def plan_slots(spec: RunSpec, adapters: Mapping[str, AdapterResult], slug: Callable[[str], str]) -> list[ModelSlot]:
    """The models of a run's main design, in :data:`~layerwise.vocab.ROLES` order.

    PT (the base model), SFT (the ``"sft"`` adapter of the first seed, or ``spec.experimental_model``),
    held-out SFT (if the spec holds out tasks), random-init (if a baseline), and one control per task.
    Replicates and the other baselines are :func:`plan_extra_slots`.

    Args:
        spec: the run's spec.
        adapters: adapter name (``"sft"``, ``"sft-heldout"``, ``"control-<slug>"``) -> result.
        slug: task name -> file-name-safe slug (names the control adapters).

    Raises:
        KeyError: an adapter the spec needs is missing from ``adapters``.
    """
    tasks = tuple(spec.tasks)
    base_key = content_key(model_fingerprint(spec.base_model))
    first = spec.training.sft_seeds[0]
    out = [ModelSlot(PT_ROLE, spec.base_model, base_key, None, False, tasks)]
    if spec.experimental_model:
        key = content_key(model_fingerprint(spec.experimental_model))
        out.append(ModelSlot(SFT_ROLE, spec.experimental_model, key, None, False, tasks))
    else:
        res = adapters["sft"]
        out.append(ModelSlot(SFT_ROLE, spec.base_model, res.key, res.path, False, tasks, first))
    if spec.heldout_tasks:
        res = adapters["sft-heldout"]
        out.append(ModelSlot(HELDOUT_ROLE, spec.base_model, res.key, res.path, False, tasks, first))
    if "random_init" in spec.baselines:
        out.append(ModelSlot(RANDOM_ROLE, spec.base_model, content_key([base_key, RANDOM_ROLE, 0]), None, True, tasks))
    for t in tasks:
        res = adapters[f"control-{slug(t)}"]
        out.append(ModelSlot(CONTROL_ROLE, spec.base_model, res.key, res.path, False, (t,), spec.training.seed))
    return out


def plan_extra_slots(spec: RunSpec, adapters: Mapping[str, AdapterResult], slug: Callable[[str], str]) -> list[ModelSlot]:
    """The models of the replicates and baselines, beside :func:`plan_slots`' models.

    * SFT and held-out SFT of every seed of ``training.seeds`` after the first (role SFT / held-out
      SFT, with their ``seed``);
    * with the ``other_task`` baseline, each task's control run on the inputs of the tasks it is a
      sibling of (:func:`siblings_of`; role ``other-task control``);
    * each ``training.control_seeds`` seed's control of the first ``training.ceiling_tasks`` tasks
      (role ``control replicate``).

    Raises:
        KeyError: an adapter these models need is missing from ``adapters``.
    """
    tasks, tr = tuple(spec.tasks), spec.training
    first = tr.sft_seeds[0]
    out: list[ModelSlot] = []
    for seed in tr.sft_seeds[1:]:
        if not spec.experimental_model:
            res = adapters[adapter_name("sft", seed, first)]
            out.append(ModelSlot(SFT_ROLE, spec.base_model, res.key, res.path, False, tasks, seed))
        if spec.heldout_tasks:
            res = adapters[adapter_name("sft-heldout", seed, first)]
            out.append(ModelSlot(HELDOUT_ROLE, spec.base_model, res.key, res.path, False, tasks, seed))
    if "other_task" in spec.baselines and len(tasks) > 1:
        for u in tasks:
            on = tuple(t for t in tasks if u in siblings_of(tasks, t))
            res = adapters[f"control-{slug(u)}"]
            out.append(ModelSlot(OTHER_ROLE, spec.base_model, res.key, res.path, False, on, tr.seed))
    for seed in tr.control_seeds:
        for t in tasks[: tr.ceiling_tasks]:
            res = adapters[adapter_name(f"control-{slug(t)}", seed, tr.seed)]
            out.append(ModelSlot(REPLICATE_ROLE, spec.base_model, res.key, res.path, False, (t,), seed))
    return out


def gate_other_control(slots: Sequence[ModelSlot], extra_slots: Sequence[ModelSlot], tasks: Sequence[str],
                       task: str) -> ModelSlot | None:
    """The other task's control that the "learned its task" gate compares with on ``task``: the
    control of ``task``'s first sibling (:func:`siblings_of`), run on ``task``'s inputs.

    Args:
        slots: the run's main design (:func:`plan_slots`). extra_slots: its replicates and
            baselines (:func:`plan_extra_slots`). tasks: the run's tasks. task: one of them.

    Returns:
        The ``other-task control`` slot, or None when the run has no ``other_task`` baseline or a
        single task.
    """
    sib = siblings_of(tasks, task)
    if not sib:
        return None
    key = find_slot(slots, CONTROL_ROLE, sib[0], tasks).key
    return next((s for s in extra_slots if s.role == OTHER_ROLE and task in s.tasks and s.key == key), None)


def gate_other_keys(slots: Sequence[ModelSlot], extra_slots: Sequence[ModelSlot], tasks: Sequence[str]) -> dict[str, str]:
    """Task -> weights key of its :func:`gate_other_control` (tasks without one are absent): what
    the stages compare a slot with, since a job passes a copy of a slot restricted to one task."""
    return {t: o.key for t in tasks if (o := gate_other_control(slots, extra_slots, tasks, t)) is not None}


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
