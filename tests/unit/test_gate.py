"""The "learned its task" gate on synthetic per-example scores with a known truth."""

import numpy as np
import pandas as pd
import pytest

from layerwise.gate import OTHER_CONTROL, control_gate, paired_interval


def _scores(task, n, p_pt, p_control, p_other, nll_pt, nll_control, seed=0, metric="accuracy"):
    rng = np.random.default_rng(seed)
    rows = []
    for role, p, nll in (("PT", p_pt, nll_pt), ("control", p_control, nll_control), (OTHER_CONTROL, p_other, nll_pt)):
        hits = rng.random(n) < p
        losses = rng.normal(nll, 0.3, n)
        rows += [{"task": task, "role": role, "id": f"{task}-{i}", "metric": metric, "value": float(h), "nll": float(l)}
                 for i, (h, l) in enumerate(zip(hits, losses))]
    return pd.DataFrame(rows)


def test_a_specialist_passes_and_a_control_that_only_learned_the_format_fails():
    scores = pd.concat([_scores("learned", 96, 0.3, 0.9, 0.35, 3.0, 1.5),
                        _scores("format_only", 96, 0.3, 0.32, 0.3, 3.0, 2.95, seed=1)])
    gate = control_gate(scores, n_boot=500).set_index("task")
    assert bool(gate.loc["learned", "passed"]) and "beats PT on accuracy" in gate.loc["learned", "reason"]
    assert not bool(gate.loc["format_only", "passed"])
    assert "not above PT on accuracy" in gate.loc["format_only", "reason"]
    assert gate.loc["learned", "diff_pt_low"] > 0.4 and gate.loc["learned", "n"] == 96


def test_gate_false_positive_rate_on_equal_models_is_near_the_nominal_level():
    passed = [bool(control_gate(_scores("t", 64, 0.5, 0.5, 0.5, 2.0, 2.0, seed=s), n_boot=300)["passed"].iloc[0])
              for s in range(40)]
    assert sum(passed) <= 3  # both one-sided 97.5 % bounds must clear 0: well under 5 % in theory


def test_paired_interval_covers_the_truth_and_handles_degenerate_input():
    rng = np.random.default_rng(0)
    cover = 0
    for s in range(60):
        m, lo, hi = paired_interval(rng.normal(0.2, 1.0, 80), n_boot=400, seed=s)
        cover += lo <= 0.2 <= hi
    assert 0.85 <= cover / 60 <= 1.0
    assert paired_interval(np.ones(10)) == (1.0, 1.0, 1.0)
    assert all(np.isnan(paired_interval(np.array([1.0]))))


def test_bad_input_names_what_is_missing():
    with pytest.raises(ValueError, match=r"lack columns \['nll'\]"):
        control_gate(pd.DataFrame(columns=["task", "role", "id", "metric", "value"]))
    s = _scores("t", 10, 0.5, 0.5, 0.5, 2.0, 2.0)
    with pytest.raises(ValueError, match="needs 'PT' and 'control'"):
        control_gate(s[s["role"] != "PT"])
