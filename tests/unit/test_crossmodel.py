"""Cross-model comparison: relative-depth profiles, profile shape, bands and cluster ranking across models."""

import numpy as np
import pandas as pd
import pytest

from conftest import tidy_table
from layerwise.bands import PT, SFT, find_bands
from layerwise.crossmodel import (DELTA, band_agreement, bands_by_model, cluster_rank_agreement, depth_profiles,
                                  profile_correlation)
from layerwise.spec import SpecError, load_spec, model_slug

CLUSTERS = ["sentiment", "paraphrase", "translation", "summarization", "coreference", "commonsense"]


def ramp(depth, start, end):
    """0 up to relative depth ``start``, a straight rise to 1 at ``end``, then 1."""
    return np.clip((depth - start) / (end - start), 0.0, 1.0)


def sim_table(L, *, start=0.3, end=0.55, n_tasks=12, noise=0.01, seed=0, cluster_levels=None, rise=0.3):
    """A similarity table of one model: PT vs control falls with depth; SFT vs control = PT + rise * ramp."""
    rng = np.random.default_rng(seed)
    curves = {PT: np.empty((n_tasks, L)), SFT: np.empty((n_tasks, L))}
    for i in range(n_tasks):
        cluster = CLUSTERS[i % len(CLUSTERS)]
        level = 0.0 if cluster_levels is None else cluster_levels[cluster]
        for layer in range(1, L + 1):
            d = layer / L
            pt = 0.95 - 0.4 * d + level + rng.normal(0, noise)
            sft = pt + rise * ramp(d, start, end) - 0.15 + rng.normal(0, noise)
            curves[PT][i, layer - 1], curves[SFT][i, layer - 1] = pt, sft
    return tidy_table(curves, tasks=[f"t{i}" for i in range(n_tasks)],
                      clusters=[CLUSTERS[i % len(CLUSTERS)] for i in range(n_tasks)], n_examples=64)


def test_depth_profiles_put_each_layer_at_layer_over_L_with_task_quartiles():
    sims = {"a": sim_table(18), "b": sim_table(30, seed=1)}
    prof = depth_profiles(sims)
    assert set(prof["series"]) == {PT, SFT, DELTA}
    b = prof[(prof["model"] == "b") & (prof["series"] == PT)]
    assert list(b["layer"]) == list(range(1, 31)) and np.allclose(b["depth"], np.arange(1, 31) / 30)
    assert (b["n_tasks"] == 12).all() and (b["q25"] <= b["median"]).all() and (b["median"] <= b["q75"]).all()
    # the Delta series is the per-task difference, not a difference of medians
    sim = sims["a"]
    wide = sim.pivot_table(index=["task", "layer"], columns="comparison", values="value")
    expect = (wide[SFT] - wide[PT]).groupby("layer").median()
    got = prof[(prof["model"] == "a") & (prof["series"] == DELTA)].set_index("layer")["median"]
    assert np.allclose(got.to_numpy(), expect.to_numpy())


def test_depth_profiles_name_a_missing_comparison():
    with pytest.raises(ValueError, match="held-out SFT vs control"):
        depth_profiles({"a": sim_table(6)}, comparisons=["held-out SFT vs control"])


def test_profiles_of_the_same_relative_shape_correlate_and_opposite_shapes_do_not():
    same = profile_correlation({"L18": sim_table(18), "L30": sim_table(30, seed=1)}, n_boot=200)
    assert same.loc[0, "r"] > 0.95 and same.loc[0, "low"] > 0.8 and same.loc[0, "n_tasks"] == 12
    flipped = profile_correlation({"L18": sim_table(18), "L30": sim_table(30, seed=1, rise=-0.3)}, n_boot=200)
    assert flipped.loc[0, "r"] < -0.95
    with pytest.raises(ValueError, match="at least 2 model"):
        profile_correlation({"only": sim_table(18)})


def test_bands_at_the_same_relative_depth_agree_across_depths_and_a_shifted_transition_differs():
    b18 = find_bands(sim_table(18), n_boot=200)
    b30 = find_bands(sim_table(30, seed=1), n_boot=200)
    late = find_bands(sim_table(30, start=0.7, end=0.9, seed=2), n_boot=200)
    table = bands_by_model({"L18": b18, "L30": b30, "late": late})
    assert list(table["model"]) == ["L18", "L30", "late"] and table["identifiable"].all()
    assert abs(table.loc[0, "rel_last_shared"] - 0.3) < 0.1 and abs(table.loc[1, "rel_last_transition"] - 0.55) < 0.1
    assert np.allclose(table["rel_last_shared"], table["last_shared"] / table["n_layers"])
    verdict, reason = band_agreement(b18, b30, names=("L18", "L30"))
    assert verdict == "agree" and "overlap" in reason
    verdict, reason = band_agreement(b30, late)
    assert verdict == "differ" and "disjoint" in reason
    flat = find_bands(sim_table(30, rise=0.0, seed=3), n_boot=200)
    verdict, reason = band_agreement(b18, flat, names=("L18", "flat"))
    assert verdict == "inconclusive" and "flat" in reason and "L18" not in reason


def test_cluster_rankings_agree_when_the_models_order_clusters_alike():
    levels = {c: 0.05 * i for i, c in enumerate(CLUSTERS)}
    reverse = {c: -v for c, v in levels.items()}
    values, agree = cluster_rank_agreement({"a": sim_table(18, cluster_levels=levels),
                                            "b": sim_table(30, cluster_levels=levels, seed=1)}, n_boot=200)
    assert agree.loc[0, "rho"] == pytest.approx(1.0) and agree.loc[0, "n_clusters"] == 6
    top = values[(values["model"] == "a") & (values["rank"] == 1)]["cluster"].item()
    assert top == CLUSTERS[-1]
    _, disagree = cluster_rank_agreement({"a": sim_table(18, cluster_levels=levels),
                                          "b": sim_table(30, cluster_levels=reverse, seed=1)}, n_boot=200)
    assert disagree.loc[0, "rho"] == pytest.approx(-1.0) and disagree.loc[0, "high"] < 0
    with pytest.raises(ValueError, match="share 2 cluster"):
        cluster_rank_agreement({"a": sim_table(6, n_tasks=2), "b": sim_table(6, n_tasks=2)})


def test_companion_specs_change_only_the_base_model():
    spec = load_spec("specs/smoke.yaml", ["compare_models=[tiny-random-gemma3, meta-llama/Llama-2-7b-hf]"])
    a, b = spec.companion_specs()
    assert (a.base_model, b.base_model) == ("tiny-random-gemma3", "meta-llama/Llama-2-7b-hf")
    assert b.output_dir.endswith("compare/meta-llama--Llama-2-7b-hf") and b.name == "smoke / meta-llama/Llama-2-7b-hf"
    assert a.compare_models == () and a.tasks == spec.tasks and a.training == spec.training and a.data == spec.data
    assert load_spec("specs/smoke.yaml", ["compare_models=[]"]).companion_specs() == []


def test_bad_compare_models_are_named():
    # the base model itself is no comparison (e.g. BASE_MODEL= set to the spec's comparison model)
    assert load_spec("specs/smoke.yaml", ["base_model=tiny-random-gemma3"]).companion_specs() == []
    with pytest.raises(SpecError, match="twice"):
        load_spec("specs/smoke.yaml", ["compare_models=[x/y, x/y]"])
    with pytest.raises(SpecError, match="same folder names"):
        load_spec("specs/smoke.yaml", ["compare_models=['a/b', 'a--b']"])
    assert model_slug("/data/models/llama/") == "data--models--llama"
    with pytest.raises(SpecError, match="no usable folder name"):
        model_slug("//")
