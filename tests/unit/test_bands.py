"""Tests for layerwise.bands: the segmented band rule, its identifiability criterion, CIs and relative depth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import tidy_table
from layerwise import bands as B


def ramp(L: int, b1: int, b2: int, a: float = -0.05, c: float = 0.3, s1: float = 0.0, s3: float = 0.0) -> np.ndarray:
    """The rule's model curve: slope s1 up to a at b1, linear to c at b2, then slope s3 (layers 1..L)."""
    layer = np.arange(1, L + 1)
    return (a + (c - a) * np.clip((layer - b1) / (b2 - b1), 0.0, 1.0)
            + s1 * np.minimum(layer - b1, 0) + s3 * np.maximum(layer - b2, 0))


def table(delta: np.ndarray, pt: np.ndarray | None = None, *, measure: str = "linear_cka",
          sft_label: str = B.SFT) -> pd.DataFrame:
    """Tidy CKA table whose SFT - PT difference is ``delta`` (tasks x layers)."""
    T, L = delta.shape
    pt = np.linspace(0.9, 0.5, L)[None, :].repeat(T, 0) if pt is None else pt
    return tidy_table({B.PT: pt, sft_label: pt + delta}, measure=measure)


def noisy(base: np.ndarray, T: int = 23, sd: float = 0.05, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    L = base.size
    return base + rng.normal(0, sd, (T, 1)) + rng.normal(0, sd, (T, L))


# ---------------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("L,b1,b2", [(32, 9, 15), (18, 5, 8), (30, 3, 4), (12, 1, 2), (3, 1, 2), (10, 2, 9)])
def test_fit_recovers_knots_exactly_without_noise(L, b1, b2):
    f = B.fit_bands(ramp(L, b1, b2))
    assert (f.last_shared, f.last_transition) == (b1, b2)
    assert f.shared_level == pytest.approx(-0.05, abs=1e-12)
    assert f.refined_level == pytest.approx(0.3, abs=1e-12)
    assert f.rss <= 1e-12 * f.tss
    np.testing.assert_allclose(f.fitted, ramp(L, b1, b2), atol=1e-12)


@pytest.mark.parametrize("L,b1,b2,s1,s3", [(32, 9, 15, 0.0, 0.01), (32, 9, 15, -0.006, 0.012), (18, 5, 8, -0.01, 0.02),
                                           (30, 8, 14, 0.002, 0.015)])
def test_fit_recovers_knots_and_slopes_of_sloped_outer_bands(L, b1, b2, s1, s3):
    """Paper-like: a dip (s1 < 0) or drift in the shared band, a slower continued rise afterwards."""
    f = B.fit_bands(ramp(L, b1, b2, s1=s1, s3=s3))
    assert (f.last_shared, f.last_transition) == (b1, b2)
    assert (f.shared_slope, f.refined_slope) == (pytest.approx(s1, abs=1e-10), pytest.approx(s3, abs=1e-10))
    assert f.rise == pytest.approx(0.35) and f.transition_slope == pytest.approx(0.35 / (b2 - b1))
    assert f.contrast == pytest.approx(0.35 / (b2 - b1) / max(s1, s3)) and f.sharpness == pytest.approx(1.0)
    y = ramp(L, b1, b2, s1=s1, s3=s3) + np.random.default_rng(0).normal(0, 0.01, L)
    many = B.fit_many(np.stack([y, 2 * y]))
    one = B.fit_bands(y)
    assert list(many["last_shared"]) == [one.last_shared] * 2 and many["rise_z"][0] == pytest.approx(one.rise_z)
    assert many["rise"][1] == pytest.approx(2 * one.rise) and one.df == L - 4


def test_fit_is_shift_and_scale_equivariant_and_deterministic():
    y = noisy(ramp(24, 7, 12), T=1, sd=0.03, seed=5)[0]
    f = B.fit_bands(y)
    g = B.fit_bands(3.0 * y + 1.0)
    assert (f.last_shared, f.last_transition) == (g.last_shared, g.last_transition)
    assert g.rise == pytest.approx(3.0 * f.rise)
    assert f.sharpness == pytest.approx(g.sharpness)
    assert B.fit_bands(y) == f  # same answer twice (array fields are not compared)


def test_sharpness_zero_when_a_one_knot_fit_is_exact():
    L = 20
    layer = np.arange(1, L + 1, dtype=float)
    assert B.fit_bands(np.zeros(L)).sharpness == 0.0                     # flat
    assert B.fit_bands(0.02 * layer).sharpness == 0.0                    # straight line
    hinge = np.where(layer <= 8, 0.0, 0.03 * (layer - 8))                # rise runs to the last layer
    assert B.fit_bands(hinge).sharpness == pytest.approx(0.0, abs=1e-9)
    sat = np.minimum(0.05 * layer, 0.5)                                  # rise from layer 1, then flat
    assert B.fit_bands(sat).sharpness == pytest.approx(0.0, abs=1e-9)
    assert B.fit_bands(ramp(L, 6, 10)).sharpness == pytest.approx(1.0)
    assert B.fit_bands(0.02 * layer).contrast == pytest.approx(1.0)              # no steeper middle piece
    assert float(B.transition_score(3.0, 0.3, 2.0)) == pytest.approx(1.0)
    assert float(B.transition_score(30.0, 0.9, 1.0, min_contrast=2.0)) == pytest.approx(0.5)


def test_fit_bad_input():
    with pytest.raises(ValueError, match="at least 3 layers"):
        B.fit_bands([0.0, 1.0])
    with pytest.raises(ValueError, match="non-finite.*layer.*\\[2\\]"):
        B.fit_bands([0.0, np.nan, 1.0, 1.0])
    with pytest.raises(ValueError, match="1-D"):
        B.fit_bands(np.zeros((3, 3)))


# ---------------------------------------------------------------------------------- on tables


def test_find_bands_exact_without_noise():
    D = np.repeat(ramp(32, 9, 15)[None], 12, axis=0)
    res = B.find_bands(table(D), n_boot=200, seed=1)
    assert (res.last_shared, res.last_transition) == (9, 15)
    assert res.layers == {"shared": (1, 9), "transition": (10, 15), "refinement": (16, 32)}
    assert res.ci == {"last_shared": (9.0, 9.0), "last_transition": (15.0, 15.0)}
    assert res.rise == pytest.approx(0.35) and res.rise_se == 0.0 and res.rise_z > 1e3
    assert res.identifiable and res.transition_score >= 1
    s = res.summary.set_index("band")
    assert list(s.index) == list(B.BAND_NAMES)
    assert s.loc["shared", "mean_delta"] == pytest.approx(-0.05)
    assert s.loc["refinement", "mean_delta"] == pytest.approx(0.3)
    assert s.loc["shared", "frac_tasks_above"] == 0.0 and s.loc["refinement", "frac_tasks_above"] == 1.0
    assert s["n_layers"].sum() == 32 and s.loc["transition", "rel_start"] == pytest.approx(9 / 32)
    assert "identifiable" in res.describe() and "NOT" not in res.describe()


def test_find_bands_with_noise_covers_truth_and_is_deterministic():
    D = noisy(ramp(32, 9, 15), T=23, sd=0.05, seed=3)
    res = B.find_bands(table(D), n_boot=300, seed=7)
    lo, hi = res.ci["last_shared"]
    assert lo <= 9 <= hi and hi - lo <= 6
    lo, hi = res.ci["last_transition"]
    assert lo <= 15 <= hi and hi - lo <= 6
    assert res.identifiable and res.rise_z > B.MIN_RISE_Z and res.sharpness > B.MIN_SHARPNESS
    s = res.summary.set_index("band")
    assert s.loc["shared", "mean_delta_high"] < 0 < s.loc["refinement", "mean_delta_low"]
    assert s.loc["shared", "mean_delta_low"] <= s.loc["shared", "mean_delta"] <= s.loc["shared", "mean_delta_high"]
    again = B.find_bands(table(D), n_boot=300, seed=7)
    assert again.ci == res.ci and np.array_equal(again.boot, res.boot)
    assert res.boot.shape == (300, 3)


@pytest.mark.parametrize("kind", ["flat", "flat_noisy", "linear", "linear_noisy", "hinge_noisy", "falling"])
def test_no_transition_identifiable(kind):
    L = 32
    layer = np.arange(1, L + 1, dtype=float)
    base = {
        "flat": np.zeros(L), "flat_noisy": np.zeros(L),
        "linear": np.linspace(-0.1, 0.3, L), "linear_noisy": np.linspace(-0.1, 0.3, L),
        "hinge_noisy": np.where(layer < 12, -0.03, -0.03 + 0.015 * (layer - 12)),
        "falling": ramp(L, 9, 15, a=0.3, c=-0.05),
    }[kind]
    D = noisy(base, T=15, sd=0.05, seed=11) if kind.endswith("noisy") else np.repeat(base[None], 15, 0)
    res = B.find_bands(table(D), n_boot=200, seed=2)
    assert not res.identifiable, res.describe()
    assert res.transition_score < 1
    assert "NOT identifiable" in res.describe()
    assert res.diagram()["identifiable"].eq(False).all()


def test_heldout_comparison_task_subset_and_signal():
    base = ramp(18, 5, 8)
    D = np.repeat(base[None], 6, 0)
    full = table(D)
    held = table(np.repeat(ramp(18, 3, 12)[None], 6, 0), sft_label=B.HELDOUT_SFT)
    held = held[(held["comparison"] == B.HELDOUT_SFT) & held["task"].isin(["task00", "task01", "task02"])]
    cka = pd.concat([full, held], ignore_index=True)
    res = B.find_bands(cka, experimental=B.HELDOUT_SFT, n_boot=50)
    assert res.tasks == ("task00", "task01", "task02")
    assert (res.last_shared, res.last_transition) == (3, 12)
    sub = B.find_bands(cka, tasks=["task04", "task05"], n_boot=0)
    assert sub.tasks == ("task04", "task05") and (sub.last_shared, sub.last_transition) == (5, 8)
    assert sub.noise_checked and sub.identifiable and sub.n_boot == 0
    assert np.isnan(sub.ci["last_shared"][0])
    exp = B.find_bands(full, signal="experimental", n_boot=0)
    pt = np.linspace(0.9, 0.5, 18)
    np.testing.assert_allclose(exp.curve, pt + base)
    mean = B.find_bands(full, statistic="mean", n_boot=0)
    np.testing.assert_allclose(mean.curve, base)
    dt = B.delta_table(full)
    assert dt.shape == (6, 18) and list(dt.columns) == list(range(1, 19))


def test_bad_tables_name_the_problem():
    good = table(np.repeat(ramp(8, 2, 5)[None], 3, 0))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['measure'\]"):
        B.find_bands(good.drop(columns="measure"))
    with pytest.raises(ValueError, match="'debiased_cka' not in the CKA table; available: \\['linear_cka'\\]"):
        B.find_bands(good, measure="debiased_cka")
    with pytest.raises(ValueError, match="'SFT vs control'.*missing.*present: \\['PT vs control'\\]"):
        B.find_bands(good[good["comparison"] == B.PT])
    with pytest.raises(ValueError, match="held-out SFT vs control"):
        B.find_bands(good, experimental=B.HELDOUT_SFT)
    short = good[good["layer"] <= 2]
    with pytest.raises(ValueError, match="at least 3 layers"):
        B.find_bands(short)
    nan = good.copy()
    nan.loc[(nan["task"] == "task01") & (nan["layer"] == 4) & (nan["comparison"] == B.SFT), "value"] = np.nan
    with pytest.raises(ValueError, match="non-finite.*task01/layer 4"):
        B.find_bands(nan)
    hole = good.drop(good[(good["task"] == "task02") & (good["layer"] == 3)].index)
    with pytest.raises(ValueError, match="task02.*lack some of the layers"):
        B.find_bands(hole)
    gap = good[good["layer"] != 3]
    with pytest.raises(ValueError, match="layers must be 1..L without gaps"):
        B.find_bands(gap)
    dup = pd.concat([good, good.iloc[:1]])
    with pytest.raises(ValueError, match="duplicate.*task00/1"):
        B.find_bands(dup)
    noref = good[~((good["task"] == "task00") & (good["comparison"] == B.PT))]
    with pytest.raises(ValueError, match="task00.*no 'PT vs control'"):
        B.find_bands(noref)
    with pytest.raises(ValueError, match="no 'SFT vs control' rows"):
        B.find_bands(good, tasks=["nope"])
    with pytest.raises(ValueError, match="tasks is empty"):
        B.find_bands(good, tasks=[])
    with pytest.raises(ValueError, match="signal"):
        B.find_bands(good, signal="spread")
    with pytest.raises(ValueError, match="statistic"):
        B.find_bands(good, statistic="mode")
    with pytest.raises(ValueError, match="level"):
        B.find_bands(good, level=1.0)
    with pytest.raises(ValueError, match="DataFrame"):
        B.find_bands(np.zeros((3, 3)))


def test_paper_shaped_curves_recovered_by_find_bands():
    """Curves shaped like the paper's Fig. 2 (not the rule's own shape): both boundaries within a layer."""
    from layerwise.band_calibration import simulate_curves, true_boundaries

    for L, T, shape in [(18, 12, "paper"), (32, 24, "paper"), (30, 12, "dip")]:
        pt, sft = simulate_curves(shape, L, T, 1, noise_sd=0.03, seed=L)
        res = B.find_bands(table(sft[0] - pt[0], pt[0]), n_boot=200, seed=1)
        b1, b2 = true_boundaries(L)
        assert res.identifiable, res.describe()
        assert abs(res.last_shared - b1) <= 1 and abs(res.last_transition - b2) <= 1, res.describe()
        lo, hi = res.ci["last_transition"]
        assert lo <= b2 <= hi and hi - lo <= 4
        s = res.summary.set_index("band")
        assert s.loc["shared", "mean_delta"] < 0 < s.loc["refinement", "mean_delta"]


# ---------------------------------------------------------------------------------- relative depth


def test_relative_depth_18_vs_32_and_paper_bands():
    assert B.relative_depth(9, 15, 32) == {"rel_last_shared": 9 / 32, "rel_last_transition": 15 / 32}
    # the same shape at 18 and 32 layers: boundaries at the same relative depth (to one layer)
    r32 = B.find_bands(table(np.repeat(ramp(32, 8, 16)[None], 4, 0)), n_boot=0).relative()
    r18 = B.find_bands(table(np.repeat(ramp(18, 4, 9)[None], 4, 0)), n_boot=0).relative()
    assert r32["rel_last_shared"] == pytest.approx(r18["rel_last_shared"], abs=1 / 18)
    assert r32["rel_last_transition"] == pytest.approx(r18["rel_last_transition"], abs=1 / 18)
    assert B.scale_boundaries(9, 15, 32, 18) == (5, 8)
    assert B.scale_boundaries(9, 15, 32, 30) == (8, 14)
    assert B.scale_boundaries(9, 15, 32, 32) == (9, 15)
    assert B.scale_boundaries(9, 15, 32, 3) == (1, 2)
    p = B.paper_bands()
    assert list(p["band"]) == list(B.BAND_NAMES)
    assert list(zip(p["start"], p["end"], strict=True)) == [(1, 9), (10, 15), (16, 32)]
    np.testing.assert_allclose(p["rel_end"], [9 / 32, 15 / 32, 1.0])
    p18 = B.paper_bands(18)
    assert len(p18) == 6 and list(p18["end"].iloc[3:]) == [5, 8, 18]
    with pytest.raises(ValueError, match="every band has a layer"):
        B.relative_depth(9, 9, 32)
    with pytest.raises(ValueError, match="to_layers"):
        B.scale_boundaries(9, 15, 32, 2)


def test_band_diagram_data():
    D = noisy(ramp(18, 5, 8), T=10, sd=0.03, seed=4)
    res = B.find_bands(table(D), n_boot=100)
    d = B.band_diagram_data([res, (9, 15, 32)], model=["gemma", "llama"], include_paper=True)
    assert list(d.columns) == ["model", "band", "start", "end", "n_layers", "rel_start", "rel_end",
                               "end_low", "end_high", "rel_end_low", "rel_end_high", "identifiable"]
    assert len(d) == 9
    for _, g in d.groupby("model"):  # bands tile (0, 1] in order
        assert g["rel_start"].iloc[0] == 0 and g["rel_end"].iloc[-1] == 1
        np.testing.assert_allclose(g["rel_start"].iloc[1:], g["rel_end"].iloc[:-1])
    gem = d[d["model"] == "gemma"].set_index("band")
    assert gem.loc["shared", "end_low"] <= gem.loc["shared", "end"] <= gem.loc["shared", "end_high"]
    assert np.isnan(gem.loc["refinement", "end_low"]) and bool(gem.loc["shared", "identifiable"])
    assert d[d["model"] == "llama"]["identifiable"].isna().all()
    single = res.diagram("gemma")
    assert len(single) == 3 and (single["model"] == "gemma").all()
    with pytest.raises(ValueError, match="2 model labels for 1"):
        B.band_diagram_data([res], model=["a", "b"])


def test_find_bands_reads_the_selection_of_task_curves():
    D = np.repeat(ramp(18, 4, 9)[None], 4, 0)
    cka = table(D)
    b = B.find_bands(cka, n_boot=0)
    assert (b.measure, b.experimental, b.reference) == ("linear_cka", B.SFT, B.PT)
    with pytest.raises(TypeError, match="tsks"):
        B.find_bands(cka, tsks=["task00"])
