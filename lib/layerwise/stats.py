"""Uncertainty and baselines for similarity numbers: bootstraps and permutation nulls.

* :func:`bootstrap_examples` -- confidence interval of one comparison by resampling examples
  (rows) with replacement, the same rows in both representations (Efron & Tibshirani 1993,
  percentile interval). Works from cached centred Grams: resampling rows of ``X`` is
  ``K[idx][:, idx]`` followed by re-centring, so no hidden states are reloaded.
  The same function takes whole layer curves (the *same* resampled examples at every layer) and
  paired differences of two comparisons on the same examples, e.g. Delta CKA = CKA(SFT, C) -
  CKA(PT, C) (paper Fig. 3).
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
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from layerwise.similarity.arrays import as_float64, report_dropped
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


def percentile_ci(samples: ArrayLike, level: float = 0.95, axis: int = 0) -> tuple[Any, Any]:
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


def _resample_indices(rng: np.random.Generator, n: int, n_boot: int) -> NDArray[np.float64]:
    return rng.integers(0, n, size=(n_boot, n))


def _bootstrap_grams(
    statistic: Callable[[tuple[np.ndarray, np.ndarray]], Any], estimate: Any, n: int, n_boot: int, level: float,
    seed: int | None,
) -> BootstrapResult:
    """Resample ``n`` examples ``n_boot`` times; ``statistic(sub)`` gets the ``np.ix_`` rows/columns of one draw.

    ``estimate`` is the statistic on all examples (a float or an array); the samples have shape
    ``(n_boot, *np.shape(estimate))`` and the interval is :func:`percentile_ci` at ``level``.
    """
    rng = np.random.default_rng(seed)
    samples = np.empty((int(n_boot), *np.shape(estimate)))
    for b, idx in enumerate(_resample_indices(rng, n, int(n_boot))):
        samples[b] = statistic(np.ix_(idx, idx))
    lo, hi = percentile_ci(samples, level)
    return BootstrapResult(estimate, lo, hi, level, samples)


def _gram_stacks(grams: Sequence[tuple[str, ArrayLike]], min_rows: int, what: str) -> list[NDArray[np.float64]]:
    """Float64 ``(n_layers, n, n)`` stacks of same-shape Grams (an ``(n, n)`` Gram is one layer), with
    the examples non-finite in any layer of any Gram dropped jointly and every layer re-centred."""
    stacks = []
    for name, K in grams:
        a = as_float64(K, name, ndim=3 if np.ndim(K) == 3 else 2)
        a = a[None] if a.ndim == 2 else a
        if a.shape[1] != a.shape[2]:
            raise ValueError(f"{what}: {name} must be an (n, n) Gram or an (n_layers, n, n) stack, got shape {a.shape}")
        if stacks and a.shape != stacks[0].shape:
            raise ValueError(f"{what}: {grams[0][0]} and {name} must have the same shape, got "
                             f"{stacks[0].shape} and {a.shape}")
        stacks.append(a)
    ok = np.logical_and.reduce([np.isfinite(np.diagonal(a, axis1=1, axis2=2)).all(0) for a in stacks])
    if report_dropped(ok, what, stacklevel=4).n_dropped:
        stacks = [a[:, ok][:, :, ok] for a in stacks]
    if not all(np.isfinite(a).all() for a in stacks):
        raise ValueError(f"{what}: Gram matrices have non-finite off-diagonal entries with a finite diagonal; "
                         "mark a non-finite example with a NaN row and column (as centered_gram does)")
    if stacks[0].shape[1] < min_rows:
        raise ValueError(f"{what} needs at least {min_rows} rows (examples), got {stacks[0].shape[1]}")
    return [np.stack([_center_gram_inplace(layer) for layer in a]) for a in stacks]


def bootstrap_examples(
    Ka: ArrayLike,
    Kb: ArrayLike,
    *,
    against: ArrayLike | None = None,
    measure: str = "linear_cka",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
    **options: Any,
) -> BootstrapResult:
    """Bootstrap CI of a comparison, a layer curve or a paired difference, resampling examples.

    Each replicate draws ``n`` examples with replacement (Efron & Tibshirani 1993, percentile
    interval) and uses the same draw in every Gram and at every layer, so the layers of a curve and
    the two sides of a difference stay paired.

    Args:
        Ka, Kb: centred linear Grams of the same examples (e.g. from
            :class:`~layerwise.similarity.GramCache`), float ``(n, n)`` for one comparison or
            ``(n_layers, n, n)`` for a whole layer curve. Examples that are non-finite in any layer
            of any Gram are dropped first (jointly, with a warning).
        against: None: the statistic is ``m(Ka, Kb)``. A third Gram of the same shape: the
            statistic is the paired difference ``m(Ka, against) - m(Kb, against)``; with ``Ka`` =
            SFT, ``Kb`` = PT and ``against`` = control it is Delta CKA of the paper's Fig. 3, whose
            sign separates the shared band (SFT < PT) from the refinement band.
        measure: a registry name with a Gram form. n_boot: replicates. level: confidence level.
        seed: RNG seed. **options: measure options.

    Returns:
        BootstrapResult: float estimate/low/high and ``(n_boot,)`` samples for ``(n, n)`` Grams;
        ``(n_layers,)`` and ``(n_boot, n_layers)`` for stacks.

    Raises:
        ValueError: bad level/n_boot; Grams of other shapes or not square; fewer examples than the
            measure needs; a measure without a Gram form.
        KeyError: unknown measure.
    """
    _check_common(n_boot, level)
    m = get_measure(measure)
    f = _grams_measure(m.name, options)
    given = [("Ka", Ka), ("Kb", Kb)] + ([] if against is None else [("against", against)])
    single = np.ndim(Ka) == 2
    stacks = _gram_stacks(given, m.min_rows, f"bootstrap_examples({m.name})")
    A, B, C = stacks[0], stacks[1], (stacks[2] if against is not None else None)
    L, n = A.shape[0], A.shape[1]

    def one(i: int, sub: Any = None) -> float:  # f may centre in place: it gets copies
        a, b = (A[i].copy(), B[i].copy()) if sub is None else (A[i][sub], B[i][sub])
        if C is None:
            return f(a, b)
        c = C[i].copy() if sub is None else C[i][sub]
        return f(a, c.copy()) - f(b, c)

    def statistic(sub: Any) -> list[float]:
        return [one(i, sub) for i in range(L)]

    est = np.array([one(i) for i in range(L)])
    res = _bootstrap_grams(statistic, est, n, n_boot, level, seed)
    if not single:
        return res
    return BootstrapResult(float(res.estimate[0]), float(res.low[0]), float(res.high[0]), level, res.samples[:, 0])


# --------------------------------------------------------------------------------------------
# Resampling tasks
# --------------------------------------------------------------------------------------------


def bootstrap_tasks(
    values: ArrayLike,
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
    values: ArrayLike,
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


def shuffle_rows(X: ArrayLike, seed: int | None = 0) -> NDArray[np.float64]:
    """A row-permuted float64 copy of ``X (n, d)``: the shuffled-example baseline representation."""
    X = as_float64(X, "X")
    return X[np.random.default_rng(seed).permutation(X.shape[0])]


__all__ += ["shuffled_row_null"]


def shuffled_row_null(
    measure: str,
    G_model: NDArray[np.floating],
    G_control: NDArray[np.floating],
    perms: Sequence[NDArray[np.integer]],
) -> NDArray[np.float64]:
    """Per-layer shuffled-row null of a model-vs-control comparison: the mean over permutations.

    For every layer ``l`` and permutation ``p`` the rows *and* columns of the model's centred Gram
    are permuted, ``G_model[l][p][:, p]`` (the Gram of the model's hidden states with the examples
    shuffled), and compared with the control's unpermuted Gram ``G_control[l]``; the values are
    averaged over the permutations. This is the value the estimator gives when the examples of the
    two models are not paired at all (the chance level of the measure at this ``n`` and ``d``),
    the "shuffled <role> vs control" rows of the similarity table. Permuting the rows of a
    centred Gram keeps it centred, so no re-centring is needed. For a p-value of one comparison,
    see :func:`permutation_null`.

    The caller draws the permutations (e.g. ``[rng.permutation(n) for _ in range(n_null)]``),
    so one generator can serve many comparisons in a fixed order, and the same permutations can
    be reused for several measures.

    Args:
        measure: Gram-form registry name (see :func:`layerwise.similarity.get_measure`),
            e.g. ``"linear_cka"`` or ``"debiased_cka"``.
        G_model: ``(n_layers, n, n)`` centred linear Grams of the model compared (float32 or float64).
        G_control: ``(n_layers, n, n)`` centred linear Grams of the control, same examples and order.
        perms: permutations of ``range(n)``, each an ``(n,)`` integer array.

    Returns:
        ``(n_layers,)`` float64: per layer, the mean of the measure over ``perms``.

    Raises:
        KeyError: unknown measure (the message lists the valid names).
        ValueError: the measure has no Gram form, ``perms`` is empty, or the Gram stacks differ
            in shape or are not ``(n_layers, n, n)``.
    """
    m = get_measure(measure)
    if not m.uses_grams:
        raise ValueError(f"measure={measure!r} needs the feature matrices, not Grams; shuffled_row_null needs a Gram form")
    if len(perms) == 0:
        raise ValueError("perms is empty; pass at least one permutation of range(n)")
    if G_model.ndim != 3 or G_model.shape != G_control.shape or G_model.shape[1] != G_model.shape[2]:
        raise ValueError(f"G_model {G_model.shape} and G_control {G_control.shape} must both be (n_layers, n, n)")
    out = np.empty(G_model.shape[0], dtype=np.float64)
    for layer in range(G_model.shape[0]):
        vals = [m.from_grams(G_model[layer][np.ix_(p, p)], G_control[layer]) for p in perms]
        out[layer] = float(np.mean(vals))
    return out


def permutation_null(
    Kx: ArrayLike,
    Ky: ArrayLike,
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


# --------------------------------------------------------------------------------------------
# Inference at small numbers of tasks and seeds (the findings' verdicts)
# --------------------------------------------------------------------------------------------
#
# With 12 or fewer tasks a percentile bootstrap over tasks is too narrow (with 3 tasks its 95 %
# interval is [min, max]). The functions below are valid at that size: exact randomization
# intervals and tests (sign flips, two-sample permutations), the bias-corrected and accelerated
# (BCa) bootstrap where no exact method exists, a hierarchical bootstrap over seeds and tasks,
# and the minimal detectable effect at a run's size.

#: Largest number of tasks for which the exact small-sample methods are used (2**12 sign patterns).
MAX_EXACT_TASKS = 12


@dataclass(frozen=True)
class Interval:
    """A point estimate with an interval, and what the interval accounts for.

    Attributes:
        estimate: the statistic on the data.
        low, high: interval bounds (``-inf``/``inf`` when no finite interval reaches the level at
            this size; NaN when there is no data for one).
        level: nominal confidence level.
        method: what the interval resamples or enumerates, in words (shown in the book).
        se: standard error of the statistic (NaN when unknown); the minimal detectable effect uses it.
        n: number of units (tasks) behind it.
    """

    estimate: float
    low: float
    high: float
    level: float
    method: str
    se: float = float("nan")
    n: int = 0


@dataclass(frozen=True)
class HierarchicalBootstrapResult(BootstrapResult):
    """:class:`BootstrapResult` of :func:`hierarchical_bootstrap`, with the design it resampled.

    Attributes:
        n_seeds, n_tasks: numbers of seeds and tasks in the table.
        levels: the resampled levels, outermost first (e.g. ``("seed", "task")``).
        includes_seed_noise: False when the table has one seed (the interval then shows task
            noise only, and says so).
    """

    n_seeds: int = 1
    n_tasks: int = 0
    levels: tuple[str, ...] = ()
    includes_seed_noise: bool = False


def _finite_1d(values: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def exact_sign_flip_interval(values: ArrayLike, level: float = 0.95) -> tuple[float, float]:
    """Exact confidence interval for the centre of a symmetric distribution from subset means.

    The ``2**n - 1`` means of the non-empty subsets of ``n`` values cut the line into ``2**n``
    pieces, each of which holds the centre with probability ``1 / 2**n`` when the values are
    independent and symmetric about it (Hartigan 1969, "Using subsample values as typical
    values", JASA 64). The interval from the ``k``-th smallest to the ``k``-th largest subset mean,
    ``k = floor(2**n (1 - level) / 2)``, has coverage ``1 - 2k / 2**n >= level``. It is the
    inversion of the exact sign-flip randomization test of the mean (:func:`sign_flip_test`).

    Args:
        values: ``(n,)`` per-task values; non-finite entries are dropped. ``n <= 20``.
        level: confidence level in (0, 1).

    Returns:
        ``(low, high)``; ``(-inf, inf)`` when ``k = 0``, i.e. no finite interval reaches the
        level with so few values (``n <= 5`` at 95 %); ``(nan, nan)`` with no value.

    Raises:
        ValueError: ``level`` not in (0, 1); more than 20 values (use :func:`bca_interval`).
    """
    _check_common(1, level)
    v = _finite_1d(values)
    n = v.size
    if n > 20:
        raise ValueError(f"exact_sign_flip_interval enumerates 2**n subsets; n = {n} > 20 (use bca_interval)")
    if n == 0:
        return float("nan"), float("nan")
    k = int(np.floor((2.0**n) * (1.0 - level) / 2.0 + 1e-12))
    if k == 0:
        return float("-inf"), float("inf")
    masks = ((np.arange(1, 2**n)[:, None] >> np.arange(n)) & 1).astype(np.float64)
    means = np.sort((masks @ v) / masks.sum(axis=1))
    return float(means[k - 1]), float(means[-k])


def sign_flip_test(values: ArrayLike, *, alternative: str = "two-sided", n_resamples: int = 9999,
                   seed: int | None = 0) -> float:
    """p-value of the sign-flip randomization test that the values are symmetric about 0.

    Statistic: the mean. Exact (all ``2**n`` sign patterns) when ``2**n <= n_resamples + 1``,
    else a Monte Carlo test with ``n_resamples`` random patterns; computed by
    ``scipy.stats.permutation_test`` (one sample, ``permutation_type="samples"``; Fisher 1935,
    Pitman 1937).

    Args:
        values: ``(n,)`` values (non-finite dropped), ``n >= 1``.
        alternative: ``"two-sided"``, ``"greater"`` (mean > 0) or ``"less"``.

    Returns:
        the p-value (float in (0, 1]).

    Raises:
        ValueError: no finite value; bad ``alternative``.
    """

    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    v = _finite_1d(values)
    if v.size == 0:
        raise ValueError("sign_flip_test needs at least one finite value")
    res = sps.permutation_test((v,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                               vectorized=True, n_resamples=n_resamples, alternative=alternative,
                               rng=np.random.default_rng(seed))
    return float(res.pvalue)


def sign_test(values: ArrayLike, *, alternative: str = "two-sided") -> tuple[int, int, float]:
    """Exact sign test of a zero median: how many values are above 0, and the binomial p-value.

    Zeros are dropped (Dixon & Mood 1946); the p-value is ``scipy.stats.binomtest(k, n, 0.5)``.

    Args:
        values: ``(n,)`` values (non-finite dropped).
        alternative: ``"two-sided"``, ``"greater"`` (median > 0) or ``"less"``.

    Returns:
        ``(n_above, n_nonzero, p_value)``; p is 1.0 when no value is non-zero.

    Raises:
        ValueError: bad ``alternative``.
    """

    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    v = _finite_1d(values)
    v = v[v != 0]
    k = int((v > 0).sum())
    if v.size == 0:
        return 0, 0, 1.0
    return k, int(v.size), float(sps.binomtest(k, int(v.size), 0.5, alternative=alternative).pvalue)


def bca_interval(samples: Sequence[ArrayLike], statistic: Callable[..., Any], *, n_boot: int = 2000,
                 level: float = 0.95, seed: int | None = 0, paired: bool = False) -> BootstrapResult:
    """Bias-corrected and accelerated (BCa) bootstrap interval (Efron 1987), by ``scipy.stats.bootstrap``.

    BCa corrects the percentile interval for the bias and skewness of the statistic's
    distribution (second-order accurate), which matters with few units.

    Args:
        samples: one or more arrays whose first axis is the resampled unit (e.g. ``(n_tasks,)``
            or ``(n_tasks, n_layers)``); independent samples are resampled separately unless
            ``paired``.
        statistic: ``f(*samples, axis=0) -> float``, vectorized along ``axis``.
        n_boot: replicates. level: confidence level. seed: RNG seed.
        paired: resample the samples' rows together (e.g. ``x, y`` of a correlation).

    Returns:
        BootstrapResult with float estimate/low/high and ``(n_boot,)`` replicates. The bounds are
        NaN when BCa is undefined (all replicates equal, or fewer than 2 units in a sample).

    Raises:
        ValueError: bad ``n_boot``/``level``.
    """
    import warnings

    _check_common(n_boot, level)
    data = tuple(np.asarray(s, dtype=np.float64) for s in samples)
    est = float(statistic(*data, axis=0))
    if min(d.shape[0] for d in data) < 2:
        return BootstrapResult(est, float("nan"), float("nan"), level, np.empty(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # degenerate replicates: NaN bounds below
        warnings.simplefilter("ignore", category=sps.DegenerateDataWarning)
        res = sps.bootstrap(data, statistic, n_resamples=int(n_boot), confidence_level=level, method="BCa",
                            paired=paired, vectorized=True, axis=0, rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return BootstrapResult(est, lo, hi, level, np.asarray(res.bootstrap_distribution, dtype=np.float64))


def location_interval(values: ArrayLike, *, level: float = 0.95, n_boot: int = 2000, seed: int | None = 0,
                      max_exact: int = MAX_EXACT_TASKS) -> Interval:
    """Interval for the mean over tasks that is valid at the run's number of tasks.

    ``n <= max_exact``: the exact sign-flip interval (:func:`exact_sign_flip_interval`; exact
    when the per-task values are symmetric about their centre); more tasks: the BCa bootstrap
    over tasks (:func:`bca_interval`). The standard error is ``sd / sqrt(n)``.

    Args:
        values: ``(n_tasks,)`` per-task values (non-finite dropped).

    Returns:
        :class:`Interval` (NaN bounds with fewer than 2 values).
    """
    v = _finite_1d(values)
    n = v.size
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), level, "no task", n=0)
    est = float(v.mean())
    se = float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    if n < 2:
        return Interval(est, float("nan"), float("nan"), level, "no interval (fewer than 2 tasks)", se, n)
    if n <= max_exact:
        lo, hi = exact_sign_flip_interval(v, level)
        return Interval(est, lo, hi, level, f"exact sign-flip interval over {n} tasks", se, n)
    b = bca_interval((v,), lambda x, axis: np.mean(x, axis=axis), n_boot=n_boot, level=level, seed=seed)
    return Interval(est, float(b.low), float(b.high), level, f"BCa bootstrap over {n} tasks", se, n)


def permutation_shift_interval(x: ArrayLike, y: ArrayLike, *, level: float = 0.95, n_resamples: int = 9999,
                               seed: int | None = 0) -> tuple[float, float]:
    """Interval for a shift ``mean(x) - mean(y)`` by inverting the two-sample permutation test.

    The bound ``δ`` is where the one-sided permutation test of the mean difference of ``x - δ``
    and ``y`` reaches ``(1 - level) / 2`` (the shift model; Lehmann 1975, ch. 2); found by
    bisection. The test's p-value is ``#{splits with statistic >= observed} / #splits`` over all
    ``C(n_x + n_y, n_x)`` splits when there are at most ``n_resamples`` of them (exact, as
    ``scipy.stats.permutation_test(..., permutation_type="independent")`` computes it), else over
    ``n_resamples`` random splits plus the observed one. The splits are enumerated once and
    reused for every ``δ``.

    Args:
        x, y: ``(n_x,)`` and ``(n_y,)`` values (non-finite dropped).
        level: confidence level. n_resamples: most splits enumerated. seed: RNG seed (random splits).

    Returns:
        ``(low, high)``; infinite when even the most extreme split does not reach the level
        (``1 / C(n_x + n_y, n_x) > (1 - level) / 2``); NaN when a sample is empty.
    """
    from itertools import combinations
    from math import comb

    _check_common(1, level)
    a, b = _finite_1d(x), _finite_1d(y)
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    na, n = a.size, a.size + b.size
    if 1.0 / comb(n, na) > alpha:
        return float("-inf"), float("inf")
    if comb(n, na) <= n_resamples:
        groups = np.array(list(combinations(range(n), na)))
    else:
        rng = np.random.default_rng(seed)
        groups = np.vstack([np.arange(na)[None, :], np.argsort(rng.random((int(n_resamples), n)), axis=1)[:, :na]])
    M = np.zeros((groups.shape[0], n))
    np.put_along_axis(M, groups, 1.0, axis=1)
    W = M / na - (1.0 - M) / (n - na)  # statistic of a split: W @ pooled
    is_a = np.r_[np.ones(na), np.zeros(b.size)]
    pooled0 = np.r_[a, b]

    def p(delta: float, alternative: str) -> float:
        pooled = pooled0 - delta * is_a
        obs = pooled[:na].mean() - pooled[na:].mean()
        t = W @ pooled
        tol = 1e-12 * max(1.0, abs(obs))
        hits = (t >= obs - tol) if alternative == "greater" else (t <= obs + tol)
        return float(hits.mean())

    est = float(a.mean() - b.mean())
    span = float(np.ptp(pooled0)) + abs(est) + 1e-12

    def bound(alternative: str, far: float) -> float:
        inside, outside = est, far  # p(inside) > alpha >= p(outside)
        while p(outside, alternative) > alpha:
            outside = est + 2 * (outside - est)
        for _ in range(60):
            mid = 0.5 * (inside + outside)
            if p(mid, alternative) > alpha:
                inside = mid
            else:
                outside = mid
        return 0.5 * (inside + outside)

    return bound("greater", est - 2 * span), bound("less", est + 2 * span)


def hierarchical_bootstrap(table: "pd.DataFrame", *, value: str = "value", n_boot: int = 2000, level: float = 0.95,
                           seed: int | None = 0) -> HierarchicalBootstrapResult:
    """Bootstrap of a grand mean over seeds and tasks (and examples), resampling seeds, then tasks.

    Seeds and tasks are crossed (every adapter seed is measured on every task): a replicate
    draws seeds with replacement and then tasks with replacement, the same task draw within
    every drawn seed (the two-way "pigeonhole" bootstrap of Owen 2007, Ann. Appl. Stat. 1; as in
    Davison & Hinkley 1997, §3.8, for nested designs). When the table has an ``example`` column,
    the examples of each (seed, task) cell are resampled too, inside each replicate. An interval
    that resamples tasks only cannot see the noise one seed shares across all tasks (one SFT
    adapter moves every task at once); this one can, when there are several seeds.

    Args:
        table: DataFrame with columns ``task`` and ``value`` (the name given by ``value``), and
            optionally ``seed`` (the experimental adapter's seed; a table without it, or with one
            seed, is one seed) and ``example``. One row per (seed, task), or per (seed, task,
            example) with an ``example`` column. Cells are averaged first.
        value: name of the value column. n_boot: replicates. level: confidence level.
        seed: RNG seed (of the bootstrap, not an adapter seed).

    Returns:
        :class:`HierarchicalBootstrapResult` with the grand mean (mean over seeds of the mean
        over tasks) and its percentile interval; ``includes_seed_noise`` is False with one seed.

    Raises:
        ValueError: missing ``task``/value column; no finite value; bad ``n_boot``/``level``.
    """
    import pandas as pd

    _check_common(n_boot, level)
    if not isinstance(table, pd.DataFrame) or "task" not in table or value not in table:
        raise ValueError(f"hierarchical_bootstrap needs a DataFrame with columns 'task' and {value!r}; "
                         f"got {list(getattr(table, 'columns', []))}")
    df = table[np.isfinite(table[value].to_numpy(dtype=np.float64))]
    if df.empty:
        raise ValueError("hierarchical_bootstrap: no finite value")
    df = df.assign(seed=df["seed"] if "seed" in df else 0)
    seeds = sorted(df["seed"].unique().tolist())
    tasks = sorted(df["task"].unique().tolist())
    S, T = len(seeds), len(tasks)
    si = {s: i for i, s in enumerate(seeds)}
    ti = {t: i for i, t in enumerate(tasks)}
    rng = np.random.default_rng(seed)
    B = int(n_boot)
    if "example" in df:
        cells = df.groupby(["seed", "task"])[value].apply(lambda s: s.to_numpy(dtype=np.float64))
        nmax = int(max(len(c) for c in cells))
        vals = np.full((S, T, nmax), np.nan)
        counts = np.zeros((S, T), dtype=np.int64)
        for (s, t), c in cells.items():
            vals[si[s], ti[t], :len(c)] = c
            counts[si[s], ti[t]] = len(c)
        cell = np.where(counts > 0, np.nansum(vals, axis=2) / np.maximum(counts, 1), np.nan)
    else:
        cell = np.full((S, T), np.nan)
        for (s, t), v in df.groupby(["seed", "task"])[value].mean().items():
            cell[si[s], ti[t]] = v
        vals = counts = None
    est = float(np.nanmean(np.nanmean(cell, axis=1)))
    samples = np.empty(B)
    chunk = max(1, 200_000 // max(1, S * T * (vals.shape[2] if vals is not None else 1)))
    for start in range(0, B, chunk):
        nb = min(chunk, B - start)
        ds = rng.integers(0, S, size=(nb, S)) if S > 1 else np.zeros((nb, 1), dtype=np.int64)
        dt = rng.integers(0, T, size=(nb, T))
        if vals is None:
            m = cell[ds[:, :, None], dt[:, None, :]]  # (nb, S, T)
        else:
            n_c = counts[ds[:, :, None], dt[:, None, :]]  # (nb, S, T)
            u = rng.random((nb, S, T, vals.shape[2]))
            idx = np.minimum((u * n_c[..., None]).astype(np.int64), vals.shape[2] - 1)
            picked = vals[ds[:, :, None, None], dt[:, None, :, None], idx]
            keep = np.arange(vals.shape[2])[None, None, None, :] < n_c[..., None]
            m = np.where(n_c > 0, np.where(keep, picked, 0.0).sum(axis=3) / np.maximum(n_c, 1), np.nan)
        with np.errstate(invalid="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=RuntimeWarning)  # an all-NaN draw gives NaN
                samples[start:start + nb] = np.nanmean(np.nanmean(m, axis=2), axis=1)
    lo, hi = percentile_ci(samples, level)
    levels = (("seed",) if S > 1 else ()) + ("task",) + (("example",) if vals is not None else ())
    return HierarchicalBootstrapResult(est, lo, hi, level, samples, n_seeds=S, n_tasks=T, levels=levels,
                                       includes_seed_noise=S > 1)


def minimal_detectable_effect(se: float, df: float | None = None, *, level: float = 0.95,
                              power: float = 0.8) -> float:
    """Smallest true effect a two-sided test at ``level`` detects with probability ``power``.

    ``MDE = (q_{(1+level)/2} + q_{power}) * se`` with Student-t quantiles on ``df`` degrees of
    freedom (normal quantiles when ``df`` is None); the usual power approximation (Cohen 1988,
    ch. 2; Bloom 1995, "Minimum detectable effects", Evaluation Review 19).

    Args:
        se: standard error of the statistic at this run's size (NaN or inf gives inf).
        df: degrees of freedom (e.g. ``n_tasks - 1``); ``df < 1`` gives inf.
        level: confidence level of the test. power: wanted power in (0, 1).

    Returns:
        The MDE in the statistic's units (``inf`` when it cannot be computed).

    Raises:
        ValueError: ``level`` or ``power`` not in (0, 1).
    """

    _check_common(1, level)
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if not np.isfinite(se) or se < 0 or (df is not None and df < 1):
        return float("inf")
    dist = sps.norm if df is None else sps.t(df)
    return float((dist.ppf((1.0 + level) / 2.0) + dist.ppf(power)) * se)


def correlation_mde(n: int, *, level: float = 0.95, power: float = 0.8) -> float:
    """Smallest |Pearson r| detectable over ``n`` units: ``tanh((z_{(1+level)/2} + z_power) / sqrt(n - 3))``.

    From Fisher's z transform (Fisher 1921; Cohen 1988, ch. 3). Returns inf for ``n <= 3`` or
    when the value would reach 1.
    """

    if n <= 3:
        return float("inf")
    r = float(np.tanh((sps.norm.ppf((1.0 + level) / 2.0) + sps.norm.ppf(power)) / np.sqrt(n - 3)))
    return r if r < 1.0 else float("inf")


__all__ += [
    "MAX_EXACT_TASKS", "Interval", "HierarchicalBootstrapResult", "exact_sign_flip_interval", "sign_flip_test",
    "sign_test", "bca_interval", "location_interval", "permutation_shift_interval", "hierarchical_bootstrap",
    "minimal_detectable_effect", "correlation_mde",
]
