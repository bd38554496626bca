"""The paper's findings as a registry of small functions, with verdicts that can be trusted.

* :mod:`~layerwise.findings.core` - verdicts, the :class:`Finding` record, the ``@finding``
  registry and :func:`evaluate`;
* :mod:`~layerwise.findings.paper` - the paper's findings F1-F7b, one function each;
* :mod:`~layerwise.findings.tables` - what this run does differently from the paper
  (:func:`deviations_table`) and what it can detect (:func:`power_table`).
"""

from . import paper as _paper  # noqa: F401  (defines and registers the paper's findings)
from .core import (
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    REGISTRY,
    UNDERPOWERED,
    VERDICTS,
    Context,
    Finding,
    evaluate,
    finding,
    findings_table,
    powered_verdict,
    verdict,
)
from .tables import deviations_table, power_table

__all__ = [
    "HOLDS", "DOES_NOT_HOLD", "INCONCLUSIVE", "UNDERPOWERED", "VERDICTS", "REGISTRY", "Context", "Finding",
    "evaluate", "finding", "findings_table", "powered_verdict", "verdict", "deviations_table", "power_table",
]
