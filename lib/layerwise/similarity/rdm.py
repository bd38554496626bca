"""RSA: comparing representational dissimilarity matrices (Kriegeskorte, Mur & Bandettini 2008).

Each representation gives a dissimilarity matrix (RDM) between the examples; RSA is the Spearman
rank correlation of the two RDMs' upper triangles. The module is named after the RDM so that
``layerwise.similarity.rsa`` stays the measure function.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .arrays import check_nonzero, check_pair, drop_nonfinite_rows
from .grams import grams_from_features, prepare_grams, sq_distances

__all__ = ["spearman", "rsa", "rsa_from_grams"]


def _rankdata(a: NDArray[np.float64]) -> NDArray[np.float64]:
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


def spearman(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman rank correlation of two 1-D arrays (Pearson correlation of average ranks).

    Generic (RSA's comparison of dissimilarities, and the cross-model agreement of cluster
    rankings via :mod:`layerwise.stats`). Inputs are expected finite: NaN is ranked above every
    number (each NaN its own rank), not dropped.

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


def _rsa_core(Dx: NDArray[np.float64], Dy: NDArray[np.float64]) -> float:
    iu = np.triu_indices(Dx.shape[0], 1)
    return spearman(Dx[iu], Dy[iu])


def rsa_from_grams(Kx: ArrayLike, Ky: ArrayLike) -> float:
    """RSA with Euclidean dissimilarities from centred linear Grams. See :func:`rsa`."""
    Kx, Ky, _ = prepare_grams(Kx, Ky, min_rows=3, what="rsa")
    check_nonzero(Kx, "X")
    check_nonzero(Ky, "Y")
    return _rsa_core(sq_distances(Kx), sq_distances(Ky))


def rsa(X: ArrayLike, Y: ArrayLike, *, metric: str = "euclidean") -> float:
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
        Kx, Ky = grams_from_features(X, Y, 3, "rsa")
        check_nonzero(Kx, "X")
        check_nonzero(Ky, "Y")
        return _rsa_core(sq_distances(Kx), sq_distances(Ky))
    X, Y, _ = drop_nonfinite_rows(X, Y, what="rsa")
    check_pair(X, Y, 3, "rsa")

    def rdm(Z: NDArray[np.float64]) -> NDArray[np.float64]:
        Z = Z - Z.mean(axis=1, keepdims=True)
        nrm = np.linalg.norm(Z, axis=1, keepdims=True)
        nrm[nrm == 0] = 1.0
        Z = Z / nrm
        return 1.0 - Z @ Z.T

    return _rsa_core(rdm(X), rdm(Y))
