"""Uncertainty and baselines for similarity numbers: bootstraps and permutation nulls.

* :func:`bootstrap_examples` -- confidence interval of one comparison by resampling examples
  (rows) with replacement, the same rows in both representations (Efron & Tibshirani 1993,
  percentile interval). Works from cached centred Grams: resampling rows of ``X`` is
  ``K[idx][:, idx]`` followed by re-centring, so no hidden states are reloaded.
* :func:`bootstrap_examples_by_layer` -- the same for a whole layer curve, with the *same*
  resampled examples at every layer (paired across layers).
* :func:`bootstrap_delta` -- paired CI of a difference of two comparisons on the same examples,
  e.g. Delta CKA = CKA(SFT, C) - CKA(PT, C) (paper Fig. 3).
* :func:`bootstrap_tasks` / :func:`bootstrap_cluster_means` -- CIs of task aggregates (the mean
  over tasks per layer, per-cluster means) by resampling *tasks*, the unit the paper generalises
  over.
* :func:`permutation_null` -- shuffled-row null: the measure after randomly permuting the rows
  of one representation (destroying the example correspondence), with a permutation p-value
  (Phipson & Smyth 2010: ``(1 + #{null >= observed}) / (1 + n_perm)``).

All functions take a ``seed`` (``numpy.random.default_rng``) and are deterministic given it.

Caveat: a bootstrap sample repeats examples; repeated rows are exact duplicates, which the
*debiased* HSIC estimator (unbiased only for distinct i.i.d. rows) and mutual k-NN (a duplicate is
its own nearest neighbour) do not expect. Bootstrap intervals for those measures are therefore
shifted; prefer biased linear CKA, or use task-level bootstraps, for them. Even for biased CKA
duplicates raise the replicates slightly, so a percentile interval need not contain the estimate
at small n; read it as the sampling spread, and use :func:`permutation_null` for significance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerwise.similarity.arrays import as_float64
from layerwise.similarity.arrays import inner as _inner
from layerwise.similarity.grams import center_gram_inplace as _center_gram_inplace
from layerwise.similarity.grams import prepare_grams as _prepare_grams
from layerwise.similarity.grams import unbiased_center_gram
from layerwise.similarity.registry import get_measure
from layerwise.similarity.rdm import spearman

__all__ = [
    "BootstrapResult",
    "PermutationResult",
    "percentile_ci",
    "bootstrap_examples",
    "bootstrap_examples_by_layer",
    "bootstrap_delta",
    "bootstrap_tasks",
    "bootstrap_cluster_means",
    "permutation_null",
    "shuffle_rows",
    "spearman",
]


@dataclass(frozen=True)
class BootstrapResult:
    """A point estimate with a bootstrap percentile interval.

    Attributes:
        estimate: statistic on the original data (float or array).
        low, high: interval bounds (same shape as ``estimate``).
        level: confidence level, e.g. 0.95.
        samples: bootstrap replicates, shape ``(n_boot, *estimate.shape)``.
    """

    estimate: Any
    low: Any
    high: Any
    level: float
    samples: np.ndarray

    @property
    def n_boot(self) -> int:
        """Number of bootstrap replicates."""
        return int(self.samples.shape[0])

    @property
    def se(self) -> Any:
        """Bootstrap standard error (standard deviation of the replicates)."""
        return np.nanstd(self.samples, axis=0, ddof=1)


@dataclass(frozen=True)
class PermutationResult:
    """Observed value, shuffled-row null distribution and permutation p-value.

    Attributes:
        observed: the measure on the aligned rows.
        null: ``(n_perm,)`` values with one representation's rows permuted.
        p_value: one-sided ``(1 + #{null >= observed}) / (1 + n_perm)``.
    """

    observed: float
    null: np.ndarray
    p_value: float

    @property
    def null_mean(self) -> float:
        """Mean of the null distribution (the chance level of the measure at this n, d)."""
        return float(np.mean(self.null))

    @property
    def null_quantile_95(self) -> float:
        """95th percentile of the null."""
        return float(np.quantile(self.null, 0.95))


def _check_common(n_boot: int, level: float) -> None:
    if int(n_boot) < 1:
        raise ValueError(f"n_boot/n_perm must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def percentile_ci(samples: Any, level: float = 0.95, axis: int = 0) -> tuple[Any, Any]:
    """Percentile interval ``(q_{(1-level)/2}, q_{(1+level)/2})`` of ``samples`` along ``axis``.

    NaN replicates are ignored. Raises ValueError if ``level`` is not in (0, 1).
    """
    _check_common(1, level)
    a = np.asarray(samples, dtype=np.float64)
    alpha = (1.0 - level) / 2.0
    lo = np.nanquantile(a, alpha, axis=axis)
    hi = np.nanquantile(a, 1.0 - alpha, axis=axis)
    if np.ndim(lo) == 0:
        return float(lo), float(hi)
    return lo, hi


# --------------------------------------------------------------------------------------------
# Resampling examples (from Grams)
# --------------------------------------------------------------------------------------------


def _grams_measure(measure: str, options: dict[str, Any]) -> Callable[[np.ndarray, np.ndarray], float]:
    """Measure on two *centred, finite, aligned* float64 Grams; fast paths for linear CKA."""
    m = get_measure(measure)
    if m.grams is None:
        raise ValueError(f"measure {m.name!r} needs the feature matrices; bootstraps here use Grams")
    if m.name == "linear_cka" and not options:
        def f(Kx: np.ndarray, Ky: np.ndarray) -> float:
            Kx = _center_gram_inplace(Kx)
            Ky = _center_gram_inplace(Ky)
            den = np.sqrt(_inner(Kx, Kx) * _inner(Ky, Ky))
            return float(_inner(Kx, Ky) / den) if den > 0 else float("nan")

        return f
    return lambda Kx, Ky: m.from_grams(Kx, Ky, **options)


def _resample_indices(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    return rng.integers(0, n, size=(n_boot, n))


def bootstrap_examples(
    Kx: Any,
    Ky: Any,
    *,
    measure: str = "linear_cka",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
    **options: Any,
) -> BootstrapResult:
    """Bootstrap CI of one comparison, resampling examples jointly in both representations.

    Args:
        Kx, Ky: ``(n, n)`` centred linear Grams of the same examples (e.g. from
            :class:`~layerwise.similarity.GramCache`); non-finite examples dropped jointly.
        measure: a Gram-form registry name. n_boot: replicates. level: confidence level.
        seed: RNG seed. **options: measure options.

    Returns:
        BootstrapResult with float estimate/low/high and ``(n_boot,)`` samples.

    Raises:
        ValueError: bad level/n_boot; measure without a Gram form; see the measure.
        KeyError: unknown measure.
    """
    _check_common(n_boot, level)
    m = get_measure(measure)
    Kx, Ky, _ = _prepare_grams(Kx, Ky, min_rows=m.min_rows, what=f"bootstrap_examples({m.name})")
    f = _grams_measure(m.name, options)
    est = f(Kx.copy(), Ky.copy())
    rng = np.random.default_rng(seed)
    samples = np.empty(int(n_boot))
    for b, idx in enumerate(_resample_indices(rng, Kx.shape[0], int(n_boot))):
        sub = np.ix_(idx, idx)
        samples[b] = f(Kx[sub], Ky[sub])
    lo, hi = percentile_ci(samples, level)
    return BootstrapResult(est, lo, hi, level, samples)


def bootstrap_examples_by_layer(
    GA: Any,
    GB: Any,
    *,
    measure: str = "linear_cka",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
    **options: Any,
) -> BootstrapResult:
    """Bootstrap CIs of a whole layer curve, the same resampled examples at every layer.

    Args:
        GA, GB: ``(n_layers, n, n)`` centred Grams of two models (same examples). Examples that
            are non-finite in any layer of either are dropped first (jointly).

    Returns:
        BootstrapResult with ``(n_layers,)`` estimate/low/high and ``(n_boot, n_layers)`` samples.
    """
    _check_common(n_boot, level)
    GA = as_float64(GA, "GA", ndim=3)
    GB = as_float64(GB, "GB", ndim=3)
    if GA.shape != GB.shape:
        raise ValueError(f"GA and GB must have the same shape, got {GA.shape} and {GB.shape}")
    ok = np.isfinite(np.diagonal(GA, axis1=1, axis2=2)).all(0) & np.isfinite(
        np.diagonal(GB, axis1=1, axis2=2)
    ).all(0)
    if not ok.all():
        GA, GB = GA[:, ok][:, :, ok], GB[:, ok][:, :, ok]
    m = get_measure(measure)
    f = _grams_measure(m.name, options)
    L, n = GA.shape[0], GA.shape[1]
    est = np.array([f(GA[i].copy(), GB[i].copy()) for i in range(L)])
    rng = np.random.default_rng(seed)
    samples = np.empty((int(n_boot), L))
    for b, idx in enumerate(_resample_indices(rng, n, int(n_boot))):
        sub = np.ix_(idx, idx)
        for i in range(L):
            samples[b, i] = f(GA[i][sub], GB[i][sub])
    lo, hi = percentile_ci(samples, level)
    return BootstrapResult(est, lo, hi, level, samples)


def bootstrap_delta(
    Ka: Any,
    Kb: Any,
    Kc: Any,
    *,
    measure: str = "linear_cka",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
    **options: Any,
) -> BootstrapResult:
    """Paired bootstrap CI of ``m(Ka, Kc) - m(Kb, Kc)`` on the same resampled examples.

    E.g. ``Ka`` = SFT, ``Kb`` = PT, ``Kc`` = control: Delta CKA of the paper's Fig. 3, whose
    sign decides the shared band (SFT < PT) versus the refinement band.

    Args:
        Ka, Kb, Kc: ``(n, n)`` centred Grams of three models on the same examples.

    Returns:
        BootstrapResult of the difference (float estimate, ``(n_boot,)`` samples).
    """
    _check_common(n_boot, level)
    m = get_measure(measure)
    Ka, Kc1, _ = _prepare_grams(Ka, Kc, min_rows=m.min_rows, what="bootstrap_delta")
    Kb, Kc2, _ = _prepare_grams(Kb, Kc, min_rows=m.min_rows, what="bootstrap_delta")
    if Kc1.shape != Kc2.shape:
        raise ValueError("bootstrap_delta: Ka and Kb mark different non-finite examples; align them first")
    f = _grams_measure(m.name, options)
    est = f(Ka.copy(), Kc1.copy()) - f(Kb.copy(), Kc1.copy())
    rng = np.random.default_rng(seed)
    samples = np.empty(int(n_boot))
    for b, idx in enumerate(_resample_indices(rng, Ka.shape[0], int(n_boot))):
        sub = np.ix_(idx, idx)
        c = Kc1[sub]
        samples[b] = f(Ka[sub], c.copy()) - f(Kb[sub], c)
    lo, hi = percentile_ci(samples, level)
    return BootstrapResult(est, lo, hi, level, samples)


# --------------------------------------------------------------------------------------------
# Resampling tasks
# --------------------------------------------------------------------------------------------


def bootstrap_tasks(
    values: Any,
    *,
    statistic: Callable[..., Any] = np.nanmean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int | None = 0,
) -> BootstrapResult:
    """Bootstrap CI of an aggregate over tasks, resampling tasks (rows) with replacement.

    Args:
        values: ``(n_tasks,)`` or ``(n_tasks, n_layers, ...)`` per-task values (e.g. CKA per task
            and layer). NaN entries are ignored by the default ``np.nanmean``.
        statistic: ``f(array, axis=0)`` aggregating over tasks (default ``np.nanmean``; e.g.
            ``np.nanmedian``).

    Returns:
        BootstrapResult; estimate/low/high have the shape of ``values[0]``.

    Raises:
        ValueError: fewer than 2 tasks; bad level/n_boot.
    """
    _check_common(n_boot, level)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0 or v.shape[0] < 2:
        raise ValueError(f"bootstrap_tasks needs at least 2 tasks (rows), got shape {v.shape}")
    est = statistic(v, axis=0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.shape[0], size=(int(n_boot), v.shape[0]))
    samples = np.stack([statistic(v[i], axis=0) for i in idx])
    lo, hi = percentile_ci(samples, level)
    if np.ndim(est) == 0:
        est = float(est)
    return BootstrapResult(est, lo, hi, level, samples)


def bootstrap_cluster_means(
    values: Any,
    clusters: Sequence[str],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int | None = 0,
) -> dict[str, BootstrapResult]:
    """Per-cluster mean over tasks with a CI from resampling tasks *within* each cluster.

    Args:
        values: ``(n_tasks, ...)`` per-task values (e.g. ``(n_tasks, n_layers)``).
        clusters: length ``n_tasks`` cluster label per task.

    Returns:
        dict cluster -> BootstrapResult (a single-task cluster gets a zero-width interval).

    Raises:
        ValueError: ``len(clusters) != n_tasks``.
    """
    _check_common(n_boot, level)
    v = np.asarray(values, dtype=np.float64)
    labels = np.asarray(list(clusters), dtype=object)
    if labels.shape[0] != v.shape[0]:
        raise ValueError(f"clusters has {labels.shape[0]} labels for {v.shape[0]} tasks")
    out: dict[str, BootstrapResult] = {}
    for k, c in enumerate(sorted(set(labels.tolist()))):
        sub = v[labels == c]
        if sub.shape[0] == 1:
            est = sub[0] if sub.ndim > 1 else float(sub[0])
            out[c] = BootstrapResult(est, est, est, level, np.repeat(sub, int(n_boot), axis=0))
        else:
            s = None if seed is None else seed + k
            out[c] = bootstrap_tasks(sub, n_boot=n_boot, level=level, seed=s)
    return out


# --------------------------------------------------------------------------------------------
# Shuffled-row null
# --------------------------------------------------------------------------------------------


def shuffle_rows(X: Any, seed: int | None = 0) -> np.ndarray:
    """A row-permuted float64 copy of ``X (n, d)``: the shuffled-example baseline representation."""
    X = as_float64(X, "X")
    return X[np.random.default_rng(seed).permutation(X.shape[0])]


def permutation_null(
    Kx: Any,
    Ky: Any,
    *,
    measure: str = "linear_cka",
    n_perm: int = 1000,
    seed: int | None = 0,
    **options: Any,
) -> PermutationResult:
    """Shuffled-row null of a comparison: permute the examples of Y relative to X.

    Under the null hypothesis that the two representations share no example-level structure,
    the measure is exchangeable under row permutations; the null distribution shows the value
    the estimator gives by chance at this n and d (large for biased CKA when n < d,
    about 0 for debiased CKA).

    Args:
        Kx, Ky: ``(n, n)`` centred Grams (non-finite examples dropped jointly).
        measure: Gram-form registry name. n_perm: permutations. seed: RNG seed.

    Returns:
        PermutationResult(observed, null (n_perm,), p_value).
    """
    _check_common(n_perm, 0.5)
    m = get_measure(measure)
    Kx, Ky, _ = _prepare_grams(Kx, Ky, min_rows=m.min_rows, what=f"permutation_null({m.name})")
    rng = np.random.default_rng(seed)
    n = Kx.shape[0]
    null = np.empty(int(n_perm))
    if m.name in ("linear_cka", "debiased_cka") and not options:
        # permuting rows and columns commutes with (U-)centring: centre once, then gather
        if m.name == "debiased_cka":
            Kx, Ky = unbiased_center_gram(Kx), unbiased_center_gram(Ky)
        den = float(np.sqrt(_inner(Kx, Kx) * _inner(Ky, Ky)))
        if not den > 0:
            raise ValueError(f"permutation_null({m.name}): zero or negative self-similarity")
        observed = float(_inner(Kx, Ky)) / den
        for b in range(int(n_perm)):
            p = rng.permutation(n)
            null[b] = float(_inner(Kx, Ky[np.ix_(p, p)])) / den
    else:
        observed = m.from_grams(Kx, Ky, **options)
        for b in range(int(n_perm)):
            p = rng.permutation(n)
            null[b] = m.from_grams(Kx, Ky[np.ix_(p, p)], **options)
    p_value = (1.0 + float(np.sum(null >= observed - 1e-12))) / (1.0 + int(n_perm))
    return PermutationResult(observed, null, p_value)
