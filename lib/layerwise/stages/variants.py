"""The template-variation stage: the same test examples under another instruction template.

Each of the first ``data.n_template_variant`` test examples of a task is rendered with template
``(chosen + 1) mod n_templates``; PT, SFT and the controls are run on these inputs and compared
as on the usual ones, and each model with itself across the two templates.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .. import similarity as _similarity
from ..cache import content_key
from ..extraction import has_states, load_states
from ..similarity import centered_grams, similarity_by_layer_from_grams
from ..vocab import CONTROL_ROLE, PT_ROLE, SFT_ROLE, comparison_name
from .cached import cached_table
from .data import load_split
from .slots import ModelSlot
from .states import extract, for_each_model, run_models, states, test_key

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ..pipeline import Run

__all__ = ["VARIANT_ROLES", "TEMPLATE_VARIATION_COLUMNS", "variant_tasks", "variant_path", "run_template_variant",
           "template_variation_table"]

#: Models run on the re-templated inputs (the comparisons of the paper need only these).
VARIANT_ROLES = (PT_ROLE, SFT_ROLE, CONTROL_ROLE)
#: Columns of the template-variation table, in order.
TEMPLATE_VARIATION_COLUMNS = ["task", "cluster", "layer", "comparison", "template", "measure", "value", "n_examples"]


def variant_tasks(run: Run) -> dict[str, Dataset]:
    """Task -> the first ``data.n_template_variant`` test examples rendered with another template.

    Same ids, targets and order, another instruction. Tasks whose prompts come from their source
    (``flan2021:``, ``file:``) have no templates of ours and are left out. Empty when
    ``data.n_template_variant`` is 0.

    Raises:
        RuntimeError: the re-templated examples are not the test split's first examples.
    """
    n = run.spec.data.n_template_variant
    out: dict[str, Dataset] = {}
    if not n:
        return out
    for task in run.spec.tasks:
        test = run.tasks[task]["test"]
        if min(test["template_id"]) < 0:
            continue
        variant = load_split(run.spec, task, template_shift=1)["test"].select(range(min(n, len(test))))
        if list(variant["id"]) != list(test["id"][:len(variant)]):
            raise RuntimeError(f"re-templated examples of {task} are not the first examples of its test split")
        out[task] = variant
    return out


def variant_path(run: Run, slot: ModelSlot, task: str) -> Path:
    """File of the hidden states of ``slot``'s model on ``task``'s re-templated examples."""
    v = run.variant_tasks[task]
    key = content_key([list(v["id"]), list(v["prompt"]), "template-variant"])
    return run.out / "hidden_states" / slot.label / f"{run.slug(task)}-variant-{key}.safetensors"


def run_template_variant(run: Run, progress: bool = True, slots: Sequence[ModelSlot] | None = None) -> None:
    """Hidden states of PT, SFT and the controls on the re-templated inputs, cached; each model loaded once.

    ``slots`` (default: every slot of the run) restricts the work, e.g. to one slot with one task
    (one job of :mod:`layerwise.plan`); slots of other roles than :data:`VARIANT_ROLES` are skipped."""
    def done(slot: ModelSlot, task: str) -> bool:
        return task not in run.variant_tasks or has_states(variant_path(run, slot, task))

    def work(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, slot: ModelSlot, task: str) -> None:
        extract(run, model, tokenizer, slot, task, run.variant_tasks[task], variant_path(run, slot, task),
                progress=progress, desc=f"{slot.role} {task} (other template)", template_shift=1)

    chosen = [s for s in (run.slots if slots is None else slots) if s.role in VARIANT_ROLES]
    for_each_model(run, chosen, done, work, "states on other templates")


def _variation_rows_with_states(run: Run) -> pd.DataFrame:
    """:func:`_variation_rows` once the states on both templates are on disk (only when the table is not cached)."""
    run_models(run)
    run_template_variant(run)
    return _variation_rows(run)


def _variation_rows(run: Run) -> pd.DataFrame:
    """Compute the template-variation table (see :func:`template_variation_table`)."""
    rows: list[dict[str, Any]] = []
    for task, variant in run.variant_tasks.items():
        n = len(variant)
        grams: dict[tuple[str, str], NDArray[np.float64]] = {}
        for role in VARIANT_ROLES:
            slot = run.slot(role, task)
            grams[role, "original"] = centered_grams(states(run, role, task)[1:, :n])
            grams[role, "other"] = centered_grams(load_states(variant_path(run, slot, task))[0][1:])
        pairs = [(comparison_name(role), template, (role, template), (CONTROL_ROLE, template))
                 for template in ("original", "other") for role in (PT_ROLE, SFT_ROLE)]
        pairs += [(f"{role}: original vs other template", "across", (role, "original"), (role, "other"))
                  for role in VARIANT_ROLES]
        for comparison, template, a, b in pairs:
            for measure in ("linear_cka", "debiased_cka"):
                values = similarity_by_layer_from_grams(grams[a], grams[b], measure=measure)
                rows += [{"task": task, "cluster": run.cluster_of(task), "layer": i + 1, "comparison": comparison,
                          "template": template, "measure": measure, "value": float(v), "n_examples": n}
                         for i, v in enumerate(values)]
    return pd.DataFrame(rows, columns=TEMPLATE_VARIATION_COLUMNS)


def template_variation_table(run: Run) -> pd.DataFrame:
    """CKA with the controls on the same examples under two instruction templates.

    For every task of ``run.variant_tasks`` (its first ``n`` test examples), layers 1..L, and
    linear and debiased CKA (last-token states):

    * ``template = "original"``: PT vs control and SFT vs control on the usual prompts;
    * ``template = "other"``: the same comparisons when every model reads the prompts
      rendered with another template;
    * ``template = "across"``, comparison ``"<role>: original vs other template"``: each model
      with itself across the two templates (how much the instruction alone moves its states).

    Returns:
        DataFrame with columns :data:`TEMPLATE_VARIATION_COLUMNS`; empty (same columns) when the
        spec asks for no template variation. Cached in ``tables/template-variation-<key>.parquet``.
    """
    if not run.variant_tasks:
        return pd.DataFrame(columns=TEMPLATE_VARIATION_COLUMNS)
    parts = {"slots": [(s.role, s.key, s.tasks) for s in run.slots if s.role in VARIANT_ROLES],
             "variant_examples": {t: variant_path(run, run.slot(PT_ROLE, t), t).name for t in run.variant_tasks},
             "test_examples": [test_key(run, t) for t in run.variant_tasks]}
    return cached_table(run.out / "tables", "template-variation", parts, lambda: _variation_rows_with_states(run),
                        code=[_variation_rows, _similarity], log=run.log, frozen=run.spec.frozen)
