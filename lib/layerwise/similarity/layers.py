"""Similarity for every layer of a pair of models: per-layer curves and layer-by-layer matrices.

Inputs are stacks of hidden states ``(n_layers, n, d)`` (or of centred Grams ``(n_layers, n, n)``)
of two models for the same examples in the same order. Non-finite examples are dropped jointly
from both models, by default from every layer at once so that all layers use the same examples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .arrays import RowFilter, as_float64, center_columns, check_pair, constant_error, finite_rows, report_dropped
from .cka import minibatches
from .grams import unbiased_center_gram
from .registry import Measure, get_measure

__all__ = ["cka_by_layer", "similarity_by_layer_from_grams", "cka_matrix", "minibatch_cka_matrix"]


def _layer_rows(
    A: NDArray[np.float64], B: NDArray[np.float64], rows: str, what: str
) -> tuple[NDArray[np.bool_], RowFilter]:
    """Rows finite in every layer of A and B, and their :class:`RowFilter` (warns for ``"all_layers"``)."""
    if rows not in ("all_layers", "per_layer"):
        raise ValueError(f"rows must be 'all_layers' or 'per_layer', got {rows!r}")
    mask = finite_rows(A, B)
    return mask, report_dropped(mask, what, stacklevel=4, warn=rows == "all_layers")


def cka_by_layer(
    A: ArrayLike,
    B: ArrayLike,
    *,
    measure: str | Measure = "linear_cka",
    rows: str = "all_layers",
    return_info: bool = False,
    **options: Any,
) -> NDArray[np.float64] | tuple[NDArray[np.float64], RowFilter]:
    """A similarity measure for every layer of a pair of models in one call.

    Args:
        A: ``(n_layers, n, d_a)`` hidden states of model A (float32/float64/any float; NumPy or
            torch). B: ``(n_layers, n, d_b)`` for model B, same examples in the same order.
        measure: registry name (default linear CKA; see :data:`~layerwise.similarity.MEASURES`).
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
        raise ValueError(
            f"cka_by_layer: A and B must have the same number of layers, got {A.shape[0]} and {B.shape[0]}"
        )
    check_pair(A, B, m.min_rows, f"cka_by_layer({m.name})")
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
    GA: ArrayLike, GB: ArrayLike, *, measure: str | Measure = "linear_cka", **options: Any
) -> NDArray[np.float64]:
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


def cka_matrix(A: ArrayLike, B: ArrayLike, *, debiased: bool = False) -> NDArray[np.float64]:
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
    check_pair(A, B, 4 if debiased else 2, "cka_matrix")
    mask, rf = _layer_rows(A, B, "all_layers", "cka_matrix")
    if rf.n_dropped:
        A, B = A[:, mask], B[:, mask]

    def flat(S: NDArray[np.float64]) -> NDArray[np.float64]:
        out = []
        for i in range(S.shape[0]):
            Xc = center_columns(S[i], "layer")
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
        raise constant_error("a layer of A or B")
    with np.errstate(invalid="ignore"):
        return xy / np.sqrt(np.outer(xx, yy))


def minibatch_cka_matrix(
    A: ArrayLike, B: ArrayLike, *, batch_size: int = 256, seed: int | None = 0
) -> NDArray[np.float64]:
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
    check_pair(A, B, 4, "minibatch_cka_matrix")
    mask, rf = _layer_rows(A, B, "all_layers", "minibatch_cka_matrix")
    if rf.n_dropped:
        A, B = A[:, mask], B[:, mask]
    check_pair(A, B, 4, "minibatch_cka_matrix")
    A -= A.mean(axis=1, keepdims=True)
    B -= B.mean(axis=1, keepdims=True)
    xy = np.zeros((A.shape[0], B.shape[0]))
    xx = np.zeros(A.shape[0])
    yy = np.zeros(B.shape[0])
    for idx in minibatches(A.shape[1], batch_size, seed):
        FA = np.stack([unbiased_center_gram(a[idx] @ a[idx].T).ravel() for a in A])
        FB = np.stack([unbiased_center_gram(b[idx] @ b[idx].T).ravel() for b in B])
        xy += FA @ FB.T
        xx += np.einsum("ij,ij->i", FA, FA)
        yy += np.einsum("ij,ij->i", FB, FB)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = xy / np.sqrt(np.outer(xx, yy))
    out[~(np.outer(xx, yy) > 0)] = np.nan
    return out
