"""Centred linear Gram matrices: construction, centring, U-centring, and their precision.

A Gram-form measure needs only the double-centred linear Gram ``K = H X X^T H`` of each
representation (``n x n``, independent of the width ``d``; ``H = I - 11^T / n``): distances,
cosines, RBF kernels, SVD subspaces and Procrustes factors are all functions of it. Rows of ``X``
that are not finite are marked by a NaN row and column, so the Gram stays ``n x n`` and aligned
with other models' Grams; Gram-form measures drop such rows jointly (:func:`prepare_grams`).

Precision
    Centring (``H K H``) and accumulation are float64 everywhere; float32 is used in two places
    only.

    1. *Gram products in the float32-storage cache.* :class:`~layerwise.similarity.GramCache`
       with ``storage_dtype="float32"`` (the default, used by the pipeline) builds each Gram with
       a float32 BLAS ``ssyrk`` on data whose columns were shifted by approximate means (states
       stored in float32 or lower are shifted in float32; float64 states are centred in float64,
       then rounded) and stores that float32 product as it is (:func:`_gram_product_float32`);
       every reader re-centres it in float64 (explicitly, or implicitly for linear CKA).
       Centring first is what makes this safe: the float32 product then carries rounding
       relative to the *spread* of the features, not to their offsets (a float32 Gram of
       uncentred states drifts ~1e-4 in CKA at n=5000). Against the all-float64 Gram on LLM-like
       states (log-normal feature scales, offsets, massive activations of 3e4): entries within
       4e-7 of ``max|K|``, linear and debiased CKA within 4e-10 at n=1000-5000, d=1024-4096; the
       tests assert 1e-6 at n=1000 x d=2048 and n=3000 x d=512 (speed: ``benchmarks/``).
       Everything else -- :func:`centered_gram`, :func:`centered_grams`, linear CKA, the
       feature-form measures, ``GramCache(storage_dtype="float64")`` -- multiplies in float64
       for any input dtype.
    2. *Storage.* The cache stores Grams in float32 to halve disk and memory. Grams it builds
       itself are float32 products already (no second rounding); a float64 Gram given to
       ``GramCache.put`` is rounded once, a relative error of at most 2**-24 ~ 6e-8 per entry,
       which moves CKA (a ratio of sums of n^2 such entries) by less than ~1e-7 (tested to
       1e-6). Stored Grams are re-centred in float64 (:func:`recentre_float64`, or implicitly for
       linear CKA) before use; inner products of stored float32 Grams are accumulated in float64
       (:func:`~layerwise.similarity.arrays.inner64`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .arrays import (
    RowFilter,
    as_float64,
    center_columns,
    check_pair,
    drop_nonfinite_rows,
    is_torch,
    report_dropped,
)

__all__ = [
    "centered_gram",
    "centered_grams",
    "gram_products_float32",
    "recentre_float64",
    "center_gram",
    "center_gram_inplace",
    "unbiased_center_gram",
    "prepare_grams",
    "grams_from_features",
    "sq_distances",
]


def _float32_input(X: ArrayLike) -> NDArray[np.float32] | None:
    """``X`` as a float32 NumPy array if it is stored in float32 or lower precision, else None.

    float32 is returned as is (no copy; callers must not write to it); float16 / bfloat16 are
    widened to float32 exactly. Anything else (float64, integers, lists) gives None.
    """
    if is_torch(X):
        if not X.is_floating_point() or X.element_size() > 4 or X.is_complex():
            return None
        return X.detach().to("cpu").float().numpy()
    if isinstance(X, np.ndarray) and X.dtype.kind == "f" and X.dtype.itemsize <= 4:
        return X if X.dtype == np.float32 else X.astype(np.float32)
    return None


def _column_shift(X32: NDArray[np.float32]) -> NDArray[np.float32]:
    """Approximate column means of ``(n, d)`` float32 ``X32`` as float32 ``(d,)``: ``1^T X / n``.

    One BLAS ``sgemv`` (float32 accumulation, cheaper than a float64-accumulated mean). Only
    used to shift the columns before a float32 Gram product: an error in it adds a per-column
    constant to the shifted data, which double centring (``H``) removes exactly. Non-finite if
    any entry is non-finite (or, for entries beyond ~1e35, if the float32 sum overflows).
    """
    n = X32.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ones(n, dtype=np.float32) @ X32 * np.float32(1.0 / n)


def _gram_product_float32(
    X32: NDArray[np.float32],
    out: NDArray[np.float32] | None = None,
    work: dict[str, NDArray[np.float32]] | None = None,
    shift: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """Float32 Gram of column-centred finite float32 rows (the cache's stored form).

    1. Approximate column means ``m~`` (:func:`_column_shift`, or ``shift`` if the caller
       has it already).
    2. ``Xc = X - m~`` in float32. Each difference of two float32 numbers is correctly rounded
       (and exact whenever ``x`` and ``m~`` are within a factor of 2, the usual case for
       features with large offsets), so ``Xc`` equals the exactly centred data rounded to
       float32, plus a per-column constant ``m - m~`` (the error of the means: ~1e-7 of
       ``|m|``, far below the spread of any feature that carries signal).
    3. ``Xc Xc^T`` with a float32 symmetric rank-k update (BLAS ``ssyrk`` behind NumPy's
       ``A @ A.T``: half the FLOPs of a GEMM, exactly symmetric).

    The result is *not* exactly double-centred: it still carries the per-column constant of
    step 2 and float32 product rounding. Every consumer re-centres it in float64 (``H`` removes
    column offsets exactly; :meth:`GramCache.get`, :meth:`GramCache.compare`,
    :func:`cka_from_grams`), which leaves float32 *product* rounding on centred data: entry
    errors up to ~4e-7 of ``max|K|`` and CKA within 4e-10 of the all-float64 route at
    n = 1000-5000, d = 1024-4096 with LLM-like anisotropic states (offsets and massive
    activations up to 3e4); see the module docstring, "Precision". A float32 Gram of
    *uncentred* states (no steps 1-2) is ~100x worse and drifts with n.

    Args:
        X32: ``(n, d)`` float32, all rows finite. out: optional ``(n, n)`` float32 destination.
        work: optional dict of scratch buffers reused across calls of equal shape.
        shift: ``(d,)`` finite approximate column means to subtract (None: :func:`_column_shift`).

    Returns:
        np.ndarray: ``(n, n)`` float32, exactly symmetric.
    """
    n = X32.shape[0]
    if out is None:
        out = np.empty((n, n), dtype=np.float32)
    if not X32.size:
        out[...] = 0.0
        return out
    work = {} if work is None else work
    m32 = _column_shift(X32) if shift is None else shift
    Xc = work.get("xc")
    if Xc is None or Xc.shape != X32.shape:
        Xc = work["xc"] = np.empty(X32.shape, dtype=np.float32)
    np.subtract(X32, m32, out=Xc)
    np.matmul(Xc, Xc.T, out=out)  # ssyrk: exactly symmetric
    return out


def _double_centre_float64(K32: NDArray[np.floating], out: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """``H K H`` of a float32 (or float64) Gram, widened to float64 and centred in one pass.

    ``H K H = K - (r_i + r_j - g)`` with row means ``r`` (accumulated in float64) and grand
    mean ``g``; symmetric term by term, so a symmetric input stays exactly symmetric.
    Non-finite entries propagate (NaN rows stay NaN; callers centre finite blocks only).
    """
    n = K32.shape[0]
    if out is None:
        out = np.empty((n, n), dtype=np.float64)
    if not K32.size:
        return out
    r = K32.mean(axis=1, dtype=np.float64)
    np.add.outer(r, r, out=out)
    out -= r.mean()
    np.subtract(K32, out, out=out)
    return out


def centered_gram(X: ArrayLike) -> NDArray[np.float64]:
    """Double-centred linear Gram matrix ``K = H X X^T H`` with ``H = I - 11^T / n``.

    Computed as ``Xc Xc^T`` where ``Xc`` is ``X`` with column means removed in float64 (equal to
    ``H X X^T H`` and numerically better: hidden states carry large per-feature offsets, which
    centring the Gram afterwards would cancel catastrophically). All-float64 for any input dtype
    (:class:`GramCache` with float32 storage uses a float32 product instead, see the module
    docstring, "Precision").

    Args:
        X: ``(n, d)`` array-like, any float dtype (NumPy or torch).

    Returns:
        np.ndarray: ``(n, n)`` float64, symmetric. Rows of ``X`` containing NaN/inf do not enter
        the mean; their Gram row and column are NaN (so the Gram keeps ``n`` rows, aligned with
        other models' Grams; Gram-form measures drop such rows jointly).

    Raises:
        ValueError: ``X`` is not 2-D.
    """
    X = as_float64(X, "X")
    ok = _finite_row_mask(X)
    if ok is None:
        Xc = center_columns(X, "X")
        return Xc @ Xc.T  # numpy uses a symmetric rank-k update (syrk): exactly symmetric
    n = X.shape[0]
    K = np.full((n, n), np.nan)
    if ok.any():
        Xc = center_columns(X[ok], "X")
        K[np.ix_(ok, ok)] = Xc @ Xc.T
    return K


def _finite_row_mask(X: NDArray[np.float64]) -> NDArray[np.bool_] | None:
    """None if every row of ``X`` is finite, else the boolean mask of finite rows."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(X.sum(axis=1)).all():  # cheap test; a finite row sum means a finite row
            return None
    return np.isfinite(X).all(axis=1)


def centered_grams(A: ArrayLike) -> NDArray[np.float64]:
    """:func:`centered_gram` for every layer: ``A (L, n, d)`` -> ``(L, n, n)`` float64."""
    shape = tuple(A.shape) if hasattr(A, "shape") else np.shape(A)
    if len(shape) != 3:
        raise ValueError(f"A must have 3 dimensions (n_layers, n, d), got shape {shape}")
    out = np.empty((shape[0], shape[1], shape[1]), dtype=np.float64)
    for i in range(shape[0]):
        out[i] = centered_gram(A[i])
    return out


def gram_products_float32(A: ArrayLike) -> NDArray[np.float32]:
    """Float32 Grams of column-centred states for every layer (:func:`_gram_product_float32`).

    What :class:`GramCache` stores when it stores float32: ``A (L, n, d)`` -> ``(L, n, n)``
    float32, columns centred before the product, *not* re-centred after it (every reader
    re-centres in float64). States stored in float32 or lower are centred with float64 means
    directly; float64 states are centred in float64 first and the centred values rounded to
    float32. A row with NaN/inf gets a NaN row and column, as in :func:`centered_gram`.

    Raises:
        ValueError: ``A`` is not 3-D.
    """
    shape = tuple(A.shape) if hasattr(A, "shape") else np.shape(A)
    if len(shape) != 3:
        raise ValueError(f"A must have 3 dimensions (n_layers, n, d), got shape {shape}")
    A32 = _float32_input(A)  # one conversion for the stack (torch / float16 / bfloat16)
    n = shape[1]
    out = np.empty((shape[0], n, n), dtype=np.float32)
    work: dict[str, NDArray[np.float32]] = {}
    for i in range(shape[0]):
        if A32 is not None:
            X32 = A32[i]
        else:
            X = as_float64(A[i], "A[i]")
            ok = _finite_row_mask(X)
            if ok is None:
                X32 = center_columns(X, "X").astype(np.float32)
            else:
                X32 = np.full(X.shape, np.nan, dtype=np.float32)
                if ok.any():
                    X32[ok] = center_columns(X[ok], "X")
        # the shift is finite iff every entry is (barring float32 overflow of the sum, which
        # lands in the branch below with every row kept), so one sgemv also tests finiteness
        shift = _column_shift(X32) if X32.shape[0] else None
        if shift is None or np.isfinite(shift).all():
            _gram_product_float32(X32, out=out[i], work=work, shift=shift)
        else:
            ok = np.isfinite(X32).all(axis=1)  # (all True if only the float32 sum overflowed)
            out[i] = np.nan
            if ok.any():
                out[i][np.ix_(ok, ok)] = _gram_product_float32(np.ascontiguousarray(X32[ok]))
    return out


def recentre_float64(G: NDArray[np.floating]) -> NDArray[np.float64]:
    """Float64, double-centred copy of a stack of stored Grams ``(L, n, n)``.

    Each layer is centred over its finite examples only (NaN rows and columns, the mark of a
    non-finite example, stay NaN), so re-centring a stored Gram equals the centred Gram of the
    finite rows. Idempotent up to rounding.
    """
    out = np.empty(G.shape, dtype=np.float64)
    for i in range(G.shape[0]):
        ok = np.isfinite(np.diagonal(G[i]))
        if ok.all():
            _double_centre_float64(G[i], out=out[i])
        else:
            out[i] = np.nan
            if ok.any():
                out[i][np.ix_(ok, ok)] = _double_centre_float64(np.ascontiguousarray(G[i][np.ix_(ok, ok)]))
    return out


def _centered_grams_float32(A: ArrayLike) -> NDArray[np.float64]:
    """:func:`centered_grams` with float32 products: ``(L, n, n)`` float64, double-centred.

    The float32-storage route of :class:`GramCache` as the values its readers see:
    :func:`gram_products_float32` re-centred in float64 (:func:`recentre_float64`).
    """
    return recentre_float64(gram_products_float32(A))


def center_gram(K: ArrayLike) -> NDArray[np.float64]:
    """Double-centre a Gram/kernel matrix: ``H K H`` (a float64 copy; idempotent).

    Args:
        K: ``(n, n)`` symmetric matrix.

    Returns:
        np.ndarray: ``(n, n)`` float64 ``H K H`` (Kornblith et al. 2019, Eq. 3).
    """
    return center_gram_inplace(as_float64(K, "K"))


def center_gram_inplace(K: NDArray[np.float64]) -> NDArray[np.float64]:
    """``H K H`` of a float64 ``(n, n)`` Gram, written into ``K`` (which is returned)."""
    K -= K.mean(axis=0, keepdims=True)
    K -= K.mean(axis=1, keepdims=True)
    return K


def unbiased_center_gram(K: ArrayLike) -> NDArray[np.float64]:
    """U-centre a Gram matrix for the unbiased HSIC estimator (Song et al. 2007).

    With ``Kt = K - diag(K)`` (zero diagonal), returns the matrix ``U`` with zero diagonal and
    ``U_ij = Kt_ij - r_i - r_j`` where ``r = Kt 1/(n-2) - 1^T Kt 1 / (2 (n-1)(n-2))``, so that
    ``<U(K), U(L)> / (n (n-3))`` equals the unbiased HSIC_1 of Song et al. (2007), Eq. (5)
    (Kornblith et al. 2019, Eq. 10; the form used in their ``center_gram(unbiased=True)``).
    ``U`` annihilates terms ``a_i + a_j + c``, so U(H K H) = U(K): it may be applied to raw or
    centred Grams alike.

    Raises:
        ValueError: ``n < 4``.
    """
    K = as_float64(K, "K")
    n = K.shape[0]
    if n < 4:
        raise ValueError(f"debiased (unbiased HSIC) estimators need at least 4 rows (examples), got {n}")
    np.fill_diagonal(K, 0.0)
    means = K.sum(axis=0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    K -= means[:, None]
    K -= means[None, :]
    np.fill_diagonal(K, 0.0)
    return K


def prepare_grams(
    Kx: ArrayLike, Ky: ArrayLike, *, min_rows: int = 2, what: str = "cka_from_grams"
) -> tuple[NDArray[np.float64], NDArray[np.float64], RowFilter]:
    """Float64 copies of two Grams with jointly non-finite rows dropped and both re-centred."""
    Kx = as_float64(Kx, "Kx")
    Ky = as_float64(Ky, "Ky")
    for K, nm in ((Kx, "Kx"), (Ky, "Ky")):
        if K.shape[0] != K.shape[1]:
            raise ValueError(f"{nm} must be a square (n, n) Gram matrix, got shape {K.shape}")
    if Kx.shape != Ky.shape:
        raise ValueError(
            f"{what}: Kx and Ky must describe the same n examples, got shapes {Kx.shape} and {Ky.shape}"
        )
    # a non-finite example shows as a non-finite diagonal entry (and a NaN row and column)
    ok = np.isfinite(np.diagonal(Kx)) & np.isfinite(np.diagonal(Ky))
    rf = report_dropped(ok, what, stacklevel=4)
    if rf.n_dropped:
        Kx, Ky = Kx[np.ix_(ok, ok)], Ky[np.ix_(ok, ok)]
    if not (np.isfinite(Kx).all() and np.isfinite(Ky).all()):
        raise ValueError(
            f"{what}: Gram matrices have non-finite off-diagonal entries with a finite diagonal; "
            f"mark a non-finite example with a NaN row and column (as centered_gram does)"
        )
    if Kx.shape[0] < min_rows:
        raise ValueError(f"{what} needs at least {min_rows} rows (examples), got {Kx.shape[0]}")
    return center_gram_inplace(Kx), center_gram_inplace(Ky), rf


def grams_from_features(
    X: ArrayLike, Y: ArrayLike, min_rows: int, what: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Jointly drop non-finite rows (warn), check, and return both centred float64 Grams."""
    X, Y, _ = drop_nonfinite_rows(X, Y, what=what)
    check_pair(X, Y, min_rows, what)
    Xc = center_columns(X, "X")
    Yc = center_columns(Y, "Y")
    return Xc @ Xc.T, Yc @ Yc.T


def sq_distances(K: NDArray[np.float64]) -> NDArray[np.float64]:
    """Squared Euclidean distances between examples from a (centred or raw) linear Gram."""
    d = np.diagonal(K)
    D = d[:, None] + d[None, :] - 2.0 * K
    np.maximum(D, 0.0, out=D)
    np.fill_diagonal(D, 0.0)
    return D
