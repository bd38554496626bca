"""Which findings survive: the paper's findings evaluated under several variants, side by side.

A *variant* is one way of computing the findings table (another similarity measure, another
pooling, the examples rendered with another instruction template). A finding *survives* when it
gets the same verdict under every variant as under the first (the paper's setting).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

__all__ = ["NOT_TESTED", "Survival", "verdict_table", "survival"]

#: Cell of :func:`verdict_table` for a finding a variant does not test (e.g. it needs the held-out SFT model).
NOT_TESTED = "–"


def verdict_table(variants: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The verdicts of each finding under each variant.

    Args:
        variants: variant label -> findings table (columns ``id`` and ``verdict``, as
            :meth:`layerwise.pipeline.Run.findings` returns); the first entry is the reference.

    Returns:
        DataFrame indexed by finding id (the order of first appearance), one string column per
        variant in the given order; :data:`NOT_TESTED` where a variant has no row for a finding.

    Raises:
        ValueError: ``variants`` is empty, or a table lacks the ``id``/``verdict`` columns (named).
    """
    if not variants:
        raise ValueError("variants: empty; give at least the reference findings table")
    for label, table in variants.items():
        missing = {"id", "verdict"} - set(table.columns)
        if missing:
            raise ValueError(f"variants[{label!r}]: missing column(s) {sorted(missing)}; need 'id' and 'verdict'")
    ids = list(dict.fromkeys(i for t in variants.values() for i in t["id"]))
    out = pd.DataFrame({k: v.set_index("id")["verdict"].reindex(ids) for k, v in variants.items()}, index=ids)
    out.index.name = "id"
    return out.fillna(NOT_TESTED)


@dataclass(frozen=True)
class Survival:
    """How the verdicts of :func:`verdict_table` agree.

    Attributes:
        n_findings: findings in the table.
        survive: ids whose verdict is the same under every variant as under the first column.
        pair: the two columns compared pairwise (e.g. original and other template), or ``None``.
        pair_tested: ids tested under both columns of ``pair``.
        pair_changed: ids of ``pair_tested`` whose verdict differs between the two columns.
    """

    n_findings: int
    survive: tuple[str, ...]
    pair: tuple[str, str] | None = None
    pair_tested: tuple[str, ...] = ()
    pair_changed: tuple[str, ...] = ()


def survival(table: pd.DataFrame, pair: tuple[str, str] | None = None) -> Survival:
    """Which findings keep their verdict across the variants of a :func:`verdict_table`.

    A finding survives when every column equals the first (a variant that does not test it,
    :data:`NOT_TESTED`, counts as a difference: survival is only claimed where it was checked).

    Args:
        table: :func:`verdict_table` output.
        pair: two column labels to compare with each other only (e.g. the findings on the same
            examples with the original and with another template), or ``None``.

    Returns:
        :class:`Survival`.

    Raises:
        KeyError: a label of ``pair`` is not a column (the message lists the columns).
    """
    same = table.eq(table.iloc[:, 0], axis=0).all(axis=1)
    if pair is None:
        return Survival(len(table), tuple(table.index[same]))
    unknown = [p for p in pair if p not in table.columns]
    if unknown:
        raise KeyError(f"pair: unknown column(s) {unknown}; columns: {list(table.columns)}")
    a, b = table[pair[0]], table[pair[1]]
    tested = a.ne(NOT_TESTED) & b.ne(NOT_TESTED)
    changed = tested & a.ne(b)
    return Survival(len(table), tuple(table.index[same]), tuple(pair), tuple(table.index[tested]),
                    tuple(table.index[changed]))
