"""Task-level evaluation: does each control beat the pre-trained model on its task, and how close is SFT?

Three ways to score a model on a task's test split (columns ``id``, ``task``, ``prompt``, ``target``,
``options``, as built by :func:`layerwise.tasks.load_task`):

* **classification** - *option scoring* (rank classification): every option is scored as a response
  to the prompt and the most likely one is the prediction; the metric is **accuracy**
  (:func:`score_options`).
* **short-answer / extractive QA** (``squad_v1``, ``drop``, ``coqa``, ``multirc``, ...) - greedy
  generation (:func:`generate`), then SQuAD's **exact match** and **token F1** (:func:`exact_match`,
  :func:`token_f1`; Rajpurkar et al. 2016, "SQuAD: 100,000+ Questions for Machine Comprehension of
  Text", EMNLP, and its v1.1 evaluation script).
* **other generation** (summaries, data-to-text, simplification, translation, free-form answers) -
  greedy generation, then **ROUGE-L F-measure** (:func:`rouge_l`; Lin 2004, "ROUGE: A Package for
  Automatic Evaluation of Summaries", ACL workshop), computed with Google's ``rouge-score`` package.

:func:`evaluate_task` picks the metric (:func:`metric_for_task`), runs the model and returns the
primary value plus every per-example prediction. All metric values are fractions in ``[0, 1]``
(SQuAD's script prints them x 100).

Decisions
---------
Option scores are **total** log-likelihoods, not length-normalised. The score of an option is
``log P(option + EOS | prompt)`` under exactly the tokenisation used in training
(:func:`layerwise.batching.encode`), i.e. the probability that the model *answers with this option
and stops*; the argmax is the most probable complete response among the options, which is what the
SFT and control models are trained to produce (their target is the option string followed by EOS).
This is the rank classification of FLAN (Wei et al. 2022) and lm-evaluation-harness' ``acc``. The
EOS term keeps an option from winning because it is a prefix of a longer one. Per-token means
(``normalize="mean"``) are available for zero-shot analyses; they favour long options whose later
tokens are predictable and depend on the tokenizer.

Generation is greedy and **stops at EOS or at the first newline after the response has begun**
(leading white space, including newlines, is skipped; the text is cut at that newline and stripped).
No target of the offline suite contains a newline, the fine-tuned models end their answer with EOS,
and a pre-trained model that would otherwise ramble on to ``max_new_tokens`` is cut at the end of its
first line - the usual stop rule for zero-shot generation. ``max_new_tokens`` bounds the rest: long
targets (summaries, verses) need more than the default 32 tokens.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Any, Sequence

from .batching import collate, encode
from .batching import batches as _batches

__all__ = [
    "METRICS",
    "QA_TASKS",
    "score_options",
    "option_log_likelihoods",
    "generate",
    "normalize_answer",
    "exact_match",
    "token_f1",
    "rouge_l",
    "accuracy",
    "metric_for_task",
    "evaluate_task",
]

#: metric name -> what it is. ``accuracy`` scores options; the others generate text.
METRICS: dict[str, str] = {
    "accuracy": "option scoring: share of examples whose most likely option is the target",
    "exact_match": "greedy generation, SQuAD v1.1 exact match after answer normalisation",
    "f1": "greedy generation, SQuAD v1.1 token F1 after answer normalisation",
    "rougeL": "greedy generation, ROUGE-L F-measure (Lin 2004; rouge-score package, no stemming)",
}

#: tasks scored with SQuAD exact match / token F1 (primary: F1): extractive and short-answer QA, by
#: our task ids and by Flan 2021 names. All other generation tasks get ROUGE-L.
QA_TASKS: frozenset[str] = frozenset(
    {
        # offline suite (layerwise.tasks.TASKS)
        "squad_v1", "drop", "coqa", "multirc", "qa_wikidata", "winogrande",
        # Flan 2021 names (hub route)
        "squad_v2", "quac", "record", "trivia_qa", "natural_questions",
    }
)

#: QA tasks whose answers are option letters ("A, C"): the SQuAD article rule would delete "A".
_LETTER_ANSWER_TASKS: frozenset[str] = frozenset({"multirc"})

_KINDS = ("classification", "generation")
_NORMALIZE = ("sum", "mean")


# ------------------------------------------------------------------------------------------ metrics


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str, *, remove_articles: bool = True) -> str:
    """SQuAD v1.1 answer normalisation.

    As described with the SQuAD v1.1 evaluation script (Rajpurkar et al. 2016): lower-case; delete
    ASCII punctuation (``string.punctuation``); replace the articles ``a``, ``an``, ``the`` (whole
    words) by a space; collapse white space to single spaces and strip.

    Args:
        text: an answer string.
        remove_articles: ``False`` keeps articles - for answers made of option letters, where
            ``"A"`` is an answer, not an article.

    Returns:
        str: the normalised answer (``"The  Broncos!"`` -> ``"broncos"``).
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    if remove_articles:
        text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _as_list(references: str | Sequence[str]) -> list[str]:
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise ValueError("no reference answer given (empty list)")
    return refs


def exact_match(prediction: str, references: str | Sequence[str], *, remove_articles: bool = True) -> float:
    """SQuAD exact match: 1.0 if the normalised prediction equals a normalised reference, else 0.0.

    Args:
        prediction: the model's answer.
        references: one gold answer or several (the best match counts, as in SQuAD).
        remove_articles: see :func:`normalize_answer`.

    Raises:
        ValueError: ``references`` is an empty list.
    """
    pred = normalize_answer(prediction, remove_articles=remove_articles)
    return float(any(pred == normalize_answer(r, remove_articles=remove_articles) for r in _as_list(references)))


def _f1_tokens(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        # SQuAD v2.0 convention (v1.1 returns 0 here even when both are empty): empty matches empty.
        return float(pred == gold)
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: str | Sequence[str], *, remove_articles: bool = True) -> float:
    """SQuAD token F1: harmonic mean of precision and recall of the bag of normalised tokens.

    Tokens are the white-space-separated words of :func:`normalize_answer`; shared tokens are counted
    with multiplicity. With several references the best F1 counts. When the prediction or reference
    normalises to nothing, F1 is 1.0 if both do and 0.0 otherwise (SQuAD v2.0's rule; the v1.1
    script gives 0.0 for two empty answers, which contradicts its own exact match).

    Returns:
        float in ``[0, 1]``.

    Raises:
        ValueError: ``references`` is an empty list.
    """
    pred = normalize_answer(prediction, remove_articles=remove_articles).split()
    return max(_f1_tokens(pred, normalize_answer(r, remove_articles=remove_articles).split()) for r in _as_list(references))


_ROUGE: dict[str, Any] = {}


def _rouge_scorer():
    """A ``rouge_score`` ROUGE-L scorer with a Unicode-aware version of its default tokenizer.

    rouge-score's default tokenizer lower-cases and keeps only ``[a-z0-9]`` runs, which destroys
    non-English words (``"él"`` -> ``"l"``; the suite has a Spanish translation task). Ours keeps
    Unicode letters and digits and is otherwise the same: on ASCII text the tokens are identical.
    No stemming (the Porter stemmer is English-only; HF ``evaluate``'s default is also no stemming).
    """
    if "scorer" not in _ROUGE:
        from rouge_score import rouge_scorer, tokenizers

        class UnicodeTokenizer(tokenizers.Tokenizer):
            _split = re.compile(r"[\W_]+", re.UNICODE)

            def tokenize(self, text):
                return [t for t in self._split.split(text.lower()) if t]

        _ROUGE["scorer"] = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=UnicodeTokenizer())
    return _ROUGE["scorer"]


def rouge_l(prediction: str, references: str | Sequence[str]) -> float:
    """ROUGE-L F-measure (Lin 2004): F1 of the longest common subsequence of tokens.

    ``P = LCS / len(prediction)``, ``R = LCS / len(reference)``, ``F = 2PR / (P + R)`` (rouge-score's
    ``rougeL``, sentence-level, no stemming; see :func:`_rouge_scorer` for the tokenizer). With several
    references the best F counts. Empty prediction or reference: 0.0.

    Returns:
        float in ``[0, 1]``.

    Raises:
        ValueError: ``references`` is an empty list.
    """
    scorer = _rouge_scorer()
    return max(float(scorer.score(r, prediction)["rougeL"].fmeasure) for r in _as_list(references))


def accuracy(predictions: Sequence[Any], targets: Sequence[Any]) -> float:
    """Share of positions where ``predictions[i] == targets[i]``.

    Raises:
        ValueError: lengths differ or the sequences are empty.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"predictions and targets differ in length: {len(predictions)} != {len(targets)}")
    if not targets:
        raise ValueError("accuracy of an empty set is undefined")
    return sum(p == t for p, t in zip(predictions, targets)) / len(targets)


# ------------------------------------------------------------------------------------ model scoring


def _device(model: Any):
    return next(model.parameters()).device


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)


def option_log_likelihoods(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    options_per_prompt: Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
    normalize: str = "sum",
    max_length: int | None = None,
    progress: bool = False,
) -> list[list[float]]:
    """Log-likelihood of every option as the response to its prompt.

    All (prompt, option) pairs are tokenised with :func:`layerwise.batching.encode` (option after the
    prompt, then EOS), grouped by length into left-padded batches of ``batch_size`` pairs with
    position ids from the attention mask (:func:`layerwise.batching.collate`), and scored with one
    forward pass per batch that computes logits only for the last positions, where the options sit.
    Padding does not change a score (up to float round-off).

    Args:
        model: causal LM in eval mode (any device).
        tokenizer: its tokenizer (``pad_token_id`` and ``eos_token_id`` set).
        prompts: ``n`` prompts.
        options_per_prompt: ``n`` non-empty lists of option strings.
        batch_size: (prompt, option) pairs per forward pass.
        normalize: ``"sum"`` - total log-likelihood of the option tokens and EOS (nats); ``"mean"`` -
            per-token mean of the same.
        max_length: as in :func:`layerwise.batching.encode` (``None``: no cap; a cap that cuts an
            option makes options incomparable).
        progress: show a progress bar over batches.

    Returns:
        list of ``n`` lists of floats (``<= 0``), ``out[i][j]`` for option ``j`` of prompt ``i``.

    Raises:
        ValueError: lengths differ, an option list is empty, ``normalize`` or ``batch_size`` is invalid.
    """
    import torch

    from .training import _response_nll

    if len(prompts) != len(options_per_prompt):
        raise ValueError(f"prompts and options_per_prompt differ in length: {len(prompts)} != {len(options_per_prompt)}")
    if normalize not in _NORMALIZE:
        raise ValueError(f"unknown normalize={normalize!r}; valid: {', '.join(_NORMALIZE)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i, opts in enumerate(options_per_prompt):
        if isinstance(opts, str) or len(opts) == 0:
            raise ValueError(
                f"prompt {i} has no options ({opts!r}); option scoring needs a non-empty list of option strings "
                "(generation tasks have options == [] - evaluate them with a generation metric)"
            )
    pairs = [(i, j) for i, opts in enumerate(options_per_prompt) for j in range(len(opts))]
    items = [encode(tokenizer, prompts[i], str(options_per_prompt[i][j]), max_length=max_length) for i, j in pairs]
    out: list[list[float]] = [[math.nan] * len(opts) for opts in options_per_prompt]
    device = _device(model)
    with torch.no_grad():
        groups = _batches(len(items), batch_size, [len(it.input_ids) for it in items])
        for idx in _progress(groups, progress, "option scoring"):
            batch = collate([items[k] for k in idx], tokenizer.pad_token_id)
            labels = batch.pop("labels").to(device)
            batch = {key: v.to(device) for key, v in batch.items()}
            sums, counts, _ = _response_nll(model, batch, labels)
            for row, k in enumerate(idx):
                i, j = pairs[k]
                total = -float(sums[row])
                out[i][j] = total if normalize == "sum" else total / max(int(counts[row]), 1)
    return out


def score_options(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    options_per_prompt: Sequence[Sequence[str]],
    **scoring: Any,
) -> list[int]:
    """Rank classification: index of the most likely option for each prompt.

    The score of an option is its total log-likelihood (with EOS) as the response to the prompt; see
    the module notes for why it is not length-normalised, and :func:`option_log_likelihoods` for the
    batching and the arguments. Ties go to the first option.

    Args:
        model, tokenizer, prompts, options_per_prompt: as in :func:`option_log_likelihoods`.
        **scoring: its keyword options, passed on unchanged (``batch_size``, ``normalize``,
            ``max_length``, ``progress``; same defaults).

    Returns:
        list[int]: one index into ``options_per_prompt[i]`` per prompt, in input order.

    Raises:
        ValueError: as :func:`option_log_likelihoods` (e.g. an empty option list).
        TypeError: a keyword that :func:`option_log_likelihoods` does not take.
    """
    scores = option_log_likelihoods(model, tokenizer, prompts, options_per_prompt, **scoring)
    return [_argmax(s) for s in scores]


def _argmax(scores: Sequence[float]) -> int:
    """Index of the largest score; ties go to the first."""
    return max(range(len(scores)), key=lambda j: (scores[j], -j))


def _cut_response(text: str) -> str:
    """The response as scored: leading white space skipped, cut at the first newline, stripped."""
    return text.lstrip().split("\n", 1)[0].strip()


def _newline_stop(tokenizer: Any, prompt_width: int):
    """Stopping criterion: a row is finished once its response (leading white space skipped) has a newline."""
    import torch
    from transformers import StoppingCriteria

    class NewlineStop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            new = input_ids[:, prompt_width:].tolist()
            done = ["\n" in tokenizer.decode(row, skip_special_tokens=True).lstrip() for row in new]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return NewlineStop()


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    for value in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if value is None:
            continue
        ids.update([value] if isinstance(value, int) else value)
    return sorted(ids)


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    stop_at_newline: bool = True,
    progress: bool = False,
) -> list[str]:
    """Greedy responses to prompts, decoded and stripped.

    Prompts are tokenised as in training and extraction (:func:`layerwise.batching.encode`, with the
    model's special tokens), grouped by length, left-padded, and passed to ``model.generate`` with
    their attention mask and position ids (0 at each row's first real token), so a prompt gets the
    same continuation alone or in a batch. Decoding is greedy (``do_sample=False``, one beam,
    whatever the checkpoint's generation config says). A row stops at EOS (the tokenizer's and the
    generation config's) and, with ``stop_at_newline``, at the first newline after the response has
    begun; the decoded text (special tokens dropped) is cut there and stripped.

    Args:
        model: causal LM in eval mode.
        tokenizer: its tokenizer.
        prompts: prompt texts.
        max_new_tokens: cap on generated tokens per prompt (``>= 1``).
        batch_size: prompts per ``generate`` call.
        stop_at_newline: stop and cut at the first newline (see the module notes); ``False``: only
            EOS and ``max_new_tokens`` stop a row, and the whole stripped text is returned.
        progress: show a progress bar over batches.

    Returns:
        list[str]: one response per prompt, in input order (may be ``""``).

    Raises:
        ValueError: ``max_new_tokens`` or ``batch_size`` below 1.
    """
    import torch
    from transformers import StoppingCriteriaList

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    items = [encode(tokenizer, p) for p in prompts]
    out = [""] * len(items)
    device = _device(model)
    eos = _eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
    with torch.no_grad():
        groups = _batches(len(items), batch_size, [len(it.input_ids) for it in items])
        for idx in _progress(groups, progress, "generation"):
            batch = {k: v.to(device) for k, v in collate([items[i] for i in idx], pad, with_labels=False).items()}
            width = batch["input_ids"].shape[1]
            stopping = StoppingCriteriaList([_newline_stop(tokenizer, width)] if stop_at_newline else [])
            generated = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=eos or None,
                pad_token_id=pad,
                stopping_criteria=stopping,
            )
            for row, i in enumerate(idx):
                text = tokenizer.decode(generated[row, width:].tolist(), skip_special_tokens=True)
                out[i] = _cut_response(text) if stop_at_newline else text.strip()
    return out


# ------------------------------------------------------------------------------------- task level


def metric_for_task(task_name: str, kind: str, metric: str | None = None) -> str:
    """The primary metric of a task.

    Defaults: ``classification`` -> ``accuracy`` (option scoring); a generation task in
    :data:`QA_TASKS` (extractive / short-answer QA: ``squad_v1``, ``drop``, ``coqa``, ``multirc``,
    ...) -> ``f1`` (exact match is reported beside it); any other generation task -> ``rougeL``.

    Args:
        task_name: task id (unknown names are fine: they get the default of their kind).
        kind: ``"classification"`` or ``"generation"``.
        metric: an explicit choice (a key of :data:`METRICS`) that overrides the default.

    Returns:
        str: a key of :data:`METRICS`.

    Raises:
        ValueError: unknown ``kind``; unknown ``metric`` (the message lists the valid ones);
            ``accuracy`` asked for a generation task (no options to score).
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown task kind {kind!r} for task {task_name!r}; valid kinds: {', '.join(_KINDS)}")
    if metric is not None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
        if metric == "accuracy" and kind != "classification":
            raise ValueError(
                f"metric 'accuracy' scores options, but task {task_name!r} is a {kind} task without options; "
                f"use one of: {', '.join(m for m in METRICS if m != 'accuracy')}"
            )
        return metric
    if kind == "classification":
        return "accuracy"
    return "f1" if task_name in QA_TASKS else "rougeL"


_REQUIRED = ("id", "prompt", "target", "options")


def _column(dataset: Any, name: str) -> list[Any]:
    return list(dataset[name])


def evaluate_task(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    *,
    kind: str,
    metric: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 32,
    task: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate a model on one task's examples with the task's metric.

    Args:
        model: causal LM in eval mode (PT, merged SFT or control from
            :func:`layerwise.training.load_adapter_model`).
        tokenizer: its tokenizer.
        dataset: a ``datasets.Dataset`` (or a mapping of equal-length columns) with ``id``,
            ``prompt``, ``target``, ``options`` (list[str], ``[]`` for generation) and optionally
            ``task``.
        kind: ``"classification"`` or ``"generation"`` (:attr:`layerwise.tasks.TaskInfo.kind`).
        metric: override of :func:`metric_for_task`'s default (a key of :data:`METRICS`).
        batch_size: sequences per forward pass / ``generate`` call.
        max_new_tokens: cap on generated tokens (generation metrics only).
        task: task id for the default metric; defaults to the dataset's ``task`` column.
        progress: progress bars over batches.

    Returns:
        dict with
        ``task`` (str or None), ``kind``, ``metric`` (primary metric name), ``value`` (its mean over
        examples, float in ``[0, 1]``), ``metrics`` (every computed metric's mean: ``accuracy``; or
        ``exact_match`` and ``f1``; or ``rougeL``), ``n`` (examples), ``method``
        (``"option scoring"`` or ``"greedy generation"``) and ``predictions``: one dict per example
        in dataset order with ``id``, ``prediction`` (str), ``target`` and the per-example metric
        values (for option scoring also ``option_scores``: total log-likelihood per option).
        For answers made of option letters (``multirc``) EM/F1 keep articles (``"A"`` is an answer);
        ``normalization`` records which rule was used.

    Raises:
        ValueError: empty dataset, missing columns, unknown kind or metric, an example without options
            or whose target is not one of its options under ``accuracy``.
    """
    columns = list(dataset.column_names) if hasattr(dataset, "column_names") else list(dataset.keys())
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        raise ValueError(f"dataset lacks column(s) {missing}; it has {columns} (needs {list(_REQUIRED)})")
    ids = _column(dataset, "id")
    if not ids:
        raise ValueError("dataset has no examples")
    if task is None and "task" in columns:
        names = sorted(set(_column(dataset, "task")))
        task = names[0] if len(names) == 1 else None
    name = metric_for_task(task or "", kind, metric)
    prompts, targets = _column(dataset, "prompt"), _column(dataset, "target")
    result: dict[str, Any] = {"task": task, "kind": kind, "metric": name, "n": len(ids)}

    if name == "accuracy":
        options = [list(o) for o in _column(dataset, "options")]
        for i, (opts, target) in enumerate(zip(options, targets)):
            if opts and target not in opts:
                raise ValueError(f"example {ids[i]!r}: target {target!r} is not one of its options {opts}")
        scores = option_log_likelihoods(model, tokenizer, prompts, options, batch_size=batch_size, progress=progress)
        preds = [opts[_argmax(s)] for opts, s in zip(options, scores)]
        per = [
            {"id": i, "prediction": p, "target": t, "accuracy": float(p == t), "option_scores": s}
            for i, p, t, s in zip(ids, preds, targets, scores)
        ]
        result["metrics"] = {"accuracy": accuracy(preds, targets)}
        result["method"] = "option scoring"
    else:
        preds = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
        if name == "rougeL":
            per = [{"id": i, "prediction": p, "target": t, "rougeL": rouge_l(p, t)} for i, p, t in zip(ids, preds, targets)]
        else:
            keep = task in _LETTER_ANSWER_TASKS
            result["normalization"] = "squad-v1.1, articles kept" if keep else "squad-v1.1"
            per = [
                {
                    "id": i, "prediction": p, "target": t,
                    "exact_match": exact_match(p, t, remove_articles=not keep),
                    "f1": token_f1(p, t, remove_articles=not keep),
                }
                for i, p, t in zip(ids, preds, targets)
            ]
        keys = ["rougeL"] if name == "rougeL" else ["exact_match", "f1"]
        result["metrics"] = {k: sum(r[k] for r in per) / len(per) for k in keys}
        result["method"] = "greedy generation"
    result["value"] = result["metrics"][name]
    result["predictions"] = per
    return result
