"""Reference linear CKA and HSIC, written for reading, not for speed.

Each function is the published formula with explicit ``n x n`` matrices, in float64, with no
input checks, no NaN handling and no shortcuts: ``O(n^3)`` time and ``O(n^2)`` memory. The fast
paths of :mod:`layerwise.similarity.cka` and :class:`~layerwise.similarity.GramCache` are tested
against these (``tests/unit``); use them to check a result, not to compute one.

Notation: ``X (n, d1)`` and ``Y (n, d2)`` are two representations of the same ``n`` examples;
``K = X X^T`` and ``L = Y Y^T`` their linear kernels (Gram matrices); ``H = I - 11^T / n`` the
centring matrix.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["centring_matrix", "hsic_biased", "hsic_unbiased", "cka", "linear_cka"]


def centring_matrix(n: int) -> NDArray[np.float64]:
    """``H = I - 11^T / n`` (``(n, n)`` float64): ``H K H`` removes row and column means of ``K``."""
    return np.eye(n) - np.ones((n, n)) / n


def hsic_biased(K: ArrayLike, L: ArrayLike) -> float:
    """Biased empirical HSIC, ``tr(K H L H) / (n - 1)^2`` (Gretton et al. 2005, Eq. 4).

    Args:
        K, L: ``(n, n)`` kernel matrices of the same examples.
    """
    K = np.asarray(K, dtype=np.float64)
    L = np.asarray(L, dtype=np.float64)
    n = K.shape[0]
    H = centring_matrix(n)
    return float(np.trace(K @ H @ L @ H)) / (n - 1) ** 2


def hsic_unbiased(K: ArrayLike, L: ArrayLike) -> float:
    """Unbiased HSIC estimator HSIC_1 (Song et al. 2007; 2012, Eq. 5), as used for debiased CKA.

    With ``Kt``, ``Lt`` the kernels with their diagonals set to zero::

        HSIC_1 = [ tr(Kt Lt) + (1^T Kt 1)(1^T Lt 1) / ((n-1)(n-2)) - 2/(n-2) 1^T Kt Lt 1 ] / (n (n-3))

    (Kornblith et al. 2019, Sec. 3 and their "debiased" CKA; Nguyen, Raghu & Kornblith 2021 use
    the same estimator per minibatch). Needs ``n >= 4``.

    Args:
        K, L: ``(n, n)`` kernel matrices of the same examples.
    """
    K = np.asarray(K, dtype=np.float64)
    L = np.asarray(L, dtype=np.float64)
    n = K.shape[0]
    Kt = K - np.diag(np.diag(K))
    Lt = L - np.diag(np.diag(L))
    one = np.ones(n)
    trace_term = np.trace(Kt @ Lt)
    sums_term = (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
    cross_term = 2.0 / (n - 2) * (one @ Kt @ Lt @ one)
    return float((trace_term + sums_term - cross_term) / (n * (n - 3)))


def cka(K: ArrayLike, L: ArrayLike, *, debiased: bool = False) -> float:
    """CKA of two kernel matrices, ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` (Kornblith et al. 2019, Sec. 3).

    ``debiased=True`` uses :func:`hsic_unbiased` in all three places, else :func:`hsic_biased`.
    """
    hsic = hsic_unbiased if debiased else hsic_biased
    return hsic(K, L) / float(np.sqrt(hsic(K, K) * hsic(L, L)))


def linear_cka(X: ArrayLike, Y: ArrayLike, *, debiased: bool = False) -> float:
    """Linear CKA: :func:`cka` of the linear kernels ``K = X X^T`` and ``L = Y Y^T``.

    With the biased HSIC this equals ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` for
    column-centred ``X``, ``Y`` (Kornblith et al. 2019, Sec. 3).

    Args:
        X: ``(n, d1)``; Y: ``(n, d2)``; the same examples in the same order.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    return cka(X @ X.T, Y @ Y.T, debiased=debiased)
