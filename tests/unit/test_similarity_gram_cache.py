"""GramCache: storage, reuse, precision of the float32 route, implicit centring, NaN rows."""

from __future__ import annotations

import numpy as np
import pytest
from test_similarity import llm_like_states, pair, ref_cka, ref_feature_cka, sinusoids  # noqa: F401 (pair is a fixture)

from layerwise import similarity as sim
from layerwise.similarity import NonFiniteRowsWarning, centered_gram, cka_from_grams
from layerwise.similarity.arrays import inner64
from layerwise.similarity.grams import gram_products_float32


def test_gram_cache_roundtrip_reuse_and_precision(tmp_path, pair):
    X, Y = pair
    rng = np.random.default_rng(0)
    A = np.stack([X, X**2, np.sin(X)]).astype(np.float32)
    B = np.stack([Y, Y**2, np.cos(Y)]).astype(np.float32) + 50.0  # large offsets
    A[2, 5, 0] = np.nan
    calls = []

    def load_b():
        calls.append(1)
        return B

    cache = sim.GramCache(tmp_path, storage_dtype="float32", max_in_memory=1)
    assert cache.ensure("pt", "task/a b", A, metadata={"key": "abc", "n_examples": 70})
    GA = cache.get("pt", "task/a b")
    assert cache.ensure("sft", "task/a b", load_b)
    assert not cache.ensure("sft", "task/a b", load_b)  # hit: not recomputed
    assert len(calls) == 1 and cache.n_computed == 2
    assert GA.shape == (3, 70, 70) and GA.dtype == np.float64
    assert ("pt", "task/a b") in cache and ("c", "task/a b") not in cache
    meta = cache.metadata("pt", "task/a b")
    assert meta["key"] == "abc" and meta["nonfinite_rows"] == "[5]" and meta["n"] == "70"

    # a fresh instance reads from disk
    fresh = sim.GramCache(tmp_path)
    with pytest.warns(NonFiniteRowsWarning, match="dropped 1 of 70"):
        got = fresh.compare("pt", "sft", "task/a b")
    keep = np.setdiff1d(np.arange(70), [5])
    want = [ref_feature_cka(A[i][keep], B[i][keep]) if i == 2 else ref_feature_cka(A[i], B[i]) for i in range(3)]
    np.testing.assert_allclose(got, want, atol=1e-6)  # float32 storage within 1e-6
    exact = sim.GramCache(tmp_path / "f64", storage_dtype="float64")
    exact.put("pt", "t", sim.centered_grams(A[:2]))
    exact.put("sft", "t", sim.centered_grams(B[:2]))
    np.testing.assert_allclose(exact.compare("pt", "sft", "t", measure="debiased_cka"),
                               [ref_cka(A[i], B[i], True) for i in range(2)], atol=1e-10)
    r = fresh.compare("pt", "sft", "task/a b", measure="rsa", layers=[0])
    assert r.shape == (1,)
    with pytest.raises(KeyError, match="no cached Grams"):
        fresh.get("nope", "task/a b")
    with pytest.raises(KeyError, match="valid names"):
        fresh.compare("pt", "sft", "task/a b", measure="nope")
    with pytest.raises(ValueError, match="storage_dtype"):
        sim.GramCache(tmp_path, storage_dtype="float16")


def test_gram_cache_memory_only():
    cache = sim.GramCache()
    X = sinusoids(30, 6)
    cache.ensure("m", "t", X[None])
    G = cache.get("m", "t")
    assert cache.path("m", "t") is None
    np.testing.assert_allclose(G[0], centered_gram(X), atol=1e-6 * np.abs(G).max())


def test_gram_cache_linear_fast_path_matches_explicit_centring(tmp_path):
    """compare(linear_cka) centres the stored Grams implicitly; it must equal explicit centring,
    also for Grams that were stored uncentred (put() of raw X X^T)."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(2, 40, 7)) + 3.0
    Y = 0.5 * X + rng.normal(size=(2, 40, 7)) - 1.0
    cache = sim.GramCache(storage_dtype="float64")
    cache.put("x", "t", np.einsum("lij,lkj->lik", X, X))  # raw, uncentred Grams
    cache.put("y", "t", np.einsum("lij,lkj->lik", Y, Y))
    want = [ref_cka(X[i] - X[i].mean(0), Y[i] - Y[i].mean(0)) for i in range(2)]
    np.testing.assert_allclose(cache.compare("x", "y", "t"), want, atol=1e-12)
    np.testing.assert_allclose(cache.compare("x", "y", "t", layers=[1]), want[1:], atol=1e-12)
    # float32 storage: fast path equals the generic Gram-form route on the same stored values
    c32 = sim.GramCache(tmp_path, storage_dtype="float32")
    c32.ensure("x", "t", X.astype(np.float32))
    c32.ensure("y", "t", Y.astype(np.float32))
    generic = [cka_from_grams(c32.get("x", "t", i), c32.get("y", "t", i)) for i in range(2)]
    np.testing.assert_allclose(c32.compare("x", "y", "t"), generic, atol=1e-12)
    np.testing.assert_allclose(c32.compare("x", "y", "t"), want, atol=1e-6)
    # a hit never touches the states (None here), and a memory-only cache reads back what it stored
    assert not c32.ensure("x", "t", None)
    fresh = sim.GramCache()
    fresh.ensure("x", "t", X.astype(np.float32))
    np.testing.assert_allclose(fresh.get("x", "t"), c32.get("x", "t"), atol=1e-12)
    cz = sim.GramCache()
    cz.put("z", "t", np.zeros((1, 40, 40)))
    cz.put("x", "t", cache.get("x", "t")[:1])
    with pytest.raises(ValueError, match="zero variance"):
        cz.compare("z", "x", "t")


def test_gram_cache_ensure_stores_the_float32_product_and_readers_recentre(tmp_path):
    """ensure() stores the float32 product of column-centred states as computed (no second
    rounding); get(), compare() and a fresh instance all see it double-centred in float64."""
    A = np.stack([llm_like_states(300, 256, s, massive=3e3) for s in range(2)])
    B = (0.7 * A + 0.3 * np.stack([llm_like_states(300, 256, s + 5, massive=3e3) for s in range(2)])).astype(np.float32)
    calls = []
    cache = sim.GramCache(tmp_path, max_in_memory=1)
    assert cache.ensure("a", "t", A) is True
    assert cache.ensure("b", "t", lambda: calls.append(1) or B) is True
    assert cache.ensure("b", "t", lambda: calls.append(1) or B) is False  # hit: not recomputed
    assert calls == [1] and cache.n_computed == 2
    stored = cache._load("a", "t")
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, gram_products_float32(A))  # exactly the product
    ref = sim.centered_grams(A)
    for G in (cache.get("a", "t"), sim.GramCache(tmp_path).get("a", "t")):
        assert G.dtype == np.float64 and G.shape == (2, 300, 300)
        np.testing.assert_allclose(G, ref, atol=2e-6 * np.abs(ref).max())
        # centred: row sums vanish to float64 rounding, not to the float32 offsets of storage
        assert np.abs(G.sum(axis=2)).max() <= 1e-9 * np.abs(G).sum(axis=2).max()
        np.testing.assert_array_equal(G, np.swapaxes(G, 1, 2))
    np.testing.assert_array_equal(cache.get("a", "t", -1), cache.get("a", "t")[-1])
    want = [ref_feature_cka(A[i], B[i]) for i in range(2)]
    for c in (cache, sim.GramCache(tmp_path)):
        np.testing.assert_allclose(c.compare("a", "b", "t"), want, atol=1e-6)
        np.testing.assert_allclose(
            c.compare("a", "b", "t", measure="debiased_cka"),
            [cka_from_grams(centered_gram(A[i]), centered_gram(B[i]), debiased=True) for i in range(2)],
            atol=1e-6,
        )
    # put() copies the caller's array: changing it afterwards does not change the cache
    G = sim.centered_grams(A).astype(np.float32)
    cache.put("c", "t", G)
    before = cache.get("c", "t")
    G[...] = 0.0
    np.testing.assert_array_equal(cache.get("c", "t"), before)


def test_gram_cache_nonfinite_rows_survive_storage_and_recentring():
    A = np.stack([llm_like_states(40, 30, s, massive=300.0) for s in range(2)])
    A[1, 3, 0] = np.inf
    cache = sim.GramCache()
    cache.ensure("a", "t", A)
    G = cache.get("a", "t")
    assert np.isnan(G[1, 3]).all() and np.isnan(G[1][:, 3]).all() and np.isfinite(G[0]).all()
    keep = np.setdiff1d(np.arange(40), [3])
    np.testing.assert_allclose(G[1][np.ix_(keep, keep)], centered_gram(A[1][keep]),
                               atol=2e-6 * np.abs(G[0]).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inner64_accumulates_in_float64(dtype):
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((700, 700)) * 1e3 + 5e3).astype(dtype)
    b = (rng.standard_normal((700, 700)) * 1e-2).astype(dtype)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    want = float(np.sum(a64 * b64))
    assert inner64(a, b) == pytest.approx(want, rel=1e-12, abs=1e-12 * float(np.sum(np.abs(a64 * b64))))
    assert inner64(a) == pytest.approx(float(np.sum(a64 * a64)), rel=1e-12)
    assert inner64(a[:0], b[:0]) == 0.0

