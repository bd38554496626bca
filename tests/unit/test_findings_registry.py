"""The findings registry: adding a finding is one decorated function; verdicts, links and the spec tables."""

import numpy as np
import pandas as pd
import pytest

from conftest import tidy_table
from layerwise.findings import (
    HOLDS,
    INCONCLUSIVE,
    REGISTRY,
    UNDERPOWERED,
    VERDICTS,
    Finding,
    deviations_table,
    evaluate,
    finding,
    findings_table,
    power_table,
    powered_verdict,
)
from layerwise.findings.paper import paper_shaped_delta
from layerwise.findings.tables import optimizer_steps
from layerwise.report_links import FINDING_CHAPTERS, VERDICT_MARKS, chapter_of, mark
from layerwise.spec import load_spec
from layerwise.vocab import PT, SFT

PAPER_IDS = ["F1", "F2", "F2b", "F3", "F4", "F5", "F6", "F7a", "F7b"]


def _sim(n_tasks=6, n_layers=6, seed=0):
    rng = np.random.default_rng(seed)
    pt = 0.8 + rng.normal(0, 0.01, (n_tasks, n_layers))
    return tidy_table({PT: pt, SFT: pt + 0.1 + rng.normal(0, 0.01, (n_tasks, n_layers))})


def test_the_paper_findings_are_registered_in_order_and_linked():
    assert list(REGISTRY)[:9] == PAPER_IDS
    assert set(PAPER_IDS) <= set(FINDING_CHAPTERS) and chapter_of("F4") == "05_layer_bands"
    assert set(VERDICT_MARKS) == set(VERDICTS) and mark(UNDERPOWERED).endswith("inconclusive (underpowered)")
    with pytest.raises(KeyError, match="has no chapter"):
        chapter_of("F99")
    with pytest.raises(KeyError, match="has no mark"):
        mark("maybe")
    for spec in REGISTRY.values():
        assert spec.paper_effect > 0 and "Fig." in spec.effect_source


def test_adding_a_finding_is_one_decorated_function():
    @finding("X1", paper_effect=0.05, source="Fig. 2: a test statistic")
    def x1(ctx):
        d = ctx.matrix(SFT) - ctx.pt
        est = float(d.to_numpy().mean())
        return Finding("X1", "SFT above PT", "mean ΔCKA > 0", est, est - 0.01, est + 0.01, HOLDS if est > 0 else INCONCLUSIVE,
                       f"{est:+.3f}", n_tasks=len(d), paper_effect=ctx.effects["X1"])

    try:
        out = evaluate(_sim(), n_boot=50, only=["X1"])
        assert [f.id for f in out] == ["X1"] and out[0].verdict == HOLDS and out[0].estimate == pytest.approx(0.1, abs=0.01)
        assert out[0].paper_effect == 0.05
        assert evaluate(_sim(), n_boot=50, only=["X1"], effects={"X1": 0.2})[0].paper_effect == 0.2
        with pytest.raises(ValueError, match="registered twice"):
            finding("X1", paper_effect=0.1, source="Fig. 1")(x1)
    finally:
        REGISTRY.pop("X1", None)
    with pytest.raises(ValueError, match=r"unknown finding id\(s\) \['X1'\]"):
        evaluate(_sim(), only=["X1"])


def test_powered_verdict_and_finding_checks():
    assert powered_verdict("does not hold", mde=0.3, effect=0.1) == UNDERPOWERED
    assert powered_verdict("does not hold", mde=0.05, effect=-0.1) == "does not hold"
    assert powered_verdict("inconclusive", mde=np.inf, effect=0.1) == UNDERPOWERED
    assert powered_verdict("holds", mde=np.inf, effect=0.1) == "holds"
    with pytest.raises(ValueError, match="is not one of"):
        Finding("F0", "c", "t", 0.0, 0.0, 0.0, "maybe", "d")


def test_paper_shaped_delta():
    c = paper_shaped_delta(32, 0.2)
    assert c[:9] == pytest.approx(-0.02) and c[14] == pytest.approx(0.18) and c[-1] == pytest.approx(0.2)
    assert np.argmax(np.diff(c)) in range(8, 15)  # steepest inside the paper's transition band 10-15
    assert paper_shaped_delta(4, 0.2).shape == (4,)
    with pytest.raises(ValueError, match="n_layers must be >= 3"):
        paper_shaped_delta(2, 0.2)


def test_deviations_table_from_the_default_spec():
    spec = load_spec("specs/default.yaml")
    d = deviations_table(spec).set_index("setting")
    assert list(d.columns) == ["paper", "this run"]
    n, e, b = spec.data.n_train, spec.training.epochs, spec.training.batch_size * spec.training.grad_accum
    sft = optimizer_steps(n * len(spec.tasks), epochs=e, batch_size=spec.training.batch_size, grad_accum=spec.training.grad_accum)
    ctrl = optimizer_steps(n, epochs=spec.training.control_epochs or e, batch_size=spec.training.batch_size,
                           grad_accum=spec.training.grad_accum)
    assert f": {sft}" in d.loc["optimizer steps, SFT", "this run"] and d.loc["optimizer steps, control", "this run"].endswith(f": {ctrl}")
    assert d.loc["SFT : control steps", "this run"] == f"{sft / ctrl:.0f} : 1"
    assert d.loc["held-out tasks (RQ3)", "this run"].startswith(f"{len(spec.heldout_tasks)} of {len(spec.tasks)}")
    assert "7 of 60" in d.loc["held-out tasks (RQ3)", "paper"]
    assert d.loc["chat template", "this run"] == spec.data.chat_template
    assert "Q4_K_M" in d.loc["model", "this run"] and d.loc["test examples", "this run"].startswith(str(spec.data.n_test))
    seeds = spec.training.sft_seeds
    assert d.loc["seeds", "this run"].startswith(f"{len(seeds)} SFT seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})")
    assert "left out of the verdicts" in d.loc["learned-its-task gate", "this run"]
    assert optimizer_steps(32, epochs=2, batch_size=8, grad_accum=1) == 8
    assert optimizer_steps(384, epochs=2, batch_size=8, grad_accum=1) == 96
    assert optimizer_steps(100, epochs=1.5, batch_size=4, grad_accum=4) == 9
    with pytest.raises(ValueError, match="positive sizes"):
        optimizer_steps(0, epochs=1, batch_size=8, grad_accum=1)


def test_power_table():
    f = findings_table(evaluate(_sim(8), n_boot=100, only=["F3", "F5"]))
    p = power_table(f).set_index("finding")
    assert list(p.columns) == ["statistic", "n_tasks", "MDE", "paper effect", "effect read from", "powered", "verdict"]
    assert p.loc["F5", "statistic"] == pytest.approx(f.set_index("id").loc["F5", "estimate"])
    assert p.loc["F3", "paper effect"] == REGISTRY["F3"].paper_effect and bool(p.loc["F5", "powered"]) == (p.loc["F5", "MDE"] <= 0.1)
    assert p.loc["F5", "verdict"] == "holds"
    with pytest.raises(ValueError, match=r"lacks columns \['mde'"):
        power_table(f.drop(columns=["mde"]))


def test_seed_column_widens_the_interval_with_seed_noise():
    """Several SFT seeds whose offsets differ: the interval of F5 includes the seed spread."""
    rng = np.random.default_rng(3)
    T, L = 12, 6
    pt = 0.7 + rng.normal(0, 0.01, (T, L))
    frames = [tidy_table({PT: pt}).assign(seed=np.nan)]
    for s, off in enumerate((0.02, 0.10, 0.18)):
        frames.append(tidy_table({SFT: pt + off + rng.normal(0, 0.005, (T, L))}).assign(seed=s))
    sim = pd.concat(frames, ignore_index=True)
    one = evaluate(sim[(sim["seed"] == 1) | sim["seed"].isna()], n_boot=300, only=["F5"])[0]
    many = evaluate(sim, n_boot=300, only=["F5"])[0]
    assert one.n_seeds == 1 and many.n_seeds == 3 and many.estimate == pytest.approx(one.estimate, abs=1e-3)
    assert (many.high - many.low) > 3 * (one.high - one.low)
    assert "3 seeds" in many.interval and "seed noise is not in the interval" in one.interval


def test_excluded_tasks_leave_every_verdict_and_are_named():
    sim = _sim(8)
    base = {f.id: f for f in evaluate(sim, n_boot=100, only=["F3", "F5"])}
    out = {f.id: f for f in evaluate(sim, n_boot=100, only=["F3", "F5"], exclude_tasks=["task00", "task03", "nope"])}
    assert out["F5"].n_tasks == base["F5"].n_tasks - 2 and out["F5"].detail.endswith("left out: task00, task03")
    kept = sim[~sim["task"].isin(["task00", "task03"])]
    assert out["F5"].estimate == pytest.approx(evaluate(kept, n_boot=100, only=["F5"])[0].estimate)
