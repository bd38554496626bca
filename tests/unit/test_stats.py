"""Tests for layerwise.stats: bootstraps over examples and tasks, shuffled-row null."""

from __future__ import annotations

import numpy as np
import pandas as pd
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
    res = stats.bootstrap_examples(centered_grams(A), centered_grams(B), n_boot=30, seed=1)
    assert res.estimate.shape == (2,) and res.samples.shape == (30, 2)
    idx = np.random.default_rng(1).integers(0, 60, size=(30, 60))
    np.testing.assert_allclose(res.samples[:, 1], [linear_cka(A[1][i], B[1][i]) for i in idx], atol=1e-10)
    assert (res.low <= res.high).all()  # duplicated rows shift biased CKA replicates upward

    Ka, Kb, Kc = centered_gram(Y), centered_gram(X[:, :3]), centered_gram(X)
    d = stats.bootstrap_examples(Ka, Kb, against=Kc, n_boot=40, seed=2)
    assert d.estimate == pytest.approx(linear_cka(Y, X) - linear_cka(X[:, :3], X), abs=1e-12)
    idx = np.random.default_rng(2).integers(0, 60, size=(40, 60))
    want = [linear_cka(Y[i], X[i]) - linear_cka(X[i][:, :3], X[i]) for i in idx]
    np.testing.assert_allclose(d.samples, want, atol=1e-10)
    curve = stats.bootstrap_examples(np.stack([Ka, Ka]), np.stack([Kb, Kb]), against=np.stack([Kc, Kc]), n_boot=40,
                                     seed=2)  # a curve of differences: each layer is the single difference
    np.testing.assert_allclose(curve.samples[:, 1], d.samples, atol=1e-12)
    assert curve.estimate.shape == (2,) and isinstance(d.estimate, float)


def test_bootstrap_examples_drops_nonfinite_examples_jointly_and_checks_shapes(related):
    X, Y = related
    Kx, Ky = centered_gram(X), centered_gram(Y)
    Yn = Y.copy()
    Yn[5] = np.nan
    with pytest.warns(Warning, match="dropped 1 of 60 rows"):
        res = stats.bootstrap_examples(Kx, centered_gram(Yn), n_boot=5)
    keep = np.arange(60) != 5
    assert res.estimate == pytest.approx(linear_cka(X[keep], Y[keep]), abs=1e-12)
    with pytest.raises(ValueError, match="Ka and Kb must have the same shape"):
        stats.bootstrap_examples(Kx, Ky[:10, :10])
    with pytest.raises(ValueError, match="against must have 2 dimensions"):
        stats.bootstrap_examples(Kx, Ky, against=np.ones(3))
    with pytest.raises(ValueError, match=r"Ka must be an \(n, n\) Gram"):
        stats.bootstrap_examples(np.ones((3, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="needs at least"):
        stats.bootstrap_examples(Kx[:1, :1], Ky[:1, :1])


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


# ------------------------------------------------------------------------------------------------
# Small-sample inference, hierarchical bootstrap, minimal detectable effect
# ------------------------------------------------------------------------------------------------


def test_exact_sign_flip_interval_inverts_the_exact_sign_flip_test():
    x = np.random.default_rng(4).normal(0.4, 1.0, 8)
    lo, hi = stats.exact_sign_flip_interval(x, 0.95)
    assert lo < x.mean() < hi
    # just outside a bound the exact two-sided test rejects at 5 %, just inside it does not
    eps = 1e-6
    assert stats.sign_flip_test(x - (lo - eps)) <= 0.05 < stats.sign_flip_test(x - (lo + eps))
    assert stats.sign_flip_test(x - (hi + eps)) <= 0.05 < stats.sign_flip_test(x - (hi - eps))
    # with 5 tasks no sign pattern is rarer than 1/32 > 2.5 %: no finite 95 % interval
    assert stats.exact_sign_flip_interval(x[:5]) == (-np.inf, np.inf)
    assert stats.exact_sign_flip_interval(x[:6]) == pytest.approx((x[:6].min(), x[:6].max()))
    with pytest.raises(ValueError, match="n = 21"):
        stats.exact_sign_flip_interval(np.zeros(21))


def test_exact_sign_flip_interval_covers_at_the_nominal_rate():
    rng = np.random.default_rng(5)
    hits = [lo <= 0.3 <= hi for lo, hi in (stats.exact_sign_flip_interval(rng.standard_t(3, 9) + 0.3) for _ in range(400))]
    assert 0.92 <= np.mean(hits) <= 0.99  # exact: coverage 1 - 2*12/512 = 0.953


def test_sign_test_and_location_interval_switch_to_bca():
    k, n, p = stats.sign_test([1.0, 2.0, -1.0, 3.0, 0.0], alternative="greater")
    assert (k, n) == (3, 4) and p == pytest.approx(5 / 16)
    small = stats.location_interval(np.arange(10.0))
    assert "exact sign-flip" in small.method and small.n == 10 and small.se == pytest.approx(np.arange(10.0).std(ddof=1) / np.sqrt(10))
    big = stats.location_interval(np.random.default_rng(0).normal(size=30), n_boot=500)
    assert "BCa" in big.method and big.low < big.estimate < big.high
    assert np.isnan(stats.location_interval([1.0]).low)
    b = stats.bca_interval((np.random.default_rng(1).normal(size=20),), lambda v, axis: np.mean(v, axis=axis), n_boot=500)
    assert b.low < b.estimate < b.high and b.samples.shape == (500,)


def test_permutation_shift_interval():
    rng = np.random.default_rng(6)
    x, y = rng.normal(1.0, 0.3, 5), rng.normal(0.0, 0.3, 5)
    lo, hi = stats.permutation_shift_interval(x, y)
    assert lo < x.mean() - y.mean() < hi and lo > 0
    from scipy import stats as sps

    def p(delta):  # scipy's exact one-sided permutation test of the shifted samples
        return sps.permutation_test((x - delta, y), lambda u, v, axis: u.mean(axis=axis) - v.mean(axis=axis),
                                    permutation_type="independent", alternative="greater", vectorized=True).pvalue

    assert p(lo - 1e-6) <= 0.025 < p(lo + 1e-6)
    assert stats.permutation_shift_interval(x[:1], y[:3]) == (-np.inf, np.inf)  # 4 splits: p >= 1/4
    hits = [lo <= 0.5 <= hi for lo, hi in (stats.permutation_shift_interval(rng.normal(0.5, 1, 5), rng.normal(0, 1, 6))
                                            for _ in range(200))]
    assert np.mean(hits) >= 0.92


def _seed_task_table(rng, n_seeds, n_tasks, seed_sd, task_sd, noise_sd, mu=0.1):
    s = rng.normal(0, seed_sd, n_seeds)[:, None]
    t = rng.normal(0, task_sd, n_tasks)[None, :]
    v = mu + s + t + rng.normal(0, noise_sd, (n_seeds, n_tasks))
    return pd.DataFrame({"seed": np.repeat(np.arange(n_seeds), n_tasks), "task": np.tile([f"t{i}" for i in range(n_tasks)], n_seeds),
                         "value": v.ravel()})


def test_hierarchical_bootstrap_covers_seed_noise_that_a_task_bootstrap_misses():
    rng = np.random.default_rng(7)
    hier, task_only = [], []
    for _ in range(150):
        df = _seed_task_table(rng, 10, 12, seed_sd=0.3, task_sd=0.1, noise_sd=0.02)
        h = stats.hierarchical_bootstrap(df, n_boot=400, seed=None)
        hier.append(h.low <= 0.1 <= h.high)
        per_task = df.groupby("task")["value"].mean().to_numpy()  # what an interval over tasks alone sees
        t = stats.bootstrap_tasks(per_task, n_boot=400, seed=None)
        task_only.append(t.low <= 0.1 <= t.high)
    assert np.mean(hier) >= 0.85, np.mean(hier)
    assert np.mean(task_only) <= 0.5, np.mean(task_only)
    assert h.includes_seed_noise and h.levels == ("seed", "task") and (h.n_seeds, h.n_tasks) == (10, 12)


def test_hierarchical_bootstrap_with_one_seed_and_with_examples():
    rng = np.random.default_rng(8)
    one = _seed_task_table(rng, 1, 9, 0.3, 0.1, 0.02).drop(columns="seed")
    r = stats.hierarchical_bootstrap(one, n_boot=300)
    assert not r.includes_seed_noise and r.levels == ("task",) and r.estimate == pytest.approx(one["value"].mean())
    t = stats.bootstrap_tasks(one["value"].to_numpy(), n_boot=300)
    assert r.se == pytest.approx(t.se, rel=0.25)  # one seed: the task bootstrap
    ex = pd.DataFrame({"task": np.repeat(["a", "b", "c"], [4, 6, 5]), "example": np.arange(15),
                       "value": rng.normal(size=15)})
    e = stats.hierarchical_bootstrap(ex, n_boot=300)
    assert e.levels == ("task", "example")
    assert e.estimate == pytest.approx(ex.groupby("task")["value"].mean().mean())
    # resampling examples within tasks adds their noise: wider than the task-only interval
    tonly = stats.hierarchical_bootstrap(ex.groupby("task", as_index=False)["value"].mean(), n_boot=300)
    assert e.se > tonly.se
    with pytest.raises(ValueError, match="columns 'task' and 'value'"):
        stats.hierarchical_bootstrap(ex.drop(columns="task"))


def test_minimal_detectable_effect():
    from scipy import stats as sps

    assert stats.minimal_detectable_effect(0.1, 8) == pytest.approx((sps.t(8).ppf(0.975) + sps.t(8).ppf(0.8)) * 0.1)
    assert stats.minimal_detectable_effect(0.1) == pytest.approx(2.8016 * 0.1, rel=1e-3)
    assert np.isinf(stats.minimal_detectable_effect(np.nan, 8)) and np.isinf(stats.minimal_detectable_effect(0.1, 0))
    assert stats.correlation_mde(12) == pytest.approx(np.tanh(2.8016 / 3), rel=1e-3)
    assert np.isinf(stats.correlation_mde(3))
    with pytest.raises(ValueError, match="power"):
        stats.minimal_detectable_effect(0.1, 5, power=1.0)
