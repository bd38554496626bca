"""CCA-based measures: SVCCA (Raghu et al. 2017) and PWCCA (Morcos, Raghu & Bengio 2018).

Both reduce each centred representation to the top singular directions that explain a fraction
``variance`` of its variance, then take the canonical correlations between the two reduced
representations (singular values of ``Q_x^T Q_y`` for orthonormal bases, Bjorck & Golub 1973).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .arrays import constant_error, features_centred
from .grams import prepare_grams

__all__ = ["n_components", "svcca", "svcca_from_grams", "pwcca"]


def n_components(w: NDArray[np.float64], variance: float, name: str) -> int:
    """Smallest k whose top-k eigenvalues (descending, >= 0) explain ``variance`` of the total."""
    if not 0.0 < variance <= 1.0:
        raise ValueError(f"variance must be in (0, 1], got {variance}")
    total = float(w.sum())
    if not total > 0.0:
        raise constant_error(name)
    rank = int((w > 1e-12 * w[0]).sum())
    k = int(np.searchsorted(np.cumsum(w) / total, variance - 1e-12) + 1)
    return max(1, min(k, rank))


def _subspace_from_gram(K: NDArray[np.float64], variance: float, name: str) -> NDArray[np.float64]:
    """Orthonormal ``(n, k)`` basis of the top-variance left singular vectors of centred X."""
    w, V = np.linalg.eigh(K)
    w, V = np.clip(w[::-1], 0.0, None), V[:, ::-1]
    return V[:, : n_components(w, variance, name)]


def _subspace_from_features(Xc: NDArray[np.float64], variance: float, name: str) -> NDArray[np.float64]:
    U, s, _ = np.linalg.svd(Xc, full_matrices=False)
    return U[:, : n_components(s**2, variance, name)]


def _subspace(Xc: NDArray[np.float64], variance: float, name: str) -> NDArray[np.float64]:
    if Xc.shape[1] < Xc.shape[0]:
        return _subspace_from_features(Xc, variance, name)
    return _subspace_from_gram(Xc @ Xc.T, variance, name)


def _canonical_correlations(Qx: NDArray[np.float64], Qy: NDArray[np.float64]) -> NDArray[np.float64]:
    """Canonical correlations of two orthonormal bases (Bjorck & Golub 1973): singular values."""
    rho = np.linalg.svd(Qx.T @ Qy, compute_uv=False)
    return np.clip(rho[: min(Qx.shape[1], Qy.shape[1])], 0.0, 1.0)


def svcca_from_grams(Kx: ArrayLike, Ky: ArrayLike, *, variance: float = 0.99) -> float:
    """SVCCA from centred linear Grams (eigenvectors of ``Xc Xc^T`` = left singular vectors). See :func:`svcca`."""
    Kx, Ky, _ = prepare_grams(Kx, Ky, min_rows=2, what="svcca")
    Qx = _subspace_from_gram(Kx, variance, "X")
    Qy = _subspace_from_gram(Ky, variance, "Y")
    return float(_canonical_correlations(Qx, Qy).mean())


def svcca(X: ArrayLike, Y: ArrayLike, *, variance: float = 0.99) -> float:
    """SVCCA (Raghu et al. 2017): mean canonical correlation after SVD reduction.

    Each centred representation is reduced to its top singular directions explaining
    ``variance`` (99 %) of its variance (Raghu et al. 2017, Sec. 2, step 1); CCA between the two
    reduced representations gives correlations ``rho_1 >= ... >= rho_m``, ``m = min(k_x, k_y)``
    (step 2, computed as the singular values of ``Q_x^T Q_y`` for orthonormal bases); SVCCA is
    their mean. Invariant to invertible linear maps within the kept subspaces, hence by design
    *not* sensitive to non-isotropic scaling. Caveat: when k approaches n the correlations
    approach 1 regardless of the data (CCA overfits); compare at fixed n only.

    Raises:
        ValueError: mismatched rows, constant features, variance not in (0, 1].
    """
    Xc, Yc = features_centred(X, Y, 2, "svcca")
    return float(_canonical_correlations(_subspace(Xc, variance, "X"), _subspace(Yc, variance, "Y")).mean())


def pwcca(X: ArrayLike, Y: ArrayLike, *, variance: float = 0.99) -> float:
    """Projection-weighted CCA (Morcos, Raghu & Bengio 2018, Eq. 1-2).

    After the same 99 %-variance SVD reduction as :func:`svcca`, the canonical correlations
    ``rho_i`` are averaged with weights ``alpha_i = sum_j |<h_i, z_j>|`` normalised to sum 1,
    where ``h_i`` are the (unit-norm) canonical variates and ``z_j`` the centred neuron
    activation vectors (columns) of one representation. As in Morcos et al.'s reference code the
    weights come from the representation with fewer kept directions, ``X`` on ties, so PWCCA is
    not symmetric in general. The weights depend on the neuron basis: PWCCA is *not* invariant
    to rotations of the weighting representation. Needs the features (no Gram form).

    Raises:
        ValueError: mismatched rows, constant features, variance not in (0, 1].
    """
    Xc, Yc = features_centred(X, Y, 2, "pwcca")
    Qx = _subspace(Xc, variance, "X")
    Qy = _subspace(Yc, variance, "Y")
    P, rho, Rt = np.linalg.svd(Qx.T @ Qy, full_matrices=False)
    m = min(Qx.shape[1], Qy.shape[1])
    rho = np.clip(rho[:m], 0.0, 1.0)
    if Qx.shape[1] <= Qy.shape[1]:
        H, Z = Qx @ P[:, :m], Xc
    else:
        H, Z = Qy @ Rt.T[:, :m], Yc
    alpha = np.abs(H.T @ Z).sum(axis=1)
    return float(alpha @ rho / alpha.sum())
