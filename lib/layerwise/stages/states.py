"""The hidden-states stage: load each model once, extract its states and response loss per task.

:func:`load_model` is the one place where the model of a :class:`ModelSlot` is loaded, and
:func:`for_each_model` the one loop that loads each model once and runs the missing work on its
tasks; every stage that runs a model (this one, :mod:`~layerwise.stages.evaluation`,
:mod:`~layerwise.stages.variants`) goes through them.

Outputs under the run's folder, keyed by the model's key and a content key of the test examples::

    hidden_states/<role>-<key>/<task>-<key>.safetensors   last-token and mean-pooled states
    evaluation/<role>-<key>/<task>-<key>.json            response loss on the first n_eval examples
    grams/<role>-<key>-<pooling>/<task>-<key>.safetensors centred Gram matrices, layers 1..L
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..cache import CorruptArtefact, StaleResult, atomic_write_json, check_deadline, content_key, discard_corrupt, read_verified_json
from ..extraction import has_states, load_states, prompt_hidden_states, save_states
from ..models import compute_settings, load_random_init, load_tokenizer
from ..training import AdapterBank, _response_token_nll, load_adapter_model, response_losses
from .. import batching
from ..vocab import OTHER_ROLE
from .cached import code_digest, library_versions
from .slots import ModelSlot, gate_other_keys

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ..pipeline import Run

__all__ = [
    "test_key", "compute_key", "states_path", "loss_path", "load_model", "for_each_model", "extract", "run_models", "states",
    "slot_states", "gram_stack", "read_loss",
    "response_loss",
]


def test_key(run: Run, task: str) -> str:
    """Content key of a task's test split (ids, prompts and targets, in order)."""
    te = run.tasks[task]["test"]
    return content_key([list(te["id"]), list(te["prompt"]), list(te["target"])])


def compute_key(run: Run) -> dict[str, str]:
    """Where the run's models compute (device type and dtype): part of every hidden-state and loss key."""
    return compute_settings(run.spec.extraction.device, run.spec.extraction.dtype).key_parts()


def states_path(run: Run, slot: ModelSlot, task: str) -> Path:
    """File of the hidden states of ``slot``'s model on ``task``'s test prompts (keyed by the test examples
    and :func:`compute_key`)."""
    key = content_key({"test": test_key(run, task), "compute": compute_key(run),
                       "code": code_digest([prompt_hidden_states, save_states, batching]), "libraries": library_versions()})
    return run.out / "hidden_states" / slot.label / f"{run.slug(task)}-{key}.safetensors"


def loss_path(run: Run, slot: ModelSlot, task: str) -> Path:
    """File of the response loss of ``slot``'s model on ``task``'s first ``n_eval`` test examples."""
    key = content_key({"test": test_key(run, task), "n_eval": run.spec.data.n_eval, "compute": compute_key(run),
                       "code": code_digest([response_losses, _response_token_nll])})
    return run.out / "evaluation" / slot.label / f"{run.slug(task)}-{key}.json"


def load_model(run: Run, slot: ModelSlot) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the model of a slot and its tokenizer: the one place a run loads a model.

    Random-init slots get the base architecture with untrained weights
    (:func:`layerwise.models.load_random_init`); every other slot the model with its LoRA adapter,
    if any (:func:`layerwise.training.load_adapter_model`), on ``spec.extraction.device``.

    Returns:
        (model, tokenizer): a ``transformers`` causal LM in eval mode and its tokenizer.
    """
    device, dtype = run.spec.extraction.device, run.spec.extraction.dtype
    if slot.random_init:
        model = load_random_init(slot.model, device=device, dtype=dtype)
    else:
        model = load_adapter_model(slot.model, slot.adapter, device=device, dtype=dtype)
    return model, load_tokenizer(slot.model)


def _bank(run: Run, slots: Sequence[ModelSlot]) -> AdapterBank:
    """One base model with the adapters of every slot on it loaded once (see :class:`~layerwise.training.AdapterBank`)."""
    adapters = {s.label: s.adapter for s in slots if s.adapter is not None and s.model == run.spec.base_model}
    return AdapterBank(run.spec.base_model, adapters, device=run.spec.extraction.device, dtype=run.spec.extraction.dtype)


def for_each_model(
    run: Run,
    slots: Sequence[ModelSlot],
    done: Callable[[ModelSlot, str], bool],
    work: Callable[[PreTrainedModel, PreTrainedTokenizerBase, ModelSlot, str], None],
    what: str,
) -> None:
    """Run ``work`` on every (slot, task) not ``done``, loading each slot's model once.

    Slots with nothing to do are not loaded. The base model is loaded once, with the adapters of
    every slot that needs work on it (:class:`~layerwise.training.AdapterBank`, bit-identical to
    loading each adapted model on its own in float32); random-init models and off-the-shelf
    experimental checkpoints are loaded on their own. After a slot, one progress line: its role,
    the tasks done and the seconds taken (``what`` names the work, e.g. ``"evaluated"``).

    Args:
        run: the run. slots: the models to go through, in order.
        done: ``(slot, task) -> True`` if the result is already on disk.
        work: ``(model, tokenizer, slot, task) -> None``, writes the result to disk.
        what: what the work is, for the progress line.

    Raises:
        StaleResult: the spec is ``frozen`` and some work is pending (before any model is loaded).
        TimeBudgetSpent: the run's deadline passed (checked before each task's work).
    """
    pending = [(slot, [t for t in slot.tasks if not done(slot, t)]) for slot in slots]
    pending = [(slot, todo) for slot, todo in pending if todo]
    if pending and run.spec.frozen:
        slot, todo = pending[0]
        raise StaleResult(f"frozen run: the {what} of {slot.role} ({slot.label}) on {', '.join(todo)} are not in the "
                          f"results under {run.out} (missing, or keyed for other code or another spec); "
                          "set frozen=false to compute them")
    bank: AdapterBank | None = None
    for slot, todo in pending:
        t0 = time.perf_counter()
        if slot.random_init or slot.model != run.spec.base_model:  # not the base model: loaded on its own
            model, tokenizer = load_model(run, slot)
            context: contextlib.AbstractContextManager[Any] = contextlib.nullcontext(model)
        else:
            if bank is None:
                bank, tokenizer = _bank(run, [s for s, _ in pending]), load_tokenizer(run.spec.base_model)
            context = bank.use(slot.label if slot.adapter is not None else None)
        with context as model:
            for task in todo:
                check_deadline(f"{what} of {slot.role} on {task}")
                work(model, tokenizer, slot, task)
        run.log(f"{slot.role:12s} {','.join(todo)}: {what} in {time.perf_counter() - t0:.0f} s")
    del bank


def extract(run: Run, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, slot: ModelSlot, task: str,
            examples: Dataset, path: Path, *,
            progress: bool, desc: str, **meta: Any) -> None:
    """Hidden states of ``slot``'s model on ``examples`` (a task split: ``prompt``, ``id``), saved to ``path``.

    ``meta`` is stored with the states next to the slot's role, model, key and adapter.
    """
    hidden = prompt_hidden_states(model, tokenizer, list(examples["prompt"]), batch_size=run.spec.extraction.batch_size,
                                  progress=progress and run.verbose, desc=desc)
    save_states(path, hidden, list(examples["id"]),
                {"role": slot.role, "model": slot.model, "model_key": slot.key, "task": task,
                 "adapter": str(slot.adapter) if slot.adapter else None, "random_init": slot.random_init, **meta})


def run_models(run: Run, progress: bool = True, slots: Sequence[ModelSlot] | None = None, *,
               states: bool = True) -> None:
    """For every model compute what is missing on its tasks: hidden states on the test prompts
    (last token and mean pooled) and the response loss on the first ``data.n_eval`` test
    examples (the loss only where it is read: the models of the main design, and the other-task
    control of the gate, :func:`~layerwise.stages.slots.gate_other_control`). Each model is
    loaded once.

    ``slots`` (default: every slot of the run) restricts the work, e.g. to one slot with one task
    (one job of :mod:`layerwise.plan`). ``states=False`` computes the missing response losses only
    (what the gate and the loss tables read), so a run rendered from committed results, which has
    no hidden states, loads no model."""
    n_eval = run.spec.data.n_eval
    # read by the loss table (the main design) and by the gate (its other-task control); a slot is
    # named by (role, weights key), as a job passes a copy restricted to one task
    main = {(s.role, s.key) for s in run.slots}
    others = gate_other_keys(run.slots, run.extra_slots, run.spec.tasks)

    def wants_loss(slot: ModelSlot, task: str) -> bool:
        return (slot.role, slot.key) in main or (slot.role == OTHER_ROLE and others.get(task) == slot.key)

    def has(slot: ModelSlot, task: str) -> bool:
        return not states or has_states(states_path(run, slot, task), ids=list(run.tasks[task]["test"]["id"]))

    def done(slot: ModelSlot, task: str) -> bool:
        return has(slot, task) and (not wants_loss(slot, task) or loss_path(run, slot, task).is_file())

    def work(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, slot: ModelSlot, task: str) -> None:
        te = run.tasks[task]["test"]
        sp = states_path(run, slot, task)
        if not has(slot, task):
            extract(run, model, tokenizer, slot, task, te, sp, progress=progress, desc=f"{slot.role} {task}")
        lp = loss_path(run, slot, task)
        if wants_loss(slot, task) and not lp.is_file():
            prompts, targets, ids = list(te["prompt"]), list(te["target"]), list(te["id"])
            losses, answer = response_losses(model, tokenizer, prompts[:n_eval], targets[:n_eval],
                                             batch_size=run.spec.extraction.batch_size)
            atomic_write_json(lp, {"ids": ids[:n_eval], "loss": losses, "loss_no_eos": answer})

    for_each_model(run, run.slots + run.extra_slots if slots is None else slots, done, work, "states + loss")


def states(run: Run, role: str, task: str, pooling: str = "last") -> NDArray[np.float32]:
    """Hidden states ``(n_layers + 1, n_test, hidden_size)`` float32 of a model role on a task.

    Args:
        run: the run. role: one of ``run.roles``. task: a task of the run.
        pooling: ``"last"`` (last prompt token) or ``"mean"`` (mean over prompt tokens).

    Raises:
        KeyError: unknown role, task or pooling.
    """
    return slot_states(run, run.slot(role, task), task, pooling)


def slot_states(run: Run, slot: ModelSlot, task: str, pooling: str = "last") -> NDArray[np.float32]:
    """Hidden states ``(n_layers + 1, n_test, hidden_size)`` float32 of one model on a task (see :func:`states`).

    A states file that fails its check (truncated, another format tag, other example ids, a
    non-finite value: :func:`layerwise.extraction.load_states`) is reported with its path, removed
    and recomputed.
    """
    path = states_path(run, slot, task)
    ids = list(run.tasks[task]["test"]["id"])
    if not path.is_file():
        run_models(run)
    try:
        return load_states(path, pooling, ids)[0]
    except CorruptArtefact as err:
        discard_corrupt(err)
        run_models(run)
        return load_states(path, pooling, ids)[0]


def gram_stack(run: Run, role: str, task: str, pooling: str = "last", slot: ModelSlot | None = None) -> tuple[str, str]:
    """Make sure the centred Grams of (role, task, pooling) for layers 1..L are cached.

    Args:
        run, role, task, pooling: which states.
        slot: the model, when ``role`` has several on ``task`` (seed replicates, other-task controls);
            default ``run.slot(role, task)``.

    Returns:
        (model name, task name) under which ``run.grams`` holds them.
    """
    slot = slot or run.slot(role, task)
    name, tkey = f"{slot.label}-{pooling}", f"{run.slug(task)}-{test_key(run, task)}"
    run.grams.ensure(name, tkey, lambda: slot_states(run, slot, task, pooling)[1:],
                     metadata={"role": role, "task": task, "pooling": pooling})
    return name, tkey


def response_loss(run: Run) -> pd.DataFrame:
    """Mean response-token NLL per (task, model role) on the first ``n_eval`` test examples.

    Columns: ``task, cluster, role, loss`` (nats per token, EOS included as in training),
    ``loss_no_eos`` (the answer's tokens alone), ``n``.
    """
    run_models(run, states=False)
    rows = []
    for slot in run.slots:
        for task in slot.tasks:
            data = read_loss(run, slot, task)
            rows.append({"task": task, "cluster": run.cluster_of(task), "role": slot.role,
                         "loss": float(np.mean(data["loss"])), "loss_no_eos": float(np.mean(data["loss_no_eos"])),
                         "n": len(data["loss"])})
    return pd.DataFrame(rows)


def read_loss(run: Run, slot: ModelSlot, task: str) -> dict[str, Any]:
    """The response losses of a model on a task (``ids``, ``loss``, ``loss_no_eos``), verified when read.

    A file that fails its check is reported with its path, removed and recomputed.
    """
    path = loss_path(run, slot, task)
    try:
        return read_verified_json(path, ("ids", "loss", "loss_no_eos"))
    except CorruptArtefact as err:
        discard_corrupt(err)
        run_models(run, states=False)
        return read_verified_json(path, ("ids", "loss", "loss_no_eos"))
