"""LoRA adapters for the MOSSA design: the multi-task SFT (experimental) model and per-task controls.

Training uses ``peft`` LoRA and the Hugging Face :class:`~transformers.Trainer` (optimiser, cosine
schedule, gradient accumulation, checkpoints, resume). The one thing we change is the loss
computation (:class:`ResponseOnlyTrainer`): the loss is on response tokens only, as in the paper's
LLaMA-Factory ``sft`` stage, and logits are computed only at each row's response positions. With
Gemma's 262k-word vocabulary the output layer over every position costs more than the whole
transformer body, so this roughly halves training time without changing the loss (bit-identical).

Compute settings (device, dtype) come from :func:`layerwise.models.compute_settings` and are part
of the adapter's key. :class:`AdapterBank` keeps one base model in memory and switches adapters.

An adapter is stored in ``<output>/adapters/<name>-<key>/`` (``adapter_model.safetensors``,
``adapter_config.json``, ``training_log.json``, ``layerwise_adapter.json``), where ``key`` hashes the
base model, the training examples, the recipe and the seed, the compute settings and the training
code (:func:`training_code`). A finished adapter with the same key is reused once it passes
:func:`check_adapter` (else it is reported, removed and retrained); an interrupted training resumes
from its last whole checkpoint in ``<output>/adapters/.work/`` (:func:`good_checkpoints`).
"""

from __future__ import annotations

import math
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .batching import Encoded, collate, encode
from .cache import (CorruptArtefact, TimeBudgetSpent, atomic_path, atomic_write_json, content_key,
                    deadline_passed, discard_corrupt, kill_point, read_json, read_verified_json, safetensors_format)
from .spec import TrainingSpec

__all__ = [
    "AdapterResult",
    "adapter_key",
    "adapter_location",
    "training_code",
    "check_adapter",
    "good_checkpoints",
    "resolve_target_modules",
    "train_adapter",
    "load_adapter_model",
    "AdapterBank",
    "response_losses",
]


@dataclass(frozen=True)
class AdapterResult:
    """A finished LoRA adapter.

    Attributes:
        name: ``sft`` or ``control-<task>``.
        path: adapter directory (load with :func:`load_adapter_model`).
        key: content key of (base model, data, recipe, seed).
        log: per-step training records: dicts with ``step``, ``epoch``, ``loss``, ``learning_rate``.
        reused: True if it was loaded from the cache instead of trained in this call.
        seconds: wall time of the training (as recorded when it was trained).
    """

    name: str
    path: Path
    key: str
    log: list[dict[str, Any]]
    reused: bool
    seconds: float


def adapter_key(base_fingerprint: dict[str, Any], example_ids: Sequence[str], recipe: dict[str, Any], prompt_key: str,
                compute: dict[str, str] | None = None, code: dict[str, Any] | None = None) -> str:
    """Content key of an adapter: base model identity, exact training examples, recipe, prompt format
    and compute settings.

    Args:
        base_fingerprint: from :func:`layerwise.models.model_fingerprint`.
        example_ids: ids of the training examples in training order.
        recipe: :meth:`TrainingSpec.recipe` (plus ``group_by_length`` when it is on).
        prompt_key: key of the prompt texts/targets (changes when a template changes).
        compute: :meth:`layerwise.models.ComputeSettings.key_parts` (device type and dtype).
        code: :func:`training_code` (source digest and library versions).
    """
    parts = {"base": base_fingerprint, "ids": list(example_ids), "recipe": recipe, "prompts": prompt_key}
    if compute is not None:
        parts["compute"] = compute
    if code is not None:
        parts["code"] = code
    return content_key(parts)


def adapter_location(*, name: str, base_model: str, prompts: Sequence[str], targets: Sequence[str],
                     example_ids: Sequence[str], spec: TrainingSpec, adapters_dir: Path, dtype: str = "auto",
                     group_by_length: bool = False) -> tuple[str, Path]:
    """The key and folder :func:`train_adapter` gives an adapter, from the same arguments, without training.

    Returns:
        ``(key, adapters_dir / f"{name}-{key}")``; the folder may not exist yet.
    """
    from .models import compute_settings, model_fingerprint

    recipe = {**spec.recipe(), "group_by_length": True} if group_by_length else spec.recipe()
    key = adapter_key(model_fingerprint(base_model), example_ids, recipe, content_key([list(prompts), list(targets)]),
                      compute=compute_settings(spec.device, dtype).key_parts(), code=training_code())
    return key, adapters_dir / f"{name}-{key}"


def training_code() -> dict[str, Any]:
    """What of the code and libraries makes an adapter's weights: a digest of the source of this
    module (loss, trainer, recipe-to-arguments) and of :mod:`layerwise.batching` (tokenising and
    padding), and the versions of torch, transformers and peft. Part of every adapter key."""
    import sys

    from . import batching
    from .stages.cached import code_digest, library_versions

    return {"source": code_digest([sys.modules[__name__], batching]), "libraries": library_versions()}


#: Files of a finished adapter folder, all checked when it is reused (:func:`check_adapter`).
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "training_log.json", "layerwise_adapter.json")


def check_adapter(path: Path, key: str | None = None) -> dict[str, Any]:
    """Verify a finished adapter folder before it is reused.

    Checks that ``adapter_model.safetensors`` is a whole safetensors file holding LoRA tensors
    (:func:`layerwise.cache.safetensors_format`), that ``adapter_config.json`` and
    ``training_log.json`` are valid JSON, and that the marker ``layerwise_adapter.json`` is valid
    JSON with the keys :func:`adapter_summary` reads and - if ``key`` is given - this key.

    Returns:
        dict: the marker.

    Raises:
        FileNotFoundError: the marker is missing (an unfinished adapter).
        CorruptArtefact: any other check fails; ``path`` of the error is the adapter folder.
    """
    marker = read_verified_json_in(path, "layerwise_adapter.json", ("name", "key", "n_examples", "optimizer_steps", "seconds"))
    if key is not None and marker["key"] != key:
        raise CorruptArtefact(path, f"marker key {marker['key']!r}, expected {key!r}")
    read_verified_json_in(path, "adapter_config.json", ("peft_type",))
    log = read_verified_json_in(path, "training_log.json")
    if not isinstance(log, list):
        raise CorruptArtefact(path, "training_log.json is not a list")
    try:
        header = safetensors_format(path / "adapter_model.safetensors")
        del header
        from safetensors import safe_open

        with safe_open(str(path / "adapter_model.safetensors"), framework="numpy") as f:
            names = list(f.keys())
    except FileNotFoundError:
        raise CorruptArtefact(path, "adapter_model.safetensors is missing") from None
    except CorruptArtefact as err:
        raise CorruptArtefact(path, f"adapter_model.safetensors: {err.reason}") from None
    if not any("lora_" in n for n in names):
        raise CorruptArtefact(path, "adapter_model.safetensors holds no LoRA tensors")
    return marker


def read_verified_json_in(folder: Path, name: str, required: Sequence[str] = ()) -> Any:
    """:func:`layerwise.cache.read_verified_json` of ``folder/name``, a failure reported against ``folder``.

    Raises:
        FileNotFoundError: the file is missing and it is the marker ``layerwise_adapter.json``.
        CorruptArtefact: another file is missing, or the file fails its check.
    """
    try:
        return read_verified_json(folder / name, tuple(required))
    except FileNotFoundError:
        if name == "layerwise_adapter.json":
            raise
        raise CorruptArtefact(folder, f"{name} is missing") from None
    except CorruptArtefact as err:
        raise CorruptArtefact(folder, f"{name}: {err.reason}") from None


def good_checkpoints(work: Path) -> list[Path]:
    """The whole training checkpoints in ``work`` (``checkpoint-<step>``), oldest first; damaged ones are
    reported on stderr with their path and removed.

    A checkpoint is whole when its ``trainer_state.json`` (written last by the Trainer) is valid
    JSON with ``global_step`` equal to the folder's step, its adapter weights pass
    :func:`layerwise.cache.safetensors_format`, and its optimiser, scheduler and RNG states are
    readable zip archives (``torch.save``). A process killed while saving leaves a checkpoint that
    fails this, and training resumes from the one before.
    """
    import zipfile

    def step(p: Path) -> int:
        try:
            return int(p.name.rsplit("-", 1)[1])
        except ValueError:
            return -1

    good = []
    for ckpt in sorted(work.glob("checkpoint-*"), key=step):
        try:
            state = read_verified_json_in(ckpt, "trainer_state.json", ("global_step",))
            if state["global_step"] != step(ckpt):
                raise CorruptArtefact(ckpt, f"trainer_state.json is at step {state['global_step']}")
            try:
                safetensors_format(ckpt / "adapter_model.safetensors")
            except FileNotFoundError:
                raise CorruptArtefact(ckpt, "adapter_model.safetensors is missing") from None
            except CorruptArtefact as err:  # reported against the checkpoint, removed whole
                raise CorruptArtefact(ckpt, f"adapter_model.safetensors: {err.reason}") from None
            for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
                f = ckpt / name
                if not f.is_file() or not zipfile.is_zipfile(f):
                    raise CorruptArtefact(ckpt, f"{name} is missing or not a whole torch archive")
                with zipfile.ZipFile(f) as z:
                    if z.testzip() is not None:
                        raise CorruptArtefact(ckpt, f"{name} fails its CRC check")
        except (CorruptArtefact, FileNotFoundError) as err:
            discard_corrupt(err if isinstance(err, CorruptArtefact) else CorruptArtefact(ckpt, "trainer_state.json is missing"))
            continue
        good.append(ckpt)
    return good


#: The paper's LoRA targets (query and value projections) under each architecture's module names,
#: used when a spec says ``target_modules: [auto]``.
QV_MODULES: dict[str, tuple[str, ...]] = {
    "llama": ("q_proj", "v_proj"),
    "mistral": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"),
    "qwen3": ("q_proj", "v_proj"),
    "gemma": ("q_proj", "v_proj"),
    "gemma2": ("q_proj", "v_proj"),
    "gemma3": ("q_proj", "v_proj"),
    "gemma3_text": ("q_proj", "v_proj"),
    "phi3": ("qkv_proj",),
    "gpt2": ("c_attn",),
    "gpt_neox": ("query_key_value",),
    "opt": ("q_proj", "v_proj"),
    "bloom": ("query_key_value",),
}


def resolve_target_modules(model: Any, wanted: Sequence[str]) -> list[str]:
    """Check that every LoRA target module name exists as a linear layer in ``model``.

    Args:
        model: a transformers model (weights may be on the ``meta`` device).
        wanted: module name suffixes such as ``("q_proj", "v_proj")``, or ``("auto",)`` for the
            architecture's query/value projections (:data:`QV_MODULES`).

    Returns:
        list[str]: the module names.

    Raises:
        ValueError: a name matches no linear module, or ``auto`` is asked for an architecture not
            in :data:`QV_MODULES`; the message lists the linear module names the model has.
    """
    import torch

    linear_types = (torch.nn.Linear,)
    try:
        from transformers.pytorch_utils import Conv1D

        linear_types = (torch.nn.Linear, Conv1D)  # GPT-2 style fused projections
    except ImportError:
        pass
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, linear_types)})
    if list(wanted) == ["auto"]:
        model_type = getattr(model.config, "model_type", "?")
        if model_type not in QV_MODULES:
            raise ValueError(
                f"no default LoRA targets for architecture {model_type!r} (known: {', '.join(sorted(QV_MODULES))}); "
                f"set training.target_modules to some of its linear modules: {', '.join(linear)}"
            )
        wanted = QV_MODULES[model_type]
    missing = [w for w in wanted if w not in linear]
    if missing:
        raise ValueError(
            f"LoRA target module(s) {missing} do not exist in {type(model).__name__}; "
            f"its linear modules are: {', '.join(linear)}"
        )
    return list(wanted)


def training_config(spec: TrainingSpec, model: Any, *, output_dir: Path, device: str = "cpu", progress: bool = True):
    """The ``peft`` LoRA configuration and the ``transformers`` training arguments of a recipe.

    Needs only the model's module structure, so it can be built for a model on the ``meta``
    device (no weights), e.g. to check the paper preset for Llama 2 7B on a CPU machine.

    Args:
        spec: the recipe.
        model: the base model (real or meta weights).
        output_dir: checkpoint folder.
        device: ``cpu`` or ``cuda[:N]``; CUDA trains in bf16 where supported, else fp16 (the
            paper: fp16), CPU in fp32.
        progress: show progress bars.

    Returns:
        (peft.LoraConfig, transformers.TrainingArguments)

    Raises:
        ValueError: a target module does not exist in the model (the message lists its modules).
    """
    import torch
    from peft import LoraConfig
    from transformers import TrainingArguments

    cuda = device.startswith("cuda")
    bf16 = cuda and torch.cuda.is_bf16_supported()
    lora = LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=resolve_target_modules(model, spec.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.grad_accum,
        learning_rate=spec.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        weight_decay=0.0,
        num_train_epochs=spec.epochs,
        logging_steps=1,
        save_strategy="steps",
        save_steps=spec.save_steps,
        save_total_limit=1,
        seed=spec.seed,
        data_seed=spec.seed,
        report_to=[],
        use_cpu=not cuda,
        bf16=bf16,
        fp16=cuda and not bf16,
        remove_unused_columns=False,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )
    return lora, args


def _trainer_class():
    from transformers import Trainer

    class ResponseOnlyTrainer(Trainer):
        """Trainer whose loss is the mean NLL of response tokens, computing logits only where needed.

        ``token_stats`` (a dict) counts the real and the padded tokens of every batch it sees
        (``"tokens"``, ``"slots"``); ``lengths`` (one per training example), when given, makes the
        sampler group examples of similar length into batches (:class:`_LengthGroupedSampler`).
        """

        loss_is_scaled_for_ga = True

        def __init__(self, *args, token_stats: dict[str, int] | None = None, lengths: list[int] | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.token_stats = token_stats if token_stats is not None else {}
            self.lengths = lengths

        def _get_train_sampler(self, train_dataset=None):
            if self.lengths is None:
                return super()._get_train_sampler(train_dataset)
            return _LengthGroupedSampler(self.lengths, self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                         seed=self.args.seed)

        def _save_optimizer_and_scheduler(self, output_dir):
            kill_point("checkpoint", str(self.args.output_dir))  # test-only (inert unless $LAYERWISE_KILL_AT)
            super()._save_optimizer_and_scheduler(output_dir)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            kill_point("train_step", str(self.args.output_dir))  # test-only, see layerwise.cache.kill_point
            labels = inputs.pop("labels")
            mask = inputs["attention_mask"]
            self.token_stats["tokens"] = self.token_stats.get("tokens", 0) + int(mask.sum())
            self.token_stats["slots"] = self.token_stats.get("slots", 0) + mask.numel()
            row_sums, row_counts, outputs = _response_nll(model, inputs, labels)
            loss_sum, count = row_sums.sum(), row_counts.sum()
            if num_items_in_batch is not None:
                loss = loss_sum / num_items_in_batch
            else:
                loss = loss_sum / count.clamp(min=1) / self.current_gradient_accumulation_steps
            return (loss, outputs) if return_outputs else loss

    return ResponseOnlyTrainer


class _LengthGroupedSampler:
    """Each epoch: a seeded random permutation, cut into mega-batches of 8 batches, each sorted by length.

    The order comes from ``transformers``' ``get_length_grouped_indices``; unlike its
    ``LengthGroupedSampler`` (whose mega-batch shrinks to one batch below 4 x 50 batches of data,
    i.e. no grouping for a 32-example control) the mega-batch here is fixed at 8 batches.
    """

    MEGA_BATCH_MULT = 8

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = list(lengths), batch_size, seed, 0

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        self.epoch += 1
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, self.MEGA_BATCH_MULT, generator))


#: Architectures whose causal-LM forward is ``lm_head(last_hidden_state)`` (then, for Gemma 2/3,
#: the final logit soft-capping): for these the output layer is run on the response positions only.
_HEAD_ONLY_ARCHS = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text", "smollm3")


def _response_token_nll(model: Any, inputs: dict[str, Any], labels: Any):
    """Response-token NLL of a left-padded batch, per token, on the batch's last response columns.

    Logits are computed only where a loss is taken: the positions whose next token is a response
    token. For the architectures of :data:`_HEAD_ONLY_ARCHS` the body runs once and the output
    layer only on those positions of each row (with Gemma's 262k-word vocabulary the output layer
    over every position costs more than the body). For other architectures the output layer runs
    on the last columns from the earliest response start of the batch (``logits_to_keep``).

    Args:
        model: causal LM (possibly a ``peft`` model).
        inputs: ``input_ids``, ``attention_mask``, ``position_ids`` - ``(batch, width)`` long.
        labels: ``(batch, width)`` long, ``-100`` where no loss is taken.

    Returns:
        (nll ``(batch, cols)`` float32 - nats, 0 where no loss is taken; column ``j`` scores the
        token at input column ``width - cols + j``, so the last column scores each row's last token
        - ``mask`` ``(batch, cols)`` bool, where a loss is taken - model outputs)
    """
    import torch

    width = labels.shape[1]
    has_label = (labels != -100).any(dim=0)
    first = int(torch.nonzero(has_label)[0]) if bool(has_label.any()) else width - 1
    keep = min(width - first + 1, width)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "model_type", "") in _HEAD_ONLY_ARCHS and base.get_output_embeddings() is not None:
        from .extraction import body_of

        outputs = body_of(base)(**inputs, use_cache=False)
        target = labels[:, 1:]
        where = target != -100
        hidden = outputs.last_hidden_state[:, :-1][where]  # (n_response_tokens, d)
        logits = base.get_output_embeddings()(hidden)
        cap = getattr(base.config, "final_logit_softcapping", None)
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        nll = torch.nn.functional.cross_entropy(logits.float(), target[where], reduction="none")
        # The same columns as the route below (the last keep - 1), so row sums are taken in the
        # same order and the loss is bit-identical to it.
        cols = keep - 1
        dense = torch.zeros((labels.shape[0], cols), dtype=nll.dtype, device=nll.device)
        mask = where[:, target.shape[1] - cols :]
        dense[mask] = nll
        return dense, mask, outputs
    outputs = model(**inputs, logits_to_keep=keep)
    logits = outputs.logits[:, :-1, :].float()
    target = labels[:, width - keep + 1 :]
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="none"
    ).reshape(target.shape)
    return nll, target != -100, outputs


def _response_nll(model: Any, inputs: dict[str, Any], labels: Any):
    """Per-row sums of response-token NLL and per-row token counts for a left-padded batch
    (:func:`_response_token_nll` summed over its columns).

    Args:
        model, inputs, labels: as in :func:`_response_token_nll`.

    Returns:
        (row_sums ``(batch,)`` float32, row_counts ``(batch,)`` long, model outputs)
    """
    nll, mask, outputs = _response_token_nll(model, inputs, labels)
    return nll.sum(dim=1), mask.sum(dim=1), outputs


class _EncodedDataset:
    def __init__(self, items: list[Encoded]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Encoded:
        return self.items[i]


def _deadline_callback():
    """A ``TrainerCallback`` that saves a checkpoint and stops training once the run's deadline
    (``$LAYERWISE_DEADLINE``, :func:`layerwise.cache.deadline_passed`) has passed."""
    from transformers import TrainerCallback

    class _Deadline(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - the Trainer's signature
            if deadline_passed():
                control.should_save = True
                control.should_training_stop = True
            return control

    return _Deadline()


def _progress_callback(stats: dict[str, int], total_tokens: int, desc: str):
    """A ``TrainerCallback`` showing tokens/s, ETA and the last loss on a :func:`token_progress` bar."""
    from transformers import TrainerCallback

    from .batching import token_progress

    class TokenProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            done = int(total_tokens * state.global_step / state.max_steps) if state.max_steps else 0
            self.bar = token_progress(total_tokens, desc, initial=done)
            self.seen = stats.get("tokens", 0)

        def on_step_end(self, args, state, control, **kwargs):
            now = stats.get("tokens", 0)
            self.bar.update(now - self.seen)
            self.seen = now

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return TokenProgress()


def train_adapter(
    *,
    name: str,
    base_model: str,
    prompts: Sequence[str],
    targets: Sequence[str],
    example_ids: Sequence[str],
    spec: TrainingSpec,
    adapters_dir: Path,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    dtype: str = "auto",
    group_by_length: bool = False,
) -> AdapterResult:
    """Train (or reuse) one LoRA adapter on prompt/response pairs.

    A killed or failed training leaves its checkpoints in ``adapters_dir/.work/<name>-<key>/``
    (every ``spec.save_steps`` optimiser steps); the next call with the same inputs resumes from the
    last one, so at most the steps since that checkpoint are lost, and the result equals an
    uninterrupted run with the same seed (tested).

    The base weights are in the compute dtype of :func:`layerwise.models.compute_settings`; the
    LoRA parameters and the optimiser state are float32 in every dtype (``peft`` keeps adapter
    weights in float32).

    Args:
        name: ``sft`` for the multi-task model, ``control-<task>`` for a control.
        base_model: model string (see :func:`layerwise.models.resolve_model`).
        prompts, targets, example_ids: the training examples, in training-set order (the Trainer
            shuffles with ``spec.seed``).
        spec: LoRA recipe.
        adapters_dir: folder that holds all adapters of a run.
        progress: show a progress bar (tokens/s, ETA, last loss).
        callbacks: extra ``transformers.TrainerCallback`` objects.
        dtype: ``auto``, ``float32`` or ``bfloat16`` (the run spec's ``dtype``); part of the key.
        group_by_length: batch examples of similar length together (``transformers``'
            ``LengthGroupedSampler``, seeded): less padding, another batch composition, so another
            adapter (part of the key when on).

    Returns:
        AdapterResult

    Raises:
        ValueError: empty training set, lengths differ, a target module is missing, a prompt does
            not fit ``spec.max_length``, or a bad ``dtype`` / device.
        TimeBudgetSpent: the run's deadline (``$LAYERWISE_DEADLINE``) passed before or during
            training; a checkpoint of the last optimizer step is saved and the next call resumes it.
    """
    if not (len(prompts) == len(targets) == len(example_ids)):
        raise ValueError(f"prompts, targets and example_ids differ in length: {len(prompts)}, {len(targets)}, {len(example_ids)}")
    if not prompts:
        raise ValueError(f"adapter {name!r}: no training examples")
    from .models import compute_settings

    cs = compute_settings(spec.device, dtype)
    key, final = adapter_location(name=name, base_model=base_model, prompts=prompts, targets=targets,
                                  example_ids=example_ids, spec=spec, adapters_dir=adapters_dir, dtype=dtype,
                                  group_by_length=group_by_length)
    if final.exists():
        try:
            meta = check_adapter(final, key)
            return AdapterResult(name, final, key, read_json(final / "training_log.json"), True, meta["seconds"])
        except FileNotFoundError:
            discard_corrupt(CorruptArtefact(final, "no layerwise_adapter.json marker (unfinished adapter)"))
        except CorruptArtefact as err:
            discard_corrupt(err)  # reported with its path, removed, retrained below

    from peft import get_peft_model
    from transformers import PrinterCallback, ProgressCallback, set_seed

    from .models import load_model, load_tokenizer

    if deadline_passed():
        raise TimeBudgetSpent(f"time budget spent before training {name}")
    tokenizer = load_tokenizer(base_model)
    items = [encode(tokenizer, p, t, max_length=spec.max_length) for p, t in zip(prompts, targets)]
    set_seed(spec.seed)
    model = load_model(base_model, device=cs.device, dtype=cs.dtype)
    model.train()
    work = adapters_dir / ".work" / f"{name}-{key}"
    lora, args = training_config(spec, model, output_dir=work, device=cs.device, progress=False)
    model = get_peft_model(model, lora)
    steps_per_epoch = math.ceil(len(items) / (spec.batch_size * spec.grad_accum))
    n_tokens = sum(len(it.input_ids) for it in items)
    stats: dict[str, int] = {}
    extra = [_progress_callback(stats, int(n_tokens * spec.epochs), f"train {name}")] if progress else []
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=_EncodedDataset(items),
        data_collator=lambda batch: collate(batch, tokenizer.pad_token_id),
        callbacks=list(callbacks) + extra + [_deadline_callback()],
        token_stats=stats,
        lengths=[len(it.input_ids) for it in items] if group_by_length else None,
    )
    for cb in (PrinterCallback, ProgressCallback):  # our bar replaces them (no per-step log lines)
        trainer.remove_callback(cb)
    good = good_checkpoints(work) if work.is_dir() else []
    resume = bool(good)
    if resume:
        print(f"[layerwise] {name}: resuming from {good[-1].name}", flush=True)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(good[-1]) if resume else None)
    seconds = time.perf_counter() - t0
    if trainer.state.global_step < trainer.state.max_steps:  # stopped by the deadline, checkpoint saved
        raise TimeBudgetSpent(f"time budget spent in training {name}: stopped at optimizer step "
                              f"{trainer.state.global_step} of {trainer.state.max_steps}, checkpoint saved")
    log = [
        {k: rec[k] for k in ("step", "epoch", "loss", "learning_rate", "grad_norm") if k in rec}
        for rec in trainer.state.log_history
        if "loss" in rec
    ]
    with atomic_path(final, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        atomic_write_json(tmp / "training_log.json", log)
        atomic_write_json(
            tmp / "layerwise_adapter.json",
            {
                "name": name,
                "key": key,
                "base_model": base_model,
                "n_examples": len(items),
                "n_tokens_per_epoch": n_tokens,
                "optimizer_steps": trainer.state.global_step,
                "steps_per_epoch": steps_per_epoch,
                "recipe": spec.recipe(),
                "group_by_length": group_by_length,
                "seconds": seconds,
                "resumed": resume,
                "device": cs.device,
                "dtype": cs.dtype,
                "padding_fraction": 1.0 - stats["tokens"] / stats["slots"] if stats.get("slots") else math.nan,
            },
        )
    shutil.rmtree(work, ignore_errors=True)
    del trainer, model
    return AdapterResult(name, final, key, log, False, seconds)


def load_adapter_model(base_model: str, adapter: Path | None, *, device: str = "auto", dtype: str = "auto"):
    """Load the base model, with a LoRA adapter merged in if one is given.

    Args:
        base_model: model string.
        adapter: adapter directory from :func:`train_adapter`, or ``None`` for the pre-trained model.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        dtype: ``auto``, ``float32`` or ``bfloat16`` (see :func:`layerwise.models.compute_settings`).

    Returns:
        transformers.PreTrainedModel in eval mode; the adapter is merged into the weights (as the
        paper's extraction did), so the model runs at base-model speed.
    """
    from .models import load_model

    model = load_model(base_model, device=device, dtype=dtype)
    if adapter is None:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().eval()


class AdapterBank:
    """One base model in memory with several LoRA adapters loaded once and switched.

    Replaces one :func:`load_adapter_model` call per adapter (a full reload of the base weights
    each time) by ``peft``'s ``load_adapter`` / ``set_adapter``::

        bank = AdapterBank("gemma-3-270m", {"sft": path_sft, "control-x": path_x})
        with bank.use(None) as model:          # the pre-trained model (adapters disabled)
            ...
        with bank.use("control-x") as model:   # base + that adapter
            ...

    In float32 the active adapter is merged into the base weights on entry and the base weights
    are restored exactly (copied back) on exit, so every model computes bit-for-bit what
    :func:`load_adapter_model` gives. In bf16/fp16 the adapter runs unmerged, in float32 next to
    the base layer, as in training: merging a small LoRA update into bf16 weights would round most
    of it away.

    Args:
        base_model: model string.
        adapters: adapter name -> directory from :func:`train_adapter` (may be empty).
        device, dtype: see :func:`layerwise.models.compute_settings`.
        merge: merge the active adapter (default: only in float32).

    Raises:
        ValueError: an adapter name is empty or ``None``-like, or bad device/dtype.
    """

    def __init__(self, base_model: str, adapters: dict[str, Path], *, device: str = "auto", dtype: str = "auto",
                 merge: bool | None = None):
        from .models import compute_settings, load_model

        bad = [n for n in adapters if not isinstance(n, str) or not n]
        if bad:
            raise ValueError(f"adapter names must be non-empty strings, got {bad}")
        self.settings = compute_settings(device, dtype)
        self.merge = self.settings.dtype == "float32" if merge is None else merge
        self.names = list(adapters)
        base = load_model(base_model, device=self.settings.device, dtype=self.settings.dtype)
        self._originals: dict[str, Any] = {}
        if not adapters:
            self.model = base
            return
        from peft import PeftModel

        first, *rest = self.names
        peft_model = PeftModel.from_pretrained(base, str(adapters[first]), adapter_name=first)
        for n in rest:
            peft_model.load_adapter(str(adapters[n]), adapter_name=n)
        peft_model.eval()
        self.model = peft_model
        if self.merge:
            from peft.tuners.lora import LoraLayer

            self._originals = {
                name: mod.get_base_layer().weight.detach().clone()
                for name, mod in peft_model.named_modules() if isinstance(mod, LoraLayer)
            }

    def _restore(self) -> None:
        import torch

        mods = dict(self.model.named_modules())
        with torch.no_grad():
            for name, weight in self._originals.items():
                mods[name].get_base_layer().weight.copy_(weight)

    @contextmanager
    def use(self, name: str | None):
        """Activate adapter ``name`` (``None``: the pre-trained model) for the ``with`` block.

        Yields:
            transformers.PreTrainedModel: the causal LM (eval mode) computing base + that adapter;
            pass it to :func:`layerwise.extraction.prompt_hidden_states` or
            :func:`response_losses`.

        Raises:
            KeyError: ``name`` is not one of the bank's adapters (the message lists them).
        """
        if name is not None and name not in self.names:
            raise KeyError(f"no adapter {name!r} in this bank; it holds {self.names}")
        if not self.names:
            yield self.model
            return
        if name is None:
            with self.model.disable_adapter():
                yield self.model.get_base_model()
            return
        self.model.set_adapter(name)
        if self.merge:
            self.model.merge_adapter()
        try:
            yield self.model.get_base_model()
        finally:
            if self.merge:
                self.model.unmerge_adapter()
                self._restore()


def response_losses(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    targets: Sequence[str],
    *,
    batch_size: int = 8,
    max_length: int | None = None,
) -> tuple[list[float], list[float]]:
    """Mean negative log-likelihood (nats per token) of each target given its prompt, with and
    without the EOS token that ends it, from one forward pass per batch.

    The response is encoded as in training (:func:`layerwise.batching.encode`: target tokens then
    EOS). The loss with EOS is the training loss. The loss without it measures the answer alone: a
    pre-trained model never ends an answer with EOS, so with EOS any fine-tuned model "beats" PT as
    soon as it has learned to stop. Without EOS = (sum of the response tokens' NLL - the EOS
    token's NLL) / (tokens - 1); a response that is EOS alone, or was cut by ``max_length`` before
    its EOS, keeps all its tokens. The same numbers as two passes (one on the sequences without
    EOS), up to float round-off: in a causal LM no earlier position sees the EOS token.

    Args:
        model: causal LM in eval mode.
        tokenizer: its tokenizer (``pad_token_id`` set).
        prompts, targets: ``n`` paired texts.
        batch_size: examples per forward pass.
        max_length: as in :func:`layerwise.batching.encode`.

    Returns:
        (with EOS, without EOS): two lists of ``n`` floats, in input order.

    Raises:
        ValueError: ``prompts`` and ``targets`` differ in length.
    """
    import torch

    from .batching import batches

    if len(prompts) != len(targets):
        raise ValueError(f"prompts and targets differ in length: {len(prompts)} != {len(targets)}")
    items = [encode(tokenizer, p, t, max_length=max_length) for p, t in zip(prompts, targets)]
    eos = tokenizer.eos_token_id
    with_eos, without = [math.nan] * len(items), [math.nan] * len(items)
    device = next(model.parameters()).device
    with torch.no_grad():
        for idx in batches(len(items), batch_size, [len(it.input_ids) for it in items]):
            batch = collate([items[i] for i in idx], tokenizer.pad_token_id)
            labels = batch.pop("labels").to(device)
            batch = {k: v.to(device) for k, v in batch.items()}
            nll, mask, _ = _response_token_nll(model, batch, labels)
            sums, counts = nll.sum(dim=1), mask.sum(dim=1)
            for row, i in enumerate(idx):
                it, total, n = items[i], float(sums[row]), int(counts[row])
                with_eos[i] = total / max(n, 1)
                ends_in_eos = eos is not None and len(it.input_ids) - it.n_prompt > 1 and it.input_ids[-1] == eos
                without[i] = (total - float(nll[row, -1])) / (n - 1) if ends_in_eos else with_eos[i]
    return with_eos, without


def adapter_summary(result: AdapterResult) -> dict[str, Any]:
    """Flat record of an adapter for tables: name, key, steps, final loss, seconds, throughput,
    compute dtype, padding fraction (padded share of the token slots the training batches ran), reused.

    ``tokens_per_second`` is the training throughput: unpadded tokens (prompt + response) per
    epoch times epochs, over the wall seconds of ``Trainer.train`` (NaN for adapters saved by an
    older version without the token count). A resumed training counts only its last session's
    seconds, so its throughput is overstated.
    """
    meta = read_json(result.path / "layerwise_adapter.json")
    tokens = meta.get("n_tokens_per_epoch", math.nan) * meta.get("recipe", {}).get("epochs", math.nan)
    return {
        "adapter": result.name,
        "key": result.key,
        "n_examples": meta["n_examples"],
        "optimizer_steps": meta["optimizer_steps"],
        "first_loss": result.log[0]["loss"] if result.log else math.nan,
        "last_loss": result.log[-1]["loss"] if result.log else math.nan,
        "train_seconds": meta["seconds"],
        "tokens_per_second": tokens / meta["seconds"] if meta["seconds"] > 0 else math.nan,
        "dtype": meta.get("dtype", "float32"),
        "padding_fraction": meta.get("padding_fraction", math.nan),
        "reused": result.reused,
    }

