"""Orthogonal Procrustes similarity and distance (Schoenemann 1966; Ding et al. 2021; Williams et al. 2021)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .arrays import constant_error, features_centred
from .grams import prepare_grams

__all__ = ["procrustes_similarity", "procrustes_similarity_from_grams", "procrustes_distance"]


def _sqrt_factor(K: NDArray[np.float64]) -> NDArray[np.float64]:
    """``F`` with ``F F^T = K`` for a PSD Gram (``F = V sqrt(w)``, only the non-null part kept)."""
    w, V = np.linalg.eigh(K)
    keep = w > 1e-13 * max(float(w[-1]), 0.0)
    return V[:, keep] * np.sqrt(w[keep])


def _procrustes_core_grams(Kx: NDArray[np.float64], Ky: NDArray[np.float64]) -> float:
    tx, ty = float(np.trace(Kx)), float(np.trace(Ky))
    if not tx > 0:
        raise constant_error("X")
    if not ty > 0:
        raise constant_error("Y")
    nuc = float(np.linalg.svd(_sqrt_factor(Kx).T @ _sqrt_factor(Ky), compute_uv=False).sum())
    return min(1.0, nuc / math.sqrt(tx * ty))


def procrustes_similarity_from_grams(Kx: ArrayLike, Ky: ArrayLike) -> float:
    """Procrustes similarity from centred linear Grams (via ``F_x^T F_y`` with ``F F^T = K``)."""
    Kx, Ky, _ = prepare_grams(Kx, Ky, min_rows=2, what="procrustes")
    return _procrustes_core_grams(Kx, Ky)


def procrustes_similarity(X: ArrayLike, Y: ArrayLike) -> float:
    """Orthogonal Procrustes similarity ``||Xc^T Yc||_* / (||Xc||_F ||Yc||_F)`` in [0, 1].

    With both representations centred and scaled to unit Frobenius norm (zero-padded to the same
    width), ``min_{Q orthogonal} ||X - Y Q||_F^2 = 2 - 2 ||X^T Y||_*`` (Schoenemann 1966; the
    Procrustes distance of Ding, Denain & Steinhardt 2021, Sec. 2, and Williams et al. 2021), so
    the similarity is ``1 - d^2 / 2`` and ``arccos`` of it is Williams et al.'s angular shape
    distance. Uses ``X^T Y`` (d1 x d2) when both widths are at most n, else the Gram factors.

    Raises:
        ValueError: mismatched rows, constant features.
    """
    Xc, Yc = features_centred(X, Y, 2, "procrustes")
    n = Xc.shape[0]
    if max(Xc.shape[1], Yc.shape[1]) <= n:
        nuc = float(np.linalg.svd(Xc.T @ Yc, compute_uv=False).sum())
        return min(1.0, nuc / (np.linalg.norm(Xc) * np.linalg.norm(Yc)))
    return _procrustes_core_grams(Xc @ Xc.T, Yc @ Yc.T)


def procrustes_distance(X: ArrayLike, Y: ArrayLike) -> float:
    """Orthogonal Procrustes distance ``sqrt(2 - 2 s)`` on centred unit-norm representations.

    ``s`` = :func:`procrustes_similarity`; 0 for identical shapes, at most sqrt(2).
    """
    return math.sqrt(max(0.0, 2.0 - 2.0 * procrustes_similarity(X, Y)))
