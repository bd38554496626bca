"""Task-level evaluation: SQuAD EM/F1 and ROUGE-L on hand examples, option scoring and greedy
generation on tiny random models (padding must not change results), a scripted model whose answers
are known, and bad input."""

import math

import pytest

from layerwise import evaluation as ev
from layerwise.evaluation import (
    accuracy,
    evaluate_task,
    exact_match,
    generate,
    metric_for_task,
    normalize_answer,
    option_log_likelihoods,
    rouge_l,
    score_options,
    token_f1,
)

# ------------------------------------------------------------------------------ pure metric tests


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The  Denver Broncos!", "denver broncos"),
        ("an apple a day", "apple day"),
        ("Theatre, the end.", "theatre end"),  # articles only as whole words
        ("  It's 3.5%\t\n", "its 35"),
        ("", ""),
    ],
)
def test_squad_normalisation(text, expected):
    assert normalize_answer(text) == expected


def test_letter_answers_keep_articles_when_asked():
    assert normalize_answer("A, C") == "c"  # SQuAD's rule would drop the letter A ...
    assert normalize_answer("A, C", remove_articles=False) == "a c"  # ... so multirc keeps it
    assert exact_match("a, c", "A, C", remove_articles=False) == 1.0
    assert exact_match("C", "A, C", remove_articles=False) == 0.0
    assert token_f1("C", "A, C", remove_articles=False) == pytest.approx(2 / 3)


def test_exact_match():
    assert exact_match("the Denver Broncos.", "Denver Broncos") == 1.0
    assert exact_match("Denver", "Denver Broncos") == 0.0
    assert exact_match("Broncos", ["Denver Broncos", "the broncos"]) == 1.0  # best reference counts


def test_token_f1():
    assert token_f1("Denver Broncos team", "the Denver Broncos") == pytest.approx(0.8)  # P 2/3, R 1
    assert token_f1("x x y", "x y") == pytest.approx(0.8)  # counts with multiplicity: 2 shared of 3
    assert token_f1("x y", "x y y z") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("cat", "dog") == 0.0
    assert token_f1("cat", ["dog", "a cat"]) == 1.0
    assert token_f1("", "the") == 1.0 and token_f1("", "dog") == 0.0 and token_f1("dog", "") == 0.0


def test_rouge_l_known_values():
    # rouge-score README example: LCS = 5 tokens, P = 5/8, R = 5/9
    assert rouge_l("The quick brown dog jumps on the log.", "The quick brown fox jumps over the lazy dog") == (
        pytest.approx(2 * (5 / 8) * (5 / 9) / (5 / 8 + 5 / 9))
    )
    assert rouge_l("the cat on the mat", "The cat sat on the mat.") == pytest.approx(10 / 11)  # P 1, R 5/6
    assert rouge_l("a b c", "c b a") == pytest.approx(1 / 3)  # subsequence, not bag of words
    assert rouge_l("", "anything") == 0.0
    assert rouge_l("same", ["other", "same"]) == 1.0


def test_rouge_tokenizer_is_default_on_ascii_and_keeps_unicode():
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pairs = [("The cat's hat, it_is 42!", "the cat hat is 42"), ("Hello-world: foo bar", "foo, bar; hello")]
    for pred, ref in pairs:
        assert rouge_l(pred, ref) == pytest.approx(default.score(ref, pred)["rougeL"].fmeasure)
    assert rouge_l("Él comió pan", "él comió pan") == 1.0
    # the default keeps only [a-z0-9]: "está" and "esté" both become "est"
    assert default.score("esté", "está")["rougeL"].fmeasure == 1.0 and rouge_l("está", "esté") == 0.0


def test_accuracy_and_empty_references():
    assert accuracy(["a", "b", "c", "d"], ["a", "x", "c", "y"]) == 0.5
    with pytest.raises(ValueError, match="differ in length"):
        accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    for fn in (exact_match, token_f1, rouge_l):
        with pytest.raises(ValueError, match="no reference"):
            fn("x", [])


def test_metric_for_task_defaults_and_errors():
    assert metric_for_task("rt_sentence_polarity", "classification") == "accuracy"
    for qa in ("squad_v1", "drop", "coqa", "multirc"):
        assert metric_for_task(qa, "generation") == "f1"
    assert metric_for_task("xsum", "generation") == "rougeL"
    assert metric_for_task("my_new_task", "generation") == "rougeL"
    assert metric_for_task("xsum", "generation", "exact_match") == "exact_match"
    with pytest.raises(ValueError, match=r"unknown metric 'bleu'; valid metrics: accuracy, exact_match, f1, rougeL"):
        metric_for_task("xsum", "generation", "bleu")
    with pytest.raises(ValueError, match="unknown task kind 'regression'.*classification, generation"):
        metric_for_task("xsum", "regression")
    with pytest.raises(ValueError, match="'accuracy' scores options"):
        metric_for_task("xsum", "generation", "accuracy")


def test_cut_response():
    assert ev._cut_response(" Paris\nQuestion: next") == "Paris"
    assert ev._cut_response("\n\n  Paris  \nmore") == "Paris"
    assert ev._cut_response("  \n ") == ""


# ------------------------------------------------------------------------------- model fixtures


@pytest.fixture(scope="module")
def llama():
    from layerwise.models import load_model, load_tokenizer

    return load_model("tiny-random-llama", device="cpu"), load_tokenizer("tiny-random-llama")


class Scripted:
    """Make the tiny model a Markov chain: the next token is ``table[last token]`` (else EOS).

    A pre-hook on the model records ``input_ids``; a hook on ``lm_head`` replaces its logits (for the
    kept last positions) by +30 on the scripted successor and 0 elsewhere, so every answer is known.
    The scoring takes the route that calls the whole model (the head-only route, which runs the body
    and the output layer apart, is bit-identical to it: tests/integration/test_adapter_bank_dtype.py).
    """

    def __init__(self, model, tokenizer, table: dict[str, str]):
        import torch

        self.model, self.tok = model, tokenizer
        ids = {ch: self.tid(ch) for pair in table.items() for ch in pair}
        self.next = torch.full((len(tokenizer),), tokenizer.eos_token_id, dtype=torch.long)
        for a, b in table.items():
            self.next[ids[a]] = ids[b]
        self.handles = []

    def tid(self, ch: str) -> int:
        ids = self.tok(ch, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, ch
        return ids[0]

    def __enter__(self):
        import torch

        from layerwise import training

        self._archs, training._HEAD_ONLY_ARCHS = training._HEAD_ONLY_ARCHS, ()
        state = {}

        def pre(module, args, kwargs):
            state["ids"] = kwargs["input_ids"] if "input_ids" in kwargs else args[0]

        def post(module, args, output):
            k = output.shape[1]
            succ = self.next[state["ids"][:, -k:]]
            logits = torch.zeros_like(output)
            logits.scatter_(-1, succ.unsqueeze(-1), 30.0)
            return logits

        self.handles = [
            self.model.register_forward_pre_hook(pre, with_kwargs=True),
            self.model.lm_head.register_forward_hook(post),
        ]
        return self.model

    def __exit__(self, *exc):
        from layerwise import training

        training._HEAD_ONLY_ARCHS = self._archs
        for h in self.handles:
            h.remove()


# Prompts ending in ":" are answered "\nok\nok\n..." (leading newline, then lines); "?" -> " 42" EOS.
TABLE = {":": "\n", "\n": "o", "o": "k", "k": "\n", "?": " ", " ": "4", "4": "2"}

PROMPTS = [
    "Q: What is six times seven?",
    "Passage: a rather longer passage than the others, so that left padding is needed.\nAnswer:",
    "Hi:",
    "Is the sky blue? Yes or no?",
]


# ------------------------------------------------------------------------------ option scoring


@pytest.mark.integration
def test_option_scores_do_not_depend_on_batching(llama):
    model, tok = llama
    options = [["yes", "no"], ["positive", "negative", "it is not possible to tell"], ["a"], ["no", "yes", "maybe so"]]
    batched = option_log_likelihoods(model, tok, PROMPTS, options, batch_size=8)
    single = [option_log_likelihoods(model, tok, [p], [o], batch_size=1)[0] for p, o in zip(PROMPTS, options)]
    for b, s, o in zip(batched, single, options):
        assert len(b) == len(o) and all(x < 0 for x in b)
        assert b == pytest.approx(s, abs=1e-4)
    # total log-likelihood is the training loss (response_losses' first list, mean NLL incl. EOS) x tokens
    from layerwise.batching import encode
    from layerwise.training import response_losses

    nll = response_losses(model, tok, [PROMPTS[1]], ["negative"])[0][0]
    n_tokens = len(encode(tok, PROMPTS[1], "negative").labels) - encode(tok, PROMPTS[1]).n_prompt
    assert batched[1][1] == pytest.approx(-nll * n_tokens, rel=1e-4)
    means = option_log_likelihoods(model, tok, PROMPTS[1:2], options[1:2], normalize="mean")[0]
    assert means[1] == pytest.approx(-nll, rel=1e-4)
    assert score_options(model, tok, PROMPTS, options, batch_size=3) == [max(range(len(s)), key=s.__getitem__) for s in single]


@pytest.mark.integration
def test_option_scoring_picks_the_option_the_model_makes_likely(llama):
    model, tok = llama
    table = {":": " ", " ": "y", "y": "e", "e": "s"}  # after ":" the model says " yes" then EOS
    with Scripted(model, tok, table):
        picks = score_options(model, tok, ["Answer:", "Is it?\nAnswer:"], [["no", "yes", "yes!"], ["yes", "no"]])
        scores = option_log_likelihoods(model, tok, ["Answer:"], [["no", "yes", "yes!"]])[0]
    assert picks == [1, 0]  # "yes!" shares the prefix but not the EOS: it loses to "yes"
    assert scores[1] == pytest.approx(0.0, abs=1e-6) and scores[0] < -20 and scores[2] < -20


def test_option_scoring_rejects_bad_input(llama):
    model, tok = llama
    with pytest.raises(ValueError, match="prompt 1 has no options"):
        score_options(model, tok, ["a:", "b:"], [["x"], []])
    with pytest.raises(ValueError, match="differ in length"):
        score_options(model, tok, ["a:", "b:"], [["x"]])
    with pytest.raises(ValueError, match="unknown normalize='max'; valid: sum, mean"):
        score_options(model, tok, ["a:"], [["x"]], normalize="max")
    with pytest.raises(ValueError, match="has no options"):
        score_options(model, tok, ["a:"], ["xy"])  # a string is not a list of options


# ------------------------------------------------------------------------------------ generation


@pytest.mark.integration
@pytest.mark.parametrize("name", ["tiny-random-llama", "tiny-random-gemma3"])
def test_greedy_generation_does_not_depend_on_padding(name, llama):
    from layerwise.models import load_model, load_tokenizer

    model, tok = llama if name == "tiny-random-llama" else (load_model(name, device="cpu"), load_tokenizer(name))
    prompts = PROMPTS + ["x" * 60 + " a prompt longer than Gemma's 32-token sliding window:"]
    batched = generate(model, tok, prompts, max_new_tokens=12, batch_size=8, stop_at_newline=False)
    single = [generate(model, tok, [p], max_new_tokens=12, stop_at_newline=False)[0] for p in prompts]
    assert batched == single
    assert any(batched)


@pytest.mark.integration
def test_generation_stops_at_newline_and_eos(llama):
    import torch
    from transformers import StoppingCriteriaList

    model, tok = llama
    prompts = ["Q: What is six times seven?", "Hi:", "A longer prompt, ending with a colon:"]
    with Scripted(model, tok, TABLE):
        lines = generate(model, tok, prompts, max_new_tokens=20, batch_size=3)
        whole = generate(model, tok, prompts, max_new_tokens=8, batch_size=3, stop_at_newline=False)
        ids = tok(prompts[1])["input_ids"]
        raw = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=20, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                             stopping_criteria=StoppingCriteriaList([ev._newline_stop(tok, len(ids))]))
    assert lines == ["42", "ok", "ok"]  # EOS after "42"; leading newline skipped, cut at the next one
    assert whole == ["42", "ok\nok\no", "ok\nok\no"]  # 8 tokens "\nok\nok\no", stripped
    assert raw.shape[1] - len(ids) == 4  # the row stopped right after "\nok\n" instead of running 20 tokens


def test_generation_rejects_bad_arguments(llama):
    model, tok = llama
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        generate(model, tok, ["a"], max_new_tokens=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        generate(model, tok, ["a"], max_new_tokens=3, batch_size=0)


# --------------------------------------------------------------------------------- evaluate_task


def _rows(task, prompts, targets, options=None):
    n = len(prompts)
    return {
        "id": [f"{task}-{i}" for i in range(n)],
        "task": [task] * n,
        "cluster": ["x"] * n,
        "prompt": list(prompts),
        "target": list(targets),
        "options": options if options is not None else [[] for _ in range(n)],
        "template_id": [0] * n,
    }


@pytest.mark.integration
def test_evaluate_task_with_known_answers(llama):
    import datasets

    model, tok = llama
    cls = datasets.Dataset.from_dict(
        _rows("strategyqa", ["Q1? Answer:", "Q2? Answer:", "Q3? Answer:"], ["yes", "no", "yes"],
              [["no", "yes"], ["yes", "no"], ["yes", "no"]])
    )
    with Scripted(model, tok, {":": " ", " ": "y", "y": "e", "e": "s"}):
        res = evaluate_task(model, tok, cls, kind="classification")
    assert res["task"] == "strategyqa" and res["metric"] == "accuracy" and res["method"] == "option scoring"
    assert res["value"] == pytest.approx(2 / 3) and res["n"] == 3
    assert [p["prediction"] for p in res["predictions"]] == ["yes", "yes", "yes"]
    assert [p["accuracy"] for p in res["predictions"]] == [1.0, 0.0, 1.0]
    assert len(res["predictions"][0]["option_scores"]) == 2

    qa = _rows("squad_v1", ["What? Passage:", "Who?", "Where:"], ["OK.", "the 42", "ok computer"])
    with Scripted(model, tok, TABLE):
        res = evaluate_task(model, tok, qa, kind="generation", batch_size=2)
        rouge = evaluate_task(model, tok, _rows("xsum", ["Summary:"], ["ok then"]), kind="generation")
        em = evaluate_task(model, tok, qa, kind="generation", metric="exact_match")
    assert [p["prediction"] for p in res["predictions"]] == ["ok", "42", "ok"]
    assert res["metric"] == "f1" and res["normalization"] == "squad-v1.1"
    assert [p["exact_match"] for p in res["predictions"]] == [1.0, 1.0, 0.0]
    assert res["metrics"]["f1"] == pytest.approx((1 + 1 + 2 / 3) / 3) and res["value"] == res["metrics"]["f1"]
    assert em["metric"] == "exact_match" and em["value"] == pytest.approx(2 / 3)
    assert rouge["metric"] == "rougeL" and rouge["value"] == pytest.approx(2 / 3)  # P 1, R 1/2


@pytest.mark.integration
def test_multirc_letters_are_not_articles(llama):
    model, tok = llama
    data = _rows("multirc", ["Which are true? Answer:"], ["A, B"])
    with Scripted(model, tok, {":": " ", " ": "B"}):
        res = evaluate_task(model, tok, data, kind="generation")
    assert res["normalization"] == "squad-v1.1, articles kept"
    assert res["predictions"][0]["prediction"] == "B" and res["value"] == pytest.approx(2 / 3)


def test_evaluate_task_rejects_bad_input(llama):
    model, tok = llama
    good = _rows("strategyqa", ["Q?"], ["yes"], [["yes", "no"]])
    with pytest.raises(ValueError, match="unknown metric 'bleu'; valid metrics: accuracy"):
        evaluate_task(model, tok, good, kind="classification", metric="bleu")
    with pytest.raises(ValueError, match="target 'maybe' is not one of its options"):
        evaluate_task(model, tok, _rows("strategyqa", ["Q?"], ["maybe"], [["yes", "no"]]), kind="classification")
    with pytest.raises(ValueError, match="prompt 0 has no options"):
        evaluate_task(model, tok, _rows("strategyqa", ["Q?"], ["yes"]), kind="classification")
    with pytest.raises(ValueError, match="'accuracy' scores options"):
        evaluate_task(model, tok, _rows("xsum", ["Q?"], ["yes"]), kind="generation", metric="accuracy")
    with pytest.raises(ValueError, match="lacks column.*'options'"):
        evaluate_task(model, tok, {k: v for k, v in good.items() if k != "options"}, kind="classification")
    with pytest.raises(ValueError, match="no examples"):
        evaluate_task(model, tok, _rows("strategyqa", [], []), kind="classification")
    with pytest.raises(ValueError, match="unknown task kind"):
        evaluate_task(model, tok, good, kind="ranking")
    assert not math.isnan(evaluate_task(model, tok, good, kind="classification")["value"])
