"""From a task's catalogue entry to its example pool: the builders, registered explicitly.

A task's entry in ``layerwise/data/tasks.yaml`` names its builder (a key of
:data:`BUILDER_FUNCTIONS`) and the builder's keyword arguments (``builder_args``). Every entry is
checked here, once at import, against the builder's signature, so a typo in the catalogue fails at
import with one line instead of after a download.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from pathlib import Path

import datasets

from layerwise.catalogue import CatalogueError
from layerwise.tasks import builders, corpus_builders
from layerwise.tasks.registry import TASKS

__all__ = ["BUILDER_FUNCTIONS", "BUILDERS", "build"]

#: builder name (the catalogue's ``builder``) -> function ``(root, **builder_args) -> pool``.
BUILDER_FUNCTIONS: dict[str, Callable[..., datasets.Dataset]] = {
    "bigbench_generative": builders.bigbench_generative,
    "bigbench_choice": builders.bigbench_choice,
    "bigbench_pair": builders.bigbench_pair,
    "natural_instructions": builders.natural_instructions,
    "pattern_polarity": builders.pattern_polarity,
    "squad_v1": builders.build_squad_v1,
    "coqa": builders.build_coqa,
    "bible_en_es": builders.build_bible_en_es,
    "rt_critic_polarity": corpus_builders.build_rt_critic_polarity,
    "tweet_sentiment": corpus_builders.build_tweet_sentiment,
    "wic_wordnet": corpus_builders.build_wic_wordnet,
    "brown": corpus_builders.brown,
    "email_subject": corpus_builders.build_email_subject,
    "math_dataset": corpus_builders.build_math_dataset,
}


def _bound(task: str) -> Callable[[Path], datasets.Dataset]:
    info = TASKS[task]
    where = f"layerwise/data/tasks.yaml: task {task!r}"
    if info.builder not in BUILDER_FUNCTIONS:
        raise CatalogueError(f"{where}: key 'builder' = {info.builder!r}; valid choices: {', '.join(BUILDER_FUNCTIONS)}")
    fn = BUILDER_FUNCTIONS[info.builder]
    try:
        inspect.signature(fn).bind("root", **info.builder_args)
    except TypeError as e:
        raise CatalogueError(f"{where}: builder_args {dict(info.builder_args)} do not fit builder {info.builder!r} ({e})") from None
    return partial(fn, **info.builder_args)


#: task name -> its builder with the task's arguments bound: ``(root) -> pool``.
BUILDERS: dict[str, Callable[[Path], datasets.Dataset]] = {t: _bound(t) for t in TASKS}


def build(task: str, root: Path) -> datasets.Dataset:
    """Run the builder of ``task`` on the source folder ``root``.

    Returns:
        the task's pool (:data:`layerwise.tasks.records.POOL_FEATURES`).

    Raises:
        KeyError: no builder for ``task`` (the message lists the tasks that have one).
        FileNotFoundError / ValueError: a missing or malformed source file (see the builders).
    """
    try:
        fn = BUILDERS[task]
    except KeyError:
        raise KeyError(f"no builder for task {task!r}; tasks with builders: {', '.join(sorted(BUILDERS))}") from None
    return fn(Path(root))
