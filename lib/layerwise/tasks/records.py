"""Pool rows: the pool columns, reading source files, and the checks every builder's rows pass.

A pool (what a builder returns) is a :class:`datasets.Dataset` with the columns of
:data:`POOL_FEATURES`:

* ``id`` (string): unique within the task, stable across runs (the dataset's own id where it has
  one, else ``"<prefix>-<file position>"``);
* ``input`` (string): the main text; the only field a prompt may shorten;
* ``question`` (string): a short second field (question, claim, hypothesis, second sentence,
  dialogue history), ``""`` if the task has none;
* ``options`` (list of string): the answer choices of a classification task, ``[]`` otherwise;
* ``target`` (string): the answer; for classification exactly one of ``options``.

:func:`finish` drops examples whose (input, question) repeats an earlier one (first kept), so a
split by ``id`` can never put the same input in both train and test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets

__all__ = ["POOL_FEATURES", "finish", "source_file", "read_json", "bigbench_examples", "first_target",
           "strip_period", "argmax_label", "record", "match_input", "collapse_spaces"]

POOL_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "input": datasets.Value("string"),
        "question": datasets.Value("string"),
        "options": datasets.Sequence(datasets.Value("string")),
        "target": datasets.Value("string"),
    }
)


def source_file(root: Path, rel: str) -> Path:
    """``root / rel``, which must be a file.

    Raises:
        FileNotFoundError: no such file (names ``rel`` and ``root``).
    """
    p = Path(root) / rel
    if not p.is_file():
        raise FileNotFoundError(f"expected source file {rel} under {root}, but {p} does not exist")
    return p


def read_json(root: Path, rel: str) -> Any:
    """The parsed JSON file ``root / rel``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid JSON (names the file).
    """
    p = source_file(root, rel)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from e


def bigbench_examples(root: Path, rel: str) -> list[dict]:
    """The ``examples`` list of a BIG-bench ``task.json`` (Srivastava et al. 2023, TMLR).

    Raises:
        ValueError: the file has no ``examples`` list.
    """
    data = read_json(root, rel)
    ex = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(ex, list):
        raise ValueError(f"{Path(root) / rel}: no 'examples' list (BIG-bench task.json format expected)")
    return ex


def collapse_spaces(text: str) -> str:
    """Collapse runs of spaces/tabs, trim, keep line breaks (empty lines dropped)."""
    lines = [" ".join(line.split()) for line in str(text).strip().splitlines()]
    return "\n".join(line for line in lines if line)


def first_target(target: Any, where: str) -> str:
    """A target string, or the first of a target list.

    Raises:
        ValueError: an empty list or a non-string target (names ``where``).
    """
    if isinstance(target, list):
        if not target:
            raise ValueError(f"{where}: empty target list")
        target = target[0]
    if not isinstance(target, str):
        raise ValueError(f"{where}: target is not a string: {target!r}")
    return target


def strip_period(text: str) -> str:
    """Natural Instructions targets end in a period that is not part of the answer."""
    text = text.strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def argmax_label(scores: dict, where: str) -> str:
    """The single best option of a BIG-bench ``target_scores`` dict.

    Raises:
        ValueError: fewer than two options, or a tie for the best score (names ``where``).
    """
    if not isinstance(scores, dict) or len(scores) < 2:
        raise ValueError(f"{where}: target_scores needs at least two options, got {scores!r}")
    best = max(scores.values())
    winners = [k for k, v in scores.items() if v == best]
    if len(winners) != 1:
        raise ValueError(f"{where}: target_scores has no single best option: {scores!r}")
    return winners[0]


def record(rel: str, i: int) -> str:
    """How error messages name example ``i`` of file ``rel``."""
    return f"{rel} example {i}"


def match_input(pattern: re.Pattern, text: str, where: str) -> re.Match:
    """``pattern.match(text)``.

    Raises:
        ValueError: no match (names ``where``, the pattern and the start of the text).
    """
    m = pattern.match(text)
    if m is None:
        raise ValueError(f"{where}: input does not match the expected form {pattern.pattern!r}: {text[:120]!r}")
    return m


def finish(rows: Iterable[dict], kind: str, where: str) -> datasets.Dataset:
    """Check the rows, drop repeated (input, question) pairs and rows without input or target, and
    make the pool (:data:`POOL_FEATURES`; text fields through :func:`collapse_spaces`).

    Raises:
        ValueError: a repeated id, or (``kind == "classification"``) a target that is not among
            the row's options (names ``where`` and the id).
    """
    out: dict[str, list] = {k: [] for k in POOL_FEATURES}
    seen_ids: set[str] = set()
    seen_inputs: set[tuple[str, str]] = set()
    for r in rows:
        r = {"question": "", "options": [], **r}
        r["input"], r["question"], r["target"] = collapse_spaces(r["input"]), collapse_spaces(r["question"]), collapse_spaces(r["target"])
        if r["id"] in seen_ids:
            raise ValueError(f"{where}: duplicate id {r['id']!r}")
        seen_ids.add(r["id"])
        if not r["input"] or not r["target"]:
            continue  # nothing to ask or nothing to learn
        if kind == "classification" and r["target"] not in r["options"]:
            raise ValueError(f"{where}: id {r['id']}: target {r['target']!r} is not among options {r['options']}")
        key = (r["input"], r["question"])
        if key in seen_inputs:
            continue
        seen_inputs.add(key)
        for k in out:
            out[k].append(r[k])
    return datasets.Dataset.from_dict(out, features=POOL_FEATURES)
