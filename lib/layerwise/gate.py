"""The "learned its task" gate: a control enters the verdicts only if it beats PT on its own task.

The MOSSA design reads CKA(model, control) as "how much of the task-specific information the
specialist learned does the model hold" (Zhao, Ziser and Cohen 2024, §3). That reading needs a
control that *is* a specialist. A control that barely moved from PT makes CKA(PT, control) high for
a trivial reason. So every control is scored on held-out evaluation examples of its task, paired
example by example with

* **PT**, prompted the same way (same template, same tokenisation), and
* **another task's control** on the same examples (a fine-tuned sibling that never saw the task),

on two scores:

* the task metric (accuracy by option log-likelihood for classification and multiple choice,
  token F1 for short-answer QA, ROUGE-L for other generation; :mod:`layerwise.evaluation`);
* the response NLL **without the EOS token** (nats per response token). With EOS, a control
  "beats" PT as soon as it learns to stop, which a base model never does.

**The rule.** A control passes when the paired bootstrap interval of *control − PT* lies above 0
on the task metric **and** the interval of *PT NLL − control NLL* lies above 0. The intervals
resample evaluation examples (paired: one draw of example ids is used for both models); they are
BCa intervals (Efron 1987) from :func:`scipy.stats.bootstrap`, or the single value when every paired
difference is the same. The other-task control's numbers are shown beside them, not gated on: a
control that is not better than a sibling on its own task has learned the format, not the task,
and the chapter says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .vocab import CONTROL_ROLE, PT_ROLE

__all__ = ["OTHER_CONTROL", "GATE_COLUMNS", "paired_interval", "control_gate"]

#: Role label of another task's control run on a task's evaluation examples.
OTHER_CONTROL = "other control"
#: Columns of :func:`control_gate`'s table, in order.
GATE_COLUMNS = ("task", "metric", "n", "control", "PT", "other", "diff_pt", "diff_pt_low", "diff_pt_high",
                "diff_other", "diff_other_low", "diff_other_high", "nll_gain", "nll_gain_low", "nll_gain_high",
                "passed", "reason")
_REQUIRED = ("task", "role", "id", "metric", "value", "nll")


def paired_interval(diffs: NDArray[np.float64], *, n_boot: int = 2000, level: float = 0.95,
                    seed: int = 0) -> tuple[float, float, float]:
    """Mean of paired differences and its BCa bootstrap interval over examples.

    Args:
        diffs: ``(n,)`` float per-example differences (NaN entries are dropped).
        n_boot: bootstrap resamples.
        level: two-sided confidence level.
        seed: seed of the resampling.

    Returns:
        ``(mean, low, high)``; ``(nan, nan, nan)`` with fewer than 2 finite differences; ``(d, d, d)``
        when every difference equals ``d`` (no spread to resample).
    """
    from scipy.stats import bootstrap

    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return (float("nan"),) * 3
    mean = float(d.mean())
    if np.all(d == d[0]):
        return mean, mean, mean
    res = bootstrap((d,), np.mean, n_resamples=n_boot, confidence_level=level, method="BCa",
                    random_state=np.random.default_rng(seed))
    low, high = res.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):  # BCa degenerates on near-constant data
        res = bootstrap((d,), np.mean, n_resamples=n_boot, confidence_level=level, method="percentile",
                        random_state=np.random.default_rng(seed))
        low, high = res.confidence_interval
    return mean, float(low), float(high)


def control_gate(scores: pd.DataFrame, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Decide, per task, whether its control learned the task (see the module docstring for the rule).

    Args:
        scores: one row per (task, role, evaluation example): columns ``task``, ``role``
            (``"PT"``, ``"control"`` and optionally ``"other control"``), ``id`` (example id, the pairing
            key), ``metric`` (name of the task metric), ``value`` (the example's metric score, in [0, 1])
            and ``nll`` (the example's response NLL without EOS, nats per token).
        n_boot, level, seed: of the paired bootstrap (:func:`paired_interval`).

    Returns:
        DataFrame with :data:`GATE_COLUMNS`, one row per task: the three models' mean metric, the
        paired differences control − PT and control − other control with their intervals, the NLL gain
        PT − control with its interval, ``passed`` (bool) and ``reason`` (one sentence).

    Raises:
        ValueError: a required column is missing, a task lacks its PT or control rows, or PT and the
            control were not scored on the same examples.
    """
    missing = [c for c in _REQUIRED if c not in scores.columns]
    if missing:
        raise ValueError(f"control_gate: scores lack columns {missing}; required: {', '.join(_REQUIRED)}")
    rows = []
    for task, g in scores.groupby("task", sort=False):
        wide = g.pivot_table(index="id", columns="role", values=["value", "nll"], aggfunc="first")
        roles = set(g["role"])
        if not {PT_ROLE, CONTROL_ROLE} <= roles:
            raise ValueError(f"control_gate: task {task!r} has roles {sorted(roles)}; needs {PT_ROLE!r} and {CONTROL_ROLE!r}")
        if wide["value"][[PT_ROLE, CONTROL_ROLE]].isna().any().any():
            raise ValueError(f"control_gate: task {task!r}: PT and control were not scored on the same examples")
        v, nll = wide["value"], wide["nll"]
        dpt = paired_interval((v[CONTROL_ROLE] - v[PT_ROLE]).to_numpy(), n_boot=n_boot, level=level, seed=seed)
        gain = paired_interval((nll[PT_ROLE] - nll[CONTROL_ROLE]).to_numpy(), n_boot=n_boot, level=level, seed=seed)
        if OTHER_CONTROL in roles:
            other = float(v[OTHER_CONTROL].mean())
            doth = paired_interval((v[CONTROL_ROLE] - v[OTHER_CONTROL]).to_numpy(), n_boot=n_boot, level=level, seed=seed)
        else:
            other, doth = float("nan"), (float("nan"),) * 3
        metric = str(g["metric"].iloc[0])
        beats_metric, beats_nll = dpt[1] > 0, gain[1] > 0
        passed = bool(beats_metric and beats_nll)
        fmt = lambda t: f"{t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]"  # noqa: E731
        if passed:
            reason = f"beats PT on {metric} ({fmt(dpt)}) and on response NLL without EOS ({fmt(gain)} nats)"
        else:
            why = [] if beats_metric else [f"not above PT on {metric}: {fmt(dpt)}"]
            why += [] if beats_nll else [f"response NLL without EOS not below PT's: gain {fmt(gain)} nats"]
            reason = "; ".join(why)
        if np.isfinite(doth[1]) and doth[1] <= 0:
            reason += f"; not above another task's control on {metric} ({fmt(doth)})"
        rows.append({"task": task, "metric": metric, "n": int(len(wide)), "control": float(v[CONTROL_ROLE].mean()),
                     PT_ROLE: float(v[PT_ROLE].mean()), "other": other, "diff_pt": dpt[0], "diff_pt_low": dpt[1],
                     "diff_pt_high": dpt[2], "diff_other": doth[0], "diff_other_low": doth[1],
                     "diff_other_high": doth[2], "nll_gain": gain[0], "nll_gain_low": gain[1],
                     "nll_gain_high": gain[2], "passed": passed, "reason": reason})
    return pd.DataFrame(rows, columns=list(GATE_COLUMNS))
