"""Tests for layerwise.spectra: singular-value spectra, effective rank, participation ratio, n_99."""

from __future__ import annotations

import numpy as np
import pytest

from layerwise import spectra as S
from layerwise.similarity import NonFiniteRowsWarning, centered_grams, svcca


def with_spectrum(s, n: int, d: int, seed: int = 0) -> np.ndarray:
    """An ``(n, d)`` matrix whose column-centred singular values are exactly ``s`` (then zeros)."""
    rng = np.random.default_rng(seed)
    r = len(s)
    U = rng.normal(size=(n, r))
    U -= U.mean(axis=0)                       # columns orthogonal to 1: centring leaves them
    U, _ = np.linalg.qr(U)
    V, _ = np.linalg.qr(rng.normal(size=(d, r)))
    return (U * np.asarray(s, dtype=float)) @ V.T + rng.normal(size=(1, d))  # plus column offsets


def roy_vetterli(s) -> float:
    p = np.asarray(s, dtype=float) / np.sum(s)
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


@pytest.mark.parametrize("n,d", [(40, 100), (100, 30)])  # Gram route (n <= d) and covariance route
def test_known_spectrum_exact(n, d):
    s = np.array([10.0, 5.0, 2.0, 1.0, 0.5])
    X = with_spectrum(s, n, d, seed=1)
    lam = S.eigenvalues(X)
    assert lam.shape == (min(n, d),)
    np.testing.assert_allclose(np.sqrt(lam[:5]), s, rtol=1e-10)
    assert (lam[5:] == 0).all()
    np.testing.assert_allclose(lam, np.linalg.svd(X - X.mean(0), compute_uv=False)[: min(n, d)] ** 2,
                               rtol=1e-9, atol=1e-9 * lam[0])
    summ = S.spectrum_summary(lam, n_examples=n)
    assert summ["rank"] == 5
    assert summ["effective_rank"] == pytest.approx(roy_vetterli(s), rel=1e-12)
    v = s**2
    assert summ["participation_ratio"] == pytest.approx(v.sum() ** 2 / (v**2).sum(), rel=1e-12)
    cum = np.cumsum(v) / v.sum()
    assert summ["n_99"] == int(np.argmax(cum >= 0.99)) + 1
    assert summ["var_top_1"] == pytest.approx(v[0] / v.sum())
    assert summ["var_top_10"] == pytest.approx(1.0)
    assert summ["total_variance"] == pytest.approx(v.sum() / (n - 1))


@pytest.mark.parametrize("r", [1, 3, 17])
def test_rank_r_equal_spectrum_gives_r_everywhere(r):
    X = with_spectrum(np.full(r, 3.0), 60, 80, seed=r)
    lam = S.eigenvalues(X)
    summ = S.spectrum_summary(lam)
    assert summ["rank"] == r and summ["n_99"] == r
    assert summ["effective_rank"] == pytest.approx(r, rel=1e-10)
    assert summ["participation_ratio"] == pytest.approx(r, rel=1e-10)


def test_diagonal_scaling_and_full_rank_cap():
    # a diagonal scaling of an orthonormal design: spectrum = the scales; centring costs one rank
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(10, 10))
    lam = S.eigenvalues(Z @ np.diag(np.arange(1.0, 11.0)))
    assert S.spectrum_summary(lam)["rank"] == 9  # n = 10 rows: rank of the centred matrix <= n - 1
    scales = np.array([4.0, 3.0, 2.0, 1.0])
    X = with_spectrum(np.ones(4), 30, 4, seed=3) @ np.diag(scales)  # rotated, then axis scales
    Xc = X - X.mean(0)
    np.testing.assert_allclose(S.eigenvalues(X), np.linalg.svd(Xc, compute_uv=False) ** 2, rtol=1e-10)


def test_invariance_to_rotation_scaling_offsets_and_purity():
    rng = np.random.default_rng(4)
    A = rng.normal(size=(3, 50, 24)).astype(np.float32) * np.linspace(0.1, 3, 24).astype(np.float32)
    before = A.copy()
    spec, summ = S.layer_spectra(A)
    np.testing.assert_array_equal(A, before)               # not mutated
    assert A.dtype == np.float32
    Q, _ = np.linalg.qr(rng.normal(size=(24, 24)))
    rot = np.einsum("lnd,de->lne", A.astype(np.float64), Q) + rng.normal(size=(1, 1, 24)) * 100
    spec2, summ2 = S.layer_spectra(rot)
    cols = ["effective_rank", "participation_ratio", "n_99", "var_top_1", "var_top_10", "rank"]
    np.testing.assert_allclose(summ2[cols], summ[cols], rtol=1e-6)
    np.testing.assert_allclose(spec2["singular_value"], spec["singular_value"], rtol=1e-5)
    _, summ3 = S.layer_spectra(A * 7.0)                     # isotropic scale: shape summaries fixed
    np.testing.assert_allclose(summ3[cols], summ[cols], rtol=1e-6)
    np.testing.assert_allclose(summ3["total_variance"], 49 * summ["total_variance"], rtol=1e-5)


def test_layer_spectra_tables_and_options():
    rng = np.random.default_rng(5)
    A = rng.normal(size=(4, 30, 12)).astype(np.float32)
    spec, summ = S.layer_spectra(A, labels={"model": "PT", "task": "rte"}, top_k=(1, 3))
    assert list(spec.columns) == ["model", "task", "layer", "k", "singular_value", "variance",
                                  "variance_explained", "cumulative"]
    assert list(summ.columns) == ["model", "task", "layer", "n_examples", "dim", "rank", "effective_rank",
                                  "participation_ratio", "n_99", "var_top_1", "var_top_3", "total_variance"]
    assert len(spec) == 4 * 12 and list(summ["layer"]) == [0, 1, 2, 3]
    for _, g in spec.groupby("layer"):
        assert g["cumulative"].iloc[-1] == pytest.approx(1.0)
        assert (np.diff(g["singular_value"]) <= 1e-12).all()
        np.testing.assert_allclose(g["variance_explained"].cumsum(), g["cumulative"])
    # n_99 = the first k whose cumulative reaches 0.99, and agrees with SVCCA's choice
    for layer, g in spec.groupby("layer"):
        k = int(g.loc[g["cumulative"] >= 0.99 - 1e-12, "k"].iloc[0])
        assert summ.set_index("layer").loc[layer, "n_99"] == k
    spec_k, summ_k = S.layer_spectra(A, layers=[3, 1], max_k=5)
    assert list(summ_k["layer"]) == [3, 1] and len(spec_k) == 10
    np.testing.assert_allclose(summ_k.set_index("layer").loc[1, "effective_rank"],
                               summ.set_index("layer").loc[1, "effective_rank"])
    assert svcca(A[1], A[1]) == pytest.approx(1.0)


def test_from_grams_matches_hidden_states_and_torch_input():
    rng = np.random.default_rng(6)
    A = rng.normal(size=(3, 25, 40)).astype(np.float32)
    _, summ = S.layer_spectra(A)
    spec_g, summ_g = S.layer_spectra(grams=centered_grams(A), dim=40)
    cols = ["rank", "effective_rank", "participation_ratio", "n_99", "var_top_1", "total_variance"]
    np.testing.assert_allclose(summ_g[cols], summ[cols], rtol=1e-9)
    assert (summ_g["dim"] == 40).all() and len(spec_g) == 3 * 25
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(A.copy()).to(torch.bfloat16)
    _, summ_t = S.layer_spectra(t)
    np.testing.assert_allclose(summ_t["effective_rank"], summ["effective_rank"], rtol=1e-2)


def test_nonfinite_rows_dropped_jointly_with_warning():
    rng = np.random.default_rng(7)
    A = rng.normal(size=(3, 20, 8))
    B = A.copy()
    B[1, 4, 2] = np.nan
    B[2, 9, 0] = np.inf
    with pytest.warns(NonFiniteRowsWarning, match="dropped 2 of 20"):
        _, summ = S.layer_spectra(B)
    keep = np.setdiff1d(np.arange(20), [4, 9])
    _, want = S.layer_spectra(A[:, keep])
    np.testing.assert_allclose(summ["effective_rank"], want["effective_rank"], rtol=1e-10)
    assert (summ["n_examples"] == 18).all()
    G = centered_grams(B)  # NaN rows marked per layer; the subset is re-centred per layer
    with pytest.warns(NonFiniteRowsWarning):
        _, summ_g = S.layer_spectra(grams=G)
    np.testing.assert_allclose(summ_g["effective_rank"], want["effective_rank"], rtol=1e-9)


def test_bad_input():
    rng = np.random.default_rng(8)
    A = rng.normal(size=(3, 10, 5))
    with pytest.raises(ValueError, match="3 dimensions"):
        S.layer_spectra(A[0])
    const = A.copy()
    const[2] = 1.5
    with pytest.raises(ValueError, match="layer 2 has zero variance"):
        S.layer_spectra(const)
    with pytest.raises(ValueError, match="at least 2"):
        S.layer_spectra(A[:, :1])
    with pytest.raises(ValueError, match=r"layers \[3\] are outside"):
        S.layer_spectra(A, layers=[0, 3])
    with pytest.raises(ValueError, match="max_k"):
        S.layer_spectra(A, max_k=0)
    with pytest.raises(ValueError, match="top_k"):
        S.layer_spectra(A, top_k=(0,))
    with pytest.raises(ValueError, match="variance"):
        S.layer_spectra(A, variance=1.5)
    with pytest.raises(ValueError, match="real numeric"):
        S.eigenvalues(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="NaN"):
        S.eigenvalues(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="square"):
        S.eigenvalues_from_gram(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\(n_layers, n, n\)"):
        S.layer_spectra(grams=np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="exactly one of them"):
        S.layer_spectra(A, grams=np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="exactly one of them"):
        S.layer_spectra()
    with pytest.raises(ValueError, match="not all zero"):
        S.effective_rank(np.zeros(3))
    with pytest.raises(ValueError, match="not all zero"):
        S.participation_ratio([-1.0, 2.0])
