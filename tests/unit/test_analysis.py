"""Findings as tests: verdicts follow the data (synthetic similarity tables with known structure)."""

import numpy as np
import pandas as pd
import pytest

from conftest import tidy_table
from layerwise.analysis import cluster_ranking, delta_by_cluster, evaluate_findings, findings_table, layer_thirds, verdict
from layerwise.report import findings_markdown

CLUSTERS = {"t_cbqa": "closed_book_qa", "t_cs": "commonsense", "t_para": "paraphrase", "t_sent": "sentiment",
            "t_coref": "coreference", "t_rc": "reading_comprehension", "t_s2t": "struct_to_text",
            "t_sum": "summarization", "t_tr": "translation", "t_nli": "nli"}
L = 18


def _table(paper_like: bool, seed: int = 0) -> pd.DataFrame:
    """PT/SFT/held-out curves per task; ``paper_like`` builds the paper's pattern, else its opposite."""
    rng = np.random.default_rng(seed)
    curves = {"PT vs control": [], "SFT vs control": [], "held-out SFT vs control": []}
    layers = np.arange(1, L + 1)
    for i, (task, cluster) in enumerate(CLUSTERS.items()):
        high = cluster in ("closed_book_qa", "commonsense", "paraphrase", "sentiment")
        pt = 0.95 - (0.25 if high else 0.45) * (layers - 1) / (L - 1) + rng.normal(0, 0.005, L)
        ramp = np.clip((layers - 6) / 4, 0, 1)  # transition over layers 7-10
        sft = pt - 0.05 + (0.5 * ramp * (layers / L) + 0.35 * ramp)
        if not paper_like:
            pt = 0.5 + 0.4 * (layers - 1) / (L - 1) + rng.normal(0, 0.005, L)
            sft = pt + 0.05 - 0.2 * (layers - 1) / (L - 1)
        held = pt - 0.03 + 0.2 * (layers - 1) / (L - 1)
        for comp, vals in (("PT vs control", pt), ("SFT vs control", sft), ("held-out SFT vs control", held)):
            curves[comp].append(vals)
    return tidy_table(curves, tasks=list(CLUSTERS), clusters=CLUSTERS)


def test_paper_pattern_makes_the_findings_hold():
    f = findings_table(evaluate_findings(_table(True), heldout_tasks=["t_nli", "t_sum", "t_tr"], n_boot=300))
    v = f.set_index("id")["verdict"]
    assert v["F1"] == "holds" and v["F2"] == "holds" and v["F2b"] == "holds"
    assert v["F3"] == "holds" and v["F4"] == "holds" and v["F5"] == "holds"
    assert v["F7a"] == "holds" and v["F7b"] == "holds"


def test_opposite_pattern_makes_them_fail_and_the_page_changes():
    held = ["t_nli", "t_sum", "t_tr"]
    good = findings_table(evaluate_findings(_table(True), heldout_tasks=held, n_boot=300))
    bad = findings_table(evaluate_findings(_table(False), heldout_tasks=held, n_boot=300))
    v = bad.set_index("id")["verdict"]
    assert v["F2"] == "does not hold" and v["F3"] == "does not hold" and v["F5"] == "does not hold"
    assert v["F4"] == "does not hold"
    page_good, page_bad = findings_markdown(good), findings_markdown(bad)
    assert page_good != page_bad
    assert "✘ does not hold" in page_bad and f"{int((good['verdict'] == 'holds').sum())} hold**" in page_good


def test_estimates_are_recomputable_from_the_table():
    sim = _table(True)
    f = findings_table(evaluate_findings(sim, n_boot=200)).set_index("id")
    pt = sim[sim["comparison"] == "PT vs control"].pivot(index="task", columns="layer", values="value")
    sft = sim[sim["comparison"] == "SFT vs control"].pivot(index="task", columns="layer", values="value")
    early = layer_thirds(L)["early"]
    assert f.loc["F3", "estimate"] == pytest.approx((sft - pt)[early].mean(axis=1).mean())
    page = findings_markdown(f.reset_index())
    assert f"{f.loc['F3', 'estimate']:+.3f}" in page


def test_cluster_helpers_and_verdict_rule():
    sim = _table(True)
    rank = cluster_ranking(sim)
    assert set(rank.head(4)["paper_group"]) == {"high"} and rank["rank"].tolist() == list(range(1, 11))
    d = delta_by_cluster(sim)
    assert set(d.columns) == {"cluster", "layer", "delta", "n_tasks"} and len(d) == 10 * L
    assert verdict(0.1, 0.2) == "holds" and verdict(-0.2, -0.1) == "does not hold" and verdict(-0.1, 0.1) == "inconclusive"
    assert verdict(-0.2, -0.1, expect="negative") == "holds" and verdict(np.nan, 1) == "inconclusive"
    with pytest.raises(ValueError, match="expect must be"):
        verdict(0, 1, expect="up")
    with pytest.raises(ValueError, match=r"measure \['svcca'\] not in the similarity table"):
        evaluate_findings(sim, measure="svcca")
