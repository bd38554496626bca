"""Tests for layerwise.stats: bootstraps over examples and tasks, shuffled-row null."""

from __future__ import annotations

import numpy as np
import pytest

from layerwise import stats
from layerwise.similarity import centered_gram, centered_grams, linear_cka, similarity


@pytest.fixture(scope="module")
def related():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 20))
    Y = X[:, :12] @ rng.normal(size=(12, 15)) + 0.8 * rng.normal(size=(60, 15))
    return X, Y


def test_percentile_ci_and_errors():
    lo, hi = stats.percentile_ci(np.arange(101.0), 0.9)
    assert (lo, hi) == pytest.approx((5.0, 95.0))
    lo, hi = stats.percentile_ci(np.array([[0.0, 1.0], [1.0, 3.0], [np.nan, 2.0]]), 0.5)
    assert lo.shape == (2,)
    with pytest.raises(ValueError, match="level"):
        stats.percentile_ci([1.0, 2.0], 1.5)
    with pytest.raises(ValueError, match="n_boot"):
        stats.bootstrap_tasks([1.0, 2.0], n_boot=0)


def test_bootstrap_examples_matches_feature_resampling(related):
    X, Y = related
    Kx, Ky = centered_gram(X), centered_gram(Y)
    res = stats.bootstrap_examples(Kx, Ky, n_boot=50, seed=3)
    assert res.estimate == pytest.approx(linear_cka(X, Y), abs=1e-12)
    idx = np.random.default_rng(3).integers(0, 60, size=(50, 60))
    want = [linear_cka(X[i], Y[i]) for i in idx]
    np.testing.assert_allclose(res.samples, want, atol=1e-10)
    assert res.low <= res.estimate <= res.high and res.n_boot == 50 and res.se > 0
    again = stats.bootstrap_examples(Kx, Ky, n_boot=50, seed=3)
    np.testing.assert_array_equal(res.samples, again.samples)  # deterministic
    same = stats.bootstrap_examples(Kx, Kx, n_boot=20)
    assert same.low == pytest.approx(1.0) and same.high == pytest.approx(1.0)
    rsa = stats.bootstrap_examples(Kx, Ky, measure="rsa", n_boot=10)
    assert rsa.estimate == pytest.approx(similarity("rsa", X, Y), abs=1e-12)


def test_bootstrap_by_layer_and_delta(related):
    X, Y = related
    A = np.stack([X, X**2])
    B = np.stack([Y, np.tanh(Y)])
    res = stats.bootstrap_examples_by_layer(centered_grams(A), centered_grams(B), n_boot=30, seed=1)
    assert res.estimate.shape == (2,) and res.samples.shape == (30, 2)
    idx = np.random.default_rng(1).integers(0, 60, size=(30, 60))
    np.testing.assert_allclose(res.samples[:, 1], [linear_cka(A[1][i], B[1][i]) for i in idx], atol=1e-10)
    assert (res.low <= res.high).all()  # duplicated rows shift biased CKA replicates upward

    Ka, Kb, Kc = centered_gram(Y), centered_gram(X[:, :3]), centered_gram(X)
    d = stats.bootstrap_delta(Ka, Kb, Kc, n_boot=40, seed=2)
    assert d.estimate == pytest.approx(linear_cka(Y, X) - linear_cka(X[:, :3], X), abs=1e-12)
    idx = np.random.default_rng(2).integers(0, 60, size=(40, 60))
    want = [linear_cka(Y[i], X[i]) - linear_cka(X[i][:, :3], X[i]) for i in idx]
    np.testing.assert_allclose(d.samples, want, atol=1e-10)


def test_bootstrap_tasks_and_clusters():
    rng = np.random.default_rng(0)
    v = 0.5 + 0.1 * rng.normal(size=(12, 5))
    v[3, 2] = np.nan
    res = stats.bootstrap_tasks(v, n_boot=500, seed=0)
    np.testing.assert_allclose(res.estimate, np.nanmean(v, axis=0))
    assert res.low.shape == (5,) and (res.low < res.estimate).all() and (res.estimate < res.high).all()
    med = stats.bootstrap_tasks(v[:, 0], statistic=np.nanmedian, n_boot=200)
    assert isinstance(med.estimate, float)
    clusters = ["a"] * 5 + ["b"] * 6 + ["c"]
    out = stats.bootstrap_cluster_means(v, clusters, n_boot=200)
    assert set(out) == {"a", "b", "c"}
    np.testing.assert_allclose(out["b"].estimate, np.nanmean(v[5:11], axis=0))
    np.testing.assert_allclose(out["c"].low, v[11])
    with pytest.raises(ValueError, match="labels"):
        stats.bootstrap_cluster_means(v, ["a"] * 3)
    with pytest.raises(ValueError, match="at least 2 tasks"):
        stats.bootstrap_tasks(v[:1])


def test_permutation_null(related):
    X, Y = related
    Kx, Ky = centered_gram(X), centered_gram(Y)
    res = stats.permutation_null(Kx, Ky, n_perm=99, seed=0)
    assert res.observed == pytest.approx(linear_cka(X, Y), abs=1e-12)
    assert res.p_value == pytest.approx(0.01) and res.null.shape == (99,)
    # fast path equals shuffling the features' rows
    perms = np.random.default_rng(0)
    want = [linear_cka(X, Y[perms.permutation(60)]) for _ in range(99)]
    np.testing.assert_allclose(res.null, want, atol=1e-10)
    deb = stats.permutation_null(Kx, Ky, measure="debiased_cka", n_perm=200, seed=1)
    assert abs(deb.null_mean) < 0.02 and deb.null_quantile_95 < deb.observed
    assert res.null_mean > deb.null_mean  # biased CKA's chance level is inflated
    gen = stats.permutation_null(Kx, Ky, measure="procrustes", n_perm=5, seed=4)
    p = np.random.default_rng(4)
    np.testing.assert_allclose(
        gen.null, [similarity("procrustes", X, Y[p.permutation(60)]) for _ in range(5)], atol=1e-10
    )
    # independent data: not significant
    rng = np.random.default_rng(7)
    ind = stats.permutation_null(centered_gram(rng.normal(size=(40, 8))), centered_gram(rng.normal(size=(40, 8))), n_perm=99)
    assert ind.p_value > 0.05
    with pytest.raises(ValueError, match="needs the feature matrices"):
        stats.bootstrap_examples(Kx, Ky, measure="pwcca")
    with pytest.raises(KeyError, match="valid names"):
        stats.permutation_null(Kx, Ky, measure="nope")


def test_shuffle_rows_is_pure_permutation(related):
    X, _ = related
    X0 = X.copy()
    S = stats.shuffle_rows(X, seed=2)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(np.sort(S, axis=0), np.sort(X, axis=0))
