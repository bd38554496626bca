"""Verdict survival across variants: the table of verdicts and which findings keep theirs."""

import pandas as pd
import pytest

from layerwise.findings import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from layerwise.findings.variants import NOT_TESTED, survival, verdict_table


def _f(**verdicts):
    return pd.DataFrame({"id": list(verdicts), "verdict": list(verdicts.values())})


def test_verdict_table_keeps_finding_order_and_marks_untested():
    t = verdict_table({"paper": _f(F1=HOLDS, F2=INCONCLUSIVE, F7a=HOLDS), "debiased": _f(F1=HOLDS, F2=DOES_NOT_HOLD)})
    assert list(t.index) == ["F1", "F2", "F7a"] and list(t.columns) == ["paper", "debiased"]
    assert t.loc["F7a", "debiased"] == NOT_TESTED and t.loc["F2", "debiased"] == DOES_NOT_HOLD


def test_survival_counts_only_findings_equal_everywhere_and_compares_the_pair():
    t = verdict_table({"paper": _f(F1=HOLDS, F2=INCONCLUSIVE, F3=HOLDS, F7a=HOLDS),
                       "debiased": _f(F1=HOLDS, F2=DOES_NOT_HOLD, F3=HOLDS),
                       "orig": _f(F1=HOLDS, F2=INCONCLUSIVE, F3=HOLDS), "other": _f(F1=HOLDS, F2=INCONCLUSIVE, F3=INCONCLUSIVE)})
    s = survival(t, pair=("orig", "other"))
    assert s.n_findings == 4 and s.survive == ("F1",)  # F7a is untested under the variants: not claimed
    assert s.pair_tested == ("F1", "F2", "F3") and s.pair_changed == ("F3",)
    assert survival(t).pair is None


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="empty"):
        verdict_table({})
    with pytest.raises(ValueError, match="verdict"):
        verdict_table({"paper": pd.DataFrame({"id": ["F1"]})})
    with pytest.raises(KeyError, match="columns"):
        survival(verdict_table({"paper": _f(F1=HOLDS)}), pair=("paper", "nope"))
