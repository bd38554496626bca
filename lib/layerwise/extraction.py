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
from typing import Any, Sequence

import numpy as np

from .batching import batches, collate, encode
from .cache import atomic_path

__all__ = ["last_token_hidden_states", "save_states", "load_states", "body_of"]


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


def last_token_hidden_states(
    model: Any, tokenizer: Any, prompts: Sequence[str], *, batch_size: int = 8, progress: bool = False, desc: str = ""
) -> np.ndarray:
    """Hidden state of the last prompt token at every layer.

    Args:
        model: causal LM (eval mode; adapters merged).
        tokenizer: its tokenizer.
        prompts: instruction-formatted prompts, ``n_examples`` of them.
        batch_size: prompts per forward pass.
        progress: show a tqdm bar.
        desc: label of the bar.

    Returns:
        np.ndarray: float32, shape ``(n_layers + 1, n_examples, hidden_size)``, rows in input order.

    Raises:
        ValueError: no prompts, or a state is not finite (the message names the example and layer).
    """
    import torch
    from tqdm.auto import tqdm

    if len(prompts) == 0:
        raise ValueError("no prompts to extract hidden states from")
    body = body_of(model)
    items = [encode(tokenizer, p) for p in prompts]
    device = next(model.parameters()).device
    out: np.ndarray | None = None
    groups = batches(len(items), batch_size, [len(it.input_ids) for it in items])
    with torch.no_grad():
        for idx in tqdm(groups, desc=desc or "hidden states", disable=not progress, leave=False):
            batch = collate([items[i] for i in idx], tokenizer.pad_token_id, with_labels=False)
            batch = {k: v.to(device) for k, v in batch.items()}
            hs = body(**batch, output_hidden_states=True, use_cache=False).hidden_states
            last = torch.stack([h[:, -1, :] for h in hs]).float().cpu().numpy()  # (L+1, B, d)
            if out is None:
                out = np.empty((last.shape[0], len(items), last.shape[2]), dtype=np.float32)
            out[:, idx, :] = last
    assert out is not None
    bad = ~np.isfinite(out)
    if bad.any():
        layer, row, _ = np.argwhere(bad)[0]
        raise ValueError(f"non-finite hidden state at layer {layer} for prompt {row}: {prompts[row][:80]!r}")
    return out


def save_states(path: Path, states: np.ndarray, ids: Sequence[str], meta: dict[str, Any]) -> Path:
    """Write hidden states atomically as safetensors.

    Args:
        path: target ``.safetensors`` file.
        states: float32 ``(n_layers + 1, n_examples, hidden_size)``.
        ids: example ids, one per row.
        meta: JSON-serialisable description (model, adapter, task, ...).
    """
    from safetensors.numpy import save_file

    if states.shape[1] != len(ids):
        raise ValueError(f"{len(ids)} ids for {states.shape[1]} rows of hidden states")
    with atomic_path(path) as tmp:
        save_file(
            {"hidden_states": np.ascontiguousarray(states, dtype=np.float32)},
            str(tmp),
            metadata={"ids": json.dumps(list(ids)), "meta": json.dumps(meta)},
        )
    return path


def load_states(path: Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Read hidden states written by :func:`save_states`.

    Returns:
        (states float32 ``(n_layers + 1, n_examples, hidden_size)``, ids, meta)
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        md = f.metadata()
        states = f.get_tensor("hidden_states")
    return states, json.loads(md["ids"]), json.loads(md["meta"])
