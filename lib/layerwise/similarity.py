"""Representational similarity measures: the CKA family and the measures reviewers ask for.

Every measure compares two representations of the *same* ``n`` examples, ``X`` with shape
``(n, d1)`` and ``Y`` with shape ``(n, d2)`` (rows = examples, columns = features, e.g. the
last-prompt-token hidden states of one layer), and returns a float similarity (higher = more
similar; 1 for identical representations).

Measures (registry :data:`MEASURES`, call any by name with :func:`similarity`):

=====================  ==========================================================  ===========
name                   definition                                                   Gram form
=====================  ==========================================================  ===========
``linear_cka``         Kornblith et al. 2019, Eq. (4) (biased HSIC, Gretton 2005)   yes
``debiased_cka``       linear CKA with unbiased HSIC (Song et al. 2007, Eq. 5)      yes
``rbf_cka``            RBF kernel, bandwidth = median distance (Kornblith 2019)     yes
``debiased_rbf_cka``   RBF CKA with unbiased HSIC                                   yes
``minibatch_cka``      Nguyen, Raghu & Kornblith 2021, Eq. (2)-(3)                  yes
``svcca``              Raghu et al. 2017: SVD to 99 % variance, then mean CCA rho   yes
``pwcca``              Morcos et al. 2018, Eq. (1): projection-weighted CCA         no
``procrustes``         1 - d^2/2, orthogonal Procrustes on unit-norm (Ding 2021)    yes
``mutual_knn``         mutual k-NN alignment (Huh et al. 2024, Eq. 11)              yes
``rsa``                Spearman rho of dissimilarity matrices (Kriegeskorte 2008)   yes
=====================  ==========================================================  ===========

Gram reuse
    "Gram form = yes" means the measure is computed from the two *centred linear Gram
    matrices* ``K = H X X^T H`` alone (``n x n``, independent of ``d``), so a model's Gram per
    (task, layer) is computed once (:func:`centered_gram`, :class:`GramCache`) and reused by
    every comparison and every such measure: distances, cosines, RBF kernels, SVD subspaces and
    Procrustes factors are all functions of the linear Gram.

NaN / inf
    A row (example) that is not finite in *either* matrix is dropped from *both* (never
    separately, which misaligns the examples -- the bug in the authors' ``cka.py``); the count is
    reported with a :class:`NonFiniteRowsWarning` and, where asked, in a :class:`RowFilter`.
    :func:`centered_gram` marks such rows with NaN rows/columns (the Gram stays ``n x n`` so it
    aligns with other models' Grams), and every Gram-form measure drops rows jointly from that mark.

Precision
    Centring (``H K H``) and accumulation are float64 everywhere; float32 is used in two places
    only.

    1. *Gram products in the float32-storage cache.* :class:`GramCache` with
       ``storage_dtype="float32"`` (the default, used by the pipeline) builds each Gram with a
       float32 BLAS ``ssyrk`` on data whose columns were shifted by approximate means (states
       stored in float32 or lower are shifted in float32; float64 states are centred in
       float64, then rounded) and stores that float32 product as it is
       (:func:`_gram_product_float32`); every reader re-centres it in float64 (explicitly, or
       implicitly for linear CKA). Centring first is what makes this safe: the float32
       product then carries rounding relative to the *spread* of the features, not to their
       offsets (a float32 Gram of uncentred states drifts ~1e-4 in CKA at n=5000). Measured
       against the all-float64 Gram on LLM-like states (log-normal feature scales, offsets,
       massive activations of 3e4): entries within 4e-7 of ``max|K|``, linear and debiased CKA
       within 4e-10 at n=1000-5000, d=1024-4096; the tests assert 1e-6 at n=1000 x d=2048 and
       n=3000 x d=512. It is 2-3x faster than the float64 product on this project's CPUs, and
       the stored Gram is float32 anyway. Everything else --
       :func:`centered_gram`, :func:`centered_grams`, :func:`linear_cka`, the feature-form
       measures, ``GramCache(storage_dtype="float64")`` -- multiplies in float64 for any input
       dtype.
    2. *Storage.* :class:`GramCache` stores Grams in float32 (``storage_dtype``) to halve disk
       and memory. Grams it builds itself are float32 products already (no second rounding);
       a float64 Gram given to :meth:`GramCache.put` is rounded once, a relative error of at
       most 2**-24 ~ 6e-8 per entry, which moves CKA (a ratio of sums of n^2 such entries) by
       less than ~1e-7 (tested to 1e-6). Stored Grams are re-centred in float64 (explicitly,
       or implicitly for linear CKA) before use. Inner products of stored float32 Grams are
       accumulated in float64 (:func:`_inner64`: each product of two float32 numbers is exact
       in float64).

Errors
    ``ValueError`` for mismatched numbers of rows, fewer rows than a measure needs (debiased
    HSIC needs n >= 4), all-constant features (zero variance: CKA is 0/0), wrong array ranks and
    bad options; ``KeyError`` (listing the valid names) for an unknown measure name.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "NonFiniteRowsWarning",
    "RowFilter",
    "as_float64",
    "finite_rows",
    "drop_nonfinite_rows",
    "centered_gram",
    "centered_grams",
    "center_gram",
    "unbiased_center_gram",
    "hsic",
    "cka_from_grams",
    "linear_cka",
    "debiased_cka",
    "cka_matrix",
    "rbf_cka",
    "rbf_cka_from_grams",
    "minibatch_cka",
    "minibatch_cka_from_grams",
    "minibatch_cka_matrix",
    "svcca",
    "svcca_from_grams",
    "pwcca",
    "procrustes_similarity",
    "procrustes_similarity_from_grams",
    "procrustes_distance",
    "mutual_knn",
    "mutual_knn_from_grams",
    "rsa",
    "rsa_from_grams",
    "spearman",
    "Measure",
    "MEASURES",
    "measure_names",
    "get_measure",
    "similarity",
    "similarity_from_grams",
    "cka_by_layer",
    "similarity_by_layer_from_grams",
    "GramCache",
]


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


class NonFiniteRowsWarning(UserWarning):
    """Rows containing NaN or inf were dropped (jointly from both representations)."""


@dataclass(frozen=True)
class RowFilter:
    """Which examples a comparison used after dropping non-finite rows jointly.

    Attributes:
        n_total: rows given.
        n_used: rows kept (finite in every matrix involved).
        dropped: indices (into the original rows) that were removed, ascending.
    """

    n_total: int
    n_used: int
    dropped: tuple[int, ...] = field(default_factory=tuple)

    @property
    def n_dropped(self) -> int:
        """Number of rows removed."""
        return self.n_total - self.n_used


def _inner(a: np.ndarray, b: np.ndarray) -> float:
    """Frobenius inner product ``sum(a * b)`` of two equal-shape float64 arrays.

    ``np.einsum`` (single-threaded SIMD) instead of ``np.vdot`` (multi-threaded BLAS ddot):
    on shared 2-vCPU machines the threaded level-1 BLAS call was 5-10x slower.
    """
    return float(np.einsum("ij,ij->", a, b)) if a.ndim == 2 else float(np.einsum("i,i->", a.ravel(), b.ravel()))


def _inner64(a: np.ndarray, b: np.ndarray | None = None, block: int = 65536) -> float:
    """Frobenius inner product ``sum(a * b)`` accumulated in float64, for float32 (or float64) arrays.

    The arrays are widened to float64 ``block`` elements at a time into two reused buffers (a
    product of two float32 numbers is exact in float64, and the float64 sum of 1e6 of them is
    accurate to ~1e-13 relative), so no float64 copy of an ``(n, n)`` Gram is ever made.
    ``b=None`` gives the squared Frobenius norm of ``a``. Both must have equal sizes.
    """
    fa = a.reshape(-1)
    fb = fa if b is None else b.reshape(-1)
    if fa.dtype == np.float64 and fb.dtype == np.float64:
        return _inner(fa, fb)
    m = max(min(block, fa.size), 1)
    xa = np.empty(m)
    xb = xa if b is None else np.empty(m)
    total = 0.0
    for k in range(0, fa.size, m):
        j = min(m, fa.size - k)
        np.copyto(xa[:j], fa[k : k + j])
        if b is not None:
            np.copyto(xb[:j], fb[k : k + j])
        total += float(np.einsum("i,i->", xa[:j], xb[:j]))
    return total


def _gram_stats64(K: np.ndarray, block_rows: int = 64) -> tuple[np.ndarray, float]:
    """Row sums ``(n,)`` and squared Frobenius norm of a float32/float64 ``(n, n)`` Gram, in float64.

    One pass over ``K``: ``block_rows`` rows at a time are widened to float64 in a reused
    buffer, then summed and squared there (what implicit centring needs, see
    :meth:`GramCache._linear_stats`).
    """
    n_rows, n_cols = K.shape
    rows = np.empty(n_rows)
    norm = 0.0
    buf = np.empty((max(min(block_rows, n_rows), 1), n_cols))
    for r in range(0, n_rows, buf.shape[0]):
        blk = buf[: min(buf.shape[0], n_rows - r)]
        np.copyto(blk, K[r : r + blk.shape[0]])
        rows[r : r + blk.shape[0]] = blk.sum(axis=1)
        norm += float(np.einsum("ij,ij->", blk, blk))
    return rows, norm


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def as_float64(X: Any, name: str = "X", *, ndim: int = 2) -> np.ndarray:
    """Return a float64 NumPy *copy* of ``X`` (never a view, so callers' arrays are never mutated).

    Args:
        X: NumPy array, torch tensor (any float dtype incl. bfloat16, any device) or nested list.
        name: name used in error messages.
        ndim: required number of dimensions.

    Returns:
        np.ndarray: float64 array with ``ndim`` dimensions.

    Raises:
        ValueError: wrong number of dimensions, or a non-numeric / complex dtype.
    """
    if _is_torch(X):
        X = X.detach().to("cpu")
        if not X.is_floating_point():
            X = X.double()
        X = X.double().numpy()
    src = np.asarray(X)
    if src.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a real numeric array, got dtype {src.dtype}")
    arr = np.array(src, dtype=np.float64, copy=True)  # one pass: convert and copy
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    return arr


def finite_rows(*arrays: np.ndarray) -> np.ndarray:
    """Boolean mask of rows (axis -2 for feature matrices) that are finite in *all* arrays.

    Each array is ``(n, d)`` or ``(L, n, d)``; a row is kept only if it is finite in every
    array and every layer.
    """
    mask = None
    for a in arrays:
        a = np.asarray(a)
        ok = np.isfinite(a).all(axis=-1)
        while ok.ndim > 1:
            ok = ok.all(axis=0)
        mask = ok if mask is None else mask & ok
    assert mask is not None
    return mask


def _report_dropped(mask: np.ndarray, what: str, stacklevel: int = 3) -> RowFilter:
    dropped = tuple(int(i) for i in np.flatnonzero(~mask))
    rf = RowFilter(n_total=int(mask.size), n_used=int(mask.sum()), dropped=dropped)
    if dropped:
        shown = ", ".join(map(str, dropped[:10])) + (", ..." if len(dropped) > 10 else "")
        warnings.warn(
            f"{what}: dropped {len(dropped)} of {mask.size} rows containing NaN/inf, jointly from "
            f"both representations (rows {shown}); {rf.n_used} rows used",
            NonFiniteRowsWarning,
            stacklevel=stacklevel,
        )
    return rf


def _check_pair(X: np.ndarray, Y: np.ndarray, min_rows: int, what: str) -> None:
    if X.shape[-2] != Y.shape[-2]:
        raise ValueError(
            f"{what}: X and Y must have the same number of rows (examples), got "
            f"{X.shape[-2]} and {Y.shape[-2]}; rows must be the same examples in the same order"
        )
    if X.shape[-2] < min_rows:
        raise ValueError(f"{what} needs at least {min_rows} rows (examples), got {X.shape[-2]}")


def drop_nonfinite_rows(
    X: Any, Y: Any, *, what: str = "similarity", warn: bool = True
) -> tuple[np.ndarray, np.ndarray, RowFilter]:
    """Drop rows that contain NaN/inf in X *or* Y, from both (jointly), as float64 copies.

    Args:
        X: ``(n, d1)`` array-like. Y: ``(n, d2)`` array-like (same examples, same order).
        what: label for the warning. warn: emit :class:`NonFiniteRowsWarning` if rows are dropped.

    Returns:
        ``(X_kept, Y_kept, RowFilter)``; float64 copies.

    Raises:
        ValueError: different numbers of rows.
    """
    X = as_float64(X, "X")
    Y = as_float64(Y, "Y")
    _check_pair(X, Y, 0, what)
    mask = finite_rows(X, Y)
    if warn:
        rf = _report_dropped(mask, what)
    else:
        rf = RowFilter(int(mask.size), int(mask.sum()), tuple(int(i) for i in np.flatnonzero(~mask)))
    if rf.n_dropped:
        X, Y = X[mask], Y[mask]
    return X, Y, rf


def _center_columns(X: np.ndarray, name: str) -> np.ndarray:
    """Subtract column means in float64, in place on a private copy. Snaps constants to 0."""
    if not X.size:
        return X
    scale = max(abs(float(X.max())), abs(float(X.min())))  # no temporaries
    X -= X.mean(axis=0, keepdims=True)
    # a constant column can leave ~1e-16 * |value| of rounding; treat all-constant input exactly
    if max(abs(float(X.max())), abs(float(X.min()))) <= 1e-12 * scale:
        X[...] = 0.0
    return X


def _constant_error(name: str) -> ValueError:
    return ValueError(
        f"{name} has zero variance after centring (all features constant over the examples, or "
        f"a zero Gram matrix): CKA and the other measures are 0/0 and undefined"
    )


# --------------------------------------------------------------------------------------------
# Gram matrices and HSIC
# --------------------------------------------------------------------------------------------


def _float32_input(X: Any) -> np.ndarray | None:
    """``X`` as a float32 NumPy array if it is stored in float32 or lower precision, else None.

    float32 is returned as is (no copy; callers must not write to it); float16 / bfloat16 are
    widened to float32 exactly. Anything else (float64, integers, lists) gives None.
    """
    if _is_torch(X):
        if not X.is_floating_point() or X.element_size() > 4 or X.is_complex():
            return None
        return X.detach().to("cpu").float().numpy()
    if isinstance(X, np.ndarray) and X.dtype.kind == "f" and X.dtype.itemsize <= 4:
        return X if X.dtype == np.float32 else X.astype(np.float32)
    return None


def _column_shift(X32: np.ndarray) -> np.ndarray:
    """Approximate column means of ``(n, d)`` float32 ``X32`` as float32 ``(d,)``: ``1^T X / n``.

    One BLAS ``sgemv`` (float32 accumulation, ~6x faster than a float64-accumulated mean). Only
    used to shift the columns before a float32 Gram product: an error in it adds a per-column
    constant to the shifted data, which double centring (``H``) removes exactly. Non-finite if
    any entry is non-finite (or, for entries beyond ~1e35, if the float32 sum overflows).
    """
    n = X32.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ones(n, dtype=np.float32) @ X32 * np.float32(1.0 / n)


def _gram_product_float32(
    X32: np.ndarray,
    out: np.ndarray | None = None,
    work: dict[str, np.ndarray] | None = None,
    shift: np.ndarray | None = None,
) -> np.ndarray:
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
    activations up to 3e4); see the module docstring "Precision". A float32 Gram of
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


def _double_centre_float64(K32: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
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


def centered_gram(X: Any) -> np.ndarray:
    """Double-centred linear Gram matrix ``K = H X X^T H`` with ``H = I - 11^T / n``.

    Computed as ``Xc Xc^T`` where ``Xc`` is ``X`` with column means removed in float64 (equal to
    ``H X X^T H`` and numerically better: hidden states carry large per-feature offsets, which
    centring the Gram afterwards would cancel catastrophically). All-float64 for any input dtype
    (:class:`GramCache` with float32 storage uses a float32 product instead, see the module
    docstring "Precision").

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
        Xc = _center_columns(X, "X")
        return Xc @ Xc.T  # numpy uses a symmetric rank-k update (syrk): exactly symmetric
    n = X.shape[0]
    K = np.full((n, n), np.nan)
    if ok.any():
        Xc = _center_columns(X[ok], "X")
        K[np.ix_(ok, ok)] = Xc @ Xc.T
    return K


def _finite_row_mask(X: np.ndarray) -> np.ndarray | None:
    """None if every row of ``X`` is finite, else the boolean mask of finite rows."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(X.sum(axis=1)).all():  # cheap test; a finite row sum means a finite row
            return None
    return np.isfinite(X).all(axis=1)


def centered_grams(A: Any) -> np.ndarray:
    """:func:`centered_gram` for every layer: ``A (L, n, d)`` -> ``(L, n, n)`` float64."""
    shape = tuple(A.shape) if hasattr(A, "shape") else np.shape(A)
    if len(shape) != 3:
        raise ValueError(f"A must have 3 dimensions (n_layers, n, d), got shape {shape}")
    out = np.empty((shape[0], shape[1], shape[1]), dtype=np.float64)
    for i in range(shape[0]):
        out[i] = centered_gram(A[i])
    return out


def _gram_products_float32(A: Any) -> np.ndarray:
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
    work: dict[str, np.ndarray] = {}
    for i in range(shape[0]):
        if A32 is not None:
            X32 = A32[i]
        else:
            X = as_float64(A[i], "A[i]")
            ok = _finite_row_mask(X)
            if ok is None:
                X32 = _center_columns(X, "X").astype(np.float32)
            else:
                X32 = np.full(X.shape, np.nan, dtype=np.float32)
                if ok.any():
                    X32[ok] = _center_columns(X[ok], "X")
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


def _recentre_float64(G: np.ndarray) -> np.ndarray:
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


def _centered_grams_float32(A: Any) -> np.ndarray:
    """:func:`centered_grams` with float32 products: ``(L, n, n)`` float64, double-centred.

    The float32-storage route of :class:`GramCache` as the values its readers see:
    :func:`_gram_products_float32` re-centred in float64 (:func:`_recentre_float64`).
    """
    return _recentre_float64(_gram_products_float32(A))


def center_gram(K: Any) -> np.ndarray:
    """Double-centre a Gram/kernel matrix: ``H K H`` (a float64 copy; idempotent).

    Args:
        K: ``(n, n)`` symmetric matrix.

    Returns:
        np.ndarray: ``(n, n)`` float64 ``H K H`` (Kornblith et al. 2019, Eq. 3).
    """
    return _center_gram_inplace(as_float64(K, "K"))


def _center_gram_inplace(K: np.ndarray) -> np.ndarray:
    K -= K.mean(axis=0, keepdims=True)
    K -= K.mean(axis=1, keepdims=True)
    return K


def unbiased_center_gram(K: Any) -> np.ndarray:
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


def _prepare_grams(
    Kx: Any, Ky: Any, *, min_rows: int = 2, what: str = "cka_from_grams"
) -> tuple[np.ndarray, np.ndarray, RowFilter]:
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
    rf = _report_dropped(ok, what, stacklevel=4)
    if rf.n_dropped:
        Kx, Ky = Kx[np.ix_(ok, ok)], Ky[np.ix_(ok, ok)]
    if not (np.isfinite(Kx).all() and np.isfinite(Ky).all()):
        raise ValueError(
            f"{what}: Gram matrices have non-finite off-diagonal entries with a finite diagonal; "
            f"mark a non-finite example with a NaN row and column (as centered_gram does)"
        )
    if Kx.shape[0] < min_rows:
        raise ValueError(f"{what} needs at least {min_rows} rows (examples), got {Kx.shape[0]}")
    return _center_gram_inplace(Kx), _center_gram_inplace(Ky), rf


def hsic(Kx: Any, Ky: Any, *, debiased: bool = False) -> float:
    """HSIC between two Gram/kernel matrices (not normalised; NaN rows dropped jointly).

    Biased: ``tr(H Kx H Ky) / (n-1)^2`` (Gretton et al. 2005, Eq. 4). Debiased: the unbiased
    estimator ``HSIC_1`` of Song et al. (2007), Eq. (5), computed as ``<U(Kx), U(Ky)> / (n(n-3))``.

    Raises:
        ValueError: shapes differ or are not square; debiased with n < 4.
    """
    Kx, Ky, _ = _prepare_grams(Kx, Ky, min_rows=4 if debiased else 2, what="hsic")
    n = Kx.shape[0]
    if debiased:
        return float(_inner(unbiased_center_gram(Kx), unbiased_center_gram(Ky)) / (n * (n - 3)))
    return float(_inner(Kx, Ky) / (n - 1) ** 2)


def _cka_centred(Kx: np.ndarray, Ky: np.ndarray, debiased: bool, what: str) -> float:
    """CKA from already-centred, already-aligned float64 Grams."""
    sx, sy = float(_inner(Kx, Kx)), float(_inner(Ky, Ky))
    if sx == 0.0:
        raise _constant_error("X (Kx)")
    if sy == 0.0:
        raise _constant_error("Y (Ky)")
    if not debiased:
        return _ratio(float(_inner(Kx, Ky)), sx, sy, what)
    if Kx.shape[0] < 4:
        raise ValueError(
            f"{what} (debiased, unbiased HSIC) needs at least 4 rows (examples), got {Kx.shape[0]}"
        )
    Ux = unbiased_center_gram(Kx)
    Uy = unbiased_center_gram(Ky)
    return _ratio(
        float(_inner(Ux, Uy)), float(_inner(Ux, Ux)), float(_inner(Uy, Uy)), what,
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
        raise _constant_error("X")
    if (scale_y if scale_y is not None else yy) == 0.0:
        raise _constant_error("Y")
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


def cka_from_grams(Kx: Any, Ky: Any, *, debiased: bool = False) -> float:
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
    Kx, Ky, _ = _prepare_grams(Kx, Ky, min_rows=4 if debiased else 2)
    return _cka_centred(Kx, Ky, debiased, "cka_from_grams")


# --------------------------------------------------------------------------------------------
# Linear CKA (feature and Gram routes)
# --------------------------------------------------------------------------------------------


def _use_feature_route(n: int, d1: int, d2: int) -> bool:
    """True if ``X^T Y`` (d1 x d2) is cheaper than the two n x n Grams.

    Feature route ~ 2n(d1 d2 + d1^2 + d2^2) flops; Gram route ~ n^2 (d1 + d2) (symmetric GEMMs)
    + O(n^2) for the traces.
    """
    return 2 * (d1 * d2 + d1 * d1 + d2 * d2) < n * (d1 + d2)


def _debiased_dot(xty: float, sx: np.ndarray, sy: np.ndarray, nx: float, ny: float, n: int) -> float:
    """Unbiased HSIC numerator (times n(n-3)) in feature space (Kornblith et al. 2019, App. / code).

    ``xty = ||Xc^T Yc||_F^2``, ``sx, sy`` = squared row norms of the centred features,
    ``nx, ny`` = their sums.
    """
    return xty - n / (n - 2.0) * float(sx @ sy) + nx * ny / ((n - 1.0) * (n - 2.0))


def _linear_cka_features(Xc: np.ndarray, Yc: np.ndarray, debiased: bool) -> float:
    """Feature-space linear CKA: ``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` (Eq. 4)."""
    xy = float(np.linalg.norm(Xc.T @ Yc) ** 2)
    xx = float(np.linalg.norm(Xc.T @ Xc) ** 2)
    yy = float(np.linalg.norm(Yc.T @ Yc) ** 2)
    if xx == 0.0:
        raise _constant_error("X")
    if yy == 0.0:
        raise _constant_error("Y")
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


def linear_cka(X: Any, Y: Any, *, debiased: bool = False, route: str = "auto") -> float:
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
    _check_pair(X, Y, min_rows, "linear_cka (debiased)" if debiased else "linear_cka")
    Xc = _center_columns(X, "X")
    Yc = _center_columns(Y, "Y")
    n, d1 = Xc.shape
    d2 = Yc.shape[1]
    if route == "features" or (route == "auto" and _use_feature_route(n, d1, d2)):
        return _linear_cka_features(Xc, Yc, debiased)
    Kx = Xc @ Xc.T
    Ky = Yc @ Yc.T
    return _cka_centred(Kx, Ky, debiased, "linear_cka")


def debiased_cka(X: Any, Y: Any) -> float:
    """Linear CKA with the unbiased HSIC estimator: ``linear_cka(X, Y, debiased=True)``."""
    return linear_cka(X, Y, debiased=True)


# --------------------------------------------------------------------------------------------
# Shared plumbing for the other measures
# --------------------------------------------------------------------------------------------


def _grams_from_features(X: Any, Y: Any, min_rows: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Jointly drop non-finite rows (warn), check, and return both centred float64 Grams."""
    X, Y, _ = drop_nonfinite_rows(X, Y, what=what)
    _check_pair(X, Y, min_rows, what)
    Xc = _center_columns(X, "X")
    Yc = _center_columns(Y, "Y")
    return Xc @ Xc.T, Yc @ Yc.T


def _features_centred(X: Any, Y: Any, min_rows: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    X, Y, _ = drop_nonfinite_rows(X, Y, what=what)
    _check_pair(X, Y, min_rows, what)
    Xc = _center_columns(X, "X")
    Yc = _center_columns(Y, "Y")
    if not Xc.any():
        raise _constant_error("X")
    if not Yc.any():
        raise _constant_error("Y")
    return Xc, Yc


def _check_nonzero(K: np.ndarray, name: str) -> None:
    if not np.trace(K) > 0.0:
        raise _constant_error(name)


# --------------------------------------------------------------------------------------------
# RBF CKA
# --------------------------------------------------------------------------------------------


def _sq_distances(K: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between examples from a (centred or raw) linear Gram."""
    d = np.diagonal(K)
    D = d[:, None] + d[None, :] - 2.0 * K
    np.maximum(D, 0.0, out=D)
    np.fill_diagonal(D, 0.0)
    return D


def _rbf_from_gram(K: np.ndarray, sigma: float, name: str) -> np.ndarray:
    """RBF kernel ``exp(-||x_i - x_j||^2 / (2 sigma^2 median ||x_i - x_j||^2))``.

    The median is over all n^2 entries of the squared-distance matrix, as in Kornblith et al.'s
    ``gram_rbf(x, threshold)`` (``sigma`` is their ``threshold``), which the authors' ``cka.py``
    copies.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    D = _sq_distances(K)
    med = float(np.median(D))
    if med == 0.0:
        raise ValueError(
            f"{name}: median squared distance is 0 (more than half of the pairs of examples are "
            f"identical, or features are constant); the median-heuristic RBF bandwidth is undefined"
        )
    return np.exp(D * (-1.0 / (2.0 * sigma**2 * med)))


def _rbf_cka_core(Kx: np.ndarray, Ky: np.ndarray, sigma: float, debiased: bool) -> float:
    _check_nonzero(Kx, "X")
    _check_nonzero(Ky, "Y")
    Rx = center_gram(_rbf_from_gram(Kx, sigma, "X"))
    Ry = center_gram(_rbf_from_gram(Ky, sigma, "Y"))
    return _cka_centred(Rx, Ry, debiased, "rbf_cka")


def rbf_cka_from_grams(Kx: Any, Ky: Any, *, sigma: float = 1.0, debiased: bool = False) -> float:
    """RBF-kernel CKA from centred linear Grams (distances are ``K_ii + K_jj - 2 K_ij``).

    See :func:`rbf_cka`. NaN rows are dropped jointly.
    """
    Kx, Ky, _ = _prepare_grams(Kx, Ky, min_rows=4 if debiased else 2, what="rbf_cka")
    return _rbf_cka_core(Kx, Ky, sigma, debiased)


def rbf_cka(X: Any, Y: Any, *, sigma: float = 1.0, debiased: bool = False) -> float:
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
    Kx, Ky = _grams_from_features(X, Y, 4 if debiased else 2, "rbf_cka")
    return _rbf_cka_core(Kx, Ky, sigma, debiased)


# --------------------------------------------------------------------------------------------
# Minibatch CKA (Nguyen, Raghu & Kornblith 2021)
# --------------------------------------------------------------------------------------------


def _batches(n: int, batch_size: int, seed: int | None) -> list[np.ndarray]:
    if batch_size < 4:
        raise ValueError(f"minibatch CKA needs batch_size >= 4 (unbiased HSIC), got {batch_size}")
    perm = np.random.default_rng(seed).permutation(n)
    k = n // batch_size
    if k == 0:
        return [perm]
    return [perm[i * batch_size : (i + 1) * batch_size] for i in range(k)]


def _minibatch_core(Kx: np.ndarray, Ky: np.ndarray, batch_size: int, seed: int | None) -> float:
    _check_nonzero(Kx, "X")
    _check_nonzero(Ky, "Y")
    xy = xx = yy = bx = by = 0.0
    for idx in _batches(Kx.shape[0], batch_size, seed):
        sub = np.ix_(idx, idx)
        Ux = unbiased_center_gram(Kx[sub])
        Uy = unbiased_center_gram(Ky[sub])
        xy += float(_inner(Ux, Uy))
        xx += float(_inner(Ux, Ux))
        yy += float(_inner(Uy, Uy))
        cx, cy = center_gram(Kx[sub]), center_gram(Ky[sub])
        bx += float(_inner(cx, cx))
        by += float(_inner(cy, cy))
    return _ratio(xy, xx, yy, "minibatch_cka", scale_x=bx, scale_y=by)


def minibatch_cka_from_grams(
    Kx: Any, Ky: Any, *, batch_size: int = 256, seed: int | None = 0
) -> float:
    """Minibatch CKA from centred linear Grams (the batch Grams are sub-blocks). See :func:`minibatch_cka`."""
    Kx, Ky, _ = _prepare_grams(Kx, Ky, min_rows=4, what="minibatch_cka")
    return _minibatch_core(Kx, Ky, batch_size, seed)


def minibatch_cka(X: Any, Y: Any, *, batch_size: int = 256, seed: int | None = 0) -> float:
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
    Kx, Ky = _grams_from_features(X, Y, 4, "minibatch_cka")
    return _minibatch_core(Kx, Ky, batch_size, seed)


def minibatch_cka_matrix(
    A: Any, B: Any, *, batch_size: int = 256, seed: int | None = 0
) -> np.ndarray:
    """Minibatch CKA between every layer of A and every layer of B (Nguyen et al. 2021).

    Per batch, the U-centred batch Grams of all layers are flattened and one GEMM accumulates
    the full ``(L1, L2)`` matrix of unbiased HSIC_1 numerators.

    Args:
        A: ``(L1, n, d_a)``; B: ``(L2, n, d_b)``; non-finite rows dropped jointly over all layers.

    Returns:
        np.ndarray: ``(L1, L2)`` float64.
    """
    A = as_float64(A, "A", ndim=3)
    B = as_float64(B, "B", ndim=3)
    _check_pair(A, B, 4, "minibatch_cka_matrix")
    mask, rf = _layer_rows(A, B, "all_layers", "minibatch_cka_matrix")
    if rf.n_dropped:
        A, B = A[:, mask], B[:, mask]
    _check_pair(A, B, 4, "minibatch_cka_matrix")
    A -= A.mean(axis=1, keepdims=True)
    B -= B.mean(axis=1, keepdims=True)
    xy = np.zeros((A.shape[0], B.shape[0]))
    xx = np.zeros(A.shape[0])
    yy = np.zeros(B.shape[0])
    for idx in _batches(A.shape[1], batch_size, seed):
        FA = np.stack([unbiased_center_gram(a[idx] @ a[idx].T).ravel() for a in A])
        FB = np.stack([unbiased_center_gram(b[idx] @ b[idx].T).ravel() for b in B])
        xy += FA @ FB.T
        xx += np.einsum("ij,ij->i", FA, FA)
        yy += np.einsum("ij,ij->i", FB, FB)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = xy / np.sqrt(np.outer(xx, yy))
    out[~(np.outer(xx, yy) > 0)] = np.nan
    return out


# --------------------------------------------------------------------------------------------
# SVCCA and PWCCA
# --------------------------------------------------------------------------------------------


def _n_components(w: np.ndarray, variance: float, name: str) -> int:
    """Smallest k whose top-k eigenvalues (descending, >= 0) explain ``variance`` of the total."""
    if not 0.0 < variance <= 1.0:
        raise ValueError(f"variance must be in (0, 1], got {variance}")
    total = float(w.sum())
    if not total > 0.0:
        raise _constant_error(name)
    rank = int((w > 1e-12 * w[0]).sum())
    k = int(np.searchsorted(np.cumsum(w) / total, variance - 1e-12) + 1)
    return max(1, min(k, rank))


def _subspace_from_gram(K: np.ndarray, variance: float, name: str) -> np.ndarray:
    """Orthonormal ``(n, k)`` basis of the top-variance left singular vectors of centred X."""
    w, V = np.linalg.eigh(K)
    w, V = np.clip(w[::-1], 0.0, None), V[:, ::-1]
    return V[:, : _n_components(w, variance, name)]


def _subspace_from_features(Xc: np.ndarray, variance: float, name: str) -> np.ndarray:
    U, s, _ = np.linalg.svd(Xc, full_matrices=False)
    return U[:, : _n_components(s**2, variance, name)]


def _subspace(Xc: np.ndarray, variance: float, name: str) -> np.ndarray:
    if Xc.shape[1] < Xc.shape[0]:
        return _subspace_from_features(Xc, variance, name)
    return _subspace_from_gram(Xc @ Xc.T, variance, name)


def _canonical_correlations(Qx: np.ndarray, Qy: np.ndarray) -> np.ndarray:
    """Canonical correlations of two orthonormal bases (Bjorck & Golub 1973): singular values."""
    rho = np.linalg.svd(Qx.T @ Qy, compute_uv=False)
    return np.clip(rho[: min(Qx.shape[1], Qy.shape[1])], 0.0, 1.0)


def svcca_from_grams(Kx: Any, Ky: Any, *, variance: float = 0.99) -> float:
    """SVCCA from centred linear Grams (eigenvectors of ``Xc Xc^T`` = left singular vectors). See :func:`svcca`."""
    Kx, Ky, _ = _prepare_grams(Kx, Ky, min_rows=2, what="svcca")
    Qx = _subspace_from_gram(Kx, variance, "X")
    Qy = _subspace_from_gram(Ky, variance, "Y")
    return float(_canonical_correlations(Qx, Qy).mean())


def svcca(X: Any, Y: Any, *, variance: float = 0.99) -> float:
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
    Xc, Yc = _features_centred(X, Y, 2, "svcca")
    return float(_canonical_correlations(_subspace(Xc, variance, "X"), _subspace(Yc, variance, "Y")).mean())


def pwcca(X: Any, Y: Any, *, variance: float = 0.99) -> float:
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
    Xc, Yc = _features_centred(X, Y, 2, "pwcca")
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


# --------------------------------------------------------------------------------------------
# Orthogonal Procrustes
# --------------------------------------------------------------------------------------------


def _sqrt_factor(K: np.ndarray) -> np.ndarray:
    """``F`` with ``F F^T = K`` for a PSD Gram (``F = V sqrt(w)``, only the non-null part kept)."""
    w, V = np.linalg.eigh(K)
    keep = w > 1e-13 * max(float(w[-1]), 0.0)
    return V[:, keep] * np.sqrt(w[keep])


def _procrustes_core_grams(Kx: np.ndarray, Ky: np.ndarray) -> float:
    tx, ty = float(np.trace(Kx)), float(np.trace(Ky))
    if not tx > 0:
        raise _constant_error("X")
    if not ty > 0:
        raise _constant_error("Y")
    nuc = float(np.linalg.svd(_sqrt_factor(Kx).T @ _sqrt_factor(Ky), compute_uv=False).sum())
    return min(1.0, nuc / math.sqrt(tx * ty))


def procrustes_similarity_from_grams(Kx: Any, Ky: Any) -> float:
    """Procrustes similarity from centred linear Grams (via ``F_x^T F_y`` with ``F F^T = K``)."""
    Kx, Ky, _ = _prepare_grams(Kx, Ky, min_rows=2, what="procrustes")
    return _procrustes_core_grams(Kx, Ky)


def procrustes_similarity(X: Any, Y: Any) -> float:
    """Orthogonal Procrustes similarity ``||Xc^T Yc||_* / (||Xc||_F ||Yc||_F)`` in [0, 1].

    With both representations centred and scaled to unit Frobenius norm (zero-padded to the same
    width), ``min_{Q orthogonal} ||X - Y Q||_F^2 = 2 - 2 ||X^T Y||_*`` (Schoenemann 1966; the
    Procrustes distance of Ding, Denain & Steinhardt 2021, Sec. 2, and Williams et al. 2021), so
    the similarity is ``1 - d^2 / 2`` and ``arccos`` of it is Williams et al.'s angular shape
    distance. Uses ``X^T Y`` (d1 x d2) when both widths are at most n, else the Gram factors.

    Raises:
        ValueError: mismatched rows, constant features.
    """
    Xc, Yc = _features_centred(X, Y, 2, "procrustes")
    n = Xc.shape[0]
    if max(Xc.shape[1], Yc.shape[1]) <= n:
        nuc = float(np.linalg.svd(Xc.T @ Yc, compute_uv=False).sum())
        return min(1.0, nuc / (np.linalg.norm(Xc) * np.linalg.norm(Yc)))
    return _procrustes_core_grams(Xc @ Xc.T, Yc @ Yc.T)


def procrustes_distance(X: Any, Y: Any) -> float:
    """Orthogonal Procrustes distance ``sqrt(2 - 2 s)`` on centred unit-norm representations.

    ``s`` = :func:`procrustes_similarity`; 0 for identical shapes, at most sqrt(2).
    """
    return math.sqrt(max(0.0, 2.0 - 2.0 * procrustes_similarity(X, Y)))


# --------------------------------------------------------------------------------------------
# Mutual k-nearest-neighbour alignment
# --------------------------------------------------------------------------------------------


def _knn_mask(K: np.ndarray, k: int) -> np.ndarray:
    d = np.sqrt(np.clip(np.diagonal(K), 0.0, None))
    d[d == 0] = 1.0
    C = K / d[:, None] / d[None, :]
    np.fill_diagonal(C, -np.inf)
    idx = np.argpartition(-C, k - 1, axis=1)[:, :k]
    M = np.zeros(K.shape, dtype=bool)
    M[np.arange(K.shape[0])[:, None], idx] = True
    return M


def _knn_core(Kx: np.ndarray, Ky: np.ndarray, k: int) -> float:
    n = Kx.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"mutual_knn needs 1 <= k < n (number of examples {n}), got k={k}")
    _check_nonzero(Kx, "X")
    _check_nonzero(Ky, "Y")
    return float((_knn_mask(Kx, k) & _knn_mask(Ky, k)).sum() / (n * k))


def mutual_knn_from_grams(Kx: Any, Ky: Any, *, k: int = 10) -> float:
    """Mutual k-NN alignment from centred linear Grams (cosine = ``K_ij / sqrt(K_ii K_jj)``)."""
    Kx, Ky, _ = _prepare_grams(Kx, Ky, min_rows=2, what="mutual_knn")
    return _knn_core(Kx, Ky, k)


def mutual_knn(X: Any, Y: Any, *, k: int = 10, center: bool = True) -> float:
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
        Kx, Ky = _grams_from_features(X, Y, 2, "mutual_knn")
    else:
        X, Y, _ = drop_nonfinite_rows(X, Y, what="mutual_knn")
        _check_pair(X, Y, 2, "mutual_knn")
        Kx, Ky = X @ X.T, Y @ Y.T
    return _knn_core(Kx, Ky, k)


# --------------------------------------------------------------------------------------------
# RSA
# --------------------------------------------------------------------------------------------


def _rankdata(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank), as ``scipy.stats.rankdata``."""
    order = np.argsort(a, kind="mergesort")
    sa = a[order]
    new = np.r_[True, sa[1:] != sa[:-1]]
    group = np.cumsum(new) - 1
    bounds = np.r_[np.flatnonzero(new), a.size]
    avg = (bounds[:-1] + bounds[1:] + 1) / 2.0
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = avg[group]
    return ranks


def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation of two 1-D arrays (Pearson correlation of average ranks).

    Raises:
        ValueError: different lengths, fewer than 2 values, or a constant input.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size != b.size or a.size < 2:
        raise ValueError(f"spearman needs two arrays of equal length >= 2, got {a.size} and {b.size}")
    ra, rb = _rankdata(a), _rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    den = math.sqrt(float(ra @ ra) * float(rb @ rb))
    if den == 0.0:
        raise ValueError("spearman: an input is constant (all dissimilarities equal); correlation undefined")
    return float(ra @ rb / den)


def _rsa_core(Dx: np.ndarray, Dy: np.ndarray) -> float:
    iu = np.triu_indices(Dx.shape[0], 1)
    return spearman(Dx[iu], Dy[iu])


def rsa_from_grams(Kx: Any, Ky: Any) -> float:
    """RSA with Euclidean dissimilarities from centred linear Grams. See :func:`rsa`."""
    Kx, Ky, _ = _prepare_grams(Kx, Ky, min_rows=3, what="rsa")
    _check_nonzero(Kx, "X")
    _check_nonzero(Ky, "Y")
    return _rsa_core(_sq_distances(Kx), _sq_distances(Ky))


def rsa(X: Any, Y: Any, *, metric: str = "euclidean") -> float:
    """Representational similarity analysis (Kriegeskorte, Mur & Bandettini 2008).

    Builds each representation's dissimilarity matrix (RDM) between examples and returns the
    Spearman correlation of their upper triangles. ``metric="euclidean"`` (default; Gram form,
    invariant to orthogonal maps, isotropic scaling and offsets; squared distances give the same
    ranks) or ``"correlation"`` (1 - Pearson correlation between examples' feature vectors).

    Raises:
        ValueError: mismatched rows, n < 3, constant features, unknown metric.
    """
    if metric not in ("euclidean", "correlation"):
        raise ValueError(f"metric must be 'euclidean' or 'correlation', got {metric!r}")
    if metric == "euclidean":
        Kx, Ky = _grams_from_features(X, Y, 3, "rsa")
        _check_nonzero(Kx, "X")
        _check_nonzero(Ky, "Y")
        return _rsa_core(_sq_distances(Kx), _sq_distances(Ky))
    X, Y, _ = drop_nonfinite_rows(X, Y, what="rsa")
    _check_pair(X, Y, 3, "rsa")

    def rdm(Z: np.ndarray) -> np.ndarray:
        Z = Z - Z.mean(axis=1, keepdims=True)
        nrm = np.linalg.norm(Z, axis=1, keepdims=True)
        nrm[nrm == 0] = 1.0
        Z = Z / nrm
        return 1.0 - Z @ Z.T

    return _rsa_core(rdm(X), rdm(Y))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """A registered similarity measure.

    Attributes:
        name: registry name.
        features: ``f(X, Y, **options) -> float`` on ``(n, d1)``, ``(n, d2)`` feature matrices.
        grams: ``f(Kx, Ky, **options) -> float`` on centred linear Grams (``None`` if the measure
            needs the features, e.g. PWCCA).
        symmetric: ``m(X, Y) == m(Y, X)``.
        min_rows: fewer rows (after dropping non-finite ones) raise ``ValueError``.
        reference: the publication and equation the implementation follows.
        options: default keyword options, overridable per call.
    """

    name: str
    features: Callable[..., float]
    grams: Callable[..., float] | None
    symmetric: bool = True
    min_rows: int = 2
    reference: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def uses_grams(self) -> bool:
        """True if the measure can be computed from cached centred linear Grams."""
        return self.grams is not None

    def __call__(self, X: Any, Y: Any, **options: Any) -> float:
        return self.features(X, Y, **{**self.options, **options})

    def from_grams(self, Kx: Any, Ky: Any, **options: Any) -> float:
        """Compute from centred linear Grams; ``ValueError`` if the measure needs features."""
        if self.grams is None:
            raise ValueError(f"measure {self.name!r} needs the feature matrices, not Grams")
        return self.grams(Kx, Ky, **{**self.options, **options})


MEASURES: dict[str, Measure] = {}


def _register(m: Measure) -> Measure:
    MEASURES[m.name] = m
    return m


def measure_names() -> list[str]:
    """Sorted names of the registered measures."""
    return sorted(MEASURES)


def get_measure(name: str) -> Measure:
    """Registered :class:`Measure` by name.

    Raises:
        KeyError: unknown name (the message lists the valid names).
    """
    if isinstance(name, Measure):
        return name
    try:
        return MEASURES[name]
    except KeyError:
        raise KeyError(
            f"unknown similarity measure {name!r}; valid names: {', '.join(measure_names())}"
        ) from None


def similarity(name: str, X: Any, Y: Any, **options: Any) -> float:
    """Similarity of ``X (n, d1)`` and ``Y (n, d2)`` under the registered measure ``name``.

    Raises:
        KeyError: unknown measure name (valid names listed). ValueError: see the measure.
    """
    return get_measure(name)(X, Y, **options)


def similarity_from_grams(name: str, Kx: Any, Ky: Any, **options: Any) -> float:
    """Similarity from two centred linear Grams ``(n, n)`` (see :func:`centered_gram`).

    Raises:
        KeyError: unknown name. ValueError: the measure needs features (PWCCA), or bad input.
    """
    return get_measure(name).from_grams(Kx, Ky, **options)


_register(
    Measure(
        "linear_cka",
        lambda X, Y, **kw: linear_cka(X, Y, **kw),
        lambda Kx, Ky, **kw: cka_from_grams(Kx, Ky, **kw),
        reference="Kornblith et al. 2019, Eq. (4) / Eq. (2)-(3) with linear kernel; biased HSIC",
    )
)
_register(
    Measure(
        "debiased_cka",
        lambda X, Y, **kw: linear_cka(X, Y, debiased=True, **kw),
        lambda Kx, Ky, **kw: cka_from_grams(Kx, Ky, debiased=True, **kw),
        min_rows=4,
        reference="Kornblith et al. 2019 with the unbiased HSIC_1 of Song et al. 2007, Eq. (5)",
    )
)


_register(
    Measure("rbf_cka", lambda X, Y, **kw: rbf_cka(X, Y, **kw), lambda Kx, Ky, **kw: rbf_cka_from_grams(Kx, Ky, **kw),
            reference="Kornblith et al. 2019, Sec. 3 / Eq. (2), RBF kernel, median-distance bandwidth",
            options={"sigma": 1.0})
)
_register(
    Measure("debiased_rbf_cka", lambda X, Y, **kw: rbf_cka(X, Y, debiased=True, **kw),
            lambda Kx, Ky, **kw: rbf_cka_from_grams(Kx, Ky, debiased=True, **kw), min_rows=4,
            reference="RBF CKA with the unbiased HSIC_1 of Song et al. 2007, Eq. (5)", options={"sigma": 1.0})
)
_register(
    Measure("minibatch_cka", lambda X, Y, **kw: minibatch_cka(X, Y, **kw),
            lambda Kx, Ky, **kw: minibatch_cka_from_grams(Kx, Ky, **kw), min_rows=4,
            reference="Nguyen, Raghu & Kornblith 2021, Eq. (2)-(3)", options={"batch_size": 256, "seed": 0})
)
_register(
    Measure("svcca", lambda X, Y, **kw: svcca(X, Y, **kw), lambda Kx, Ky, **kw: svcca_from_grams(Kx, Ky, **kw),
            reference="Raghu et al. 2017, Sec. 2 (99% variance SVD, mean CCA correlation)",
            options={"variance": 0.99})
)
_register(
    Measure("pwcca", lambda X, Y, **kw: pwcca(X, Y, **kw), None, symmetric=False,
            reference="Morcos, Raghu & Bengio 2018, Eq. (1)-(2), after 99% variance SVD",
            options={"variance": 0.99})
)
_register(
    Measure("procrustes", lambda X, Y, **kw: procrustes_similarity(X, Y, **kw),
            lambda Kx, Ky, **kw: procrustes_similarity_from_grams(Kx, Ky, **kw),
            reference="1 - d^2/2, orthogonal Procrustes distance on unit-norm centred data "
            "(Schoenemann 1966; Ding et al. 2021; Williams et al. 2021)")
)
_register(
    Measure("mutual_knn", lambda X, Y, **kw: mutual_knn(X, Y, **kw),
            lambda Kx, Ky, **kw: mutual_knn_from_grams(Kx, Ky, **kw),
            reference="Huh et al. 2024, Eq. (11), cosine on centred features", options={"k": 10})
)
_register(
    Measure("rsa", lambda X, Y, **kw: rsa(X, Y, **kw), lambda Kx, Ky, **kw: rsa_from_grams(Kx, Ky, **kw),
            min_rows=3, reference="Kriegeskorte et al. 2008: Spearman rho of Euclidean RDMs")
)


# --------------------------------------------------------------------------------------------
# Batched over layers
# --------------------------------------------------------------------------------------------


def _layer_rows(A: np.ndarray, B: np.ndarray, rows: str, what: str) -> tuple[np.ndarray, RowFilter]:
    if rows not in ("all_layers", "per_layer"):
        raise ValueError(f"rows must be 'all_layers' or 'per_layer', got {rows!r}")
    mask = finite_rows(A, B)
    if rows == "all_layers":
        return mask, _report_dropped(mask, what, stacklevel=4)
    return mask, RowFilter(int(mask.size), int(mask.sum()), tuple(int(i) for i in np.flatnonzero(~mask)))


def cka_by_layer(
    A: Any,
    B: Any,
    *,
    measure: str = "linear_cka",
    rows: str = "all_layers",
    return_info: bool = False,
    **options: Any,
) -> np.ndarray | tuple[np.ndarray, RowFilter]:
    """A similarity measure for every layer of a pair of models in one call.

    Args:
        A: ``(n_layers, n, d_a)`` hidden states of model A (float32/float64/any float; NumPy or
            torch). B: ``(n_layers, n, d_b)`` for model B, same examples in the same order.
        measure: registry name (default linear CKA; see :data:`MEASURES`).
        rows: how non-finite rows are dropped, always *jointly* from A and B:
            ``"all_layers"`` (default) drops an example from every layer if it is non-finite in
            any layer of either model, so all layers use the same examples and the curve is
            comparable across layers; ``"per_layer"`` drops per layer (each layer keeps its own
            finite examples; a :class:`NonFiniteRowsWarning` is issued per affected layer).
        return_info: also return the :class:`RowFilter` (for ``"per_layer"``: rows non-finite in
            any layer).
        **options: passed to the measure (e.g. ``k=`` for ``mutual_knn``).

    Returns:
        np.ndarray: ``(n_layers,)`` float64; or ``(values, RowFilter)`` if ``return_info``.

    Raises:
        ValueError: not 3-D, different numbers of layers or examples, too few examples.
        KeyError: unknown measure name.
    """
    m = get_measure(measure)
    A = as_float64(A, "A", ndim=3)
    B = as_float64(B, "B", ndim=3)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"cka_by_layer: A and B must have the same number of layers, got {A.shape[0]} and {B.shape[0]}")
    _check_pair(A, B, m.min_rows, f"cka_by_layer({m.name})")
    mask, rf = _layer_rows(A, B, rows, f"cka_by_layer({m.name})")
    if rows == "all_layers" and rf.n_dropped:
        A, B = A[:, mask], B[:, mask]
        if A.shape[1] < m.min_rows:
            raise ValueError(f"cka_by_layer({m.name}) needs at least {m.min_rows} finite rows, got {A.shape[1]}")
    out = np.empty(A.shape[0], dtype=np.float64)
    for layer in range(A.shape[0]):
        out[layer] = m(A[layer], B[layer], **options)
    return (out, rf) if return_info else out


def similarity_by_layer_from_grams(
    GA: Any, GB: Any, *, measure: str = "linear_cka", **options: Any
) -> np.ndarray:
    """A Gram-form measure for every layer from stacked centred Grams.

    Args:
        GA, GB: ``(n_layers, n, n)`` centred linear Grams (e.g. from :class:`GramCache` or
            :func:`centered_grams`); NaN rows (non-finite examples) are dropped jointly per layer.
        measure: a registry name whose measure has a Gram form.

    Returns:
        np.ndarray: ``(n_layers,)`` float64.
    """
    m = get_measure(measure)
    GA = as_float64(GA, "GA", ndim=3)
    GB = as_float64(GB, "GB", ndim=3)
    if GA.shape != GB.shape:
        raise ValueError(f"GA and GB must have the same shape (n_layers, n, n), got {GA.shape} and {GB.shape}")
    return np.array([m.from_grams(GA[i], GB[i], **options) for i in range(GA.shape[0])])


def cka_matrix(A: Any, B: Any, *, debiased: bool = False) -> np.ndarray:
    """Linear CKA between every layer of A and every layer of B (one GEMM over Grams).

    Args:
        A: ``(L1, n, d_a)``; B: ``(L2, n, d_b)`` feature matrices. Non-finite rows are dropped
            jointly across all layers of both.
        debiased: unbiased HSIC.

    Returns:
        np.ndarray: ``(L1, L2)`` float64 CKA matrix.
    """
    A = as_float64(A, "A", ndim=3)
    B = as_float64(B, "B", ndim=3)
    _check_pair(A, B, 4 if debiased else 2, "cka_matrix")
    mask, rf = _layer_rows(A, B, "all_layers", "cka_matrix")
    if rf.n_dropped:
        A, B = A[:, mask], B[:, mask]

    def flat(S: np.ndarray) -> np.ndarray:
        out = []
        for i in range(S.shape[0]):
            Xc = _center_columns(S[i], "layer")
            K = Xc @ Xc.T
            if debiased:
                K = unbiased_center_gram(K)
            out.append(K.ravel())
        return np.stack(out)

    FA, FB = flat(A), flat(B)
    xy = FA @ FB.T
    xx = np.einsum("ij,ij->i", FA, FA)
    yy = np.einsum("ij,ij->i", FB, FB)
    if (xx == 0).any() or (yy == 0).any():
        raise _constant_error("a layer of A or B")
    with np.errstate(invalid="ignore"):
        return xy / np.sqrt(np.outer(xx, yy))


# --------------------------------------------------------------------------------------------
# Gram cache
# --------------------------------------------------------------------------------------------


class GramCache:
    """Centred linear Gram matrices per (model, task), for all layers, computed once and reused.

    Every Gram-form measure (see :data:`MEASURES`) needs only these ``n x n`` matrices, so each
    model's hidden states for a task are reduced once (``O(L n^2 d)``) and each comparison then
    costs ``O(n^2)`` (CKA) or ``O(n^3)`` (SVCCA/Procrustes), independent of the width ``d``.

    On disk (if ``directory`` is given): ``<directory>/<model>/<task>.safetensors`` (names
    percent-encoded), tensors ``layer_000``, ``layer_001``, ... of shape ``(n, n)`` in
    ``storage_dtype``, and string metadata ``format``, ``n``, ``n_layers``, ``nonfinite_rows``
    (JSON list of example indices whose Gram rows are NaN) plus any caller metadata (e.g. the
    content key of the hidden states). Files are written atomically (temporary sibling, then
    rename), so a file either exists complete or not at all; one writer per file.

    Precision: with ``storage_dtype="float32"`` (default) the stored Gram is the float32
    ``ssyrk`` product of the states with their columns shifted by approximate means
    (:func:`_gram_product_float32`: entries within ~4e-7 of ``max|K|``, CKA within ~1e-9 of
    float64; module docstring "Precision"), stored as computed and re-centred in float64 by
    every reader; CKA is checked to 1e-6 against float64 by the tests. ``"float64"`` computes
    with :func:`centered_grams` (all float64) for bit-exact reuse. Values returned by
    :meth:`get` are float64 and double-centred. ``compare(measure="linear_cka")`` centres the
    stored Grams implicitly (row sums and inner products accumulated in float64 from the stored
    values), so it needs no float64 copy of them.

    Args:
        directory: where to persist (None = memory only).
        storage_dtype: ``"float32"`` or ``"float64"``.
        max_in_memory: number of (model, task) entries kept in memory, each as stored plus a
            float64 re-centred copy for fast comparisons (least recently used are evicted and
            re-read from disk when needed).
    """

    FORMAT = "layerwise-centred-gram-v1"

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        storage_dtype: str = "float32",
        max_in_memory: int = 4,
    ) -> None:
        if storage_dtype not in ("float32", "float64"):
            raise ValueError(f"storage_dtype must be 'float32' or 'float64', got {storage_dtype!r}")
        self.directory = Path(directory) if directory is not None else None
        self.storage_dtype = np.dtype(storage_dtype)
        self.max_in_memory = int(max_in_memory)
        self._mem: dict[tuple[str, str], np.ndarray] = {}
        self._f64: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._lin: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.n_computed = 0  # Gram stacks computed (not loaded) by this instance

    # ---- keys and paths ------------------------------------------------------------------
    def path(self, model: str, task: str) -> Path | None:
        """File of one (model, task) entry, or None for a memory-only cache."""
        if self.directory is None:
            return None
        from urllib.parse import quote

        return self.directory / quote(str(model), safe="-_.") / f"{quote(str(task), safe='-_.')}.safetensors"

    def __contains__(self, key: tuple[str, str]) -> bool:
        model, task = key
        p = self.path(model, task)
        return key in self._mem or (p is not None and p.exists())

    def _remember(self, key: tuple[str, str], grams: np.ndarray) -> None:
        self._mem.pop(key, None)
        self._mem[key] = grams
        while len(self._mem) > max(self.max_in_memory, 0):
            self._mem.pop(next(iter(self._mem)))

    # ---- write ---------------------------------------------------------------------------
    def put(self, model: str, task: str, grams: Any, *, metadata: Mapping[str, Any] | None = None) -> None:
        """Store a ``(n_layers, n, n)`` stack of Grams (any float dtype; stored in ``storage_dtype``).

        The Grams may be raw (``X X^T``) or centred: readers re-centre them. The caller's array
        is copied, never kept.

        Raises:
            ValueError: not a 3-D stack of square matrices.
        """
        self._put(model, task, grams, metadata=metadata, owned=False)

    def _put(self, model: str, task: str, grams: Any, *, metadata: Mapping[str, Any] | None, owned: bool) -> None:
        if isinstance(grams, np.ndarray) and grams.dtype in (np.float32, np.float64) and grams.ndim == 3:
            G = grams  # read only below
        else:
            G = as_float64(grams, "grams", ndim=3)
            owned = True
        if G.shape[1] != G.shape[2]:
            raise ValueError(f"grams must have shape (n_layers, n, n), got {G.shape}")
        stored = G if (owned and G.dtype == self.storage_dtype) else G.astype(self.storage_dtype)
        p = self.path(model, task)
        if p is not None:
            import json

            from safetensors.numpy import save_file

            from layerwise.cache import atomic_path

            bad = np.flatnonzero(~np.isfinite(np.diagonal(G, axis1=1, axis2=2)).all(axis=0)).tolist()
            meta = {
                "format": self.FORMAT,
                "n": str(G.shape[1]),
                "n_layers": str(G.shape[0]),
                "nonfinite_rows": json.dumps(bad),
            }
            meta.update({str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
            tensors = {f"layer_{i:03d}": np.ascontiguousarray(stored[i]) for i in range(G.shape[0])}
            with atomic_path(p) as tmp:
                save_file(tensors, str(tmp), metadata=meta)
        self._remember((model, task), stored)

    # ---- read ----------------------------------------------------------------------------
    def metadata(self, model: str, task: str) -> dict[str, str]:
        """The string metadata stored with an entry on disk (``KeyError`` if absent)."""
        p = self.path(model, task)
        if p is None or not p.exists():
            raise KeyError(f"no cached Grams on disk for model={model!r}, task={task!r}")
        from safetensors import safe_open

        with safe_open(str(p), framework="np") as f:
            return dict(f.metadata() or {})

    def _load(self, model: str, task: str) -> np.ndarray:
        key = (model, task)
        if key in self._mem:
            G = self._mem.pop(key)
            self._mem[key] = G  # mark as recently used
            return G
        p = self.path(model, task)
        if p is None or not p.exists():
            raise KeyError(f"no cached Grams for model={model!r}, task={task!r}")
        from safetensors.numpy import load_file

        tensors = load_file(str(p))
        G = np.stack([tensors[k] for k in sorted(tensors)])
        self._remember(key, G)
        return G

    def _float64(self, model: str, task: str) -> tuple[np.ndarray, np.ndarray, bool]:
        """Float64, re-centred Grams with their squared norms (memoised with the entry)."""
        key = (model, task)
        G = self._load(model, task)
        memo = self._f64.get(key)
        if memo is None or memo[0] is not G:
            finite = bool(np.isfinite(np.diagonal(G, axis1=1, axis2=2)).all())
            F = _recentre_float64(G)  # finite examples only; NaN rows stay NaN
            norms = np.einsum("lij,lij->l", F, F)
            memo = (G, F, norms, finite)
            self._f64[key] = memo
            while len(self._f64) > max(self.max_in_memory, 0):
                self._f64.pop(next(iter(self._f64)))
        return memo[1], memo[2], memo[3]

    def _linear_stats(self, model: str, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
        """Stored Grams with what linear CKA needs to centre them implicitly (memoised).

        For a stored (float32- or float64-rounded) Gram ``A`` with row sums ``a`` and total
        ``s``, ``<H A H, H B H> = <A, B> - 2 a.b / n + s_A s_B / n^2`` exactly; so linear CKA
        needs only ``a``, ``s`` and one inner product per comparison, accumulated in float64
        straight from the stored values (products of two float32 numbers are exact in float64),
        with no float64 copy and no re-centring pass. Since the stored Grams are centred up
        to rounding, ``a`` is tiny and the correction terms cancel nothing of significance.

        Returns:
            ``(G, a (L, n), s (L,), |H A H|_F^2 (L,), finite)``.
        """
        key = (model, task)
        G = self._load(model, task)
        memo = self._lin.get(key)
        if memo is None or memo[0] is not G:
            L, n = G.shape[0], G.shape[1]
            finite = bool(np.isfinite(np.diagonal(G, axis1=1, axis2=2)).all())
            stats = [_gram_stats64(G[i]) for i in range(L)]  # row sums and |A|_F^2, one pass
            a = np.stack([r for r, _ in stats]) if L else np.empty((0, n))  # (L, n)
            s = a.sum(axis=1)
            raw = np.array([q for _, q in stats])
            norms = raw - 2.0 * np.einsum("li,li->l", a, a) / n + s * s / (n * n)
            memo = (G, a, s, norms, finite)
            self._lin[key] = memo
            while len(self._lin) > max(self.max_in_memory, 0):
                self._lin.pop(next(iter(self._lin)))
        return memo

    def get(self, model: str, task: str, layer: int | None = None) -> np.ndarray:
        """Cached Grams, float64 and double-centred: ``(n_layers, n, n)``, or ``(n, n)`` for one ``layer``.

        Each layer is centred over its finite examples (``H K H``, Kornblith et al. 2019, Eq. 3);
        a non-finite example keeps its NaN row and column. The result is a fresh array.

        Raises:
            KeyError: nothing cached for (model, task).
        """
        F = self._float64(model, task)[0]
        return F.copy() if layer is None else F[layer].copy()

    def ensure(
        self,
        model: str,
        task: str,
        hidden: Any | Callable[[], Any],
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> bool:
        """Make sure the Grams of (model, task) are cached; compute them from ``hidden`` if missing.

        Unlike :meth:`get_or_compute` nothing is returned, so a hit costs only a file-existence
        check and a miss no float64 copy.

        Args:
            hidden: ``(n_layers, n, d)`` hidden states, or a zero-argument callable returning
                them (called only on a miss).

        Returns:
            bool: True if the Grams were computed now, False if they were already cached.
        """
        if (model, task) in self:
            return False
        H = hidden() if callable(hidden) else hidden
        # float32 storage: float32 products of column-shifted states (module doc "Precision")
        G = _gram_products_float32(H) if self.storage_dtype == np.float32 else centered_grams(H)
        self.n_computed += 1
        self._put(model, task, G, metadata=metadata, owned=True)
        return True

    def get_or_compute(
        self,
        model: str,
        task: str,
        hidden: Any | Callable[[], Any],
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        """Cached Grams of (model, task), computing them from ``hidden`` only if missing.

        Args:
            hidden: ``(n_layers, n, d)`` hidden states, or a zero-argument callable returning
                them (called only on a cache miss, so states need not be loaded otherwise).

        Returns:
            np.ndarray: ``(n_layers, n, n)`` float64 centred Grams, as :meth:`get` returns them
            (NaN rows for non-finite examples, see :func:`centered_gram`).
        """
        self.ensure(model, task, hidden, metadata=metadata)
        return self.get(model, task)

    def compare(
        self,
        model_a: str,
        model_b: str,
        task: str,
        *,
        measure: str = "linear_cka",
        layers: Iterable[int] | None = None,
        **options: Any,
    ) -> np.ndarray:
        """A Gram-form measure between two cached models for every layer of ``task``.

        Non-finite examples (NaN Gram rows) are dropped jointly per layer, with a warning.

        Returns:
            np.ndarray: ``(n_layers,)`` float64 (or one value per requested layer).

        Raises:
            KeyError: unknown measure, or a model not cached. ValueError: measure needs features,
                Grams of different sizes.
        """
        m = get_measure(measure)
        SA, SB = self._load(model_a, task), self._load(model_b, task)
        if SA.shape[1:] != SB.shape[1:]:
            raise ValueError(
                f"cached Grams of {model_a!r} and {model_b!r} for task {task!r} have different "
                f"numbers of examples: {SA.shape[1]} and {SB.shape[1]}"
            )
        idx = list(range(min(SA.shape[0], SB.shape[0])) if layers is None else layers)
        if m.name == "linear_cka" and not options:
            GA, ra, sa, na, fa = self._linear_stats(model_a, task)
            GB, rb, sb, nb, fb = self._linear_stats(model_b, task)
            if fa and fb:
                # fast path: each comparison is one O(n^2) inner product of the stored Grams,
                # centred implicitly (see _linear_stats; Kornblith et al. 2019, Eq. 2-3)
                n = GA.shape[1]
                out = []
                for i in idx:
                    if na[i] <= 0.0 or nb[i] <= 0.0:
                        raise _constant_error(f"layer {i} of {model_a if na[i] <= 0.0 else model_b!r}")
                    xy = _inner64(GA[i], GB[i])
                    xy += -2.0 * float(ra[i] @ rb[i]) / n + float(sa[i] * sb[i]) / (n * n)
                    out.append(xy / math.sqrt(na[i] * nb[i]))
                return np.array(out, dtype=np.float64)
        GA, na, fa = self._float64(model_a, task)
        GB, nb, fb = self._float64(model_b, task)
        return np.array([m.from_grams(GA[i], GB[i], **options) for i in idx], dtype=np.float64)
