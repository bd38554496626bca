"""Property tests for layerwise.similarity (Good Research Code Handbook CKA list, extended).

Fixtures are deterministic (sinusoids, seeded generators); hypothesis draws small matrices for
the agreement-with-reference tests. The references below are written directly from the published
formulas, with explicit centring matrices and no shared code with the library.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layerwise import similarity as sim
from layerwise.similarity import (
    MEASURES,
    NonFiniteRowsWarning,
    RowFilter,
    centered_gram,
    cka_by_layer,
    cka_from_grams,
    linear_cka,
    similarity,
)

# --------------------------------------------------------------------------------------------
# References from the published formulas
# --------------------------------------------------------------------------------------------


def ref_H(n: int) -> np.ndarray:
    return np.eye(n) - np.ones((n, n)) / n


def ref_hsic_biased(K: np.ndarray, L: np.ndarray) -> float:
    """Gretton et al. 2005, Eq. (4): tr(K H L H) / (n-1)^2."""
    n = K.shape[0]
    H = ref_H(n)
    return float(np.trace(K @ H @ L @ H)) / (n - 1) ** 2


def ref_hsic_unbiased(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. 2007, Eq. (5) (HSIC_1), with zero-diagonal K~, L~."""
    n = K.shape[0]
    Kt = K - np.diag(np.diag(K))
    Lt = L - np.diag(np.diag(L))
    one = np.ones(n)
    term1 = np.trace(Kt @ Lt)
    term2 = (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one @ Kt @ Lt @ one)
    return float((term1 + term2 - term3) / (n * (n - 3)))


def ref_cka(X: np.ndarray, Y: np.ndarray, debiased: bool = False) -> float:
    """Kornblith et al. 2019, Eq. (2) with linear kernels K = X X^T, L = Y Y^T."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    K, L = X @ X.T, Y @ Y.T
    h = ref_hsic_unbiased if debiased else ref_hsic_biased
    return h(K, L) / np.sqrt(h(K, K) * h(L, L))


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


@pytest.mark.parametrize("debiased", [False, True])
def test_invariances(XY, debiased):
    X, Y = XY
    base = linear_cka(X, Y, debiased=debiased)
    Q = ortho(X.shape[1])
    assert linear_cka(X @ Q, Y, debiased=debiased) == pytest.approx(base, abs=1e-12)  # rotation
    assert linear_cka(-X, Y, debiased=debiased) == pytest.approx(base, abs=1e-12)  # sign
    assert linear_cka(7.5 * X, 0.01 * Y, debiased=debiased) == pytest.approx(base, abs=1e-12)
    perm = np.random.default_rng(1).permutation(X.shape[1])
    assert linear_cka(X[:, perm], Y, debiased=debiased) == pytest.approx(base, abs=1e-12)
    offs = np.arange(X.shape[1]) * 100.0 - 40.0
    assert linear_cka(X + offs, Y - 3.0, debiased=debiased) == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_sensitive_to_nonisotropic_scaling(XY, debiased):
    X, Y = XY
    base = linear_cka(X, Y, debiased=debiased)
    S = np.diag(np.linspace(0.1, 10.0, X.shape[1]))
    assert abs(linear_cka(X @ S, Y, debiased=debiased) - base) > 1e-3


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
            hb = min(ref_hsic_biased(K, K), ref_hsic_biased(L, L))
            if min(ref_hsic_unbiased(K, K), ref_hsic_unbiased(L, L)) < 1e-3 * hb:
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
    assert sim._use_feature_route(200, 5, 4)
    assert not sim._use_feature_route(50, 4096, 4096)
    assert linear_cka(X, Y) == pytest.approx(linear_cka(X, Y, route="gram"), abs=1e-14)


# --------------------------------------------------------------------------------------------
# Gram matrices
# --------------------------------------------------------------------------------------------


def test_centered_gram_is_HXXH(XY):
    X, _ = XY
    H = ref_H(X.shape[0])
    K = centered_gram(X.astype(np.float32))
    assert K.dtype == np.float64 and K.shape == (60, 60)
    X32 = X.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(K, H @ X32 @ X32.T @ H, atol=1e-10)
    np.testing.assert_array_equal(K, K.T)


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
