"""Mutual k-nearest-neighbour alignment (Huh et al. 2024, "The Platonic representation hypothesis")."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .arrays import check_nonzero, check_pair, drop_nonfinite_rows
from .grams import grams_from_features, prepare_grams

__all__ = ["mutual_knn", "mutual_knn_from_grams"]


def _knn_mask(K: NDArray[np.float64], k: int) -> NDArray[np.bool_]:
    d = np.sqrt(np.clip(np.diagonal(K), 0.0, None))
    d[d == 0] = 1.0
    C = K / d[:, None] / d[None, :]
    np.fill_diagonal(C, -np.inf)
    idx = np.argpartition(-C, k - 1, axis=1)[:, :k]
    M = np.zeros(K.shape, dtype=bool)
    M[np.arange(K.shape[0])[:, None], idx] = True
    return M


def _knn_core(Kx: NDArray[np.float64], Ky: NDArray[np.float64], k: int) -> float:
    n = Kx.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"mutual_knn needs 1 <= k < n (number of examples {n}), got k={k}")
    check_nonzero(Kx, "X")
    check_nonzero(Ky, "Y")
    return float((_knn_mask(Kx, k) & _knn_mask(Ky, k)).sum() / (n * k))


def mutual_knn_from_grams(Kx: ArrayLike, Ky: ArrayLike, *, k: int = 10) -> float:
    """Mutual k-NN alignment from centred linear Grams (cosine = ``K_ij / sqrt(K_ii K_jj)``)."""
    Kx, Ky, _ = prepare_grams(Kx, Ky, min_rows=2, what="mutual_knn")
    return _knn_core(Kx, Ky, k)


def mutual_knn(X: ArrayLike, Y: ArrayLike, *, k: int = 10, center: bool = True) -> float:
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024, "Platonic representation", Eq. 11).

    For each example, its k nearest neighbours (cosine similarity, self excluded) in X and in Y;
    the score is the mean over examples of ``|N_X(i) & N_Y(i)| / k`` in [0, 1]. ``center=True``
    (default, and the Gram form) centres the features first, so large shared offsets of hidden
    states do not dominate the cosine; ``center=False`` is Huh et al.'s uncentred version.
    Ties between equal similarities are broken arbitrarily (deterministically).

    Raises:
        ValueError: mismatched rows, k not in [1, n), constant features.
    """
    if center:
        Kx, Ky = grams_from_features(X, Y, 2, "mutual_knn")
    else:
        X, Y, _ = drop_nonfinite_rows(X, Y, what="mutual_knn")
        check_pair(X, Y, 2, "mutual_knn")
        Kx, Ky = X @ X.T, Y @ Y.T
    return _knn_core(Kx, Ky, k)
