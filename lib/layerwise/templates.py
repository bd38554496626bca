"""FLAN-style instruction templates, written for this project (not copied from FLAN or promptsource).

The templates are catalogue data: each task's entry in ``layerwise/data/tasks.yaml`` lists them.
Each task has at least three templates. A template is a plain ``str.format`` string with up to three
placeholders:

* ``{input}``: the task's main text (passage, article, review, sentence, data record). It is the
  only part that :func:`render_prompt` may shorten (``max_input_chars``; the start is kept and the
  cut marked with `` …``).
* ``{question}``: a short second field (question, claim, hypothesis, second sentence, dialogue
  history); never shortened.
* ``{options}``: classification tasks only; rendered as ``OPTIONS:`` and one ``- option`` line per
  choice (:func:`options_block`).

Every template ends with an answer cue that ends in ``:`` (``Answer:``, ``Summary:``, ...), so the
last prompt token, whose hidden state the analysis uses, is always the cue and never task data. The
response (target) is not part of the prompt.

Which template an example gets is decided by :func:`choose_template` from the seed, the task and the
example id, so the choice does not depend on which other examples are sampled.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence

from layerwise import catalogue

__all__ = [
    "TEMPLATES",
    "TEMPLATE_MODES",
    "ELLIPSIS",
    "options_block",
    "truncate_input",
    "render_prompt",
    "choose_template",
    "n_templates",
    "check_templates",
    "truncate_middle",
    "render_given",
    "CHAT_TEMPLATES",
    "LLAMA2_DEFAULT_SYSTEM_PROMPT",
    "wrap_prompt",
    "check_chat_template",
]

#: marks where :func:`truncate_input` cut the input.
ELLIPSIS = " …"

#: accepted values of the ``templates`` argument.
TEMPLATE_MODES = ("all", "first")

#: task -> its templates (at least three), from the task catalogue (``layerwise/data/tasks.yaml``).
TEMPLATES: dict[str, tuple[str, ...]] = {name: tuple(e["templates"]) for name, e in catalogue.task_entries().items()}

_FIELDS = {"input", "question", "options"}


def _placeholders(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def n_templates(task: str) -> int:
    """Number of templates of ``task``.

    Raises:
        KeyError: no templates for ``task`` (the message lists the tasks that have some).
    """
    return len(_get(task))


def _get(task: str) -> tuple[str, ...]:
    try:
        return TEMPLATES[task]
    except KeyError:
        raise KeyError(f"no templates for task {task!r}; tasks with templates: {', '.join(sorted(TEMPLATES))}") from None


def options_block(options: Sequence[str]) -> str:
    """``OPTIONS:`` followed by one ``- option`` line per choice, in the given order.

    Raises:
        ValueError: fewer than two options.
    """
    if len(options) < 2:
        raise ValueError(f"a classification prompt needs at least two options, got {list(options)!r}")
    return "OPTIONS:\n" + "\n".join(f"- {o}" for o in options)


def truncate_input(text: str, max_chars: int) -> str:
    """Keep the start of ``text``: at most ``max_chars`` characters plus the mark :data:`ELLIPSIS`.

    Text no longer than ``max_chars`` is returned unchanged. Otherwise the cut is moved back to the
    last whitespace within the limit (if that keeps at least half of it), trailing space removed,
    and `` …`` appended.

    Raises:
        ValueError: ``max_chars`` < 1.
    """
    if max_chars < 1:
        raise ValueError(f"max_input_chars must be >= 1, got {max_chars}")
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= max_chars // 2:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def render_prompt(
    task: str,
    template_id: int,
    input: str,
    question: str = "",
    options: Sequence[str] = (),
    *,
    max_input_chars: int = 1500,
) -> str:
    """Render one prompt of ``task`` with template ``template_id``.

    Args:
        task: task name (a key of :data:`TEMPLATES`).
        template_id: index into ``TEMPLATES[task]``.
        input: the main text; the only part shortened (:func:`truncate_input`).
        question: the second field (``""`` if the task has none); never shortened.
        options: the answer choices (classification), empty for generation tasks.
        max_input_chars: limit for ``input``.

    Returns:
        str: the prompt, ending with the template's answer cue (no trailing space, no target).

    Raises:
        KeyError: unknown task.
        IndexError: ``template_id`` out of range (names the valid range).
        ValueError: options given to a template without ``{options}`` or vice versa.
    """
    templates = _get(task)
    if not 0 <= template_id < len(templates):
        raise IndexError(f"task {task!r} has templates 0..{len(templates) - 1}, not {template_id}")
    template = templates[template_id]
    wants_options = "options" in _placeholders(template)
    if wants_options != bool(options):
        raise ValueError(
            f"task {task!r} template {template_id}: "
            + ("needs options but none were given" if wants_options else f"takes no options, got {list(options)!r}")
        )
    return template.format(
        input=truncate_input(input.strip(), max_input_chars),
        question=question.strip(),
        options=options_block(options) if options else "",
    )


def choose_template(task: str, example_id: str, seed: int, mode: str = "all") -> int:
    """Template index for one example: a hash of (seed, task, example id) modulo the count.

    ``mode="first"`` always gives 0. The choice depends only on these values, so it is the same
    whatever else is sampled.

    Raises:
        ValueError: ``mode`` not in :data:`TEMPLATE_MODES`.
        KeyError: unknown task.
    """
    if mode not in TEMPLATE_MODES:
        raise ValueError(f"templates must be one of {TEMPLATE_MODES}, got {mode!r}")
    n = n_templates(task)
    if mode == "first":
        return 0
    digest = hashlib.sha256(f"template|{seed}|{task}|{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


_CUE = re.compile(r"\S[^\n{}]*:$")


def check_templates(task: str, classification: bool) -> None:
    """Validate the templates of ``task``; raise ``ValueError`` describing the first problem.

    Rules: at least 3 templates; only the placeholders ``{input}``, ``{question}``, ``{options}``;
    ``{input}`` present; ``{options}`` present exactly when ``classification``; the template ends
    with an answer cue (text after the last placeholder, ending in ``:``).
    """
    templates = _get(task)
    if len(templates) < 3:
        raise ValueError(f"task {task!r} has {len(templates)} templates; at least 3 are required")
    for i, t in enumerate(templates):
        fields = _placeholders(t)
        bad = set(fields) - _FIELDS
        if bad:
            raise ValueError(f"task {task!r} template {i}: unknown placeholders {sorted(bad)}")
        if "input" not in fields:
            raise ValueError(f"task {task!r} template {i}: no {{input}}")
        if ("options" in fields) != classification:
            raise ValueError(
                f"task {task!r} template {i}: "
                + ("classification template without {options}" if classification else "{options} in a generation template")
            )
        tail = t[t.rfind("}") + 1 :]
        if not _CUE.search(tail):
            raise ValueError(f"task {task!r} template {i} must end with an answer cue ending in ':', ends with {tail!r}")



# ------------------------------------------------------------------------------------------ prompts given by the source


def truncate_middle(text: str, max_chars: int) -> str:
    """Shorten a whole prompt written by someone else (Flan 2021 ``inputs``, an alpaca instruction)
    by cutting its **middle**: the first half of the budget and the last half are kept, joined by
    `` … ``. The end of such a prompt holds the instruction's end, the options and the answer cue,
    so it is never cut; the start (usually the instruction or the document's beginning) is kept too.

    Text no longer than ``max_chars`` is returned unchanged. Cuts move to whitespace when that keeps
    at least half of each part.

    Raises:
        ValueError: ``max_chars`` < 2.
    """
    if max_chars < 2:
        raise ValueError(f"max_input_chars must be >= 2 for a prompt given by the source, got {max_chars}")
    text = text.strip()
    if len(text) <= max_chars:
        return text
    head_n = max_chars // 2
    tail_n = max_chars - head_n
    head = text[:head_n]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space >= head_n // 2:
        head = head[:space]
    tail = text[len(text) - tail_n :]
    space = min((i for i in (tail.find(" "), tail.find("\n")) if i >= 0), default=-1)
    if 0 <= space <= tail_n // 2:
        tail = tail[space + 1 :]
    return head.rstrip() + ELLIPSIS + " " + tail.lstrip()


def render_given(instruction: str, input: str = "", *, max_input_chars: int = 1500) -> str:
    """The prompt of an example whose instruction comes with the data (alpaca files, Flan 2021).

    As in the paper's LLaMA-Factory alpaca format, the user turn is the instruction, a newline,
    then the input. With an input, only the input is shortened (:func:`truncate_input`, its start
    kept) and the instruction is kept whole; without one (Flan 2021 ``inputs`` and most processed
    Flan files put everything in one string) the single text is shortened in the middle
    (:func:`truncate_middle`), so its end (options, answer cue) always survives.
    """
    instruction, input = instruction.strip(), input.strip()
    if instruction and input:
        return f"{instruction}\n{truncate_input(input, max_input_chars)}"
    return truncate_middle(instruction or input, max(2, max_input_chars))


# ------------------------------------------------------------------------------------------ chat templates

#: the default system prompt of the Llama-2 chat models (Touvron et al. 2023; Meta's public
#: ``llama`` reference code), which the paper put in every prompt, base model included.
LLAMA2_DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while "
    "being safe. Your answers should not include any harmful, unethical, racist, sexist, toxic, "
    "dangerous, or illegal content. Please ensure that your responses are socially unbiased and "
    "positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of "
    "answering something not correct. If you don't know the answer to a question, please don't share "
    "false information."
)

#: named chat templates: ``{user}`` is replaced by the prompt. None adds a BOS token (``<s>``,
#: ``<bos>``): the tokenizer adds it. The response follows the wrapped prompt directly.
CHAT_TEMPLATES: dict[str, str] = {
    "none": "{user}",
    # the paper's (LLaMA-Factory ``llama2`` template with the default system prompt), without <s>
    "llama2": "[INST] <<SYS>>\n" + LLAMA2_DEFAULT_SYSTEM_PROMPT + "\n<</SYS>>\n\n{user} [/INST]",
    "gemma": "<start_of_turn>user\n{user}<end_of_turn>\n<start_of_turn>model\n",
    "chatml": "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n",
}


def check_chat_template(chat_template: str) -> None:
    """Raise ``ValueError`` listing the valid names if ``chat_template`` is not one of :data:`CHAT_TEMPLATES`."""
    if chat_template not in CHAT_TEMPLATES:
        raise ValueError(f"unknown chat template {chat_template!r}; valid chat templates: {', '.join(CHAT_TEMPLATES)}")


def wrap_prompt(prompt: str, chat_template: str = "none") -> str:
    """Wrap ``prompt`` as the user turn of chat template ``chat_template`` (a key of
    :data:`CHAT_TEMPLATES`); ``"none"`` returns it unchanged. The result ends where the model's
    answer starts (``[/INST]``, ``<start_of_turn>model\\n``, ...).

    Raises:
        ValueError: unknown template (the message lists the valid names).
    """
    check_chat_template(chat_template)
    return CHAT_TEMPLATES[chat_template].replace("{user}", prompt)
