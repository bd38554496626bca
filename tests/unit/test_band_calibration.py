"""Tests for layerwise.band_calibration: Figure-2-shaped curves, recovery and false-positive rates, thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import tidy_table
from layerwise import band_calibration as C
from layerwise import bands as B


def median_delta(shape, L, T, n, sd=0.0, seed=0):
    pt, sft = C.simulate_curves(shape, L, T, n, noise_sd=sd, seed=seed)
    return pt, sft, np.median(sft - pt, axis=1)


# ---------------------------------------------------------------------------------- the curves


def test_paper_shape_has_the_figure_2_features():
    L = 32
    b1, b2 = C.true_boundaries(L)
    assert (b1, b2) == (9, 15) and C.true_boundaries(18) == (5, 8) and C.true_boundaries(30) == (8, 14)
    pt, sft, m = median_delta("paper", L, 24, 50, sd=0.0, seed=1)
    assert pt.shape == sft.shape == (50, 24, L)
    m = m.mean(axis=0)
    assert -0.05 < m[: b1 - 1].mean() < 0                                  # slightly negative shared band
    trans = (m[b2 - 1] - m[b1 - 1]) / (b2 - b1)
    refine = (m[-1] - m[b2 - 1]) / (L - b2)
    assert refine > 0 and trans > 2.5 * refine                             # steep, then slower rise
    assert (np.diff(pt.mean(axis=(0, 1))) < 0).all()                        # PT keeps falling ...
    sd = pt.std(axis=1).mean(axis=0)
    assert sd[-1] > 3 * sd[0]                                              # ... and spreading across tasks
    _, sft_dip, m_dip = median_delta("dip", L, 24, 50, seed=1)
    s = np.median(sft_dip, axis=1).mean(axis=0)
    low = int(np.argmin(s))                                                # SFT's own curve dips, then rises
    assert abs(low + 1 - b1) <= 1 and s[0] - s[low] > 0.03 and s[-1] - s[low] > 0.1
    for null in C.NULL_SHAPES:
        _, _, mn = median_delta(null, L, 24, 50, seed=1)
        f = B.fit_many(mn)                                                 # no steep middle piece
        score = B.transition_score(f["rise_z"], f["sharpness"], f["contrast"])
        assert np.mean(score >= 1) <= 0.1, null


def test_curves_are_deterministic_by_seed_and_noise_has_the_given_sd():
    a = C.simulate_curves("paper", 18, 6, 3, noise_sd=0.05, seed=4)
    b = C.simulate_curves("paper", 18, 6, 3, noise_sd=0.05, seed=4)
    c = C.simulate_curves("paper", 18, 6, 3, noise_sd=0.05, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and not np.array_equal(a[0], c[0])
    pt0, sft0 = C.simulate_curves("flat", 18, 200, 5, noise_sd=0.0, seed=2)
    pt1, sft1 = C.simulate_curves("flat", 18, 200, 5, noise_sd=0.04, seed=2)
    assert np.std((sft1 - pt1) - (sft0 - pt0)) == pytest.approx(0.04, rel=0.05)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="shape must be one of.*'paper'"):
        C.simulate_curves("zigzag", 18, 6, 1)
    with pytest.raises(ValueError, match="n_layers must be >= 6"):
        C.simulate_curves("paper", 4, 6, 1)
    with pytest.raises(ValueError, match="noise_sd"):
        C.simulate_band_draws((18,), (6,), noise_sd=-1.0, n_draws=2)
    with pytest.raises(ValueError, match="shapes must be"):
        C.simulate_band_draws((18,), (6,), shapes=["nope"], n_draws=2)
    with pytest.raises(ValueError, match="missing column"):
        C.recovery_table(pd.DataFrame({"shape": ["paper"]}))


# ---------------------------------------------------------------------------------- the study


def test_small_study_recovers_paper_shaped_bands_and_rejects_null_curves():
    d = C.simulate_band_draws((18, 32), (12, 24), noise_sd=0.04, n_draws=100, seed=3)
    assert len(d) == len(C.SHAPES) * 2 * 2 * 100
    rec = C.recovery_table(d).set_index(["shape", "n_layers", "n_tasks"])
    for cell in [("paper", 18, 12), ("paper", 32, 24), ("dip", 18, 12), ("dip", 32, 24)]:
        assert rec.loc[cell, "recovered_2"].item() >= 0.8, (cell, rec.loc[cell])
        assert rec.loc[cell, "recovered_1"].item() <= rec.loc[cell, "recovered_2"].item()
    fp = C.false_positive_table(d)
    assert set(fp["shape"]) == set(C.NULL_SHAPES) and fp["false_positive"].max() <= 0.15, fp
    # the table serves any thresholds: absurdly strict ones recover nothing, lax ones flag nulls
    strict = C.recovery_table(d, min_rise_z=1e6)
    assert (strict["recovered_2"] == 0).all()
    lax = C.false_positive_table(d, min_rise_z=1e-6, min_sharpness=1e-6, min_contrast=1e-6)
    assert lax["false_positive"].mean() > 0.5


def test_study_cells_do_not_depend_on_which_other_cells_are_drawn():
    one = C.simulate_band_draws((18,), (6,), n_draws=20, shapes=["hinge"], seed=9)
    many = C.simulate_band_draws((18, 30), (6, 9), n_draws=20, shapes=["paper", "hinge"], seed=9)
    sub = many[(many["shape"] == "hinge") & (many["n_layers"] == 18) & (many["n_tasks"] == 6)]
    pd.testing.assert_frame_equal(one.reset_index(drop=True), sub.reset_index(drop=True))
    again = C.simulate_band_draws((18, 30), (6, 9), n_draws=20, shapes=["paper", "hinge"], seed=9)
    pd.testing.assert_frame_equal(many, again)


def test_choose_thresholds_meets_the_false_positive_limit():
    d = C.simulate_band_draws((18,), (12,), noise_sd=(0.03, 0.06), n_draws=100, seed=1)
    grid = {"min_rise_z": (1.0, 3.0), "min_sharpness": (0.05, 0.3, 0.5), "min_contrast": (1.0, 2.0)}
    th = C.choose_thresholds(d, grid=grid, max_false_positive=0.10)
    fp = C.false_positive_table(d, **{k: th[k] for k in grid})
    assert fp["false_positive"].max() == pytest.approx(th["max_false_positive"])
    assert th["max_false_positive"] <= 0.10
    assert th["min_sharpness"] > 0.05  # the laxest sharpness lets too many null curves through
    with pytest.raises(ValueError, match="no threshold combination"):
        C.choose_thresholds(d, grid={"min_rise_z": (1e-6,), "min_sharpness": (1e-6,), "min_contrast": (1e-6,)})
    with pytest.raises(ValueError, match="null shapes and transition shapes"):
        C.choose_thresholds(d[~d["null"]])


def test_estimate_task_noise_recovers_the_simulated_noise():
    for L, T, sd in [(18, 12, 0.04), (32, 24, 0.02), (30, 6, 0.08)]:
        pt, sft = C.simulate_curves("paper", L, T, 1, noise_sd=sd, seed=L)
        cka = tidy_table({B.PT: pt[0], B.SFT: sft[0]})
        assert C.estimate_task_noise(cka) == pytest.approx(sd, rel=0.25)
    clean = tidy_table({B.PT: pt[0] * 0, B.SFT: np.linspace(0, 1, 30)[None].repeat(6, 0)})
    assert C.estimate_task_noise(clean) == pytest.approx(0.0, abs=1e-12)  # a straight line has no noise


# ---------------------------------------------------------------------------------- the calibrated rule


@pytest.fixture(scope="module")
def default_study():
    """The study that chose the thresholds (about half a minute on 2 cores)."""
    return C.simulate_band_draws(noise_sd=C.CALIBRATION_NOISE)


def test_calibrated_constants_are_the_studys_choice_and_meet_the_goal(default_study):
    th = C.choose_thresholds(default_study)
    assert (th["min_rise_z"], th["min_sharpness"], th["min_contrast"]) == (B.MIN_RISE_Z, B.MIN_SHARPNESS, B.MIN_CONTRAST)
    assert C.false_positive_table(default_study)["false_positive"].max() <= 0.10
    rec = C.recovery_table(default_study).set_index(["shape", "n_layers", "n_tasks", "noise_sd"])["recovered_2"]
    for L, T in [(18, 12), (32, 24)]:
        for shape in C.TRANSITION_SHAPES:
            assert rec.loc[(shape, L, T)].min() >= 0.8, (shape, L, T, rec.loc[(shape, L, T)])


def test_chapter_study_and_chart():
    from layerwise.charts import band_calibration_chart

    d = C.calibration_study(4, 3, 0.05, n_draws=10)          # a 4-layer run is too shallow: goal sizes only
    assert sorted(set(zip(d["n_layers"], d["n_tasks"]))) == sorted(C.GOAL_SIZES)
    d = C.calibration_study(30, 9, 0.05, n_draws=10)
    assert set(zip(d["n_layers"], d["n_tasks"])) == {(30, 9), *C.GOAL_SIZES} and (d["noise_sd"] == 0.05).all()
    chart = band_calibration_chart(C.recovery_table(d), C.false_positive_table(d)).to_dict()
    assert len(chart["vconcat"]) == 2 and "0.050" in chart["title"]
    with pytest.raises(ValueError, match="noise_sd: the tables hold 2 noise levels"):
        both = C.simulate_band_draws((18,), (6,), noise_sd=(0.02, 0.04), n_draws=5)
        band_calibration_chart(C.recovery_table(both), C.false_positive_table(both))
