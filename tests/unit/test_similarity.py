"""Property tests for layerwise.similarity: the linear CKA contract, Gram routes, every
registered measure (invariances parametrized from the registry's flags), and the fast paths
against :mod:`layerwise.similarity.reference`.

Fixtures are deterministic (sinusoids, seeded generators); hypothesis draws small matrices for
the agreement-with-reference and joint row-permutation properties. The per-measure references
further down are written directly from the published formulas, with no shared code with the
library.
"""

from __future__ import annotations

import warnings
from itertools import permutations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layerwise import similarity as sim
from layerwise.similarity import (
    INVARIANCES,
    MEASURES,
    GramCache,
    Measure,
    NonFiniteRowsWarning,
    RowFilter,
    centered_gram,
    cka_by_layer,
    cka_from_grams,
    get_measure,
    linear_cka,
    similarity,
)
from layerwise.similarity import reference as ref
from layerwise.similarity.cka import _use_feature_route
from layerwise.similarity.grams import _centered_grams_float32

# --------------------------------------------------------------------------------------------
# References: the library's literal implementation (layerwise.similarity.reference), and the
# authors' feature-space route
# --------------------------------------------------------------------------------------------

def ref_cka(X: np.ndarray, Y: np.ndarray, debiased: bool = False) -> float:
    """Kornblith et al. 2019, Sec. 3 with linear kernels K = X X^T, L = Y Y^T."""
    return ref.linear_cka(X, Y, debiased=debiased)


def ref_feature_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """The authors' route (Kornblith Colab): centre columns, ||X^T Y||^2 / (||X^T X|| ||Y^T Y||)."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    return float(
        np.linalg.norm(X.T @ Y) ** 2 / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))
    )


# --------------------------------------------------------------------------------------------
# Deterministic fixtures
# --------------------------------------------------------------------------------------------


def sinusoids(n: int = 60, d: int = 12, phase: float = 0.0, freq: float = 1.0) -> np.ndarray:
    """(n, d): column j is sin((j+1) * freq * t + phase + j / 3) on t in [0, 2 pi)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)[:, None]
    j = np.arange(d)[None, :]
    return np.sin((j + 1) * freq * t + phase + j / 3.0) + 0.1 * j


@pytest.fixture
def XY() -> tuple[np.ndarray, np.ndarray]:
    X = sinusoids(60, 12)
    Y = np.tanh(sinusoids(60, 9, phase=0.7, freq=1.3)) + 0.3 * X[:, :9] ** 2
    return X, Y


def ortho(d: int, seed: int = 0) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


# --------------------------------------------------------------------------------------------
# Linear CKA: the contract
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("debiased", [False, True])
def test_identity(XY, debiased):
    X, _ = XY
    assert linear_cka(X, X, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_symmetry(XY, debiased):
    X, Y = XY
    assert linear_cka(X, Y, debiased=debiased) == pytest.approx(
        linear_cka(Y, X, debiased=debiased), abs=1e-14
    )


def test_purity(XY):
    X, Y = XY
    X0, Y0 = X.copy(), Y.copy()
    Xf = X.astype(np.float32)
    Xf0 = Xf.copy()
    for route in ("features", "gram"):
        linear_cka(X, Y, route=route)
        linear_cka(X, Y, route=route, debiased=True)
        linear_cka(Xf, Y, route=route)
    K = centered_gram(X)
    K0 = K.copy()
    cka_from_grams(K, centered_gram(Y), debiased=True)
    cka_by_layer(np.stack([X, X]), np.stack([Y, Y]))
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)
    np.testing.assert_array_equal(Xf, Xf0)
    np.testing.assert_array_equal(K, K0)


def test_vector_case_is_squared_pearson():
    t = np.linspace(0, 2 * np.pi, 50, endpoint=False)
    x = np.sin(t) + 0.2 * np.cos(3 * t)
    y = np.sin(t + 0.4) + 0.05 * t
    r = np.corrcoef(x, y)[0, 1]
    assert linear_cka(x[:, None], y[:, None]) == pytest.approx(r**2, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_feature_form_equals_gram_form(XY, debiased):
    X, Y = XY
    a = linear_cka(X, Y, debiased=debiased, route="features")
    b = linear_cka(X, Y, debiased=debiased, route="gram")
    c = cka_from_grams(centered_gram(X), centered_gram(Y), debiased=debiased)
    d = cka_from_grams(X @ X.T, Y @ Y.T, debiased=debiased)  # raw Grams are centred inside
    assert a == pytest.approx(b, abs=1e-14)
    assert a == pytest.approx(c, abs=1e-14)
    assert a == pytest.approx(d, abs=1e-12)


def test_matches_reference_and_authors_route(XY):
    X, Y = XY
    assert linear_cka(X, Y) == pytest.approx(ref_cka(X, Y), abs=1e-12)
    assert linear_cka(X, Y) == pytest.approx(ref_feature_cka(X, Y), abs=1e-12)
    assert linear_cka(X, Y, debiased=True) == pytest.approx(ref_cka(X, Y, True), abs=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    n=st.integers(5, 30),
    d1=st.integers(1, 40),
    d2=st.integers(1, 40),
)
def test_hypothesis_agrees_with_reference(data, n, d1, d2):
    elems = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=64)
    X = data.draw(arrays(np.float64, (n, d1), elements=elems))
    Y = data.draw(arrays(np.float64, (n, d2), elements=elems))
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    if not (np.abs(Xc).max() > 1e-6 and np.abs(Yc).max() > 1e-6):
        return  # (near-)constant draws: covered by test_bad_input_errors
    for debiased in (False, True):
        K, L = X @ X.T, Y @ Y.T
        if debiased:
            # skip ill-conditioned draws where a debiased self-HSIC is ~0 (documented nan)
            hb = min(ref.hsic_biased(K, K), ref.hsic_biased(L, L))
            if min(ref.hsic_unbiased(K, K), ref.hsic_unbiased(L, L)) < 1e-3 * hb:
                continue
        want = ref_cka(X, Y, debiased)
        got_f = linear_cka(X, Y, debiased=debiased, route="features")
        got_g = linear_cka(X, Y, debiased=debiased, route="gram")
        assert got_g == pytest.approx(want, abs=1e-8)
        assert got_f == pytest.approx(want, abs=1e-8)
        if not debiased:
            assert -1e-12 <= got_g <= 1 + 1e-12


def test_debiased_degenerate_returns_nan_with_warning():
    x = np.array([[0.0], [1.0], [1.0], [1.0], [1.0], [1.0]])
    with pytest.warns(RuntimeWarning, match="not positive"):
        assert np.isnan(linear_cka(x, x, debiased=True))


def test_debiased_near_zero_on_independent_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 1024))
    Y = rng.normal(size=(300, 1024))
    biased = linear_cka(X, Y)
    deb = linear_cka(X, Y, debiased=True)
    assert biased > 0.5  # the inflation the debiased estimator removes
    assert abs(deb) < 0.02


def test_float32_within_tolerance_of_float64():
    rng = np.random.default_rng(3)
    scale = np.exp(rng.normal(0, 1.5, 512))
    X = rng.normal(size=(400, 512)) * scale + 30 * rng.normal(size=512)  # large offsets
    Y = 0.5 * X + rng.normal(size=(400, 512)) * scale
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    ref = ref_feature_cka(X32.astype(np.float64), Y32.astype(np.float64))
    for route in ("features", "gram"):
        for debiased in (False, True):
            want = ref if not debiased else ref_cka(X32, Y32, True)
            assert linear_cka(X32, Y32, route=route, debiased=debiased) == pytest.approx(
                want, abs=1e-6
            )
    # float16 inputs are accepted too (values as rounded to float16)
    X16 = X.astype(np.float16)
    assert linear_cka(X16, Y32) == pytest.approx(ref_feature_cka(X16.astype(np.float64), Y32), abs=1e-6)


def test_torch_tensors_accepted(XY):
    torch = pytest.importorskip("torch")
    X, Y = XY
    got = linear_cka(torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.bfloat16))
    want = ref_feature_cka(
        torch.tensor(X, dtype=torch.float32).double().numpy(),
        torch.tensor(Y, dtype=torch.bfloat16).double().numpy(),
    )
    assert got == pytest.approx(want, abs=1e-10)


def test_route_choice_auto_equals_both():
    X = sinusoids(200, 5)
    Y = sinusoids(200, 4, phase=1.0)
    assert _use_feature_route(200, 5, 4)
    assert not _use_feature_route(50, 4096, 4096)
    assert linear_cka(X, Y) == pytest.approx(linear_cka(X, Y, route="gram"), abs=1e-14)


# --------------------------------------------------------------------------------------------
# Fast paths against the reference implementation
# --------------------------------------------------------------------------------------------


def test_reference_matches_closed_forms():
    """The reference itself: squared Pearson r for vectors, the biased HSIC as a feature-space
    norm, and the unbiased HSIC_1 as the U-statistic average over distinct 4-tuples."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 1)), rng.normal(size=(30, 1))
    y += x
    assert ref.linear_cka(x, y) == pytest.approx(np.corrcoef(x[:, 0], y[:, 0])[0, 1] ** 2, abs=1e-12)
    X, Y = rng.normal(size=(9, 3)), rng.normal(size=(9, 4))
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    assert ref.hsic_biased(X @ X.T, Y @ Y.T) == pytest.approx(np.linalg.norm(Xc.T @ Yc) ** 2 / 8**2, rel=1e-12)
    # HSIC_1 is Song et al.'s U-statistic: the mean over ordered 4-tuples of distinct examples
    # (i, j, q, r) of k_ij l_ij + k_ij l_qr - 2 k_ij l_iq
    K, L = X @ X.T, Y @ Y.T
    n = 6
    K, L = K[:n, :n], L[:n, :n]
    tot = 0.0
    for i, j, q, r in permutations(range(n), 4):
        tot += K[i, j] * L[i, j] + K[i, j] * L[q, r] - 2 * K[i, j] * L[i, q]
    assert ref.hsic_unbiased(K, L) == pytest.approx(tot / (n * (n - 1) * (n - 2) * (n - 3)), rel=1e-10)


@pytest.mark.parametrize("n, d1, d2", [(10, 3, 7), (40, 8, 120), (200, 30, 10), (64, 64, 64)])
@pytest.mark.parametrize("debiased", [False, True])
def test_fast_paths_match_reference(n, d1, d2, debiased):
    """Every linear CKA / HSIC route of the library against the literal reference, float64."""
    rng = np.random.default_rng(n + d1 + d2)
    X = rng.normal(size=(n, d1)) * np.exp(rng.normal(0.0, 1.0, d1)) + rng.normal(0.0, 3.0, d1)
    Y = 0.5 * X[:, :1] + rng.normal(size=(n, d2)) + 2.0
    want = ref.linear_cka(X, Y, debiased=debiased)
    name = "debiased_cka" if debiased else "linear_cka"
    Kx, Ky = centered_gram(X), centered_gram(Y)
    got = {
        "features": linear_cka(X, Y, debiased=debiased, route="features"),
        "gram": linear_cka(X, Y, debiased=debiased, route="gram"),
        "cka_from_grams": cka_from_grams(Kx, Ky, debiased=debiased),
        "raw grams": cka_from_grams(X @ X.T, Y @ Y.T, debiased=debiased),
        "registry": similarity(name, X, Y),
        "cka_matrix": float(sim.cka_matrix(X[None], Y[None], debiased=debiased)[0, 0]),
        "cka_by_layer": float(cka_by_layer(X[None], Y[None], measure=name)[0]),
        "minibatch, one batch": sim.minibatch_cka(X, Y, batch_size=n) if debiased else want,
    }
    cache = GramCache(storage_dtype="float64")
    cache.put("x", "t", Kx[None])
    cache.put("y", "t", Ky[None])
    got["GramCache.compare"] = float(cache.compare("x", "y", "t", measure=name)[0])
    for route, value in got.items():
        assert value == pytest.approx(want, abs=1e-10), route
    hsic_ref = ref.hsic_unbiased if debiased else ref.hsic_biased
    assert sim.hsic(Kx, Ky, debiased=debiased) == pytest.approx(hsic_ref(X @ X.T, Y @ Y.T), rel=1e-10)
    # the float32-storage cache: within its documented precision
    c32 = GramCache()
    c32.ensure("x", "t", X[None].astype(np.float32))
    c32.ensure("y", "t", Y[None].astype(np.float32))
    want32 = ref.linear_cka(X.astype(np.float32), Y.astype(np.float32), debiased=debiased)
    assert float(c32.compare("x", "y", "t", measure=name)[0]) == pytest.approx(want32, abs=1e-6)


# --------------------------------------------------------------------------------------------
# Gram matrices
# --------------------------------------------------------------------------------------------


def test_centered_gram_is_HXXH(XY):
    X, _ = XY
    H = ref.centring_matrix(X.shape[0])
    K = centered_gram(X.astype(np.float32))
    assert K.dtype == np.float64 and K.shape == (60, 60)
    X32 = X.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(K, H @ X32 @ X32.T @ H, atol=1e-10)  # all-float64 for any dtype
    np.testing.assert_array_equal(K, K.T)
    # the float32-product route of GramCache(storage_dtype="float32")
    K32 = _centered_grams_float32(X[None].astype(np.float32))[0]
    np.testing.assert_allclose(K32, K, atol=1e-6 * np.abs(K).max())
    np.testing.assert_array_equal(K32, K32.T)
    np.testing.assert_allclose(K32.sum(axis=0), 0.0, atol=1e-12 * np.abs(K).sum())


def llm_like_states(n: int, d: int, seed: int, massive: float = 3e4) -> np.ndarray:
    """float32 states like an LLM residual stream: log-normal feature scales, large per-feature
    offsets, a few low-rank high-variance directions and "massive activations" (a handful of
    features with values ~3e4, as in Gemma/Llama residual streams)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d)) * np.exp(rng.normal(0, 1, d)) + 10 * rng.normal(size=d)
    U = np.linalg.qr(rng.standard_normal((d, 4)))[0]
    Z += (rng.standard_normal((n, 4)) * [3e3, 1e3, 300, 100]) @ U.T
    for j in rng.choice(d, 3, replace=False):
        Z[:, j] += massive * (1 + 0.05 * rng.standard_normal(n))
    return Z.astype(np.float32)


@pytest.mark.parametrize("n, d", [(1000, 2048), (3000, 512)])
def test_float32_gram_route_within_1e6_of_float64_at_scale(n, d):
    """GramCache's float32 product of float64-centred states against the all-float64 Gram."""
    base = llm_like_states(n, d, 0)
    rng = np.random.default_rng(1)
    mats = [
        base,
        (0.6 * base + 0.4 * llm_like_states(n, d, 2)).astype(np.float32),  # related (CKA ~0.9)
        llm_like_states(n, d, 3),  # unrelated
        base + (50 * rng.standard_normal(base.shape)).astype(np.float32),  # near-identical
    ]
    fast = [_centered_grams_float32(M[None])[0] for M in mats]
    ref = [centered_gram(M) for M in mats]
    for Kf, Kr in zip(fast, ref):
        assert np.abs(Kf - Kr).max() <= 2e-6 * np.abs(Kr).max()
        np.testing.assert_array_equal(Kf, Kf.T)
    for i in range(len(mats)):
        for j in range(i, len(mats)):
            for debiased in (False, True):
                want = cka_from_grams(ref[i], ref[j], debiased=debiased)
                got = cka_from_grams(fast[i], fast[j], debiased=debiased)
                assert got == pytest.approx(want, abs=1e-6)
    # cross-check one pair against the authors' feature route, in float64 from the same states
    assert cka_from_grams(fast[0], fast[1]) == pytest.approx(ref_feature_cka(mats[0], mats[1]), abs=1e-6)


def test_float32_gram_route_inputs_nonfinite_and_constants():
    torch = pytest.importorskip("torch")
    f32 = _centered_grams_float32
    A = np.stack([llm_like_states(50, 40, s, massive=300.0) for s in range(3)])
    A0 = A.copy()
    want = sim.centered_grams(A)
    tol = 2e-6 * np.abs(want).max()
    np.testing.assert_allclose(f32(A), want, atol=tol)
    np.testing.assert_allclose(f32(A.astype(np.float64)), want, atol=tol)  # float64 states
    np.testing.assert_array_equal(f32(torch.from_numpy(A)), f32(A))
    bf = torch.from_numpy(A).to(torch.bfloat16)
    np.testing.assert_allclose(f32(bf), sim.centered_grams(bf), atol=tol)
    A16 = A.astype(np.float16)
    np.testing.assert_allclose(f32(A16), sim.centered_grams(A16), atol=tol)
    np.testing.assert_array_equal(A, A0)  # inputs not mutated
    # non-finite rows: NaN row/column, the rest equals the Gram of the finite rows
    for B in (A.copy(), A.astype(np.float64)):
        B[1, 7, 3] = np.nan
        G = f32(B)
        assert np.isnan(G[1, 7]).all() and np.isnan(G[1][:, 7]).all() and np.isfinite(G[[0, 2]]).all()
        keep = np.setdiff1d(np.arange(50), [7])
        np.testing.assert_allclose(G[1][np.ix_(keep, keep)], centered_gram(B[1][keep]), atol=tol)
    # all-constant input: exactly zero, and CKA refuses it
    Z = np.full((3, 20, 5), 7.25, dtype=np.float32)
    assert not f32(Z).any()
    with pytest.raises(ValueError, match="zero variance"):
        cka_from_grams(f32(Z)[0], centered_gram(A[0, :20]))
    with pytest.raises(ValueError, match="3 dimensions"):
        f32(A[0])


def test_centered_gram_nan_rows_marked_and_dropped_jointly(XY):
    X, Y = XY
    Xn, Yn = X.copy(), Y.copy()
    Xn[3, 2] = np.nan
    Yn[10, 0] = np.inf
    Kx, Ky = centered_gram(Xn), centered_gram(Yn)
    assert np.isnan(Kx[3]).all() and np.isnan(Kx[:, 3]).all()
    assert np.isfinite(np.delete(np.delete(Kx, 3, 0), 3, 1)).all()
    keep = np.setdiff1d(np.arange(60), [3, 10])
    want = ref_cka(X[keep], Y[keep])
    with pytest.warns(NonFiniteRowsWarning, match="dropped 2 of 60 rows"):
        got = cka_from_grams(Kx, Ky)
    assert got == pytest.approx(want, abs=1e-12)


# --------------------------------------------------------------------------------------------
# NaN / inf rows: dropped jointly, reported
# --------------------------------------------------------------------------------------------


def test_nonfinite_rows_dropped_jointly(XY):
    X, Y = XY
    Xn, Yn = X.copy(), Y.copy()
    Xn[[1, 5], 0] = np.nan
    Yn[[5, 20], 3] = -np.inf
    keep = np.setdiff1d(np.arange(60), [1, 5, 20])
    with pytest.warns(NonFiniteRowsWarning, match=r"dropped 3 of 60 rows.*jointly.*1, 5, 20"):
        got = linear_cka(Xn, Yn)
    assert got == pytest.approx(ref_cka(X[keep], Y[keep]), abs=1e-12)
    Xd, Yd, rf = sim.drop_nonfinite_rows(Xn, Yn, warn=False)
    assert rf == RowFilter(60, 57, (1, 5, 20))
    assert rf.n_dropped == 3 and Xd.shape == (57, 12) and Yd.shape == (57, 9)


def test_cka_by_layer_batched_and_aligned():
    L = 4
    A = np.stack([sinusoids(40, 10, phase=0.3 * i) for i in range(L)]).astype(np.float32)
    B = np.stack([np.tanh(sinusoids(40, 6, phase=0.5 * i, freq=1.1)) for i in range(L)])
    got = cka_by_layer(A, B)
    assert got.shape == (L,) and got.dtype == np.float64
    np.testing.assert_allclose(got, [ref_cka(A[i], B[i]) for i in range(L)], atol=1e-6)
    deb = cka_by_layer(A, B, measure="debiased_cka")
    np.testing.assert_allclose(deb, [ref_cka(A[i], B[i], True) for i in range(L)], atol=1e-6)

    # NaN in different rows of different layers and models: never misaligned
    An, Bn = A.copy(), B.copy()
    An[1, 7, 0] = np.nan
    Bn[3, 12, 2] = np.nan
    keep = np.setdiff1d(np.arange(40), [7, 12])
    with pytest.warns(NonFiniteRowsWarning, match="dropped 2 of 40"):
        vals, info = cka_by_layer(An, Bn, return_info=True)
    assert info.dropped == (7, 12)
    np.testing.assert_allclose(vals, [ref_cka(A[i][keep], B[i][keep]) for i in range(L)], atol=1e-6)
    with pytest.warns(NonFiniteRowsWarning):
        per = cka_by_layer(An, Bn, rows="per_layer")
    assert per[0] == pytest.approx(ref_cka(A[0], B[0]), abs=1e-6)  # layer 0 keeps all rows
    k1 = np.setdiff1d(np.arange(40), [7])
    assert per[1] == pytest.approx(ref_cka(A[1][k1], B[1][k1]), abs=1e-6)


def test_cka_matrix_matches_pairs():
    A = np.stack([sinusoids(30, 8, phase=0.4 * i) for i in range(3)])
    B = np.stack([sinusoids(30, 5, phase=0.9 * i, freq=1.2) for i in range(2)])
    for debiased in (False, True):
        M = sim.cka_matrix(A, B, debiased=debiased)
        want = [[ref_cka(A[i], B[j], debiased) for j in range(2)] for i in range(3)]
        np.testing.assert_allclose(M, want, atol=1e-10)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_bad_input_errors(XY):
    X, Y = XY
    with pytest.raises(ValueError, match="same number of rows"):
        linear_cka(X, Y[:-1])
    with pytest.raises(ValueError, match="at least 4 rows"):
        linear_cka(X[:3], Y[:3], debiased=True)
    with pytest.raises(ValueError, match="at least 4 rows"):
        cka_from_grams(centered_gram(X[:3]), centered_gram(Y[:3]), debiased=True)
    with pytest.raises(ValueError, match="zero variance"):
        linear_cka(np.ones((10, 3)) * 5.0, Y[:10])
    with pytest.raises(ValueError, match="zero variance"):
        linear_cka(X[:10], np.tile(np.arange(4.0), (10, 1)), route="gram")
    with pytest.raises(ValueError, match="zero variance"):
        cka_from_grams(centered_gram(np.full((8, 2), 3.3)), centered_gram(X[:8]))
    with pytest.raises(ValueError, match="dimensions"):
        linear_cka(X[:, 0], Y)
    with pytest.raises(ValueError, match="route"):
        linear_cka(X, Y, route="fast")
    with pytest.raises(ValueError, match="same number of layers"):
        cka_by_layer(np.stack([X, X]), Y[None])
    with pytest.raises(ValueError, match="same number of rows"):
        cka_by_layer(X[None], Y[None, :-2])
    with pytest.raises(KeyError, match="valid names: .*debiased_cka.*linear_cka"):
        similarity("cosine_cka", X, Y)
    with pytest.raises(KeyError, match="valid names"):
        cka_by_layer(X[None], Y[None], measure="nope")


def test_registry_contract(XY):
    X, Y = XY
    assert {"linear_cka", "debiased_cka"} <= set(MEASURES)
    assert similarity("linear_cka", X, Y) == pytest.approx(ref_cka(X, Y), abs=1e-12)
    assert similarity("debiased_cka", X, Y) == pytest.approx(ref_cka(X, Y, True), abs=1e-12)
    assert isinstance(similarity("linear_cka", X, Y), float)
    # get_measure takes a name or a Measure; the registry holds the functions themselves
    m = get_measure("debiased_cka")
    assert get_measure(m) is m and similarity(m, X, Y) == similarity("debiased_cka", X, Y)
    assert m.features is linear_cka and m.grams is cka_from_grams and m.options == {"debiased": True}
    custom = Measure("neg_cka", lambda A, B: -linear_cka(A, B), None)
    assert similarity(custom, X, Y) == -similarity("linear_cka", X, Y)
    for measure in MEASURES.values():
        assert measure.features.__name__ != "<lambda>"
        assert measure.grams is None or measure.grams.__name__ != "<lambda>"


# --------------------------------------------------------------------------------------------
# Every measure: properties where they apply, Gram form, references
# --------------------------------------------------------------------------------------------

ALL = sorted(MEASURES)
SYMMETRIC = [m for m in ALL if MEASURES[m].symmetric]
GRAM_FORM = [m for m in ALL if MEASURES[m].uses_grams]
SMALL_BATCH = {"minibatch_cka": {"batch_size": 20}}


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """Seeded, tie-free data (k-NN ranks and RSA ranks have no exact ties)."""
    rng = np.random.default_rng(11)
    X = rng.normal(size=(70, 16)) * np.linspace(0.5, 2.0, 16)
    Y = np.tanh(X[:, :10] @ rng.normal(size=(10, 10))) + 0.5 * rng.normal(size=(70, 10))
    return X, Y


def m_(name, X, Y):
    return similarity(name, X, Y, **SMALL_BATCH.get(name, {}))


@pytest.mark.parametrize("name", ALL)
def test_all_identity(pair, name):
    X, _ = pair
    assert m_(name, X, X) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name", SYMMETRIC)
def test_all_symmetry(pair, name):
    X, Y = pair
    assert m_(name, X, Y) == pytest.approx(m_(name, Y, X), abs=1e-10)


def _invertible(d: int, seed: int) -> np.ndarray:
    """A random invertible, far from orthogonal map: rotation, anisotropic scaling 0.05-20, rotation."""
    return (ortho(d, seed) * np.geomspace(0.05, 20.0, d)) @ ortho(d, seed + 1)


#: One transform per invariance flag of the registry (``Z -> T(Z, seed)``, applied to one side).
TRANSFORMS = {
    "orthogonal": lambda Z, seed: Z @ ortho(Z.shape[1], seed),
    "isotropic_scale": lambda Z, seed: (3.7 if seed % 2 else 0.02) * Z,
    "translation": lambda Z, seed: Z + np.random.default_rng(seed).normal(0.0, 10.0, Z.shape[1]),
    "permutation": lambda Z, seed: Z[:, np.random.default_rng(seed).permutation(Z.shape[1])],
    "invertible_linear": lambda Z, seed: Z @ _invertible(Z.shape[1], seed),
}
DECLARED = [(m, f) for m in ALL for f in INVARIANCES if getattr(MEASURES[m], f)]
UNDECLARED = [(m, f) for m in ALL for f in INVARIANCES if not getattr(MEASURES[m], f)]


def test_every_invariance_flag_has_a_transform():
    assert set(TRANSFORMS) == set(INVARIANCES)
    for m in MEASURES.values():
        assert m.invariances == {f for f in INVARIANCES if getattr(m, f)}


@pytest.mark.parametrize("name, flag", DECLARED)
def test_declared_invariance_holds(pair, name, flag):
    """Every measure with an invariance flag is unchanged by that transform of either input."""
    X, Y = pair
    base = m_(name, X, Y)
    assert 0.0 < base < 1.0
    T = TRANSFORMS[flag]
    assert m_(name, T(X, 1), Y) == pytest.approx(base, abs=1e-8)
    assert m_(name, X, T(Y, 2)) == pytest.approx(base, abs=1e-8)


@pytest.mark.parametrize("name, flag", UNDECLARED)
def test_undeclared_invariance_fails(pair, name, flag):
    """A measure without a flag is moved by that transform (so the flags are not vacuous): no
    measure here is invariant to invertible linear maps (CKA and Procrustes weight directions by
    variance; SVCCA/PWCCA truncate to 99 % of it), and PWCCA's neuron weights see rotations."""
    X, Y = pair
    base = m_(name, X, Y)
    T = TRANSFORMS[flag]
    moved = max(abs(m_(name, T(X, 1), Y) - base), abs(m_(name, X, T(Y, 2)) - base))
    assert moved > 1e-3


def test_pwcca_invariant_to_rotating_the_side_that_does_not_weight(pair):
    """PWCCA weights by the neurons of the side with fewer kept directions (X on ties)."""
    X, Y = pair
    base = sim.pwcca(X, Y)
    if ref_reduce(X).shape[1] <= ref_reduce(Y).shape[1]:
        assert sim.pwcca(X, Y @ ortho(Y.shape[1], 5)) == pytest.approx(base, abs=1e-9)
    else:
        assert sim.pwcca(X @ ortho(X.shape[1], 6), Y) == pytest.approx(base, abs=1e-9)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(30, 60), d1=st.integers(2, 12), d2=st.integers(2, 12))
@pytest.mark.parametrize("name", ALL)
def test_joint_row_permutation_leaves_every_measure_unchanged(name, seed, n, d1, d2):
    """Permuting the examples of X and Y together changes nothing (the rows are a set of paired
    examples). Minibatch CKA shuffles rows into batches, so it is row-permutation invariant only
    in distribution; with one batch of all rows (``batch_size >= n``) it is exactly invariant.
    Widths stay below n / 2: when the kept subspaces of X and Y together exceed n - 1 dimensions,
    several canonical correlations equal 1, the canonical variates within them are not unique,
    and PWCCA's neuron weights depend on the row order (CCA overfitting, Raghu et al. 2017)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d1)) * np.exp(rng.normal(0.0, 0.5, d1)) + rng.normal(0.0, 3.0, d1)
    Y = np.tanh(X @ rng.normal(size=(d1, d2))) + 0.5 * rng.normal(size=(n, d2))
    p = rng.permutation(n)
    kw = {"batch_size": n} if name == "minibatch_cka" else {"k": 5} if name == "mutual_knn" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # debiased HSIC may be nan at small n
        want = similarity(name, X, Y, **kw)
        got = similarity(name, X[p], Y[p], **kw)
        assert np.isclose(got, want, rtol=0.0, atol=1e-9, equal_nan=True)
        if MEASURES[name].uses_grams:
            Kx, Ky = centered_gram(X), centered_gram(Y)
            got_g = sim.similarity_from_grams(name, Kx[np.ix_(p, p)], Ky[np.ix_(p, p)], **kw)
            assert np.isclose(got_g, want, rtol=0.0, atol=1e-9, equal_nan=True)


@pytest.mark.parametrize("name", ALL)
def test_all_purity_and_float32(pair, name):
    X, Y = pair
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    c32, cy = X32.copy(), Y32.copy()
    got = m_(name, X32, Y32)
    np.testing.assert_array_equal(X32, c32)
    np.testing.assert_array_equal(Y32, cy)
    want = m_(name, X32.astype(np.float64), Y32.astype(np.float64))
    assert got == pytest.approx(want, abs=1e-6)
    assert m_(name, X, Y) == pytest.approx(want, abs=1e-4)  # input rounding only


@pytest.mark.parametrize("name", GRAM_FORM)
def test_all_gram_form_equals_feature_form(pair, name):
    X, Y = pair
    Kx, Ky = centered_gram(X), centered_gram(Y)
    Kx0 = Kx.copy()
    got = sim.similarity_from_grams(name, Kx, Ky, **SMALL_BATCH.get(name, {}))
    np.testing.assert_array_equal(Kx, Kx0)
    assert got == pytest.approx(m_(name, X, Y), abs=1e-10)
    # also wide data (d > n), where the feature routes switch to Gram factors
    W = np.random.default_rng(4).normal(size=(30, 50))
    Z = np.tanh(W[:, :40]) + 0.3 * np.random.default_rng(5).normal(size=(30, 40))
    kw = {"k": 5} if name == "mutual_knn" else SMALL_BATCH.get(name, {})
    assert sim.similarity_from_grams(name, centered_gram(W), centered_gram(Z), **kw) == pytest.approx(
        similarity(name, W, Z, **kw), abs=1e-10
    )


@pytest.mark.parametrize("name", ALL)
def test_all_drop_nonfinite_jointly(pair, name):
    X, Y = pair
    Xn, Yn = X.copy(), Y.copy()
    Xn[4, 0] = np.nan
    Yn[9, 1] = np.inf
    keep = np.setdiff1d(np.arange(70), [4, 9])
    with pytest.warns(NonFiniteRowsWarning, match="dropped 2 of 70"):
        got = m_(name, Xn, Yn)
    assert got == pytest.approx(m_(name, X[keep], Y[keep]), abs=1e-12)


@pytest.mark.parametrize("name", ["debiased_cka", "debiased_rbf_cka", "minibatch_cka"])
def test_debiased_family_near_zero_on_independent_data(name):
    rng = np.random.default_rng(8)
    X, Y = rng.normal(size=(300, 400)), rng.normal(size=(300, 400))
    assert abs(similarity(name, X, Y, **({"batch_size": 100} if name == "minibatch_cka" else {}))) < 0.03


def test_cka_by_layer_any_measure_matches_single_calls(pair):
    X, Y = pair
    A = np.stack([X, X * np.linspace(1, 3, 16)])
    B = np.stack([Y, Y[:, ::-1]])
    for name in ("rsa", "pwcca", "procrustes"):
        got = cka_by_layer(A, B, measure=name)
        np.testing.assert_allclose(got, [similarity(name, A[i], B[i]) for i in range(2)], atol=1e-12)
    GA, GB = sim.centered_grams(A), sim.centered_grams(B)
    np.testing.assert_allclose(
        sim.similarity_by_layer_from_grams(GA, GB, measure="rbf_cka"),
        cka_by_layer(A, B, measure="rbf_cka"),
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="needs the feature matrices"):
        sim.similarity_by_layer_from_grams(GA, GB, measure="pwcca")


# ---- references from the published formulas, one per measure -------------------------------


def ref_rbf_cka(X, Y, debiased=False):
    """Kornblith et al.'s gram_rbf (threshold 1) + Eq. (2)."""

    def gram_rbf(Z):
        G = Z @ Z.T
        sq = np.diag(G)
        D = -2 * G + sq[:, None] + sq[None, :]
        return np.exp(-D / (2 * np.median(D)))

    return ref.cka(gram_rbf(X), gram_rbf(Y), debiased=debiased)


def ref_minibatch_cka(X, Y, batch_size, seed):
    """Nguyen et al. 2021, Eq. (3) with HSIC_1 per batch."""
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    xy = xx = yy = 0.0
    for i in range(X.shape[0] // batch_size):
        b = perm[i * batch_size : (i + 1) * batch_size]
        K, L = X[b] @ X[b].T, Y[b] @ Y[b].T
        xy += ref.hsic_unbiased(K, L)
        xx += ref.hsic_unbiased(K, K)
        yy += ref.hsic_unbiased(L, L)
    return xy / np.sqrt(xx * yy)


def ref_reduce(X, variance=0.99):
    """SVD reduction to the top directions explaining `variance` (Raghu et al. 2017, step 1)."""
    Xc = X - X.mean(0)
    U, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    frac = np.cumsum(s**2) / np.sum(s**2)
    k = int(np.argmax(frac >= variance - 1e-12)) + 1
    return U[:, :k] * s[:k]


def inv_sqrt(S):
    w, V = np.linalg.eigh(S)
    return V @ np.diag(w**-0.5) @ V.T


def ref_cca(A, B):
    """Classic CCA: singular values of Sxx^-1/2 Sxy Syy^-1/2, canonical variates of A."""
    Sxx, Syy, Sxy = A.T @ A, B.T @ B, A.T @ B
    Ia, Ib = inv_sqrt(Sxx), inv_sqrt(Syy)
    U, rho, Vt = np.linalg.svd(Ia @ Sxy @ Ib, full_matrices=False)
    m = min(A.shape[1], B.shape[1])
    return rho[:m], A @ Ia @ U[:, :m], B @ Ib @ Vt.T[:, :m]


def ref_svcca(X, Y):
    rho, _, _ = ref_cca(ref_reduce(X), ref_reduce(Y))
    return rho.mean()


def ref_pwcca(X, Y):
    """Morcos et al. 2018, Eq. (1)-(2): alpha_i = sum_j |<h_i, x_j>|, side with fewer dims."""
    A, B = ref_reduce(X), ref_reduce(Y)
    rho, HA, HB = ref_cca(A, B)
    H, Z = (HA, X) if A.shape[1] <= B.shape[1] else (HB, Y)
    H = H / np.linalg.norm(H, axis=0)
    alpha = np.abs(H.T @ (Z - Z.mean(0))).sum(axis=1)
    return (alpha / alpha.sum()) @ rho


def ref_procrustes(X, Y):
    """Explicit orthogonal Procrustes fit: min_Q ||X - Y Q||_F on centred unit-norm, zero-padded."""
    d = max(X.shape[1], Y.shape[1])
    Xp = np.zeros((X.shape[0], d))
    Yp = np.zeros((X.shape[0], d))
    Xp[:, : X.shape[1]] = X - X.mean(0)
    Yp[:, : Y.shape[1]] = Y - Y.mean(0)
    Xp /= np.linalg.norm(Xp)
    Yp /= np.linalg.norm(Yp)
    U, _, Vt = np.linalg.svd(Yp.T @ Xp)
    dist2 = np.linalg.norm(Xp - Yp @ (U @ Vt)) ** 2
    return 1 - dist2 / 2


def ref_mutual_knn(X, Y, k):
    def nbrs(Z):
        Z = Z - Z.mean(0)
        Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
        out = []
        for i in range(len(Z)):
            s = Z @ Z[i]
            s[i] = -np.inf
            out.append(set(np.argsort(-s)[:k].tolist()))
        return out

    return np.mean([len(a & b) / k for a, b in zip(nbrs(X), nbrs(Y))])


def ref_rsa(X, Y):
    n = len(X)

    def rdm(Z):
        return [np.linalg.norm(Z[i] - Z[j]) for i in range(n) for j in range(i + 1, n)]

    a, b = np.array(rdm(X)), np.array(rdm(Y))
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))  # no ties in continuous data
    return np.corrcoef(ra, rb)[0, 1]


def test_references_for_every_measure(pair):
    X, Y = pair
    assert sim.rbf_cka(X, Y) == pytest.approx(ref_rbf_cka(X, Y), abs=1e-10)
    assert sim.rbf_cka(X, Y, sigma=0.5) != pytest.approx(sim.rbf_cka(X, Y), abs=1e-4)
    assert sim.rbf_cka(X, Y, debiased=True) == pytest.approx(ref_rbf_cka(X, Y, True), abs=1e-10)
    assert sim.minibatch_cka(X, Y, batch_size=16, seed=3) == pytest.approx(
        ref_minibatch_cka(X, Y, 16, 3), abs=1e-10
    )
    assert sim.minibatch_cka(X, Y, batch_size=500) == pytest.approx(ref_cka(X, Y, True), abs=1e-10)
    assert sim.svcca(X, Y) == pytest.approx(ref_svcca(X, Y), abs=1e-8)
    assert sim.pwcca(X, Y) == pytest.approx(ref_pwcca(X, Y), abs=1e-8)
    assert sim.pwcca(Y, X) == pytest.approx(ref_pwcca(Y, X), abs=1e-8)
    assert sim.procrustes_similarity(X, Y) == pytest.approx(ref_procrustes(X, Y), abs=1e-10)
    assert sim.procrustes_distance(X, Y) == pytest.approx(
        np.sqrt(2 - 2 * ref_procrustes(X, Y)), abs=1e-9
    )
    assert sim.procrustes_distance(X, 2 * X @ ortho(16, 9) + 1.0) == pytest.approx(0.0, abs=1e-6)
    for k in (1, 5, 10):
        assert sim.mutual_knn(X, Y, k=k) == pytest.approx(ref_mutual_knn(X, Y, k), abs=1e-12)
    assert sim.rsa(X, Y) == pytest.approx(ref_rsa(X, Y), abs=1e-10)
    assert -1 <= sim.rsa(X, Y, metric="correlation") <= 1


def test_minibatch_matrix_matches_pairs(pair):
    X, Y = pair
    A = np.stack([X, X[:, ::-1] ** 2])
    B = np.stack([Y, Y + X[:, :10], np.sin(Y)])
    M = sim.minibatch_cka_matrix(A, B, batch_size=20, seed=1)
    want = [[sim.minibatch_cka(a, b, batch_size=20, seed=1) for b in B] for a in A]
    np.testing.assert_allclose(M, want, atol=1e-10)


def test_spearman_ties_and_errors():
    assert sim.spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    # ties share their mean rank: ranks of [3, 1, 3, 2] are [3.5, 1, 3.5, 2]
    want = np.corrcoef([3.5, 1.0, 3.5, 2.0], [1.0, 2.0, 3.0, 4.0])[0, 1]
    assert sim.spearman([3, 1, 3, 2], [1, 2, 3, 4]) == pytest.approx(want, abs=1e-15)
    with pytest.raises(ValueError, match="constant"):
        sim.spearman([1, 1, 1], [1, 2, 3])


def test_measure_specific_bad_input(pair):
    X, Y = pair
    with pytest.raises(ValueError, match="1 <= k < n"):
        sim.mutual_knn(X, Y, k=70)
    with pytest.raises(ValueError, match="batch_size >= 4"):
        sim.minibatch_cka(X, Y, batch_size=2)
    with pytest.raises(ValueError, match="variance"):
        sim.svcca(X, Y, variance=1.5)
    with pytest.raises(ValueError, match="metric"):
        sim.rsa(X, Y, metric="cosine")
    with pytest.raises(ValueError, match="sigma"):
        sim.rbf_cka(X, Y, sigma=0.0)
    const = np.ones((70, 4))
    for name in ALL:
        with pytest.raises(ValueError, match="zero variance|median squared distance|constant"):
            m_(name, X, const)
        with pytest.raises(ValueError, match="same number of rows"):
            m_(name, X, Y[:-1])
