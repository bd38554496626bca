"""The CKA family: HSIC, linear and debiased CKA, RBF CKA, minibatch CKA.

``CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` (Kornblith et al. 2019, Sec. 3) with the
biased HSIC of Gretton et al. (2005) or the unbiased HSIC_1 of Song et al. (2007; 2012). Every
function here has a feature form (``X, Y``) and a Gram form (centred linear Grams, see
:mod:`layerwise.similarity.grams`). :mod:`layerwise.similarity.reference` holds a slow, literal
implementation of linear CKA and HSIC that the fast paths here are tested against.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .arrays import check_nonzero, check_pair, center_columns, constant_error, drop_nonfinite_rows, inner
from .grams import center_gram, grams_from_features, prepare_grams, sq_distances, unbiased_center_gram

__all__ = [
    "hsic",
    "cka_from_grams",
    "linear_cka",
    "debiased_cka",
    "rbf_cka",
    "rbf_cka_from_grams",
    "minibatches",
    "minibatch_cka",
    "minibatch_cka_from_grams",
]


def hsic(Kx: ArrayLike, Ky: ArrayLike, *, debiased: bool = False) -> float:
    """HSIC between two Gram/kernel matrices (not normalised; NaN rows dropped jointly).

    Biased: ``tr(H Kx H Ky) / (n-1)^2`` (Gretton et al. 2005, Eq. 4). Debiased: the unbiased
    estimator ``HSIC_1`` of Song et al. (2007), Eq. (5), computed as ``<U(Kx), U(Ky)> / (n(n-3))``.

    Raises:
        ValueError: shapes differ or are not square; debiased with n < 4.
    """
    Kx, Ky, _ = prepare_grams(Kx, Ky, min_rows=4 if debiased else 2, what="hsic")
    n = Kx.shape[0]
    if debiased:
        return float(inner(unbiased_center_gram(Kx), unbiased_center_gram(Ky)) / (n * (n - 3)))
    return float(inner(Kx, Ky) / (n - 1) ** 2)


def _cka_centred(Kx: NDArray[np.float64], Ky: NDArray[np.float64], debiased: bool, what: str) -> float:
    """CKA from already-centred, already-aligned float64 Grams."""
    sx, sy = float(inner(Kx, Kx)), float(inner(Ky, Ky))
    if sx == 0.0:
        raise constant_error("X (Kx)")
    if sy == 0.0:
        raise constant_error("Y (Ky)")
    if not debiased:
        return _ratio(float(inner(Kx, Ky)), sx, sy, what)
    if Kx.shape[0] < 4:
        raise ValueError(
            f"{what} (debiased, unbiased HSIC) needs at least 4 rows (examples), got {Kx.shape[0]}"
        )
    Ux = unbiased_center_gram(Kx)
    Uy = unbiased_center_gram(Ky)
    return _ratio(
        float(inner(Ux, Uy)), float(inner(Ux, Ux)), float(inner(Uy, Uy)), what,
        scale_x=sx, scale_y=sy,
    )


def _ratio(
    xy: float,
    xx: float,
    yy: float,
    what: str,
    *,
    scale_x: float | None = None,
    scale_y: float | None = None,
) -> float:
    """``xy / sqrt(xx * yy)``: ValueError for zero variance, nan for non-positive debiased HSIC.

    ``scale_x``/``scale_y`` are the *biased* self-HSIC values when ``xx``/``yy`` are debiased
    estimates: a debiased self-HSIC that is <= 1e-12 of the biased one (e.g. one outlier row and
    otherwise constant features) or negative (too few examples) makes the ratio meaningless, and
    nan is returned with a ``RuntimeWarning`` instead of an arbitrary large number.
    """
    if (scale_x if scale_x is not None else xx) == 0.0:
        raise constant_error("X")
    if (scale_y if scale_y is not None else yy) == 0.0:
        raise constant_error("Y")
    tiny_x = 1e-12 * scale_x if scale_x is not None else 0.0
    tiny_y = 1e-12 * scale_y if scale_y is not None else 0.0
    if xx <= tiny_x or yy <= tiny_y:
        warnings.warn(
            f"{what}: a debiased self-HSIC estimate is not positive ({xx:.3g}, {yy:.3g}); too few "
            f"informative examples for the unbiased estimator -- returning nan",
            RuntimeWarning,
            stacklevel=3,
        )
        return float("nan")
    return float(xy / math.sqrt(xx * yy))


def cka_from_grams(Kx: ArrayLike, Ky: ArrayLike, *, debiased: bool = False) -> float:
    """CKA from two Gram (kernel) matrices of the same n examples.

    ``CKA = HSIC(Kx, Ky) / sqrt(HSIC(Kx, Kx) HSIC(Ky, Ky))`` (Kornblith et al. 2019, Eq. 2),
    with the biased HSIC ``tr(H Kx H Ky)`` (Eq. 3; the ``1/(n-1)^2`` cancels) or, if
    ``debiased``, the unbiased HSIC_1 of Song et al. (2007), Eq. (5).

    Args:
        Kx, Ky: ``(n, n)`` Gram matrices, raw or centred (they are re-centred; centring is
            idempotent), any float dtype. Rows that are non-finite in either (e.g. the NaN rows
            :func:`centered_gram` writes for non-finite examples) are dropped from both, with a
            :class:`NonFiniteRowsWarning`.
        debiased: use the unbiased HSIC estimator (needs n >= 4).

    Returns:
        float: CKA in [0, 1] (biased); debiased CKA may be slightly negative, and is nan (with a
        ``RuntimeWarning``) if a debiased self-HSIC is negative.

    Raises:
        ValueError: non-square or differently-shaped Grams; debiased with n < 4; a zero Gram
            after centring (all-constant features).
    """
    Kx, Ky, _ = prepare_grams(Kx, Ky, min_rows=4 if debiased else 2)
    return _cka_centred(Kx, Ky, debiased, "cka_from_grams")


def _use_feature_route(n: int, d1: int, d2: int) -> bool:
    """True if ``X^T Y`` (d1 x d2) is cheaper than the two n x n Grams.

    Feature route ~ 2n(d1 d2 + d1^2 + d2^2) flops; Gram route ~ n^2 (d1 + d2) (symmetric GEMMs)
    + O(n^2) for the traces.
    """
    return 2 * (d1 * d2 + d1 * d1 + d2 * d2) < n * (d1 + d2)


def _debiased_dot(xty: float, sx: NDArray[np.float64], sy: NDArray[np.float64], nx: float, ny: float, n: int) -> float:
    """Unbiased HSIC numerator (times n(n-3)) in feature space (Kornblith et al. 2019, App. / code).

    ``xty = ||Xc^T Yc||_F^2``, ``sx, sy`` = squared row norms of the centred features,
    ``nx, ny`` = their sums.
    """
    return xty - n / (n - 2.0) * float(sx @ sy) + nx * ny / ((n - 1.0) * (n - 2.0))


def _linear_cka_features(Xc: NDArray[np.float64], Yc: NDArray[np.float64], debiased: bool) -> float:
    """Feature-space linear CKA: ``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` (Eq. 4)."""
    xy = float(np.linalg.norm(Xc.T @ Yc) ** 2)
    xx = float(np.linalg.norm(Xc.T @ Xc) ** 2)
    yy = float(np.linalg.norm(Yc.T @ Yc) ** 2)
    if xx == 0.0:
        raise constant_error("X")
    if yy == 0.0:
        raise constant_error("Y")
    if not debiased:
        return _ratio(xy, xx, yy, "linear_cka")
    n = Xc.shape[0]
    sx = np.einsum("ij,ij->i", Xc, Xc)
    sy = np.einsum("ij,ij->i", Yc, Yc)
    nx, ny = float(sx.sum()), float(sy.sum())
    return _ratio(
        _debiased_dot(xy, sx, sy, nx, ny, n),
        _debiased_dot(xx, sx, sx, nx, nx, n),
        _debiased_dot(yy, sy, sy, ny, ny, n),
        "linear_cka",
        scale_x=xx,
        scale_y=yy,
    )


def linear_cka(X: ArrayLike, Y: ArrayLike, *, debiased: bool = False, route: str = "auto") -> float:
    """Linear CKA (Kornblith et al. 2019), optionally with the unbiased HSIC estimator.

    ``CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` (Kornblith et al. 2019,
    Eq. 4; the paper's Sec. 3 Gram form ``HSIC(K,L)/sqrt(HSIC(K,K) HSIC(L,L))`` with linear
    kernels), where ``Xc``, ``Yc`` are column-centred. ``debiased=True`` replaces the biased
    HSIC by the unbiased HSIC_1 (Song et al. 2007, Eq. 5), as in Kornblith et al.'s
    ``feature_space_linear_cka(debiased=True)``.

    Args:
        X: ``(n, d1)``; Y: ``(n, d2)``; same examples in the same order; any float dtype, NumPy
            or torch. Neither is modified (float64 copies are made).
        debiased: unbiased HSIC (needs n >= 4 after dropping non-finite rows).
        route: ``"auto"`` (feature route ``X^T Y`` when cheaper, i.e. n large relative to d,
            else n x n Gram route), ``"features"`` or ``"gram"``. Both routes are float64 and
            agree to ~1e-15.

    Returns:
        float: CKA; biased in [0, 1].

    Raises:
        ValueError: different numbers of rows; fewer than 2 rows (4 if debiased) after dropping
            non-finite rows; all-constant features; bad ``route``.
    """
    if route not in ("auto", "features", "gram"):
        raise ValueError(f"route must be one of 'auto', 'features', 'gram', got {route!r}")
    X, Y, _ = drop_nonfinite_rows(X, Y, what="linear_cka")
    min_rows = 4 if debiased else 2
    check_pair(X, Y, min_rows, "linear_cka (debiased)" if debiased else "linear_cka")
    Xc = center_columns(X, "X")
    Yc = center_columns(Y, "Y")
    n, d1 = Xc.shape
    d2 = Yc.shape[1]
    if route == "features" or (route == "auto" and _use_feature_route(n, d1, d2)):
        return _linear_cka_features(Xc, Yc, debiased)
    Kx = Xc @ Xc.T
    Ky = Yc @ Yc.T
    return _cka_centred(Kx, Ky, debiased, "linear_cka")


def debiased_cka(X: ArrayLike, Y: ArrayLike) -> float:
    """Linear CKA with the unbiased HSIC estimator: ``linear_cka(X, Y, debiased=True)``."""
    return linear_cka(X, Y, debiased=True)


def _rbf_from_gram(K: NDArray[np.float64], sigma: float, name: str) -> NDArray[np.float64]:
    """RBF kernel ``exp(-||x_i - x_j||^2 / (2 sigma^2 median ||x_i - x_j||^2))``.

    The median is over all n^2 entries of the squared-distance matrix, as in Kornblith et al.'s
    ``gram_rbf(x, threshold)`` (``sigma`` is their ``threshold``), which the authors' ``cka.py``
    copies.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    D = sq_distances(K)
    med = float(np.median(D))
    if med == 0.0:
        raise ValueError(
            f"{name}: median squared distance is 0 (more than half of the pairs of examples are "
            f"identical, or features are constant); the median-heuristic RBF bandwidth is undefined"
        )
    return np.exp(D * (-1.0 / (2.0 * sigma**2 * med)))


def _rbf_cka_core(Kx: NDArray[np.float64], Ky: NDArray[np.float64], sigma: float, debiased: bool) -> float:
    check_nonzero(Kx, "X")
    check_nonzero(Ky, "Y")
    Rx = center_gram(_rbf_from_gram(Kx, sigma, "X"))
    Ry = center_gram(_rbf_from_gram(Ky, sigma, "Y"))
    return _cka_centred(Rx, Ry, debiased, "rbf_cka")


def rbf_cka_from_grams(Kx: ArrayLike, Ky: ArrayLike, *, sigma: float = 1.0, debiased: bool = False) -> float:
    """RBF-kernel CKA from centred linear Grams (distances are ``K_ii + K_jj - 2 K_ij``).

    See :func:`rbf_cka`. NaN rows are dropped jointly.
    """
    Kx, Ky, _ = prepare_grams(Kx, Ky, min_rows=4 if debiased else 2, what="rbf_cka")
    return _rbf_cka_core(Kx, Ky, sigma, debiased)


def rbf_cka(X: ArrayLike, Y: ArrayLike, *, sigma: float = 1.0, debiased: bool = False) -> float:
    """CKA with Gaussian RBF kernels and the median-distance bandwidth (Kornblith et al. 2019, Sec. 3).

    ``k(x_i, x_j) = exp(-||x_i - x_j||^2 / (2 sigma^2 m))`` where ``m`` is the median squared
    distance between examples (over the full n x n matrix, as in Kornblith et al.'s code), then
    ``CKA = HSIC(Kx, Ky) / sqrt(HSIC(Kx, Kx) HSIC(Ky, Ky))`` (Eq. 2). Invariant to orthogonal
    transforms, isotropic scaling (the bandwidth scales with the data) and column offsets.

    Args:
        X: ``(n, d1)``; Y: ``(n, d2)``. sigma: bandwidth as a fraction of the median distance.
        debiased: unbiased HSIC (Song et al. 2007), needs n >= 4.

    Returns:
        float in [0, 1] (biased).

    Raises:
        ValueError: mismatched rows, too few rows, constant features, zero median distance.
    """
    Kx, Ky = grams_from_features(X, Y, 4 if debiased else 2, "rbf_cka")
    return _rbf_cka_core(Kx, Ky, sigma, debiased)


def minibatches(n: int, batch_size: int, seed: int | None) -> list[NDArray[np.intp]]:
    """Row indices of the minibatches of minibatch CKA (Nguyen, Raghu & Kornblith 2021).

    The ``n`` rows are shuffled with ``seed`` and cut into ``n // batch_size`` batches of
    ``batch_size`` (the remainder is dropped); one batch of all rows if ``n < batch_size``.

    Raises:
        ValueError: ``batch_size < 4`` (the unbiased HSIC needs 4 rows).
    """
    if batch_size < 4:
        raise ValueError(f"minibatch CKA needs batch_size >= 4 (unbiased HSIC), got {batch_size}")
    perm = np.random.default_rng(seed).permutation(n)
    k = n // batch_size
    if k == 0:
        return [perm]
    return [perm[i * batch_size : (i + 1) * batch_size] for i in range(k)]


def _minibatch_core(Kx: NDArray[np.float64], Ky: NDArray[np.float64], batch_size: int, seed: int | None) -> float:
    check_nonzero(Kx, "X")
    check_nonzero(Ky, "Y")
    xy = xx = yy = bx = by = 0.0
    for idx in minibatches(Kx.shape[0], batch_size, seed):
        sub = np.ix_(idx, idx)
        Ux = unbiased_center_gram(Kx[sub])
        Uy = unbiased_center_gram(Ky[sub])
        xy += float(inner(Ux, Uy))
        xx += float(inner(Ux, Ux))
        yy += float(inner(Uy, Uy))
        cx, cy = center_gram(Kx[sub]), center_gram(Ky[sub])
        bx += float(inner(cx, cx))
        by += float(inner(cy, cy))
    return _ratio(xy, xx, yy, "minibatch_cka", scale_x=bx, scale_y=by)


def minibatch_cka_from_grams(
    Kx: ArrayLike, Ky: ArrayLike, *, batch_size: int = 256, seed: int | None = 0
) -> float:
    """Minibatch CKA from centred linear Grams (the batch Grams are sub-blocks). See :func:`minibatch_cka`."""
    Kx, Ky, _ = prepare_grams(Kx, Ky, min_rows=4, what="minibatch_cka")
    return _minibatch_core(Kx, Ky, batch_size, seed)


def minibatch_cka(X: ArrayLike, Y: ArrayLike, *, batch_size: int = 256, seed: int | None = 0) -> float:
    """Minibatch linear CKA (Nguyen, Raghu & Kornblith 2021, Eq. 2-3).

    The rows are shuffled with ``seed`` and split into ``floor(n / batch_size)`` batches of
    ``batch_size`` (the remainder is dropped; a single batch of all rows if n < batch_size). With
    the unbiased HSIC_1 (Song et al. 2007) per batch,
    ``CKA_mb = mean_i HSIC_1(Kx_i, Ky_i) / sqrt(mean_i HSIC_1(Kx_i, Kx_i) mean_i HSIC_1(Ky_i, Ky_i))``,
    an estimator that is unbiased in numerator and denominator separately and does not inflate
    with small batches. Memory O(batch_size^2).

    Args:
        X: ``(n, d1)``; Y: ``(n, d2)``. batch_size: >= 4. seed: shuffling seed (None = random).

    Returns:
        float (may be slightly negative for unrelated representations).

    Raises:
        ValueError: mismatched rows, n < 4, batch_size < 4, constant features.
    """
    Kx, Ky = grams_from_features(X, Y, 4, "minibatch_cka")
    return _minibatch_core(Kx, Ky, batch_size, seed)
