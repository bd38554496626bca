"""Last-prompt-token hidden states at every layer: the extraction contract.

For each prompt, the model body runs once on the prompt alone (no response), and the hidden state of
the **last prompt token** is kept at every entry of ``hidden_states`` (Hugging Face convention,
``output_hidden_states=True``):

* index ``0`` - the embedding output (identical for PT, SFT and controls, since LoRA only touches
  attention projections; kept but left out of CKA, as in the paper);
* index ``1 .. L-1`` - the residual stream after transformer block ``i``;
* index ``L`` - the output of the last block **after the final norm** (the paper's layer 32 of
  Llama 2 7B is this entry too).

Prompts are left-padded with position ids from the attention mask, so a row's states equal those of
the prompt run alone (tested). States are float32 ``(L+1, n_examples, hidden_size)``, stored per
(model, task) in a safetensors file with the example ids in its metadata, and reused when present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from .batching import batches, collate, encode, token_progress
from .cache import FORMAT_KEY, CorruptArtefact, atomic_path, discard_corrupt, safetensors_format

__all__ = ["POOLINGS", "STATES_FORMAT", "prompt_hidden_states", "last_token_hidden_states", "save_states", "has_states",
           "check_states", "load_states",
           "body_of", "dtype_cka_shift"]


def body_of(model: Any) -> Any:
    """The transformer body of a causal LM (no LM head), e.g. ``model.model`` for Llama/Gemma.

    Running the body skips the output layer, which for Gemma's 262k vocabulary costs about as much
    as the body itself.

    Raises:
        ValueError: the model exposes no body under its ``base_model_prefix``.
    """
    prefix = getattr(model, "base_model_prefix", "model")
    body = getattr(model, prefix, None)
    if body is None:
        raise ValueError(f"{type(model).__name__} has no body module {prefix!r}; cannot extract hidden states")
    return body


#: Poolings of the prompt's token states: the paper's last prompt token, and the mean over the
#: prompt's tokens (BOS excluded: its state is an attention sink with a huge norm in many models).
POOLINGS = ("last", "mean")


def prompt_hidden_states(
    model: Any, tokenizer: Any, prompts: Sequence[str], *, batch_size: int = 8, progress: bool = False, desc: str = ""
) -> dict[str, np.ndarray]:
    """Hidden states of each prompt at every layer, pooled two ways, from one forward pass.

    Args:
        model: causal LM in eval mode, any dtype (adapters merged, or active in an
            :class:`layerwise.training.AdapterBank`); states are pooled and returned in float32.
        tokenizer: its tokenizer.
        prompts: instruction-formatted prompts, ``n_examples`` of them.
        batch_size: prompts per forward pass.
        progress: show a progress bar in tokens (tokens/s, ETA; plain lines in a non-terminal log,
            see :func:`layerwise.batching.token_progress`).
        desc: label of the bar.

    Returns:
        dict: ``"last"`` - the last prompt token's state (the paper's representation) and
        ``"mean"`` - the mean over the prompt's tokens except BOS; each float32 of shape
        ``(n_layers + 1, n_examples, hidden_size)``, rows in input order.

    Raises:
        ValueError: no prompts, or a state is not finite (the message names the example and layer).
    """
    import torch

    if len(prompts) == 0:
        raise ValueError("no prompts to extract hidden states from")
    body = body_of(model)
    items = [encode(tokenizer, p) for p in prompts]
    device = next(model.parameters()).device
    out: dict[str, np.ndarray] = {}
    lengths = [len(it.input_ids) for it in items]
    groups = batches(len(items), batch_size, lengths)
    bos = tokenizer.bos_token_id
    bar = token_progress(sum(lengths), desc or "hidden states", disable=not progress)
    with torch.inference_mode():
        for idx in groups:
            batch = collate([items[i] for i in idx], tokenizer.pad_token_id, with_labels=False)
            batch = {k: v.to(device) for k, v in batch.items()}
            hs = body(**batch, output_hidden_states=True, use_cache=False).hidden_states
            hs = [h.float() for h in hs]  # pooled in float32 whatever the compute dtype (no-op in float32)
            weights = batch["attention_mask"].clone()
            if bos is not None:
                weights[batch["input_ids"] == bos] = 0
            weights = (weights / weights.sum(dim=1, keepdim=True).clamp(min=1)).to(hs[0].dtype)
            pooled = {
                "last": torch.stack([h[:, -1, :] for h in hs]),  # (L+1, B, d)
                "mean": torch.stack([torch.einsum("btd,bt->bd", h, weights) for h in hs]),
            }
            for name, t in pooled.items():
                arr = t.cpu().numpy()
                if name not in out:
                    out[name] = np.empty((arr.shape[0], len(items), arr.shape[2]), dtype=np.float32)
                out[name][:, idx, :] = arr
            bar.update(sum(lengths[i] for i in idx))
    bar.close()
    for name, arr in out.items():
        bad = ~np.isfinite(arr)
        if bad.any():
            layer, row, _ = np.argwhere(bad)[0]
            raise ValueError(f"non-finite {name}-pooled hidden state at layer {layer} for prompt {row}: {prompts[row][:80]!r}")
    return out


def last_token_hidden_states(
    model: Any, tokenizer: Any, prompts: Sequence[str], *, batch_size: int = 8, progress: bool = False, desc: str = ""
) -> NDArray[np.float64]:
    """Hidden state of the last prompt token at every layer (see :func:`prompt_hidden_states`).

    Returns:
        np.ndarray: float32, shape ``(n_layers + 1, n_examples, hidden_size)``, rows in input order.
    """
    return prompt_hidden_states(model, tokenizer, prompts, batch_size=batch_size, progress=progress, desc=desc)["last"]


#: Format tag of a hidden-states file (safetensors metadata ``layerwise_format``).
STATES_FORMAT = "layerwise-hidden-states/1"


def save_states(path: Path, states: np.ndarray | dict[str, np.ndarray], ids: Sequence[str], meta: dict[str, Any]) -> Path:
    """Write hidden states atomically as safetensors, tagged :data:`STATES_FORMAT`.

    Args:
        path: target ``.safetensors`` file.
        states: float32 ``(n_layers + 1, n_examples, hidden_size)``, or a dict pooling name ->
            such an array (see :func:`prompt_hidden_states`); a bare array is stored as ``"last"``.
        ids: example ids, one per row.
        meta: JSON-serialisable description (model, adapter, task, ...).

    Raises:
        ValueError: the number of ids differs from the number of rows.
    """
    from safetensors.numpy import save_file

    tensors = states if isinstance(states, dict) else {"last": states}
    for name, arr in tensors.items():
        if arr.shape[1] != len(ids):
            raise ValueError(f"{len(ids)} ids for {arr.shape[1]} rows of {name} hidden states")
    with atomic_path(path) as tmp:
        save_file(
            {name: np.ascontiguousarray(arr, dtype=np.float32) for name, arr in tensors.items()},
            str(tmp),
            metadata={"ids": json.dumps(list(ids)), "meta": json.dumps(meta), FORMAT_KEY: STATES_FORMAT},
        )
    return path


def check_states(path: Path, poolings: Sequence[str] = POOLINGS, ids: Sequence[str] | None = None) -> dict[str, str]:
    """Check a states file of :func:`save_states` without reading its tensors.

    Checks the safetensors header and the file's length (:func:`layerwise.cache.safetensors_format`),
    the format tag :data:`STATES_FORMAT`, that every pooling in ``poolings`` is stored with one row
    per example id, and - if ``ids`` is given - that the stored ids equal ``ids``.

    Returns:
        dict: the file's string metadata.

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptArtefact: any check fails (the reason names it).
    """
    meta = safetensors_format(path, STATES_FORMAT)
    from safetensors import safe_open

    try:
        stored_ids = json.loads(meta["ids"])
        json.loads(meta["meta"])
        with safe_open(str(path), framework="numpy") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    except Exception as exc:  # a damaged header or metadata
        raise CorruptArtefact(path, f"unreadable states metadata: {type(exc).__name__}: {exc}") from None
    missing = [p for p in poolings if p not in shapes]
    if missing:
        raise CorruptArtefact(path, f"no {missing} pooled states; it holds {sorted(shapes)}")
    for p in poolings:
        if len(shapes[p]) != 3 or shapes[p][1] != len(stored_ids):
            raise CorruptArtefact(path, f"{p} states of shape {shapes[p]} for {len(stored_ids)} example ids")
    if ids is not None and stored_ids != list(ids):
        raise CorruptArtefact(path, "states of other examples than the test split")
    return meta


def has_states(path: Path, poolings: Sequence[str] = POOLINGS, ids: Sequence[str] | None = None) -> bool:
    """Whether ``path`` is a whole states file of :func:`save_states` holding every pooling in ``poolings``
    (and the examples ``ids``, if given).

    A missing file gives False. A file that fails :func:`check_states` (truncated, another format or
    example ids) is reported on stderr with its path and removed (:func:`layerwise.cache.discard_corrupt`),
    and gives False, so the caller recomputes it.
    """
    if not Path(path).is_file():
        return False
    try:
        check_states(path, poolings, ids)
    except CorruptArtefact as err:
        discard_corrupt(err)
        return False
    return True


def load_states(path: Path, pooling: str = "last", ids: Sequence[str] | None = None
                ) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Read hidden states written by :func:`save_states`, verified (:func:`check_states`, finite values).

    Args:
        path: the ``.safetensors`` file.
        pooling: ``"last"`` or ``"mean"`` (see :data:`POOLINGS`).
        ids: the example ids the file must hold, in order (not checked if None).

    Returns:
        (states float32 ``(n_layers + 1, n_examples, hidden_size)``, ids, meta)

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptArtefact: the file fails :func:`check_states` for ``pooling``, or holds a non-finite value
            (:func:`prompt_hidden_states` never stores one).
    """
    from safetensors import safe_open

    md = check_states(path, (pooling,), ids)
    try:
        with safe_open(str(path), framework="numpy") as f:
            states = f.get_tensor(pooling)
    except Exception as exc:
        raise CorruptArtefact(path, f"unreadable {pooling} states: {type(exc).__name__}: {exc}") from None
    if not np.isfinite(states).all():
        raise CorruptArtefact(path, f"non-finite values in the {pooling} states")
    return states, json.loads(md["ids"]), json.loads(md["meta"])


def dtype_cka_shift(
    reference: Mapping[str, NDArray[np.float32]],
    other: Mapping[str, NDArray[np.float32]],
    *,
    skip_embedding: bool = True,
) -> dict[str, Any]:
    """How far linear CKA moves when the hidden states are computed in another dtype (e.g. bf16).

    For every pair of models ``(a, b)`` and every layer, the shift is
    ``|CKA(other[a], other[b]) - CKA(reference[a], reference[b])|`` with linear CKA (Kornblith et
    al. 2019, eq. 4; the paper's measure, §3); for every model, ``CKA(reference[m], other[m])``
    says how close the low-precision states are to the float32 ones.

    Args:
        reference: model name -> float32-computed states ``(n_layers + 1, n_examples, hidden_size)``.
        other: the same models' states computed in the other dtype (stored as float32), same shapes.
        skip_embedding: leave out layer 0 (the embedding output; not in the paper's curves).

    Returns:
        dict: ``"pairs"`` - list of ``(a, b)``; ``"shift"`` - float64 ``(n_pairs, n_layers_used)``;
        ``"max_shift"`` - float, the largest shift; ``"self_cka"`` - model -> float64
        ``(n_layers_used,)``; ``"min_self_cka"`` - float.

    Raises:
        ValueError: the two mappings name different models, a shape differs, or fewer than two
            models are given.
    """
    from itertools import combinations

    from .similarity import linear_cka

    if set(reference) != set(other):
        raise ValueError(f"reference models {sorted(reference)} differ from other models {sorted(other)}")
    if len(reference) < 2:
        raise ValueError(f"need at least two models to compare, got {sorted(reference)}")
    for m in reference:
        if np.shape(reference[m]) != np.shape(other[m]):
            raise ValueError(f"states of {m!r}: shape {np.shape(reference[m])} in reference, {np.shape(other[m])} in other")
    start = 1 if skip_embedding else 0
    names = list(reference)
    layers = range(start, np.shape(reference[names[0]])[0])
    pairs = list(combinations(names, 2))
    shift = np.array([[abs(linear_cka(other[a][i], other[b][i]) - linear_cka(reference[a][i], reference[b][i]))
                       for i in layers] for a, b in pairs], dtype=np.float64)
    self_cka = {m: np.array([linear_cka(reference[m][i], other[m][i]) for i in layers], dtype=np.float64) for m in names}
    return {"pairs": pairs, "shift": shift, "max_shift": float(shift.max()), "self_cka": self_cka,
            "min_self_cka": float(min(v.min() for v in self_cka.values()))}
