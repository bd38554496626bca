"""Findings as tests: verdicts follow the data (synthetic similarity tables with known structure)."""

import numpy as np
import pandas as pd
import pytest

from conftest import tidy_table
from layerwise.analysis import cluster_ranking, delta_by_cluster, layer_thirds
from layerwise.findings import evaluate as evaluate_findings, findings_table
from layerwise.findings import UNDERPOWERED, evaluate, verdict
from layerwise.report import findings_markdown
from layerwise.report_links import FINDING_CHAPTERS
from layerwise.vocab import HELDOUT_SFT, PT, SFT, SHUFFLED_PT

CLUSTERS = {"t_cbqa": "closed_book_qa", "t_cs": "commonsense", "t_para": "paraphrase", "t_sent": "sentiment",
            "t_coref": "coreference", "t_rc": "reading_comprehension", "t_s2t": "struct_to_text",
            "t_sum": "summarization", "t_tr": "translation", "t_nli": "nli", "t_misc": "misc", "t_rcc": "rc_commonsense"}
HELD = ["t_nli", "t_sum", "t_tr", "t_misc", "t_rcc", "t_coref"]  # 6: the fewest for an exact 95 % interval
L = 18


def _curves(paper_like: bool, seed: int = 0, tasks=CLUSTERS, n_layers: int = L) -> dict[str, np.ndarray]:
    """PT/SFT/held-out curves per task; ``paper_like`` builds the paper's pattern, else its opposite."""
    rng = np.random.default_rng(seed)
    curves = {PT: [], SFT: [], HELDOUT_SFT: []}
    layers = np.arange(1, n_layers + 1)
    for cluster in tasks.values():
        high = cluster in ("closed_book_qa", "commonsense", "paraphrase", "sentiment")
        pt = 0.95 - (0.25 if high else 0.45) * (layers - 1) / (n_layers - 1) + rng.normal(0, 0.005, n_layers)
        ramp = np.clip((layers - n_layers / 3) / (n_layers / 4.5), 0, 1)  # transition over the second quarter
        sft = pt - 0.05 + (0.5 * ramp * (layers / n_layers) + 0.35 * ramp)
        if not paper_like:
            pt = 0.5 + 0.4 * (layers - 1) / (n_layers - 1) + rng.normal(0, 0.005, n_layers)
            sft = pt + 0.05 - 0.2 * (layers - 1) / (n_layers - 1)
        held = pt - 0.05 + 0.25 * (layers - 1) / (n_layers - 1)  # below PT early, no transition block
        for comp, vals in ((PT, pt), (SFT, sft), (HELDOUT_SFT, held)):
            curves[comp].append(vals)
    return curves


def _table(paper_like: bool, seed: int = 0, tasks=CLUSTERS, n_layers: int = L, debiased_shift: float | None = None):
    """The tidy table; with ``debiased_shift`` also debiased_cka rows = linear CKA − shift (lower, as debiasing does)."""
    curves = _curves(paper_like, seed, tasks, n_layers)
    sim = tidy_table(curves, tasks=list(tasks), clusters=tasks)
    if debiased_shift is not None:
        deb = tidy_table({k: np.asarray(v) - debiased_shift for k, v in curves.items()}, tasks=list(tasks),
                         clusters=tasks, measure="debiased_cka")
        sim = pd.concat([sim, deb], ignore_index=True)
    return sim


@pytest.fixture(scope="module")
def good():
    return findings_table(evaluate_findings(_table(True, debiased_shift=0.3), heldout_tasks=HELD, n_boot=300, n_power_sims=8))


def test_paper_pattern_makes_the_findings_hold(good):
    v = good.set_index("id")["verdict"]
    for fid in ("F1", "F2", "F2b", "F3", "F4", "F5", "F7a", "F7b"):
        assert v[fid] == "holds", (fid, good.set_index("id").loc[fid, "detail"])
    assert v["F6"] == "inconclusive"  # no split-half table: no verdict from shared noise
    assert "split-half" in good.set_index("id").loc["F6", "detail"]
    assert set(good.columns) >= {"id", "verdict", "estimate", "low", "high"} and "chapter" not in good.columns
    assert set(good["id"]) == set(FINDING_CHAPTERS)  # the report layer links every finding to a chapter


def test_opposite_pattern_makes_them_fail_and_the_page_changes(good):
    bad = findings_table(evaluate_findings(_table(False, debiased_shift=0.3), heldout_tasks=HELD, n_boot=300, n_power_sims=8))
    v = bad.set_index("id")["verdict"]
    assert v["F2"] == "does not hold" and v["F3"] == "does not hold" and v["F5"] == "does not hold"
    assert v["F4"] == "does not hold", bad.set_index("id").loc["F4", "detail"]  # 12 tasks x 18 layers: powered
    page_good, page_bad = findings_markdown(good), findings_markdown(bad)
    assert page_good != page_bad
    assert "✘ does not hold" in page_bad and f"{int((good['verdict'] == 'holds').sum())} hold**" in page_good


def test_a_small_run_is_underpowered_not_negative():
    """4 tasks x 4 layers, the opposite pattern: no finite interval, no band power - never 'does not hold'."""
    tasks = dict(list(CLUSTERS.items())[:4])
    f = findings_table(evaluate_findings(_table(False, tasks=tasks, n_layers=4), heldout_tasks=["t_sent"], n_boot=200, n_power_sims=8))
    v = f.set_index("id")
    for fid in ("F2", "F3", "F5", "F4", "F7a", "F7b"):
        assert v.loc[fid, "verdict"] == UNDERPOWERED, (fid, v.loc[fid, "detail"])
    assert np.isinf(v.loc["F3", "mde"]) and np.isinf(v.loc["F3", "low"])  # 2**4 sign patterns cannot reach 95 %
    assert "fewer than 4" in v.loc["F7a", "detail"]


def test_rq3_with_three_heldout_tasks_is_underpowered():
    f = findings_table(evaluate_findings(_table(True), heldout_tasks=HELD[:3], n_boot=200, n_power_sims=8)).set_index("id")
    assert f.loc["F7a", "verdict"] == UNDERPOWERED and f.loc["F7b", "verdict"] == UNDERPOWERED
    assert f.loc["F7a", "n_tasks"] == 3 and "fewer than 4" in f.loc["F7b", "detail"]
    # 4 or 5 held-out tasks: no sign pattern is rare enough for an exact 95 % interval either
    f = findings_table(evaluate(_table(True), heldout_tasks=HELD[:5], n_boot=100, only=["F7a"])).set_index("id")
    assert f.loc["F7a", "verdict"] == UNDERPOWERED and np.isinf(f.loc["F7a", "mde"])


def test_estimates_are_recomputable_and_use_every_sft_task():
    sim = _table(True)
    f = findings_table(evaluate_findings(sim, heldout_tasks=HELD, n_boot=200, n_power_sims=8)).set_index("id")
    pt = sim[sim["comparison"] == PT].pivot(index="task", columns="layer", values="value")
    sft = sim[sim["comparison"] == SFT].pivot(index="task", columns="layer", values="value")
    early, late = layer_thirds(L)["early"], layer_thirds(L)["late"]
    # F3 and F5 average over all 12 tasks the SFT model trained on, held-out ones included
    assert f.loc["F3", "n_tasks"] == 12
    assert f.loc["F3", "estimate"] == pytest.approx((sft - pt)[early].mean(axis=1).mean())
    assert f.loc["F5", "estimate"] == pytest.approx((sft - pt)[late].mean(axis=1).mean())
    assert f.loc["F3", "low"] <= f.loc["F3", "estimate"] <= f.loc["F3", "high"]
    dev = (pt - pt.median(axis=0)).abs()  # F2b: Brown-Forsythe spread, late minus early third, mean over tasks
    assert f.loc["F2b", "estimate"] == pytest.approx((dev[late].mean(axis=1) - dev[early].mean(axis=1)).mean())
    assert "exact sign-flip" in f.loc["F3", "interval"] and "seed noise is not in the interval" in f.loc["F3", "interval"]
    page = findings_markdown(f.reset_index())
    assert f"{f.loc['F3', 'estimate']:+.3f}" in page


def test_level_findings_read_debiased_cka_with_the_biased_value_beside():
    sim = _table(True, debiased_shift=0.3)
    # make the debiased drift differ from the biased one: scale debiased PT by 0.5
    m = (sim["measure"] == "debiased_cka") & (sim["comparison"] == PT)
    sim.loc[m, "value"] *= 0.5
    f = findings_table(evaluate(sim, heldout_tasks=HELD, n_boot=200, only=["F2", "F3"])).set_index("id")
    early, late = layer_thirds(L)["early"], layer_thirds(L)["late"]

    def drift(measure):
        x = sim[(sim["comparison"] == PT) & (sim["measure"] == measure)].pivot(index="task", columns="layer", values="value")
        return (x[early].mean(axis=1) - x[late].mean(axis=1)).mean()

    assert f.loc["F2", "measure"] == "debiased_cka" and f.loc["F2", "estimate"] == pytest.approx(drift("debiased_cka"))
    assert f.loc["F2", "paper_estimate"] == pytest.approx(drift("linear_cka"))
    assert f.loc["F2", "paper_verdict"] == "holds"
    assert np.isnan(f.loc["F3", "paper_estimate"]) and f.loc["F3", "measure"] == "linear_cka"


def test_level_findings_fall_back_to_the_null_adjusted_measure():
    curves = _curves(True)
    null = {SHUFFLED_PT: np.asarray(curves[PT]) * 0 + np.linspace(0.6, 0.2, L)}  # a null that falls with depth
    sim = pd.concat([tidy_table(curves, tasks=list(CLUSTERS), clusters=CLUSTERS),
                     tidy_table(null, tasks=list(CLUSTERS), clusters=CLUSTERS)], ignore_index=True)
    f = findings_table(evaluate(sim, heldout_tasks=HELD, n_boot=200, only=["F2"])).set_index("id")
    early, late = layer_thirds(L)["early"], layer_thirds(L)["late"]
    pt = np.asarray(curves[PT]) - np.linspace(0.6, 0.2, L)
    want = (pt[:, [c - 1 for c in early]].mean(axis=1) - pt[:, [c - 1 for c in late]].mean(axis=1)).mean()
    assert f.loc["F2", "measure"] == "linear_cka − null" and f.loc["F2", "estimate"] == pytest.approx(want)
    # without debiased or null rows the level findings say they are not adjusted
    plain = findings_table(evaluate(_table(True), n_boot=100, only=["F2"])).set_index("id")
    assert "NOT adjusted" in plain.loc["F2", "test"]


def _halves_table(rng, n_tasks: int, rho: float, noise: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Full-sample table and split-half table of tasks whose true PT level and true late ΔCKA correlate at ``rho``.

    Each half's PT value is the true level plus that half's estimation noise; ΔCKA = SFT − PT shares the
    PT noise of its half (as it does when both come from the same examples).
    """
    tasks = {f"t{i:02d}": "nli" for i in range(n_tasks)}
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n_tasks)
    level, gain = 0.6 + 0.05 * z[:, 0], 0.1 + 0.05 * z[:, 1]
    frames, full = [], None
    halves_noise = [rng.normal(0, noise, n_tasks) for _ in range(2)]
    for half, e in zip("AB", halves_noise):
        pt = np.repeat((level + e)[:, None], L, axis=1)
        sft = np.repeat((level + gain)[:, None], L, axis=1)
        frames.append(tidy_table({PT: pt, SFT: sft}, tasks=list(tasks), clusters=tasks).assign(half=half))
    e = (halves_noise[0] + halves_noise[1]) / 2
    full = tidy_table({PT: np.repeat((level + e)[:, None], L, axis=1), SFT: np.repeat((level + gain)[:, None], L, axis=1)},
                      tasks=list(tasks), clusters=tasks)
    return full, pd.concat(frames, ignore_index=True)


def test_f6_split_half_holds_on_a_real_relation_and_is_unbiased_under_none():
    rng = np.random.default_rng(1)
    full, halves = _halves_table(rng, 12, rho=-0.95, noise=0.005)
    f = findings_table(evaluate(full, halves=halves, n_boot=100, only=["F6"])).set_index("id")
    assert f.loc["F6", "verdict"] == "holds" and f.loc["F6", "estimate"] < -0.6, f.loc["F6", "detail"]
    assert "split halves" in f.loc["F6", "interval"]
    # no true relation, large estimation noise: the split-half r centres on 0, the shared-noise r is pushed negative
    split, shared = [], []
    for _ in range(30):
        full, halves = _halves_table(rng, 12, rho=0.0, noise=0.05)
        split.append(evaluate(full, halves=halves, n_boot=50, only=["F6"])[0].estimate)
        a = halves[halves["half"] == "A"]
        x = a[a["comparison"] == PT].groupby("task")["value"].mean()
        y = a[a["comparison"] == SFT].groupby("task")["value"].mean() - x
        shared.append(np.corrcoef(x, y)[0, 1])
    assert abs(np.mean(split)) < 0.15 and np.mean(shared) < -0.5


def test_cluster_helpers_and_verdict_rule():
    sim = _table(True)
    rank = cluster_ranking(sim)
    assert set(rank.head(4)["paper_group"]) == {"high"} and rank["rank"].tolist() == list(range(1, 13))
    d = delta_by_cluster(sim)
    assert set(d.columns) == {"cluster", "layer", "delta", "n_tasks"} and len(d) == 12 * L
    assert verdict(0.1, 0.2) == "holds" and verdict(-0.2, -0.1) == "does not hold" and verdict(-0.1, 0.1) == "inconclusive"
    assert verdict(-0.2, -0.1, expect="negative") == "holds" and verdict(np.nan, 1) == "inconclusive"
    assert verdict(-np.inf, np.inf) == "inconclusive"
    with pytest.raises(ValueError, match="expect must be"):
        verdict(0, 1, expect="up")
    with pytest.raises(ValueError, match=r"measure \['svcca'\] not in the similarity table"):
        evaluate_findings(sim, measure="svcca")
