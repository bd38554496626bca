"""Singular-value spectra of layer representations: the "spectral" half of MOSSA.

For one model, task and layer, let ``X`` be the ``(n, d)`` last-prompt-token hidden states
(rows = examples) and ``Xc`` the column-centred matrix (each feature's mean over the examples
removed). With singular values ``s_1 >= s_2 >= ... >= 0`` of ``Xc`` (``k = 1..min(n, d)``) and
``lambda_k = s_k**2``:

* **variance explained** by direction ``k``: ``lambda_k / sum_j lambda_j`` (PCA; the fraction of
  the total variance ``||Xc||_F^2`` along the k-th principal direction), and its cumulative sum;
* **variance** of direction ``k``: ``lambda_k / (n - 1)`` (the PCA eigenvalue, in squared
  hidden-state units);
* ``n_99``: the smallest ``k`` whose top-k directions explain >= 99 % of the variance -- the
  number of directions SVCCA keeps (Raghu et al. 2017); computed by the same function as
  :func:`layerwise.similarity.svcca`, so the two always agree;
* **effective rank** (Roy & Vetterli 2007, Def. 1): ``exp(H(p))`` with ``p_k = s_k / sum_j s_j``
  (singular values normalised to sum 1, *not* squared) and ``H(p) = -sum_k p_k log p_k``
  (``0 log 0 = 0``): ``r`` for ``r`` equal non-zero singular values, between 1 and the rank
  otherwise;
* **participation ratio** (e.g. Gao et al. 2017; Recanatesi et al. 2019):
  ``(sum_k lambda_k)**2 / sum_k lambda_k**2``, from the *variances*: also ``r`` for ``r`` equal
  directions, but weights large directions more than the effective rank does;
* **numerical rank**: the number of ``lambda_k > n_max * eps * lambda_1`` (``n_max = max(n, d)``,
  the usual matrix-rank tolerance on the eigenvalue scale); smaller ``lambda_k`` are set to 0
  before any of the above, so a rank-r input gives exactly ``r`` non-zero directions.

Centring removes one dimension: the rank of ``Xc`` is at most ``min(n - 1, d)``.

Computation (float64, the smaller Gram)
    Each layer is converted to float64 on its own (the ``(L+1, n, d)`` input is never copied
    whole), centred, and the non-zero ``lambda_k`` are the eigenvalues of the smaller of the two
    Gram matrices: ``Xc Xc^T`` (``n x n``) when ``n <= d``, else ``Xc^T Xc`` (``d x d``); both
    have the same non-zero eigenvalues as ``s_k**2``. Forming it costs ``O(n d min(n, d))``
    and the symmetric eigensolver (LAPACK ``syevd`` via ``numpy.linalg.eigvalsh``; only
    eigenvalues, no vectors) ``O(min(n, d)**3)``, cheaper than an SVD of ``Xc``. Caveat: a
    multi-threaded OpenBLAS can be far slower than one thread on busy shared CPUs; set
    ``OPENBLAS_NUM_THREADS=1`` for spectra runs on such machines. Eigenvalues of a Gram carry an absolute
    error of about ``eps * lambda_1``, so singular values far below ``sqrt(eps) * s_1 ~ 1e-8 s_1``
    are not resolved; none of the summaries depends on them. :func:`layer_spectra` also takes
    cached centred Grams (``grams=``, :class:`layerwise.similarity.GramCache`) instead of hidden states.

NaN / inf
    Examples (rows) with a non-finite value in *any* layer are dropped from every layer (the
    same examples throughout, as in :mod:`layerwise.similarity`), with a
    :class:`~layerwise.similarity.NonFiniteRowsWarning`.

Errors
    ``ValueError`` for inputs of the wrong rank, non-numeric dtypes, fewer than 2 usable
    examples, a layer with zero variance (all features constant: every summary is 0/0; the
    layer is named), ``layers`` outside the input, and bad ``top_k``/``max_k``/``variance``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
import pandas as pd

from layerwise.similarity.arrays import as_float64
from layerwise.similarity.arrays import center_columns as _center_columns
from layerwise.similarity.arrays import is_torch as _is_torch
from layerwise.similarity.arrays import report_dropped as _report_dropped
from layerwise.similarity.cca import n_components as _n_components
from layerwise.similarity.grams import center_gram_inplace as _center_gram_inplace

__all__ = [
    "eigenvalues",
    "eigenvalues_from_gram",
    "spectrum_summary",
    "effective_rank",
    "participation_ratio",
    "layer_spectra",
]


def _clean(w: np.ndarray, size: int) -> NDArray[np.float64]:
    """Sort descending, clip negatives and zero the eigenvalues below the rank tolerance."""
    w = np.clip(np.sort(np.asarray(w, dtype=np.float64))[::-1], 0.0, None)
    if w.size and w[0] > 0:
        w[w <= size * np.finfo(np.float64).eps * w[0]] = 0.0
    return w


def eigenvalues(X: ArrayLike, *, name: str = "X") -> NDArray[np.float64]:
    """Squared singular values ``lambda_k = s_k**2`` of the column-centred ``X``, descending.

    Args:
        X: ``(n, d)`` array-like of any real dtype (NumPy or torch); not modified. Must be finite.
        name: used in error messages.

    Returns:
        ``(min(n, d),)`` float64, descending, >= 0 (values below the rank tolerance set to 0).

    Raises:
        ValueError: not 2-D, non-numeric, fewer than 2 rows, or non-finite entries.
    """
    Xc = as_float64(X, name)
    n, d = Xc.shape
    if n < 2:
        raise ValueError(f"{name}: a spectrum needs at least 2 examples (rows), got {n}")
    if not np.isfinite(Xc).all():
        raise ValueError(f"{name} has NaN/inf entries; drop those rows first (layer_spectra does)")
    Xc = _center_columns(Xc, name)
    G = Xc @ Xc.T if n <= d else Xc.T @ Xc
    return _clean(np.linalg.eigvalsh(G), max(n, d))


def eigenvalues_from_gram(K: ArrayLike, *, name: str = "K") -> NDArray[np.float64]:
    """Eigenvalues of a centred linear Gram ``K = Xc Xc^T`` (``= s_k**2`` of ``Xc``), descending.

    Args:
        K: ``(n, n)`` symmetric linear Gram ``X X^T`` of finite rows (e.g.
            :func:`layerwise.similarity.centered_gram`); it is (re-)centred here, which is
            idempotent for a centred Gram and makes a row subset of one (dropped examples) exact.

    Returns:
        ``(n,)`` float64, descending, >= 0 (values below ``n * eps * lambda_1`` set to 0).

    Raises:
        ValueError: not square, non-finite, or fewer than 2 rows.
    """
    K = as_float64(K, name)
    if K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be a square Gram matrix, got shape {K.shape}")
    if K.shape[0] < 2:
        raise ValueError(f"{name}: a spectrum needs at least 2 examples, got {K.shape[0]}")
    if not np.isfinite(K).all():
        raise ValueError(f"{name} has NaN/inf entries (a Gram with non-finite examples); drop them first")
    K = _center_gram_inplace((K + K.T) / 2.0)  # idempotent on a centred Gram; re-centres a subset
    return _clean(np.linalg.eigvalsh(K), K.shape[0])


def effective_rank(lam: ArrayLike) -> float:
    """Roy & Vetterli (2007) effective rank ``exp(-sum p log p)``, ``p = s / sum s``, ``s = sqrt(lam)``.

    Args:
        lam: eigenvalues (squared singular values), >= 0, not all 0.

    Raises:
        ValueError: negative or all-zero input.
    """
    lam = np.asarray(lam, dtype=np.float64)
    if (lam < 0).any() or not lam.sum() > 0:
        raise ValueError("effective_rank needs non-negative eigenvalues, not all zero")
    s = np.sqrt(lam)
    p = s[s > 0] / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def participation_ratio(lam: ArrayLike) -> float:
    """Participation ratio ``(sum lam)**2 / sum lam**2`` of eigenvalues (variances) ``lam``.

    Raises:
        ValueError: negative or all-zero input.
    """
    lam = np.asarray(lam, dtype=np.float64)
    if (lam < 0).any() or not lam.sum() > 0:
        raise ValueError("participation_ratio needs non-negative eigenvalues, not all zero")
    scale = lam.max()
    r = lam / scale  # scale-free, avoids overflow of lam**2 for large activations
    return float(r.sum() ** 2 / np.sum(r * r))


def spectrum_summary(
    lam: ArrayLike, *, n_examples: int | None = None, top_k: Sequence[int] = (1, 10), variance: float = 0.99,
    name: str = "X",
) -> dict[str, float]:
    """Scalar summaries of one spectrum (see the module docstring for the formulas).

    Args:
        lam: descending eigenvalues from :func:`eigenvalues`.
        n_examples: recorded as ``n_examples`` if given.
        top_k: report ``var_top_<k>``, the variance fraction of the top-k directions.
        variance: the cumulative fraction for ``n_<100*variance>`` (default 0.99 -> ``n_99``).

    Returns:
        dict with ``rank, effective_rank, participation_ratio, n_99, var_top_<k>...,
        total_variance`` (``sum lam / (n - 1)`` if ``n_examples`` is given, else ``sum lam``).

    Raises:
        ValueError: zero total variance (constant input), bad ``top_k`` or ``variance``.
    """
    lam = np.asarray(lam, dtype=np.float64)
    total = float(lam.sum())
    if not total > 0:
        raise ValueError(
            f"{name} has zero variance after centring (all features constant over the examples): "
            f"its spectrum summaries are 0/0 and undefined"
        )
    ks = [int(k) for k in top_k]
    if any(k < 1 for k in ks):
        raise ValueError(f"top_k values must be >= 1, got {list(top_k)}")
    cum = np.cumsum(lam) / total
    out: dict[str, float] = {}
    if n_examples is not None:
        out["n_examples"] = int(n_examples)
    out["rank"] = int((lam > 0).sum())
    out["effective_rank"] = effective_rank(lam)
    out["participation_ratio"] = participation_ratio(lam)
    out[f"n_{round(100 * variance):d}"] = _n_components(lam, variance, name)
    for k in ks:
        out[f"var_top_{k}"] = float(cum[min(k, cum.size) - 1])
    out["total_variance"] = total / (int(n_examples) - 1) if n_examples else total
    return out


def _tidy(lam: np.ndarray, layer: int, n: int, max_k: int | None) -> pd.DataFrame:
    total = lam.sum()
    kk = lam.size if max_k is None else min(int(max_k), lam.size)
    lam = lam[:kk]
    frac = lam / total
    return pd.DataFrame({
        "layer": np.full(kk, layer, dtype=int),
        "k": np.arange(1, kk + 1),
        "singular_value": np.sqrt(lam),
        "variance": lam / (n - 1),
        "variance_explained": frac,
        "cumulative": np.cumsum(frac),
    })


def _check_options(top_k: Sequence[int], max_k: int | None, variance: float) -> None:
    if max_k is not None and int(max_k) < 1:
        raise ValueError(f"max_k must be >= 1 or None, got {max_k}")
    if not 0.0 < variance <= 1.0:
        raise ValueError(f"variance must be in (0, 1], got {variance}")
    if any(int(k) < 1 for k in top_k):
        raise ValueError(f"top_k values must be >= 1, got {list(top_k)}")


def _select_layers(layers: Sequence[int] | None, n_layers: int) -> list[int]:
    if layers is None:
        return list(range(n_layers))
    sel = [int(i) for i in layers]
    bad = [i for i in sel if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"layers {bad} are outside the input's layers 0..{n_layers - 1}")
    return sel


def _finish(tidy: list[pd.DataFrame], summ: list[dict[str, Any]], labels: Mapping[str, Any] | None):
    spectra = pd.concat(tidy, ignore_index=True)
    summary = pd.DataFrame(summ)
    for df in (spectra, summary):
        for i, (k, v) in enumerate((labels or {}).items()):
            df.insert(i, k, v)
    return spectra, summary


def layer_spectra(
    A: ArrayLike | None = None,
    *,
    grams: ArrayLike | None = None,
    dim: int | None = None,
    layers: Sequence[int] | None = None,
    max_k: int | None = None,
    top_k: Sequence[int] = (1, 10),
    variance: float = 0.99,
    labels: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spectra of every layer of one model's hidden states (or of their Grams), batched over layers.

    Args:
        A: ``(L+1, n, d)`` hidden states (any real dtype, NumPy or torch; float32 in the
            pipeline); index 0 = embeddings, ``L`` = after the final norm. Not modified; each
            layer is copied to float64 separately.
        grams: instead of ``A``: cached centred linear Grams ``(n_layers, n, n)`` of the hidden
            states (:class:`~layerwise.similarity.GramCache`). Examples marked non-finite in any
            layer (NaN rows of :func:`~layerwise.similarity.centered_gram`) are dropped from all
            layers with a warning. The spectra then have ``n`` entries (``min(n, d)`` non-zero at
            most, the rest 0).
        dim: with ``grams``: the hidden size, which only fills the ``dim`` column (NaN if not
            given); ignored with ``A`` (its last axis is the hidden size).
        layers: indices into ``A`` to analyse (default all, ``0..L``); the ``layer`` column
            holds these indices.
        max_k: keep only the top ``max_k`` directions in the tidy table (default all
            ``min(n, d)``; summaries always use the full spectrum).
        top_k: summary columns ``var_top_<k>``. variance: threshold of ``n_99``.
        labels: constant columns to prepend to both tables, e.g. ``{"model": "SFT", "task": "rte"}``.

    Returns:
        ``(spectra, summary)``:

        * ``spectra``: one row per (layer, k) with ``layer, k, singular_value`` (of the centred
          ``n x d`` matrix, hidden-state units), ``variance`` (``s_k**2 / (n-1)``),
          ``variance_explained`` (fraction), ``cumulative`` (fraction);
        * ``summary``: one row per layer with ``layer, n_examples, dim, rank, effective_rank,
          participation_ratio, n_99, var_top_<k>..., total_variance``.

    Raises:
        ValueError: both or neither of ``A`` and ``grams``; see the module docstring.
    """
    _check_options(top_k, max_k, variance)
    if (A is None) == (grams is None):
        raise ValueError("layer_spectra takes hidden states A or grams=, exactly one of them")
    if grams is not None:
        return _spectra_from_grams(grams, layers, max_k, top_k, variance, labels, dim)
    shape = tuple(A.shape) if hasattr(A, "shape") else np.shape(A)
    if len(shape) != 3:
        raise ValueError(f"hidden states must have 3 dimensions (n_layers, n_examples, hidden_size), got shape {shape}")
    if _is_torch(A):
        A = A.detach().to("cpu")
    elif not hasattr(A, "dtype"):
        A = np.asarray(A)
    sel = _select_layers(layers, shape[0])
    # examples non-finite in any selected layer are dropped everywhere (checked in the input dtype)
    ok = np.ones(shape[1], dtype=bool)
    for i in sel:
        ok &= A[i].isfinite().all(dim=1).numpy() if _is_torch(A) else np.isfinite(np.asarray(A[i])).all(axis=1)
    rf = _report_dropped(ok, "layer_spectra")
    if rf.n_used < 2:
        raise ValueError(f"layer_spectra needs at least 2 finite examples, got {rf.n_used} of {rf.n_total}")
    tidy, summ = [], []
    for i in sel:
        X = as_float64(A[i], f"layer {i}")
        if rf.n_dropped:
            X = X[ok]
        lam = eigenvalues(X, name=f"layer {i}")
        row = {"layer": i, "n_examples": rf.n_used, "dim": shape[2]}
        s = spectrum_summary(lam, n_examples=rf.n_used, top_k=top_k, variance=variance, name=f"layer {i}")
        s.pop("n_examples")
        tidy.append(_tidy(lam, i, rf.n_used, max_k))
        summ.append({**row, **s})
    return _finish(tidy, summ, labels)


def _spectra_from_grams(G: ArrayLike, layers: Sequence[int] | None, max_k: int | None, top_k: Sequence[int],
                        variance: float, labels: Mapping[str, Any] | None, dim: int | None
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`layer_spectra` with ``grams=G`` (options checked by the caller)."""
    G = np.asarray(G.detach().cpu().double().numpy() if _is_torch(G) else G)
    if G.ndim != 3 or G.shape[1] != G.shape[2]:
        raise ValueError(f"Grams must have shape (n_layers, n, n), got {G.shape}")
    sel = _select_layers(layers, G.shape[0])
    ok = np.ones(G.shape[1], dtype=bool)
    for i in sel:
        ok &= np.isfinite(np.diagonal(G[i]))
    rf = _report_dropped(ok, "layer_spectra(grams=)")
    if rf.n_used < 2:
        raise ValueError(f"layer_spectra(grams=) needs at least 2 finite examples, got {rf.n_used} of {rf.n_total}")
    idx = np.flatnonzero(ok)
    tidy, summ = [], []
    for i in sel:
        K = G[i][np.ix_(idx, idx)] if rf.n_dropped else G[i]
        lam = eigenvalues_from_gram(K, name=f"Gram of layer {i}")
        row = {"layer": i, "n_examples": rf.n_used, "dim": float("nan") if dim is None else int(dim)}
        s = spectrum_summary(lam, n_examples=rf.n_used, top_k=top_k, variance=variance, name=f"layer {i}")
        s.pop("n_examples")
        tidy.append(_tidy(lam, i, rf.n_used, max_k))
        summ.append({**row, **s})
    return _finish(tidy, summ, labels)
