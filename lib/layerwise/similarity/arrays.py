"""Input handling shared by every measure: float64 copies, joint NaN-row dropping, column centring.

Every measure compares two representations of the *same* ``n`` examples, ``X (n, d1)`` and
``Y (n, d2)`` (rows = examples, columns = features). The helpers here turn array-likes (NumPy,
torch, nested lists) into float64 copies, drop rows that are not finite in *either* matrix from
*both* (never separately, which would misalign the examples), check shapes, and centre columns.
They are public within :mod:`layerwise.similarity` and used by :mod:`layerwise.stats` and
:mod:`layerwise.spectra` too.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "NonFiniteRowsWarning",
    "RowFilter",
    "inner",
    "inner64",
    "is_torch",
    "as_float64",
    "finite_rows",
    "report_dropped",
    "check_pair",
    "drop_nonfinite_rows",
    "center_columns",
    "constant_error",
    "features_centred",
    "check_nonzero",
]


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


def inner(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Frobenius inner product ``sum(a * b)`` of two equal-shape float64 arrays.

    ``np.einsum`` (single-threaded SIMD) rather than ``np.vdot`` (a multi-threaded BLAS level-1
    call, whose threading overhead does not pay off for one pass over the data).
    """
    return float(np.einsum("ij,ij->", a, b)) if a.ndim == 2 else float(np.einsum("i,i->", a.ravel(), b.ravel()))


def inner64(a: NDArray[np.floating], b: NDArray[np.floating] | None = None, block: int = 65536) -> float:
    """Frobenius inner product ``sum(a * b)`` accumulated in float64, for float32 (or float64) arrays.

    The arrays are widened to float64 ``block`` elements at a time into two reused buffers (a
    product of two float32 numbers is exact in float64, and the float64 sum of 1e6 of them is
    accurate to ~1e-13 relative), so no float64 copy of an ``(n, n)`` Gram is ever made.
    ``b=None`` gives the squared Frobenius norm of ``a``. Both must have equal sizes.
    """
    fa = a.reshape(-1)
    fb = fa if b is None else b.reshape(-1)
    if fa.dtype == np.float64 and fb.dtype == np.float64:
        return inner(fa, fb)
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


def is_torch(x: object) -> bool:
    """True if ``x`` is a torch tensor (checked by module name, without importing torch)."""
    return type(x).__module__.split(".")[0] == "torch"


def as_float64(X: ArrayLike, name: str = "X", *, ndim: int = 2) -> NDArray[np.float64]:
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
    if is_torch(X):
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


def finite_rows(*arrays: ArrayLike) -> NDArray[np.bool_]:
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


def report_dropped(
    mask: NDArray[np.bool_], what: str, stacklevel: int = 3, *, warn: bool = True
) -> RowFilter:
    """:class:`RowFilter` of a keep-mask ``(n,)``; warns (:class:`NonFiniteRowsWarning`, if ``warn``) on drops."""
    dropped = tuple(int(i) for i in np.flatnonzero(~mask))
    rf = RowFilter(n_total=int(mask.size), n_used=int(mask.sum()), dropped=dropped)
    if dropped and warn:
        shown = ", ".join(map(str, dropped[:10])) + (", ..." if len(dropped) > 10 else "")
        warnings.warn(
            f"{what}: dropped {len(dropped)} of {mask.size} rows containing NaN/inf, jointly from "
            f"both representations (rows {shown}); {rf.n_used} rows used",
            NonFiniteRowsWarning,
            stacklevel=stacklevel,
        )
    return rf


def check_pair(X: NDArray[np.floating], Y: NDArray[np.floating], min_rows: int, what: str) -> None:
    """Raise ``ValueError`` unless X and Y have the same number of rows (axis -2), at least ``min_rows``."""
    if X.shape[-2] != Y.shape[-2]:
        raise ValueError(
            f"{what}: X and Y must have the same number of rows (examples), got "
            f"{X.shape[-2]} and {Y.shape[-2]}; rows must be the same examples in the same order"
        )
    if X.shape[-2] < min_rows:
        raise ValueError(f"{what} needs at least {min_rows} rows (examples), got {X.shape[-2]}")


def drop_nonfinite_rows(
    X: ArrayLike, Y: ArrayLike, *, what: str = "similarity", warn: bool = True
) -> tuple[NDArray[np.float64], NDArray[np.float64], RowFilter]:
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
    check_pair(X, Y, 0, what)
    mask = finite_rows(X, Y)
    rf = report_dropped(mask, what, warn=warn)
    if rf.n_dropped:
        X, Y = X[mask], Y[mask]
    return X, Y, rf


def center_columns(X: NDArray[np.float64], name: str) -> NDArray[np.float64]:
    """Subtract column means in float64, in place on a private copy. Snaps constants to 0."""
    if not X.size:
        return X
    scale = max(abs(float(X.max())), abs(float(X.min())))  # no temporaries
    X -= X.mean(axis=0, keepdims=True)
    # a constant column can leave ~1e-16 * |value| of rounding; treat all-constant input exactly
    if max(abs(float(X.max())), abs(float(X.min()))) <= 1e-12 * scale:
        X[...] = 0.0
    return X


def constant_error(name: str) -> ValueError:
    """The ``ValueError`` for a representation with zero variance (for the caller to raise)."""
    return ValueError(
        f"{name} has zero variance after centring (all features constant over the examples, or "
        f"a zero Gram matrix): CKA and the other measures are 0/0 and undefined"
    )


def features_centred(
    X: ArrayLike, Y: ArrayLike, min_rows: int, what: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Column-centred float64 copies of X and Y with non-finite rows dropped jointly (warns).

    Raises:
        ValueError: different numbers of rows, fewer than ``min_rows``, or an all-constant input.
    """
    X, Y, _ = drop_nonfinite_rows(X, Y, what=what)
    check_pair(X, Y, min_rows, what)
    Xc = center_columns(X, "X")
    Yc = center_columns(Y, "Y")
    if not Xc.any():
        raise constant_error("X")
    if not Yc.any():
        raise constant_error("Y")
    return Xc, Yc


def check_nonzero(K: NDArray[np.float64], name: str) -> None:
    """Raise the zero-variance ``ValueError`` unless the centred Gram ``K`` has a positive trace."""
    if not np.trace(K) > 0.0:
        raise constant_error(name)
