"""Instruction templates: coverage, format rules, truncation, deterministic choice."""

import pytest

from layerwise.tasks import TASKS
from layerwise.templates import (
    ELLIPSIS,
    TEMPLATES,
    check_templates,
    choose_template,
    n_templates,
    options_block,
    render_prompt,
    truncate_input,
)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_has_valid_templates(task):
    assert n_templates(task) >= 3
    check_templates(task, TASKS[task].kind == "classification")


def test_check_templates_rejects_bad_template(monkeypatch):
    monkeypatch.setitem(TEMPLATES, "bad", ("{input}\nAnswer:", "{input}\nAnswer:", "Say: {input}"))
    with pytest.raises(ValueError, match="answer cue"):
        check_templates("bad", classification=False)
    monkeypatch.setitem(TEMPLATES, "bad", ("{input}\nAnswer:",) * 3)
    with pytest.raises(ValueError, match="without \\{options\\}"):
        check_templates("bad", classification=True)
    monkeypatch.setitem(TEMPLATES, "bad", ("{input}\nAnswer:",) * 2)
    with pytest.raises(ValueError, match="at least 3"):
        check_templates("bad", classification=False)


def test_options_block_format():
    assert options_block(["negative", "positive"]) == "OPTIONS:\n- negative\n- positive"
    with pytest.raises(ValueError):
        options_block(["only"])


def test_truncate_input_keeps_start_and_marks_cut():
    assert truncate_input("short text", 100) == "short text"
    long = "word " * 100
    out = truncate_input(long, 52)
    assert out.endswith(ELLIPSIS)
    assert long.startswith(out[: -len(ELLIPSIS)])
    assert len(out) <= 52 + len(ELLIPSIS)
    with pytest.raises(ValueError, match="max_input_chars"):
        truncate_input("x", 0)


def test_render_truncates_only_the_input():
    question = "Is the claim in this long question kept whole, even when the input is cut?"
    prompt = render_prompt("vitaminc_nli", 1, "evidence " * 500, question, ["yes", "no", "it is not possible to tell"], max_input_chars=40)
    assert ELLIPSIS in prompt
    assert question in prompt
    assert "OPTIONS:\n- yes\n- no\n- it is not possible to tell" in prompt
    assert prompt.endswith("Answer:")
    assert len(prompt) < 400


@pytest.mark.parametrize("task", sorted(TASKS))
def test_render_ends_with_cue_for_every_template(task):
    opts = ["alpha", "beta"] if TASKS[task].kind == "classification" else []
    for i in range(n_templates(task)):
        p = render_prompt(task, i, "some input text " * 200, "a question?", opts, max_input_chars=100)
        assert p.endswith(":") and not p.endswith(" :")
        assert p == p.rstrip()
        assert ELLIPSIS in p


def test_render_errors():
    with pytest.raises(IndexError, match="0..2"):
        render_prompt("squad_v1", 3, "x", "q")
    with pytest.raises(ValueError, match="needs options"):
        render_prompt("rt_sentence_polarity", 0, "x")
    with pytest.raises(ValueError, match="takes no options"):
        render_prompt("squad_v1", 0, "x", "q", ["a", "b"])
    with pytest.raises(KeyError, match="tasks with templates"):
        render_prompt("no_such_task", 0, "x")


def test_choose_template_deterministic_and_spread():
    ids = [f"ex-{i}" for i in range(300)]
    a = [choose_template("squad_v1", i, seed=0) for i in ids]
    assert a == [choose_template("squad_v1", i, seed=0) for i in ids]
    assert set(a) == set(range(n_templates("squad_v1")))
    assert a != [choose_template("squad_v1", i, seed=1) for i in ids]
    assert {choose_template("squad_v1", i, seed=0, mode="first") for i in ids} == {0}
    with pytest.raises(ValueError, match="'all', 'first'"):
        choose_template("squad_v1", "x", 0, mode="random")
