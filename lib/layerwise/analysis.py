"""Analyses of the similarity table: cluster aggregates, layer thirds, and the paper's findings as
testable statements with computed verdicts.

Every function takes the tidy table of :meth:`layerwise.pipeline.Run.similarity` (columns
``task, cluster, layer, comparison, measure, pooling, value``) and returns plain DataFrames or
dataclasses; the notebooks only display them. A finding's verdict comes from a bootstrap
confidence interval over tasks (the unit the paper generalises over): ``holds`` when the interval
lies on the side the paper claims, ``does not hold`` when it lies on the other side, and
``inconclusive`` when it covers zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from .bands import HELDOUT_SFT, PT, SFT, find_bands
from .stats import bootstrap_tasks, percentile_ci

__all__ = [
    "PAPER_CLUSTER_GROUPS",
    "select",
    "task_layer_matrix",
    "layer_thirds",
    "cluster_layer_means",
    "delta_by_cluster",
    "cluster_ranking",
    "Finding",
    "evaluate_findings",
    "verdict",
]

#: The paper's reading of Fig. 3 under PT (paper.md section 9): clusters whose tasks pre-training
#: already encodes well ("high") and poorly ("low"). NLI, RC + commonsense and misc. are not
#: characterised by the paper.
PAPER_CLUSTER_GROUPS: dict[str, tuple[str, ...]] = {
    "high": ("closed_book_qa", "commonsense", "paraphrase", "sentiment"),
    "low": ("coreference", "reading_comprehension", "struct_to_text", "summarization", "translation"),
}

VERDICTS = ("holds", "does not hold", "inconclusive")


def select(sim: pd.DataFrame, *, measure: str = "linear_cka", pooling: str = "last",
           comparisons: list[str] | None = None, tasks: list[str] | None = None) -> pd.DataFrame:
    """Rows of one measure and pooling (and optionally some comparisons / tasks).

    Raises:
        ValueError: the measure, pooling or a comparison is not in the table (lists what is).
    """
    for col, want in (("measure", [measure]), ("pooling", [pooling]), ("comparison", comparisons or [])):
        have = sorted(sim[col].unique())
        missing = [w for w in want if w not in have]
        if missing:
            raise ValueError(f"{col} {missing} not in the similarity table; it has {have}")
    out = sim[(sim["measure"] == measure) & (sim["pooling"] == pooling)]
    if comparisons is not None:
        out = out[out["comparison"].isin(comparisons)]
    if tasks is not None:
        out = out[out["task"].isin(tasks)]
    return out


def task_layer_matrix(sim: pd.DataFrame, comparison: str, **kw: Any) -> pd.DataFrame:
    """``(n_tasks, n_layers)`` matrix of one comparison (rows: tasks sorted; columns: layers 1..L)."""
    sub = select(sim, comparisons=[comparison], **kw)
    return sub.pivot_table(index="task", columns="layer", values="value").sort_index()


def layer_thirds(n_layers: int) -> dict[str, list[int]]:
    """Early, middle and late thirds of layers 1..L (early = first floor(L/3), late = last floor(L/3)).

    Used by the findings that the paper states for "early" and "upper" layers without a rule; the
    band rule (:mod:`layerwise.bands`) is used where the paper names bands.
    """
    k = max(1, n_layers // 3)
    layers = list(range(1, n_layers + 1))
    return {"early": layers[:k], "middle": layers[k:n_layers - k], "late": layers[n_layers - k:]}


def cluster_layer_means(sim: pd.DataFrame, comparison: str, **kw: Any) -> pd.DataFrame:
    """Mean over a cluster's tasks per layer: columns ``cluster, layer, value, n_tasks``."""
    sub = select(sim, comparisons=[comparison], **kw)
    g = sub.groupby(["cluster", "layer"])["value"]
    return g.mean().to_frame("value").join(g.size().rename("n_tasks")).reset_index()


def delta_by_cluster(sim: pd.DataFrame, *, experimental: str = SFT, reference: str = PT, **kw: Any) -> pd.DataFrame:
    """ΔCKA = CKA(experimental, control) − CKA(reference, control), mean over each cluster's tasks per layer.

    The paper's Figure 3 differences. Columns ``cluster, layer, delta, n_tasks``.
    """
    e = task_layer_matrix(sim, experimental, **kw)
    r = task_layer_matrix(sim, reference, **kw).loc[e.index]
    d = (e - r).stack().rename("delta").reset_index()
    clusters = sim.drop_duplicates("task").set_index("task")["cluster"]
    d["cluster"] = d["task"].map(clusters)
    g = d.groupby(["cluster", "layer"])["delta"]
    return g.mean().to_frame("delta").join(g.size().rename("n_tasks")).reset_index()


def cluster_ranking(sim: pd.DataFrame, comparison: str = PT, *, layers: list[int] | None = None, **kw: Any) -> pd.DataFrame:
    """Clusters ranked by mean CKA with the controls (over the given layers and the cluster's tasks).

    Columns ``cluster, value, n_tasks, rank, paper_group`` (``high`` / ``low`` / ``-`` from
    :data:`PAPER_CLUSTER_GROUPS`), sorted by ``value`` descending.
    """
    sub = select(sim, comparisons=[comparison], **kw)
    if layers is not None:
        sub = sub[sub["layer"].isin(layers)]
    per_task = sub.groupby(["cluster", "task"])["value"].mean().reset_index()
    g = per_task.groupby("cluster")["value"]
    out = g.mean().to_frame("value").join(g.size().rename("n_tasks")).reset_index()
    out = out.sort_values("value", ascending=False).reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    group = {c: k for k, cs in PAPER_CLUSTER_GROUPS.items() for c in cs}
    out["paper_group"] = out["cluster"].map(group).fillna("-")
    return out


def verdict(low: float, high: float, *, expect: str = "positive") -> str:
    """Verdict from a confidence interval of a statistic whose sign the paper predicts.

    Args:
        low, high: interval bounds.
        expect: ``"positive"`` (the paper claims > 0) or ``"negative"`` (claims < 0).

    Returns:
        ``"holds"``, ``"does not hold"`` or ``"inconclusive"``.
    """
    if expect not in ("positive", "negative"):
        raise ValueError(f"expect must be 'positive' or 'negative', got {expect!r}")
    if not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive"
    lo, hi = (low, high) if expect == "positive" else (-high, -low)
    if lo > 0:
        return "holds"
    if hi < 0:
        return "does not hold"
    return "inconclusive"


@dataclass(frozen=True)
class Finding:
    """One finding of the paper as a testable statement, with this run's verdict.

    Attributes:
        id: short identifier (``F1`` ...).
        claim: the paper's finding in words.
        test: the statistic and the rule that decides the verdict.
        estimate, low, high: the statistic and its confidence interval (NaN if not applicable).
        verdict: ``holds``, ``does not hold`` or ``inconclusive``.
        detail: the numbers behind the verdict, in words (generated).
        chapter: notebook name of the chapter that shows it.
    """

    id: str
    claim: str
    test: str
    estimate: float
    low: float
    high: float
    verdict: str
    detail: str
    chapter: str


def _ci_over_tasks(per_task: np.ndarray, n_boot: int, seed: int, statistic: Callable = np.mean) -> tuple[float, float, float]:
    per_task = np.asarray(per_task, dtype=float)
    per_task = per_task[np.isfinite(per_task)]
    if per_task.size == 0:
        return float("nan"), float("nan"), float("nan")
    if per_task.size < 2:
        return float(statistic(per_task)), float("nan"), float("nan")
    r = bootstrap_tasks(per_task, statistic=lambda v, axis=0: statistic(v, axis=axis), n_boot=n_boot, seed=seed)
    return float(r.estimate), float(r.low), float(r.high)


def _fmt(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:+.3f}"


def _ci(lo: float, hi: float) -> str:
    return "no interval (fewer than 2 tasks)" if not (np.isfinite(lo) and np.isfinite(hi)) else f"95% CI [{lo:+.3f}, {hi:+.3f}]"


def evaluate_findings(sim: pd.DataFrame, *, measure: str = "linear_cka", pooling: str = "last",
                      heldout_tasks: list[str] | tuple[str, ...] = (), n_boot: int = 2000, seed: int = 0) -> list[Finding]:
    """The paper's findings (paper.md section 10) evaluated on one similarity table.

    Args:
        sim: tidy similarity table.
        measure, pooling: which values to read (robustness: ``debiased_cka``, ``mean``).
        heldout_tasks: tasks the held-out SFT model never saw (for the unseen-task findings).
        n_boot: bootstrap replicates over tasks. seed: bootstrap seed.

    Returns:
        list of :class:`Finding`, in the paper's order.

    Raises:
        ValueError: the table lacks the measure, pooling or the PT/SFT comparisons.
    """
    kw = dict(measure=measure, pooling=pooling)
    pt = task_layer_matrix(sim, PT, **kw)
    sft = task_layer_matrix(sim, SFT, **kw).loc[pt.index]
    delta = sft - pt
    L = int(pt.columns.max())
    th = layer_thirds(L)
    early, late = th["early"], th["late"]
    clusters = sim.drop_duplicates("task").set_index("task")["cluster"]
    seen = [t for t in pt.index if t not in set(heldout_tasks)]
    out: list[Finding] = []
    span = f"layers {early[0]}-{early[-1]} vs {late[0]}-{late[-1]} of {L}"

    # F1: cluster ranking under PT
    mean_pt = pt.mean(axis=1)
    grp = clusters.reindex(pt.index)
    high = mean_pt[grp.isin(PAPER_CLUSTER_GROUPS["high"])].to_numpy()
    low = mean_pt[grp.isin(PAPER_CLUSTER_GROUPS["low"])].to_numpy()
    if len(high) and len(low):
        est = float(high.mean() - low.mean())
        rng = np.random.default_rng(seed)
        if len(high) > 1 and len(low) > 1:
            boots = [rng.choice(high, len(high)).mean() - rng.choice(low, len(low)).mean() for _ in range(n_boot)]
            lo, hi = percentile_ci(np.array(boots))
            lo, hi = float(lo), float(hi)
        else:
            lo = hi = float("nan")
    else:
        est = lo = hi = float("nan")
    out.append(Finding(
        "F1", "Pre-training already encodes some task clusters much better than others: closed-book QA, commonsense, "
              "paraphrase and sentiment high; coreference, reading comprehension, struct-to-text, summarization and "
              "translation low.",
        "Mean CKA(PT, control) over all layers: tasks of the paper's 'high' clusters minus tasks of its 'low' "
        "clusters; holds if the CI is above 0.",
        est, lo, hi, verdict(lo, hi), f"difference {_fmt(est)} ({len(high)} high-cluster vs {len(low)} low-cluster tasks), {_ci(lo, hi)}",
        "03_rq1_pretrained"))

    # F2: PT drifts away with depth; spread grows
    drift = (pt[early].mean(axis=1) - pt[late].mean(axis=1)).to_numpy()
    e, lo, hi = _ci_over_tasks(drift, n_boot, seed)
    out.append(Finding(
        "F2", "Pre-trained representations are closest to the controls in the early layers and drift away with depth.",
        f"Per task, mean CKA(PT, control) in the early minus the late third ({span}); mean over tasks, holds if the CI is above 0.",
        e, lo, hi, verdict(lo, hi), f"early − late {_fmt(e)}, {_ci(lo, hi)}", "04_rq2_instruction_tuned"))
    rng = np.random.default_rng(seed + 1)
    vals = pt.to_numpy()
    sd_diff = float(vals[:, [c - 1 for c in late]].std(axis=0, ddof=1).mean() - vals[:, [c - 1 for c in early]].std(axis=0, ddof=1).mean()) if len(vals) > 1 else float("nan")
    if len(vals) > 2:
        boots = []
        for _ in range(n_boot):
            v = vals[rng.integers(0, len(vals), len(vals))]
            boots.append(v[:, [c - 1 for c in late]].std(axis=0, ddof=1).mean() - v[:, [c - 1 for c in early]].std(axis=0, ddof=1).mean())
        lo, hi = (float(x) for x in percentile_ci(np.array(boots)))
    else:
        lo = hi = float("nan")
    out.append(Finding(
        "F2b", "The spread of CKA(PT, control) across tasks grows with depth.",
        f"Standard deviation over tasks, mean over the late third minus the early third ({span}); holds if the CI is above 0.",
        sd_diff, lo, hi, verdict(lo, hi), f"late − early spread {_fmt(sd_diff)}, {_ci(lo, hi)}", "04_rq2_instruction_tuned"))

    # F3: shared layers - SFT below PT early
    e, lo, hi = _ci_over_tasks(delta.loc[seen, early].mean(axis=1).to_numpy(), n_boot, seed)
    out.append(Finding(
        "F3", "Shared layers: in the early layers multi-task tuning makes representations more general - SFT is less "
              "similar to the controls than PT is.",
        f"ΔCKA = CKA(SFT, control) − CKA(PT, control), mean over the early third (layers {early[0]}-{early[-1]}) per task; "
        "holds if the CI over tasks is below 0.",
        e, lo, hi, verdict(lo, hi, expect="negative"), f"mean ΔCKA {_fmt(e)}, {_ci(lo, hi)}", "04_rq2_instruction_tuned"))

    # F4: transition band identifiable
    sub = sim[(sim["measure"] == measure) & (sim["pooling"] == pooling)]
    try:
        b = find_bands(sub, measure=measure, experimental=SFT, reference=PT, tasks=seen, n_boot=n_boot, seed=seed)
        score, ident = b.transition_score, b.identifiable
        v4 = "holds" if ident else ("does not hold" if score < 0.5 else "inconclusive")
        lo4 = hi4 = float("nan")  # the score has no interval; the boundaries' intervals are in the detail
        (s1, e1), (s2, e2) = b.ci["last_shared"], b.ci["last_transition"]
        detail = (f"bands {', '.join(f'{k} {s}-{e_}' for k, (s, e_) in b.layers.items())} of {L} (last shared layer "
                  f"95% CI [{s1:g}, {e1:g}], last transition layer [{s2:g}, {e2:g}]); rise {b.rise:+.3f}, "
                  f"rise/noise {b.rise_z:.1f}, sharpness {b.sharpness:.2f}, score {score:.2f}")
    except ValueError as exc:
        score, v4, lo4, hi4, detail = float("nan"), "inconclusive", float("nan"), float("nan"), f"band rule not applicable: {exc}"
    out.append(Finding(
        "F4", "Transition layers: in a middle band SFT's similarity to the controls rises sharply (the biggest SFT − PT change).",
        "The band rule (plateau-ramp-plateau fit of the median ΔCKA over seen tasks) finds an identifiable transition "
        "(score ≥ 1: rise ≥ 3 bootstrap SE and sharpness ≥ 0.5); does not hold if the score is below 0.5.",
        score, lo4, hi4, v4, detail, "05_layer_bands"))

    # F5: refinement - SFT above PT late
    e, lo, hi = _ci_over_tasks(delta.loc[seen, late].mean(axis=1).to_numpy(), n_boot, seed)
    out.append(Finding(
        "F5", "Refinement layers: in the upper layers SFT stays highly similar to the controls, above PT.",
        f"ΔCKA mean over the late third (layers {late[0]}-{late[-1]}) per task; holds if the CI over tasks is above 0.",
        e, lo, hi, verdict(lo, hi), f"mean ΔCKA {_fmt(e)}, {_ci(lo, hi)}", "04_rq2_instruction_tuned"))

    # F6: tuning helps most where PT is poor
    x = pt.loc[seen].mean(axis=1).to_numpy()
    y = delta.loc[seen, late].mean(axis=1).to_numpy()
    if len(x) > 2:
        r = float(np.corrcoef(x, y)[0, 1])
        rng = np.random.default_rng(seed + 2)
        boots = []
        for _ in range(n_boot):
            i = rng.integers(0, len(x), len(x))
            if np.std(x[i]) > 0 and np.std(y[i]) > 0:
                boots.append(np.corrcoef(x[i], y[i])[0, 1])
        lo, hi = (float(v) for v in percentile_ci(np.array(boots)))
    else:
        r = lo = hi = float("nan")
    out.append(Finding(
        "F6", "Instruction tuning helps most where pre-training encodes a task poorly.",
        "Pearson correlation over tasks between mean CKA(PT, control) and the late-third ΔCKA; holds if the CI is below 0.",
        r, lo, hi, verdict(lo, hi, expect="negative"), f"r = {_fmt(r)}, {_ci(lo, hi)}", "03_rq1_pretrained"))

    # F7: unseen tasks
    held = [t for t in heldout_tasks if t in pt.index]
    sub_comparisons = set(sim[(sim["measure"] == measure) & (sim["pooling"] == pooling)]["comparison"])
    if held and HELDOUT_SFT in sub_comparisons:
        hsft = task_layer_matrix(sim, HELDOUT_SFT, **kw).loc[held]
        hd = hsft - pt.loc[held]
        e, lo, hi = _ci_over_tasks(hd[early].mean(axis=1).to_numpy(), n_boot, seed)
        out.append(Finding(
            "F7a", "On tasks left out of instruction tuning, the tuned model is slightly less similar to the controls than "
                   "PT in the early layers (more general even on unseen tasks).",
            f"ΔCKA = CKA(held-out SFT, control) − CKA(PT, control) over the early third, held-out tasks only; holds if the CI is below 0.",
            e, lo, hi, verdict(lo, hi, expect="negative"), f"mean ΔCKA {_fmt(e)} over {len(held)} held-out tasks, {_ci(lo, hi)}",
            "06_rq3_unseen"))
        try:
            hb = find_bands(sub, measure=measure, experimental=HELDOUT_SFT, reference=PT, tasks=held, n_boot=n_boot, seed=seed)
            seen_ident = v4 == "holds"
            v7 = ("holds" if (not hb.identifiable and seen_ident) else
                  "does not hold" if hb.identifiable else "inconclusive")
            d7 = (f"held-out tasks: score {hb.transition_score:.2f} ({'identifiable' if hb.identifiable else 'not identifiable'}); "
                  f"seen tasks with SFT: {'identifiable' if seen_ident else 'not identifiable'}")
            s7 = hb.transition_score
        except ValueError as exc:
            v7, d7, s7 = "inconclusive", f"band rule not applicable: {exc}", float("nan")
        out.append(Finding(
            "F7b", "The three-band map does not carry over to unseen tasks: no transition block can be identified.",
            "The band rule on held-out SFT vs PT over the held-out tasks finds no identifiable transition while it finds "
            "one for SFT on the seen tasks (inconclusive if neither has one).",
            s7, float("nan"), float("nan"), v7, d7, "06_rq3_unseen"))
    return out


def findings_table(findings: list[Finding]) -> pd.DataFrame:
    """Findings as a DataFrame (one row each)."""
    return pd.DataFrame([f.__dict__ for f in findings])
