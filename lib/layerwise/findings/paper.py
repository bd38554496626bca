"""The paper's findings (Zhao, Ziser and Cohen 2024, §4-§5 and Figures 1-3 and 7), one function each.

Each function reads a :class:`~layerwise.findings.core.Context` and returns a
:class:`~layerwise.findings.core.Finding`. Intervals are valid at the run's size
(:mod:`layerwise.stats`): exact sign-flip intervals over tasks up to 12 tasks, BCa beyond; an
exact permutation interval for the two-group difference of F1; a hierarchical bootstrap over
seeds and tasks when the table has several experimental-adapter seeds. The level findings (F1,
F2, F2b) read debiased CKA (or CKA minus its shuffled-row null) and show the paper's biased
measure beside it. F3-F6 use every task the SFT model trained on.

The paper's effects are read off its figures (it reports no effect sizes in numbers); they are
the sizes a run must be able to see before a missing effect counts against the paper.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..analysis import PAPER_CLUSTER_GROUPS
from ..bands import find_bands
from ..stats import (
    MAX_EXACT_TASKS,
    bca_interval,
    correlation_mde,
    hierarchical_bootstrap,
    location_interval,
    minimal_detectable_effect,
    permutation_shift_interval,
    sign_test,
)
from ..vocab import HELDOUT_SFT, PT, SFT
from .core import (
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    UNDERPOWERED,
    Context,
    Finding,
    finding,
    powered_verdict,
    verdict,
)

__all__: list[str] = []

#: Fewest held-out tasks for an RQ3 verdict (fewer: "inconclusive (underpowered)").
MIN_HELDOUT_TASKS = 4
#: Fewest layers for a band verdict: two layers per band, so a transition band is not a single step.
MIN_BAND_LAYERS = 6
#: Power at which the minimal detectable effect is computed.
POWER = 0.8


def _fmt(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:+.3f}"


def _ci(lo: float, hi: float, level: float) -> str:
    if np.isnan(lo) or np.isnan(hi):
        return "no interval"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"no finite {level:.0%} interval at this number of tasks"
    return f"{level:.0%} CI [{lo:+.3f}, {hi:+.3f}]"


def _mde_text(mde: float, effect: float) -> str:
    m = "∞" if not np.isfinite(mde) else f"{mde:.3f}"
    return f"minimal detectable effect {m} vs the paper's {abs(effect):.3f}"


def _over_tasks(ctx: Context, d: pd.DataFrame, *, seedless: bool = False) -> dict:
    """Mean over tasks of per-(seed, task) values with a small-sample interval and its SE.

    One seed: :func:`~layerwise.stats.location_interval` over tasks. Several seeds: that
    interval (on the seed-averaged task values) widened to the hierarchical bootstrap over seeds
    and tasks where that is wider, so seed noise is in it.
    """
    per_task = d.groupby("task")["value"].mean()
    li = location_interval(per_task.to_numpy(), level=ctx.level, n_boot=ctx.n_boot, seed=ctx.seed)
    n_seeds = int(d["seed"].nunique())
    lo, hi, se, method = li.low, li.high, li.se, li.method
    if n_seeds > 1 and li.n > 1:
        h = hierarchical_bootstrap(d, n_boot=ctx.n_boot, level=ctx.level, seed=ctx.seed)
        lo, hi, se = min(lo, h.low), max(hi, h.high), max(se, float(h.se))
        method += f", widened to the bootstrap over {n_seeds} seeds then tasks where that is wider"
    elif li.n > 1:
        method += "; PT has no seed" if seedless else "; one SFT seed: seed noise is not in the interval"
    mde = minimal_detectable_effect(se, li.n - 1, level=ctx.level, power=POWER) if np.isfinite(lo) and np.isfinite(hi) else float("inf")
    return dict(estimate=li.estimate, low=lo, high=hi, interval=method, n_tasks=li.n, n_seeds=n_seeds, mde=mde,
                values=per_task)


def _signs(values: pd.Series, below: bool) -> str:
    k, n, p = sign_test(values.to_numpy(), alternative="less" if below else "greater")
    side = "below" if below else "above"
    return f"{(n - k) if below else k} of {n} tasks {side} 0 (exact sign test p = {p:.3f})"


def _level_pair(ctx: Context, compute) -> tuple[dict, dict]:
    """``compute(matrix)`` on the level matrix (debiased / null-adjusted) and on the paper's measure."""
    level, _, _ = ctx.level_values
    return compute(level), compute(ctx.pt)


def _finding(fid: str, claim: str, test: str, r: dict, v: str, detail: str, ctx: Context, *, measure: str,
             paper: dict | None = None, paper_verdict: str = "") -> Finding:
    paper = paper or {}
    return Finding(
        fid, claim, test, float(r["estimate"]), float(r["low"]), float(r["high"]), v, detail,
        interval=r.get("interval", ""), measure=measure, n_tasks=int(r.get("n_tasks", 0)),
        n_seeds=int(r.get("n_seeds", 1)), mde=float(r.get("mde", float("nan"))), paper_effect=ctx.effects[fid],
        paper_estimate=float(paper.get("estimate", float("nan"))), paper_low=float(paper.get("low", float("nan"))),
        paper_high=float(paper.get("high", float("nan"))), paper_verdict=paper_verdict)


def _one_seed(per_task: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"seed": 0, "task": per_task.index, "value": per_task.to_numpy()})


# ------------------------------------------------------------------------------------------------
# RQ1 and the level findings
# ------------------------------------------------------------------------------------------------


@finding("F1", paper_effect=0.10, source="Fig. 3 (PT): 'high' clusters well above 'low' ones")
def f1_cluster_split(ctx: Context) -> Finding:
    """F1: pre-training encodes the paper's 'high' clusters better than its 'low' ones."""
    groups = ctx.clusters.reindex(ctx.pt.index)

    def compute(m: pd.DataFrame) -> dict:
        mean = m.mean(axis=1)
        g = groups.reindex(mean.index)
        hi_v = mean[g.isin(PAPER_CLUSTER_GROUPS["high"])].dropna().to_numpy()
        lo_v = mean[g.isin(PAPER_CLUSTER_GROUPS["low"])].dropna().to_numpy()
        n = hi_v.size + lo_v.size
        if not (hi_v.size and lo_v.size):
            return dict(estimate=np.nan, low=np.nan, high=np.nan, interval="no task in one of the groups", n_tasks=n,
                        mde=np.inf, n_high=hi_v.size, n_low=lo_v.size)
        est = float(hi_v.mean() - lo_v.mean())
        if n <= MAX_EXACT_TASKS:
            lo, hi = permutation_shift_interval(hi_v, lo_v, level=ctx.level, seed=ctx.seed)
            method = f"exact permutation interval of the shift ({hi_v.size} vs {lo_v.size} tasks)"
        else:
            b = bca_interval((hi_v, lo_v), lambda a, c, axis: np.mean(a, axis=axis) - np.mean(c, axis=axis),
                             n_boot=ctx.n_boot, level=ctx.level, seed=ctx.seed)
            lo, hi = b.low, b.high
            method = f"BCa bootstrap of tasks within each group ({hi_v.size} vs {lo_v.size} tasks)"
        var = (hi_v.var(ddof=1) / hi_v.size if hi_v.size > 1 else np.nan) + (lo_v.var(ddof=1) / lo_v.size if lo_v.size > 1 else np.nan)
        se = float(np.sqrt(var))
        mde = minimal_detectable_effect(se, n - 2, level=ctx.level, power=POWER) if np.isfinite(lo) and np.isfinite(hi) else np.inf
        return dict(estimate=est, low=lo, high=hi, interval=method + "; PT has no seed", n_tasks=n, mde=mde,
                    n_high=hi_v.size, n_low=lo_v.size)

    r, p = _level_pair(ctx, compute)
    _, label, how = ctx.level_values
    v = powered_verdict(verdict(r["low"], r["high"]), r["mde"], ctx.effects["F1"])
    detail = (f"difference {_fmt(r['estimate'])} on {label} ({r['n_high']} high-cluster vs {r['n_low']} low-cluster tasks), "
              f"{_ci(r['low'], r['high'], ctx.level)}; {_mde_text(r['mde'], ctx.effects['F1'])}; "
              f"the paper's {ctx.measure}: {_fmt(p['estimate'])}, {_ci(p['low'], p['high'], ctx.level)}")
    return _finding("F1", "Pre-training already encodes some task clusters much better than others: closed-book QA, "
                    "commonsense, paraphrase and sentiment high; coreference, reading comprehension, struct-to-text, "
                    "summarization and translation low.",
                    f"Mean CKA(PT, control) over all layers, on {how}: tasks of the paper's 'high' clusters minus tasks "
                    "of its 'low' clusters; holds if the interval is above 0.",
                    r, v, detail, ctx, measure=label, paper=p, paper_verdict=verdict(p["low"], p["high"]))


def _level_finding(ctx: Context, fid: str, per_task, what: str, claim: str, test: str) -> Finding:
    """A level finding: the mean over tasks of ``per_task(matrix)`` on the level measure, the paper's beside it.

    ``test`` may hold ``{how}``, replaced by how the level measure was obtained.
    """
    def compute(m: pd.DataFrame) -> dict:
        return _over_tasks(ctx, _one_seed(per_task(m.dropna()).dropna()), seedless=True)

    r, p = _level_pair(ctx, compute)
    _, label, how = ctx.level_values
    v = powered_verdict(verdict(r["low"], r["high"]), r["mde"], ctx.effects[fid])
    detail = (f"{what} {_fmt(r['estimate'])} on {label}, {_ci(r['low'], r['high'], ctx.level)}; "
              f"{_signs(r['values'], below=False)}; {_mde_text(r['mde'], ctx.effects[fid])}; "
              f"the paper's {ctx.measure}: {_fmt(p['estimate'])}, {_ci(p['low'], p['high'], ctx.level)}")
    return _finding(fid, claim, test.format(how=how), r, v, detail, ctx, measure=label, paper=p,
                    paper_verdict=verdict(p["low"], p["high"]))


@finding("F2", paper_effect=0.10, source="Fig. 2 (PT): CKA falls from the early to the upper layers")
def f2_pt_drift(ctx: Context) -> Finding:
    """F2: CKA(PT, control) is highest early and falls with depth (early third minus late third)."""
    early, late = ctx.thirds["early"], ctx.thirds["late"]
    return _level_finding(
        ctx, "F2", lambda m: m[early].mean(axis=1) - m[late].mean(axis=1), "early − late",
        "Pre-trained representations are closest to the controls in the early layers and drift away with depth.",
        f"Per task, mean CKA(PT, control) on {{how}} in the early minus the late third (layers {early[0]}-{early[-1]} vs "
        f"{late[0]}-{late[-1]} of {ctx.n_layers}); mean over tasks, holds if the interval is above 0.")


@finding("F2b", paper_effect=0.04, source="Fig. 2 (PT): the spread across tasks widens in the middle and upper layers")
def f2b_pt_spread(ctx: Context) -> Finding:
    """F2b: the spread of CKA(PT, control) across tasks grows from the early to the late third.

    Spread is each task's absolute deviation from the across-task median of its layer (the
    Brown & Forsythe 1974 form of Levene's test), so the statistic is a mean over tasks of
    per-task values and gets the same small-sample interval as the other findings.
    """
    early, late = ctx.thirds["early"], ctx.thirds["late"]

    def spread_change(m: pd.DataFrame) -> pd.Series:
        dev = (m - m.median(axis=0)).abs()
        return dev[late].mean(axis=1) - dev[early].mean(axis=1)

    return _level_finding(
        ctx, "F2b", spread_change, "late − early spread", "The spread of CKA(PT, control) across tasks grows with depth.",
        "Per task, the absolute deviation of CKA(PT, control) on {how} from the median over tasks of its layer, mean "
        "over the late third minus the early third; mean over tasks, holds if the interval is above 0.")


# ------------------------------------------------------------------------------------------------
# RQ2: the bands (every task the SFT model trained on)
# ------------------------------------------------------------------------------------------------


def _delta_finding(ctx: Context, fid: str, third: str, expect: str) -> tuple[dict, str]:
    layers = ctx.thirds[third]
    d = ctx.delta_by_seed(SFT, layers, ctx.sft_tasks)
    r = _over_tasks(ctx, d)
    v = powered_verdict(verdict(r["low"], r["high"], expect=expect), r["mde"], ctx.effects[fid])
    detail = (f"mean ΔCKA {_fmt(r['estimate'])} over {r['n_tasks']} tasks, {_ci(r['low'], r['high'], ctx.level)}; "
              f"{_signs(r['values'], below=expect == 'negative')}; {_mde_text(r['mde'], ctx.effects[fid])}")
    return r, v, detail


@finding("F3", paper_effect=0.02, source="Fig. 2: SFT slightly below PT in layers 1-9 for many tasks")
def f3_shared(ctx: Context) -> Finding:
    """F3: in the early third SFT is less similar to the controls than PT (ΔCKA < 0)."""
    early = ctx.thirds["early"]
    r, v, detail = _delta_finding(ctx, "F3", "early", "negative")
    return _finding("F3", "Shared layers: in the early layers multi-task tuning makes representations more general - SFT "
                    "is less similar to the controls than PT is.",
                    f"ΔCKA = CKA(SFT, control) − CKA(PT, control), mean over the early third (layers {early[0]}-{early[-1]}) "
                    "per task, every task the SFT model trained on; holds if the interval is below 0.",
                    r, v, detail, ctx, measure=ctx.measure)


#: Paper's band boundaries (Fig. 1: shared 1-9, transition 10-15 of 32 layers), as fractions of depth.
PAPER_BOUNDARIES = (9 / 32, 15 / 32)


def paper_shaped_delta(n_layers: int, rise: float) -> np.ndarray:
    """A ΔCKA curve shaped like the paper's Fig. 2 at ``n_layers`` layers, with a transition of size ``rise``.

    Slightly negative (``-0.1 * rise``) in the shared band, a linear ramp through the transition
    band, then a smaller continued rise (``0.1 * rise``) through the refinement band; the bands at
    the paper's relative depth (:data:`PAPER_BOUNDARIES`, at least one layer each).

    Returns:
        ``(n_layers,)`` float64 curve for layers 1..L.

    Raises:
        ValueError: ``n_layers < 3`` (three bands need three layers).
    """
    L = int(n_layers)
    if L < 3:
        raise ValueError(f"n_layers must be >= 3 for three bands, got {n_layers}")
    b1 = min(max(1, round(PAPER_BOUNDARIES[0] * L)), L - 2)
    b2 = min(max(b1 + 1, round(PAPER_BOUNDARIES[1] * L)), L - 1)
    layers = np.arange(1, L + 1, dtype=np.float64)
    ramp = np.clip((layers - b1) / (b2 - b1), 0.0, 1.0)
    tail = np.clip((layers - b2) / max(L - b2, 1), 0.0, 1.0)
    return -0.1 * rise + rise * ramp + 0.1 * rise * tail


def _bands(ctx: Context, experimental: str, tasks: list[str]):
    """The band rule on this run, and its power to find a transition of the paper's size here.

    Power: the rule is run on ``ctx.n_power_sims`` simulated tables of this run's shape, each a
    paper-shaped ΔCKA curve (:func:`paper_shaped_delta`, rise = the paper's effect) plus this
    run's per-task deviations from its median curve, resampled by task (so the noise is the
    run's own). The fraction of tables where the rule finds an identifiable transition is the
    power. With fewer than :data:`MIN_BAND_LAYERS` layers the power is 0 by design. The MDE is the rise the rule would find with 80 % probability at the run's bootstrap
    noise of the rise: ``(min_rise_z + z_0.8) * rise_se``.
    """
    sub = ctx.sim_seed_mean
    sub = sub[(sub["measure"] == ctx.measure) & (sub["pooling"] == ctx.pooling)]
    b = find_bands(sub, measure=ctx.measure, experimental=experimental, reference=PT, tasks=tasks,
                   n_boot=ctx.n_boot, seed=ctx.seed)
    mde = (b.min_rise_z + float(sps.norm.ppf(POWER))) * b.rise_se if np.isfinite(b.rise_se) else float("inf")
    exp, ref = ctx.matrix(experimental, sim=sub).loc[list(b.tasks)], ctx.pt.loc[list(b.tasks)]
    D = (exp - ref).to_numpy()
    T, L = D.shape
    if L < MIN_BAND_LAYERS:
        return b, float("inf"), 0.0
    if T < 2 or ctx.n_power_sims < 1:
        return b, mde, 0.0
    resid = D - np.median(D, axis=0)
    rng = np.random.default_rng(ctx.seed)
    curve = paper_shaped_delta(L, abs(ctx.effects.get("F4", 0.2)))
    hits = 0
    for k in range(ctx.n_power_sims):
        fake = curve + resid[rng.integers(0, T, T)]
        table = pd.DataFrame({"task": np.repeat([f"s{i}" for i in range(T)], L), "layer": np.tile(np.arange(1, L + 1), T),
                              "measure": ctx.measure})
        sim = pd.concat([table.assign(comparison=PT, value=0.0), table.assign(comparison=SFT, value=fake.ravel())])
        hits += find_bands(sim, measure=ctx.measure, n_boot=ctx.n_power_boot, seed=ctx.seed + 1 + k).identifiable
    return b, mde, hits / ctx.n_power_sims


def _band_power_text(mde: float, power: float, ctx: Context, fid: str) -> str:
    if ctx.n_layers < MIN_BAND_LAYERS:
        return (f"with {ctx.n_layers} layers (fewer than {MIN_BAND_LAYERS}) the three bands cannot have two layers each, "
                "so the run cannot tell a transition band from a step")
    m = "∞" if not np.isfinite(mde) else f"{mde:.3f}"
    return (f"at this noise the rule finds a rise of {m} with {POWER:.0%} probability, and finds a paper-shaped "
            f"transition of the paper's size ({abs(ctx.effects[fid]):.3f}) in {power:.0%} of {ctx.n_power_sims} simulated runs")


@finding("F4", paper_effect=0.20, source="Fig. 2: SFT rises sharply to high similarity in layers 10-15")
def f4_transition(ctx: Context) -> Finding:
    """F4: the band rule finds an identifiable transition band in ΔCKA."""
    L = ctx.n_layers
    try:
        b, mde, pw = _bands(ctx, SFT, ctx.sft_tasks)
        score = float(b.transition_score)
        raw = HOLDS if b.identifiable else (DOES_NOT_HOLD if score < 0.5 else INCONCLUSIVE)
        v = powered_verdict(raw, mde if pw >= POWER else float("inf"), ctx.effects["F4"])
        (s1, e1), (s2, e2) = b.ci["last_shared"], b.ci["last_transition"]
        detail = (f"bands {', '.join(f'{k} {s}-{e_}' for k, (s, e_) in b.layers.items())} of {L} (last shared layer "
                  f"{ctx.level:.0%} CI [{s1:g}, {e1:g}], last transition layer [{s2:g}, {e2:g}]); rise {b.rise:+.3f}, "
                  f"rise/noise {b.rise_z:.1f}, sharpness {b.sharpness:.2f}, score {score:.2f}; {_band_power_text(mde, pw, ctx, 'F4')}")
        r = dict(estimate=score, low=np.nan, high=np.nan, n_tasks=len(b.tasks), mde=mde,
                 interval=f"bootstrap over {len(b.tasks)} tasks for the rise's noise and the boundaries' intervals")
    except ValueError as exc:
        v, detail = INCONCLUSIVE, f"band rule not applicable: {exc}"
        r = dict(estimate=np.nan, low=np.nan, high=np.nan, n_tasks=len(ctx.sft_tasks), mde=np.inf, interval="")
    ctx.cache["F4"] = v
    return _finding("F4", "Transition layers: in a middle band SFT's similarity to the controls rises sharply (the biggest "
                    "SFT − PT change).",
                    "The band rule (plateau-ramp-plateau fit of the median ΔCKA over every task the SFT model trained on) "
                    "finds an identifiable transition (score ≥ 1: rise ≥ 3 bootstrap SE and sharpness ≥ 0.5); does not "
                    "hold if the score is below 0.5 and the run could have found a rise of the paper's size.",
                    r, v, detail, ctx, measure=ctx.measure)


@finding("F5", paper_effect=0.10, source="Fig. 2: SFT stays high in layers 16-32 while PT keeps falling")
def f5_refinement(ctx: Context) -> Finding:
    """F5: in the late third SFT is more similar to the controls than PT (ΔCKA > 0)."""
    late = ctx.thirds["late"]
    r, v, detail = _delta_finding(ctx, "F5", "late", "positive")
    return _finding("F5", "Refinement layers: in the upper layers SFT stays highly similar to the controls, above PT.",
                    f"ΔCKA mean over the late third (layers {late[0]}-{late[-1]}) per task, every task the SFT model "
                    "trained on; holds if the interval is above 0.",
                    r, v, detail, ctx, measure=ctx.measure)


@finding("F6", paper_effect=0.50, source="Fig. 3: the clusters PT encodes worst (struct-to-text, translation) gain most")
def f6_helps_poor(ctx: Context) -> Finding:
    """F6: tasks with low CKA(PT, control) gain most (negative correlation), on split halves of the examples."""
    late = ctx.thirds["late"]
    claim = "Instruction tuning helps most where pre-training encodes a task poorly."
    test = ("Pearson correlation over tasks between mean CKA(PT, control) from one half of the test examples and the "
            "late-third ΔCKA from the other half (split-half, so the two share no estimation noise); holds if the "
            "interval is below 0.")
    halves = ctx.halves
    have = set(halves["half"]) if halves is not None and "half" in halves else set()
    if not {"A", "B"} <= have:
        x = ctx.pt.loc[ctx.sft_tasks].mean(axis=1)
        y = (ctx.matrix(SFT).loc[ctx.sft_tasks, late] - ctx.pt.loc[ctx.sft_tasks, late]).mean(axis=1)
        shared = float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and np.std(x) > 0 and np.std(y) > 0 else float("nan")
        detail = ("no split-half similarity table: CKA(PT, control) and ΔCKA computed on the same examples share "
                  "PT's estimation noise, which pushes r negative by itself, so no verdict is drawn "
                  f"(the shared-noise r, biased and not used: {_fmt(shared)})")
        r = dict(estimate=np.nan, low=np.nan, high=np.nan, n_tasks=len(x), mde=correlation_mde(len(x)),
                 interval="split-half table missing")
        return _finding("F6", claim, test, r, INCONCLUSIVE, detail, ctx, measure=ctx.measure)
    a = halves[halves["half"] == "A"].drop(columns="half")
    b = halves[halves["half"] == "B"].drop(columns="half")
    pt_a = ctx.matrix(PT, sim=a)
    pt_b, sft_b = ctx.matrix(PT, sim=b), ctx.matrix(SFT, sim=b)
    tasks = [t for t in ctx.sft_tasks if t in pt_a.index and t in pt_b.index and t in sft_b.index]
    x = pt_a.loc[tasks].mean(axis=1).to_numpy()
    y = (sft_b.loc[tasks, late] - pt_b.loc[tasks, late]).mean(axis=1).to_numpy()
    n = len(tasks)
    mde = correlation_mde(n, level=ctx.level, power=POWER)
    if n < 4 or np.std(x) == 0 or np.std(y) == 0:
        rr = float(np.corrcoef(x, y)[0, 1]) if n > 2 and np.std(x) > 0 and np.std(y) > 0 else float("nan")
        r = dict(estimate=rr, low=np.nan, high=np.nan, n_tasks=n, mde=mde, interval="no interval (fewer than 4 tasks)")
        return _finding("F6", claim, test, r, powered_verdict(INCONCLUSIVE, mde, ctx.effects["F6"]),
                        f"r = {_fmt(rr)} over {n} tasks (split halves); {_mde_text(mde, ctx.effects['F6'])}", ctx,
                        measure=ctx.measure)
    res = sps.pearsonr(x, y, alternative="less")
    ci = sps.pearsonr(x, y).confidence_interval(confidence_level=ctx.level)
    r = dict(estimate=float(res.statistic), low=float(ci.low), high=float(ci.high), n_tasks=n, mde=mde,
             interval=f"Fisher-z interval over {n} tasks, split halves of the test examples")
    v = powered_verdict(verdict(r["low"], r["high"], expect="negative"), mde, ctx.effects["F6"])
    detail = (f"r = {_fmt(r['estimate'])} over {n} tasks (PT from half A, ΔCKA from half B), "
              f"{_ci(r['low'], r['high'], ctx.level)}, one-sided p = {res.pvalue:.3f}; {_mde_text(mde, ctx.effects['F6'])}")
    return _finding("F6", claim, test, r, v, detail, ctx, measure=ctx.measure)


# ------------------------------------------------------------------------------------------------
# RQ3: unseen tasks
# ------------------------------------------------------------------------------------------------


def _few_heldout(n: int) -> str:
    return f"; only {n} held-out tasks (fewer than {MIN_HELDOUT_TASKS}): underpowered by design" if n < MIN_HELDOUT_TASKS else ""


@finding("F7a", paper_effect=0.02, source="Fig. 7: PT slightly above held-out SFT up to about layer 12")
def f7a_unseen_shared(ctx: Context) -> Finding | None:
    """F7a: on held-out tasks, the held-out SFT model is below PT in the early third (ΔCKA < 0)."""
    held = ctx.heldout
    if not held:
        return None
    early = ctx.thirds["early"]
    d = ctx.delta_by_seed(HELDOUT_SFT, early, held)
    r = _over_tasks(ctx, d)
    v = powered_verdict(verdict(r["low"], r["high"], expect="negative"), r["mde"], ctx.effects["F7a"])
    if len(held) < MIN_HELDOUT_TASKS:
        v = UNDERPOWERED
    detail = (f"mean ΔCKA {_fmt(r['estimate'])} over {len(held)} held-out tasks, {_ci(r['low'], r['high'], ctx.level)}; "
              f"{_mde_text(r['mde'], ctx.effects['F7a'])}{_few_heldout(len(held))}")
    return _finding("F7a", "On tasks left out of instruction tuning, the tuned model is slightly less similar to the controls "
                    "than PT in the early layers (more general even on unseen tasks).",
                    "ΔCKA = CKA(held-out SFT, control) − CKA(PT, control) over the early third, held-out tasks only; holds "
                    f"if the interval is below 0; underpowered with fewer than {MIN_HELDOUT_TASKS} held-out tasks.",
                    r, v, detail, ctx, measure=ctx.measure)


@finding("F7b", paper_effect=0.20, source="Fig. 7 vs Fig. 2: no transition block on unseen tasks")
def f7b_unseen_no_transition(ctx: Context) -> Finding | None:
    """F7b: the band rule finds no transition on held-out tasks, while it finds one for SFT on its tasks."""
    held = ctx.heldout
    if not held:
        return None
    if "F4" not in ctx.cache:  # F4 not evaluated in this call (``only=``): its band rule is needed here
        f4_transition(ctx)
    seen_ident = ctx.cache["F4"] == HOLDS
    try:
        hb, mde, pw = _bands(ctx, HELDOUT_SFT, held)
        powered = pw >= POWER and mde <= abs(ctx.effects["F7b"])
        if hb.identifiable:
            v = DOES_NOT_HOLD
        elif seen_ident:
            v = HOLDS if powered else UNDERPOWERED
        else:
            v = INCONCLUSIVE if powered else UNDERPOWERED
        d7 = (f"held-out tasks: score {hb.transition_score:.2f} ({'identifiable' if hb.identifiable else 'not identifiable'}; "
              f"{_band_power_text(mde, pw, ctx, 'F7b')}); seen tasks with SFT: "
              f"{'identifiable' if seen_ident else 'not identifiable'}")
        s7 = float(hb.transition_score)
    except ValueError as exc:
        v, d7, s7, mde = INCONCLUSIVE, f"band rule not applicable: {exc}", float("nan"), float("inf")
    if len(held) < MIN_HELDOUT_TASKS:
        v = UNDERPOWERED
    r = dict(estimate=s7, low=np.nan, high=np.nan, n_tasks=len(held), mde=mde,
             interval=f"bootstrap over {len(held)} held-out tasks for the rise's noise")
    return _finding("F7b", "The three-band map does not carry over to unseen tasks: no transition block can be identified.",
                    "The band rule on held-out SFT vs PT over the held-out tasks finds no identifiable transition although "
                    "it could find one of the paper's size, while it finds one for SFT on its tasks (inconclusive if "
                    f"neither has one; underpowered with fewer than {MIN_HELDOUT_TASKS} held-out tasks).",
                    r, v, d7 + _few_heldout(len(held)), ctx, measure=ctx.measure)
