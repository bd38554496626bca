"""Offline NLP tasks for the MOSSA/CKA pipeline: registry, builders, sampling and prompts.

Public API::

    from layerwise.tasks import CLUSTERS, TASKS, TaskInfo, get_task, load_task, task_names

* :data:`CLUSTERS`: the 12 Flan 2021 cluster ids -> display names.
* :data:`TASKS`: the offline task registry (name -> :class:`TaskInfo` with provenance).
* :data:`FLAN2021_TASKS`: the paper's 69 Flan 2021 task names by cluster.
* :func:`load_task`: fetch, build (cached), sample and render one task as a ``DatasetDict``; also
  ``flan2021:<task>`` (the hub) and ``file:<path>`` (local alpaca files), see
  :mod:`layerwise.tasks.external`.
* :func:`check_task_names`: validate names of any of these forms before any work.
* :func:`cap_per_cluster`: the per-cluster cap of the multi-task mixture (:mod:`layerwise.tasks.sampling`).
* ``build_<task>(root)``: the per-task builders (see :mod:`layerwise.tasks.builders` and
  :mod:`layerwise.tasks.more_builders`).
* :mod:`layerwise.tasks.suite`: provenance, coverage and prompt-length tables for the task-suite chapter.
"""

from layerwise.tasks.builders import BUILDERS, POOL_FEATURES, build
from layerwise.tasks.builders import *  # noqa: F401,F403  (build_<task> functions)
from layerwise.tasks.builders import (
    build_asset_simplification,
    build_bible_en_es,
    build_coqa,
    build_common_gen,
    build_cosmos_qa,
    build_drop,
    build_e2e_nlg,
    build_intent_snips,
    build_metaphor_paraphrase,
    build_movie_review_polarity,
    build_multirc,
    build_presupposition_nli,
    build_qa_wikidata,
    build_rt_sentence_polarity,
    build_social_iqa,
    build_squad_v1,
    build_strategyqa,
    build_vitaminc_nli,
    build_web_nlg_en,
    build_wiki_lingua_en,
    build_wikihow_goal,
    build_winogrande,
    build_winowhy,
    build_xsum,
)
from layerwise.tasks.more_builders import (
    build_email_subject,
    build_fix_punct,
    build_rt_critic_polarity,
    build_true_case,
    build_tweet_sentiment,
    build_wic_wordnet,
    build_word_segment,
    build_math_dataset,
)
from layerwise.tasks.loading import POOL_VERSION, TASK_FEATURES, build_suite, load_pool, load_task, pool_path, sample_pool
from layerwise.tasks.external import check_task_names, external_pools, parse_external, read_task_file
from layerwise.tasks.sampling import CapPlan, DownsizeWarning, cap_per_cluster
from layerwise.tasks.registry import CLUSTERS, FLAN2021_TASKS, TASKS, TaskInfo, flan2021_cluster, get_task, task_names

__all__ = [
    "CLUSTERS",
    "FLAN2021_TASKS",
    "TASKS",
    "TaskInfo",
    "BUILDERS",
    "POOL_FEATURES",
    "TASK_FEATURES",
    "POOL_VERSION",
    "build",
    "build_suite",
    "flan2021_cluster",
    "get_task",
    "task_names",
    "load_pool",
    "load_task",
    "pool_path",
    "sample_pool",
    "check_task_names",
    "external_pools",
    "parse_external",
    "read_task_file",
    "cap_per_cluster",
    "CapPlan",
    "DownsizeWarning",
]
