"""Where the book shows each finding, and how a verdict is marked: the report layer's links.

The analysis layer (:mod:`layerwise.findings`) names findings by id only; this module maps the
ids to the chapters (notebook names) that show them, and the verdicts to their marks.
"""

from __future__ import annotations

from .findings.core import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, UNDERPOWERED

__all__ = ["FINDING_CHAPTERS", "VERDICT_MARKS", "chapter_of", "mark"]

#: Finding id -> notebook name of the chapter that shows it.
FINDING_CHAPTERS: dict[str, str] = {
    "F1": "03_rq1_pretrained",
    "F2": "04_rq2_instruction_tuned",
    "F2b": "04_rq2_instruction_tuned",
    "F3": "04_rq2_instruction_tuned",
    "F4": "05_layer_bands",
    "F5": "04_rq2_instruction_tuned",
    "F6": "03_rq1_pretrained",
    "F7a": "06_rq3_unseen",
    "F7b": "06_rq3_unseen",
}

#: Verdict -> the mark the book shows.
VERDICT_MARKS: dict[str, str] = {
    HOLDS: "✔ holds",
    DOES_NOT_HOLD: "✘ does not hold",
    INCONCLUSIVE: "? inconclusive",
    UNDERPOWERED: "◌ inconclusive (underpowered)",
}


def _lookup(table: dict[str, str], key: str, what: str) -> str:
    if key not in table:
        raise KeyError(f"{what} {key!r} has no {'chapter' if table is FINDING_CHAPTERS else 'mark'}; known: {list(table)}")
    return table[key]


def chapter_of(finding_id: str) -> str:
    """Notebook name of the chapter that shows a finding.

    Raises:
        KeyError: the id has no chapter (the message lists the ids that have one).
    """
    return _lookup(FINDING_CHAPTERS, finding_id, "finding")


def mark(verdict: str) -> str:
    """The mark of a verdict (e.g. ``"✔ holds"``).

    Raises:
        KeyError: not a verdict of :data:`layerwise.findings.VERDICTS`.
    """
    return _lookup(VERDICT_MARKS, verdict, "verdict")
