"""The book's vocabulary: model roles, comparison labels, their order, and the tidy-table columns.

Every module, chart and notebook takes these names from here; none types them as literals. The
terms follow the paper (Zhao, Ziser and Cohen 2024, §3, the MOSSA design):

* **PT** - the pre-trained base model, no adapter;
* **SFT** - the experimental model: the base plus a LoRA adapter tuned on all tasks;
* **held-out SFT** - the same recipe without the held-out tasks (the paper's RQ3, §5);
* **random-init** - the base architecture with untrained weights (a baseline of ours);
* **other-task control** - another task's control run on this task's inputs (a baseline of ours:
  the similarity any fine-tuned sibling reaches);
* **control replicate** - the task's control trained again with another seed (a baseline of ours:
  the ceiling, how similar two specialists of the same task are);
* **control** - the base plus a LoRA adapter tuned on one task alone.

A *comparison* is a model role compared with a task's control on that task's test inputs, e.g.
``"SFT vs control"``; the shuffled-row null of a comparison carries :data:`NULL_PREFIX`.
"""

from __future__ import annotations

__all__ = [
    "PT_ROLE", "SFT_ROLE", "HELDOUT_ROLE", "RANDOM_ROLE", "OTHER_ROLE", "REPLICATE_ROLE", "CONTROL_ROLE", "ROLES",
    "NULL_PREFIX", "comparison_name", "null_name", "role_of", "PT", "SFT", "HELDOUT_SFT", "RANDOM_INIT",
    "OTHER_TASK", "CONTROL_CEILING", "SHUFFLED_PT", "SHUFFLED_SFT", "COMPARISON_ORDER", "SIMILARITY_COLUMNS",
    "SEED_COLUMN", "HALF_COLUMN",
]

PT_ROLE = "PT"
SFT_ROLE = "SFT"
HELDOUT_ROLE = "held-out SFT"
RANDOM_ROLE = "random-init"
OTHER_ROLE = "other-task control"
REPLICATE_ROLE = "control replicate"
CONTROL_ROLE = "control"

#: Model roles, in the order the book shows them.
ROLES = (PT_ROLE, SFT_ROLE, HELDOUT_ROLE, RANDOM_ROLE, OTHER_ROLE, REPLICATE_ROLE, CONTROL_ROLE)

#: Prefix of the shuffled-row null comparisons ("shuffled SFT vs control", ...).
NULL_PREFIX = "shuffled "


def comparison_name(role: str) -> str:
    """Label of the comparison of a model role with the task's control.

    Args:
        role: one of :data:`ROLES` other than ``"control"``.

    Returns:
        ``"<role> vs control"``, e.g. ``"PT vs control"``.

    Raises:
        ValueError: ``role`` is not a role of :data:`ROLES`, or is the control itself.
    """
    if role not in ROLES or role == CONTROL_ROLE:
        valid = ", ".join(r for r in ROLES if r != CONTROL_ROLE)
        raise ValueError(f"role={role!r} has no comparison with the control; valid roles: {valid}")
    return f"{role} vs {CONTROL_ROLE}"


def null_name(role: str) -> str:
    """Label of the shuffled-row null of a role's comparison, e.g. ``"shuffled SFT vs control"``."""
    return NULL_PREFIX + comparison_name(role)


def role_of(comparison: str) -> str:
    """The model role of a comparison label (the inverse of :func:`comparison_name`).

    Raises:
        ValueError: ``comparison`` is not a label this module makes.
    """
    base = comparison.removeprefix(NULL_PREFIX)
    role = base.removesuffix(f" vs {CONTROL_ROLE}")
    if role == base or role not in ROLES:
        raise ValueError(f"comparison={comparison!r} is not a comparison label; valid: {', '.join(COMPARISON_ORDER)}")
    return role


PT = comparison_name(PT_ROLE)
SFT = comparison_name(SFT_ROLE)
HELDOUT_SFT = comparison_name(HELDOUT_ROLE)
RANDOM_INIT = comparison_name(RANDOM_ROLE)
OTHER_TASK = comparison_name(OTHER_ROLE)
CONTROL_CEILING = comparison_name(REPLICATE_ROLE)
SHUFFLED_PT = null_name(PT_ROLE)
SHUFFLED_SFT = null_name(SFT_ROLE)

#: Comparisons in the order charts and tables show them.
COMPARISON_ORDER = (PT, SFT, HELDOUT_SFT, RANDOM_INIT, OTHER_TASK, CONTROL_CEILING, SHUFFLED_PT, SHUFFLED_SFT)

#: Columns of the tidy similarity table (``Run.similarity``), in order.
SIMILARITY_COLUMNS = ("task", "cluster", "layer", "comparison", "measure", "pooling", "value", "n_examples")
#: Column of the seed table: the seed of the experimental (SFT or held-out SFT) adapter.
SEED_COLUMN = "seed"
#: Column of the split-half table: which half of each task's test examples (``"A"`` or ``"B"``).
HALF_COLUMN = "half"
