"""Tokenising prompt/response pairs and left-padded batches: the extraction contract.

Every forward pass in this project (training, response-loss evaluation, hidden-state extraction)
goes through :func:`encode` and :func:`collate`, so all models see token-for-token the same inputs:

* the prompt is tokenised with the model's own special tokens (e.g. Gemma's ``<bos>``);
* the response (target) is tokenised without special tokens and followed by EOS; a space is put in
  front of it when the prompt does not end in white space;
* batches are **left-padded**, so the last prompt token (or the last response token) sits at
  position ``-1`` of every row, and ``position_ids`` are computed from the attention mask, so a
  padded row gets the same positions - and the same hidden states - as the row alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["Encoded", "encode", "collate", "batches", "padding_fraction", "token_progress"]


@dataclass(frozen=True)
class Encoded:
    """One tokenised example.

    Attributes:
        input_ids: prompt tokens followed by response tokens (may be empty) - list of int.
        n_prompt: number of prompt tokens (``input_ids[:n_prompt]`` is the prompt).
    """

    input_ids: list[int]
    n_prompt: int

    @property
    def labels(self) -> list[int]:
        """``-100`` on prompt tokens (no loss), the token id on response tokens."""
        return [-100] * self.n_prompt + self.input_ids[self.n_prompt :]


def encode(tokenizer: Any, prompt: str, target: str | None = None, *, max_length: int | None = None) -> Encoded:
    """Tokenise a prompt and, optionally, its response.

    Args:
        tokenizer: a Hugging Face tokenizer.
        prompt: the instruction-formatted prompt (ends with the answer cue).
        target: the response; ``None`` for extraction (prompt only).
        max_length: cap on prompt + response tokens. The response is cut at its end to fit; the
            prompt is never cut.

    Returns:
        Encoded: token ids and the prompt length.

    Raises:
        ValueError: the prompt alone is longer than ``max_length`` - the message gives both numbers
            and the spec settings that bound them (``data.max_input_chars``, ``training.max_length``).
    """
    prompt_ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    if max_length is not None and len(prompt_ids) >= max_length:
        raise ValueError(
            f"prompt of {len(prompt_ids)} tokens does not fit max_length={max_length} "
            f"(with at least one response token); lower data.max_input_chars or raise "
            f"training.max_length. Prompt starts: {prompt[:80]!r}"
        )
    if target is None:
        return Encoded(prompt_ids, len(prompt_ids))
    text = target if (not prompt or prompt[-1].isspace()) else " " + target
    response = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        response.append(tokenizer.eos_token_id)
    if max_length is not None:
        response = response[: max_length - len(prompt_ids)]
    return Encoded(prompt_ids + response, len(prompt_ids))


def collate(items: Sequence[Encoded], pad_token_id: int, *, with_labels: bool = True) -> dict[str, Any]:
    """Left-pad a batch.

    Args:
        items: encoded examples.
        pad_token_id: id used for padding (its value never matters: padded positions are masked).
        with_labels: also return ``labels`` (``-100`` on prompt and padding).

    Returns:
        dict of ``torch.long`` tensors of shape ``(batch, max_len)``: ``input_ids``,
        ``attention_mask`` (1 = real token), ``position_ids`` (0 at each row's first real token;
        padding gets 0), and ``labels`` if asked for.
    """
    import torch

    width = max(len(it.input_ids) for it in items)
    ids = torch.full((len(items), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    for row, it in enumerate(items):
        n = len(it.input_ids)
        ids[row, width - n :] = torch.tensor(it.input_ids, dtype=torch.long)
        mask[row, width - n :] = 1
        labels[row, width - n :] = torch.tensor(it.labels, dtype=torch.long)
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
    out = {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids}
    if with_labels:
        out["labels"] = labels
    return out


def batches(n: int, batch_size: int, lengths: Sequence[int] | None = None) -> list[list[int]]:
    """Index batches over ``n`` items; with ``lengths``, items of similar length are grouped.

    Grouping by length cuts padding (and time) without changing any result, because outputs are
    scattered back to the original order by the caller.

    Returns:
        list of lists of indices covering ``range(n)`` exactly once.
    """
    order = sorted(range(n), key=lambda i: lengths[i]) if lengths is not None else list(range(n))
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def padding_fraction(groups: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of padded token slots when the index ``groups`` are left-padded to their longest item.

    Returns:
        float in ``[0, 1)``: ``1 - sum(lengths) / sum(len(group) * max length in group)``.
    """
    slots = sum(len(g) * max(lengths[i] for i in g) for g in groups if len(g))
    real = sum(lengths[i] for g in groups for i in g)
    return 1.0 - real / slots if slots else 0.0


class _LineWriter:
    """File wrapper for tqdm in a log that is not a terminal: one line per refresh, no carriage returns."""

    def __init__(self, stream: Any):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def token_progress(total: int, desc: str, *, disable: bool = False, initial: int = 0):
    """A tqdm bar counting tokens: shows tokens/s and the ETA.

    On a terminal it refreshes in place; when standard error is not a terminal (a ``make book``
    log) it writes one plain line at most every 30 s, and the final line, instead of a
    carriage-return flood.

    Args:
        total: tokens to process.
        desc: label.
        disable: no output at all.
        initial: tokens already done (a resumed training).

    Returns:
        tqdm.tqdm: call ``update(n_tokens)``, ``set_postfix``, ``close``.
    """
    import sys

    tty = sys.stderr.isatty()
    if tty:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit="tok", unit_scale=True, disable=disable, leave=not tty,
                dynamic_ncols=tty, mininterval=0.5 if tty else 30.0, maxinterval=60.0 if tty else 1e9,
                file=sys.stderr if tty else _LineWriter(sys.stderr), ascii=not tty)
