"""Layer bands by an explicit rule: shared, transition and refinement layers (paper Fig. 1/2).

The paper reads its three bands of Llama 2 7B (shared 1-9, transition 10-15, refinement 16-32 of
32 blocks) off Figure 2 by eye and reports no rule. This module fixes one rule, calibrated by
simulation (:mod:`layerwise.band_calibration`), computes its boundaries with task-bootstrap
confidence intervals, states when *no* transition can be
identified (the paper's unseen-task finding, Fig. 7) and puts models of different depth on one
relative-depth scale.

Signal
    For every task ``t`` and layer ``l`` (1..L, the CKA table's layers) take
    ``Delta_t(l) = CKA(SFT, C_t)(l) - CKA(PT, C_t)(l)`` (paper Fig. 3; the experimental and
    reference comparisons are parameters, so ``"held-out SFT vs control"`` works the same way).
    The rule reads the **median over tasks** ``m(l)``: the median, not the mean, so that a few
    tasks with extreme values (e.g. small test sets, where biased CKA is inflated) cannot move
    the bands. ``signal="experimental"`` uses the median CKA(SFT, C_t) curve instead (the rise of
    Fig. 2's SFT boxes) for robustness checks.

Rule (two-breakpoint segmented regression, exact least squares)
    The paper describes the curve as low (shared: SFT not above PT), a sharp rise (transition:
    "the biggest SFT-vs-PT changes"), then high with a smaller, continued rise (refinement), while
    PT keeps falling. The rule fits a continuous piecewise-linear function with two knots
    ``1 <= b1 < b2 <= L - 1`` and free slopes in all three pieces::

        f(l) = a + s1 (l - b1)                      for l <= b1        (shared)
        f(l) = a + (c - a) (l - b1) / (b2 - b1)     for b1 < l <= b2   (transition)
        f(l) = c + s3 (l - b2)                      for l > b2         (refinement)

    (an outer band with fewer than :data:`MIN_SLOPE_LAYERS` layers is a plateau, slope 0). For
    every pair ``(b1, b2)`` the coefficients ``(a, c, s1, s3)`` are the ordinary least-squares
    solution and the pair with the smallest residual sum of squares wins; all pairs are
    enumerated, so the optimum is exact and deterministic (ties go to the smallest ``b1``, then
    ``b2``). ``b1`` is the **last shared layer**, ``b2`` the **last transition layer**. This is
    segmented regression with unknown breakpoints (Hudson 1966, JASA 61:1097; Muggeo 2003, Stat.
    Med. 22:3055) restricted to whole layers. Every band has at least one layer, so ``L >= 3``.

    Why free outer slopes: an earlier version fitted flat plateaus on both sides; on curves
    shaped like the paper's Fig. 2 the refinement band's continued rise pulled the end of the
    transition deep into the refinement band (it recovered the bands within 2 layers in at most 2 %
    of simulated draws at 18 and 32 layers, :mod:`layerwise.band_calibration`). A shared band in
    which SFT's own curve dips is fitted by a falling ``s1``. Whether the shared band has
    ``Delta <= 0`` (SFT more general than PT, finding 3) is *reported* (:attr:`Bands.summary`,
    ``mean_delta`` and its CI), not imposed, so the finding can fail.

Is a transition identifiable? (explicit criterion, calibrated by simulation)
    Three numbers, all must pass (``transition_score = min`` of the three ratios ``>= 1``):

    * ``rise_z = (c - a) / se(c - a) >= min_rise_z``: the rise over the transition band must
      exceed ``min_rise_z`` times its least-squares standard error (residual variance of the fit,
      given the knots). A falling curve (``c <= a``) fails.
    * ``sharpness = 1 - RSS_bands / RSS_alt >= min_sharpness``: the two knots must remove that
      share of the residual of the best *one*-knot fit (two straight pieces, which includes the
      straight line). A steady trend, a flat curve or a flat-then-steadily-rising "hinge" (SFT
      catching up with PT only gradually, as in the paper's Fig. 7) has nothing for the second
      knot to explain, so ``sharpness`` is near 0; fitting pure noise with the extra knot gains
      typically 0.1-0.3.
    * ``contrast = slope(transition) / max(s1, s3) >= min_contrast``: the transition must be
      steeper than both outer bands (+inf if neither rises).

    The thresholds :data:`MIN_RISE_Z`, :data:`MIN_SHARPNESS`, :data:`MIN_CONTRAST` were chosen
    by the simulation study of :mod:`layerwise.band_calibration`, which also reports the rule's
    recovery and false-positive rates at a run's size and noise.

Confidence intervals
    Percentile intervals (:func:`layerwise.stats.percentile_ci`) of the refitted boundaries over
    ``n_boot`` replicates that resample **tasks** with replacement
    (:func:`layerwise.stats.bootstrap_tasks`), the unit the paper generalises over; bounds are
    rounded outward to whole layers. Example-level uncertainty is not resampled here (the tidy
    table holds no examples); per-task curves from :func:`layerwise.stats.bootstrap_examples`
    can be fed in as the CKA table of a replicate if wanted.

Relative depth
    Layer ``l`` of ``L`` covers the interval ``((l-1)/L, l/L]``; a band of layers ``s..e``
    covers ``((s-1)/L, e/L]``, so the three bands tile ``(0, 1]``. The paper's bands are
    shared ``(0, 0.281]``, transition ``(0.281, 0.469]``, refinement ``(0.469, 1]``
    (:data:`PAPER_BANDS`, :func:`paper_bands`).

Errors
    ``ValueError`` with the offending names for: missing columns; a measure or comparison not in
    the table (the available ones are listed); duplicate (task, layer, comparison) rows; tasks
    whose layers differ from the others or are not 1..L; NaN/inf values (the first few
    task/layer pairs are named); fewer than 3 layers; tasks of the experimental comparison with
    no reference curve; an empty task selection.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from layerwise.stats import bootstrap_tasks, percentile_ci
from layerwise.vocab import HELDOUT_SFT, PT, SFT

__all__ = [
    "PT",
    "SFT",
    "HELDOUT_SFT",
    "BAND_NAMES",
    "PAPER_BANDS",
    "BandFit",
    "Bands",
    "task_curves",
    "delta_table",
    "MIN_RISE_Z",
    "MIN_SHARPNESS",
    "MIN_CONTRAST",
    "MIN_SLOPE_LAYERS",
    "fit_many",
    "fit_bands",
    "transition_score",
    "find_bands",
    "band_layers",
    "relative_depth",
    "scale_boundaries",
    "paper_bands",
    "band_diagram_data",
]


#: Band names, shallow to deep.
BAND_NAMES = ("shared", "transition", "refinement")

#: The paper's bands for Llama 2 7B (Fig. 1): name -> (first layer, last layer), of 32 blocks.
PAPER_BANDS: dict[str, Any] = {
    "model": "Llama-2-7B (paper, Fig. 1)",
    "n_layers": 32,
    "bands": {"shared": (1, 9), "transition": (10, 15), "refinement": (16, 32)},
}

_REQUIRED = ("task", "layer", "comparison", "measure", "value")


# --------------------------------------------------------------------------------------------
# Table -> per-task curves
# --------------------------------------------------------------------------------------------


def _names(items: Sequence[Any], k: int = 5) -> str:
    items = list(items)
    shown = ", ".join(map(str, items[:k]))
    return shown + (f", ... ({len(items)} in all)" if len(items) > k else "")


def _curves_of(df: pd.DataFrame, comparison: str) -> pd.DataFrame:
    sub = df[df["comparison"] == comparison]
    dup = sub.duplicated(["task", "layer"], keep=False)
    if dup.any():
        pairs = sub.loc[dup, ["task", "layer"]].drop_duplicates().itertuples(index=False)
        raise ValueError(
            f"comparison {comparison!r} has duplicate (task, layer) rows: "
            f"{_names([f'{t}/{l}' for t, l in pairs])}; filter the table to one measure and run"
        )
    vals = pd.to_numeric(sub["value"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(vals)
    if bad.any():
        where = [f"{t}/layer {l}" for t, l in sub.loc[bad, ["task", "layer"]].itertuples(index=False)]
        raise ValueError(f"{comparison!r}: non-finite (NaN/inf) values at {_names(where)}")
    wide = sub.pivot(index="task", columns="layer", values="value").sort_index()
    return wide


def task_curves(
    cka: pd.DataFrame,
    *,
    measure: str = "linear_cka",
    experimental: str = SFT,
    reference: str = PT,
    tasks: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-task layer curves of two comparisons from the tidy CKA table, validated and aligned.

    Args:
        cka: tidy table with columns ``task, layer, comparison, measure, value`` (``cluster``,
            ``n_examples`` optional and ignored).
        measure: the ``measure`` to read (e.g. ``"linear_cka"``, ``"debiased_cka"``).
        experimental, reference: comparison labels; Delta = experimental - reference.
        tasks: restrict to these tasks (e.g. the held-out ones); default: every task of the
            experimental comparison. Tasks only in the reference comparison are ignored.

    Returns:
        ``(exp, ref)``: two float64 DataFrames, index ``task`` (sorted), columns layers ``1..L``.

    Raises:
        ValueError: see the module docstring (names the missing/duplicate/non-finite items).
    """
    if not isinstance(cka, pd.DataFrame):
        raise ValueError(f"cka must be a pandas DataFrame (the tidy CKA table), got {type(cka).__name__}")
    missing = [c for c in _REQUIRED if c not in cka.columns]
    if missing:
        raise ValueError(f"CKA table is missing column(s) {missing}; it needs {list(_REQUIRED)}")
    measures = sorted(map(str, cka["measure"].unique()))
    if measure not in measures:
        raise ValueError(f"measure {measure!r} not in the CKA table; available: {measures}")
    df = cka[cka["measure"] == measure]
    present = sorted(map(str, df["comparison"].unique()))
    absent = [c for c in (experimental, reference) if c not in present]
    if absent:
        raise ValueError(
            f"comparison(s) {absent} missing from the CKA table for measure {measure!r}; "
            f"present: {present}"
        )
    exp_tasks = set(map(str, df.loc[df["comparison"] == experimental, "task"].unique()))
    if tasks is not None:
        tasks = [str(t) for t in tasks]
        if not tasks:
            raise ValueError("tasks is empty: select at least one task")
        unknown = [t for t in tasks if t not in exp_tasks]
        if unknown:
            raise ValueError(f"task(s) {_names(unknown)} have no {experimental!r} rows")
        exp_tasks = set(tasks)
    df = df[df["task"].astype(str).isin(exp_tasks)]  # other tasks' rows are never inspected
    exp, ref = _curves_of(df, experimental), _curves_of(df, reference)
    no_ref = [t for t in exp.index if t not in ref.index]
    if no_ref:
        raise ValueError(f"task(s) {_names(no_ref)} have {experimental!r} but no {reference!r} rows")
    ref = ref.loc[exp.index]
    for label, wide in ((experimental, exp), (reference, ref)):
        layers = [int(c) for c in wide.columns]
        L = len(layers)
        if layers != list(range(1, L + 1)):
            raise ValueError(f"{label!r}: layers must be 1..L without gaps, got {_names(layers, 8)}")
        holes = wide.isna().any(axis=1)
        if holes.any():
            raise ValueError(
                f"{label!r}: task(s) {_names(wide.index[holes])} lack some of the layers 1..{L} "
                f"(all tasks must cover the same layers)"
            )
    if list(exp.columns) != list(ref.columns):
        raise ValueError(
            f"{experimental!r} has layers 1..{exp.shape[1]} but {reference!r} has 1..{ref.shape[1]}"
        )
    if exp.shape[1] < 3:
        raise ValueError(f"band detection needs at least 3 layers (one per band), got {exp.shape[1]}")
    exp.columns = ref.columns = pd.Index([int(c) for c in exp.columns], name="layer")
    return exp.astype(np.float64), ref.astype(np.float64)


def delta_table(cka: pd.DataFrame, **selection: Any) -> pd.DataFrame:
    """``Delta = CKA(experimental) - CKA(reference)`` per task (rows) and layer (columns 1..L).

    ``cka`` and the keyword options ``measure``, ``experimental``, ``reference``, ``tasks`` (same
    defaults) go to :func:`task_curves` unchanged; see it for them and for the errors (a keyword
    it does not take raises ``TypeError``).
    """
    exp, ref = task_curves(cka, **selection)
    return exp - ref


# --------------------------------------------------------------------------------------------
# The rule on one curve (and, vectorised, on many)
# --------------------------------------------------------------------------------------------

#: An outer band (shared or refinement) gets its own fitted slope only if it has at least this
#: many layers; with fewer, the band is a plateau (two points and continuity would fit any slope
#: exactly, so a slope there carries no information).
MIN_SLOPE_LAYERS = 3

# Thresholds of the identifiability criterion, chosen by the simulation study: they are
# ``layerwise.band_calibration.choose_thresholds(simulate_band_draws(noise_sd=CALIBRATION_NOISE))``
# (18, 30 and 32 layers, 6-24 tasks, three noise levels, curves shaped like the paper's Fig. 2 and
# null curves without a transition; see that module): the grid point of
# ``band_calibration.THRESHOLD_GRID`` with the best mean recovery whose worst false-positive rate
# is <= 10 %. ``tests/unit/test_band_calibration.py`` re-runs the choice and compares.
#: Rise over its least-squares standard error (``BandFit.rise_z``).
MIN_RISE_Z = 3.0
#: Share of the best one-knot fit's residual the second knot removes (``BandFit.sharpness``).
MIN_SHARPNESS = 0.3
#: Transition slope over the steeper outer slope (``BandFit.contrast``).
MIN_CONTRAST = 2.0


@dataclass(frozen=True)
class BandFit:
    """Two-breakpoint segmented least-squares fit of one curve (see the module docstring).

    Attributes:
        last_shared: ``b1``, last layer of the shared band (1-based).
        last_transition: ``b2``, last layer of the transition band.
        shared_level: ``a``, fitted value at layer ``b1`` (end of the shared band).
        refined_level: ``c``, fitted value at layer ``b2`` (end of the transition band).
        shared_slope, refined_slope: fitted slopes (per layer) of the shared and refinement
            bands (0 when the band has fewer than :data:`MIN_SLOPE_LAYERS` layers).
        rss: residual sum of squares of the fit. df: residual degrees of freedom (L - rank).
        rss_alt: of the best *one*-knot continuous segmented fit (no transition band: two
            straight pieces, which includes the straight line).
        rss_line: of the best straight line. tss: total sum of squares about the mean.
        rise_se: least-squares standard error of the rise ``c - a`` given the knots
            (``sqrt(rss / df) * ||pinv(X)^T w||`` with ``w = (-1, 1, 0, 0)``; NaN if df = 0).
        fitted: ``(L,)`` fitted curve.
    """

    last_shared: int
    last_transition: int
    shared_level: float
    refined_level: float
    shared_slope: float
    refined_slope: float
    rss: float
    df: int
    rss_alt: float
    rss_line: float
    tss: float
    rise_se: float
    fitted: np.ndarray = field(repr=False, compare=False)

    @property
    def rise(self) -> float:
        """``c - a``: the rise of the fitted curve across the transition band."""
        return self.refined_level - self.shared_level

    @property
    def transition_slope(self) -> float:
        """``(c - a) / (b2 - b1)``: the fitted slope (per layer) of the transition band."""
        return self.rise / (self.last_transition - self.last_shared)

    @property
    def contrast(self) -> float:
        """Transition slope over the steeper rising outer slope (see :func:`_contrast`)."""
        return float(_contrast(np.array(self.transition_slope), np.array(self.shared_slope),
                               np.array(self.refined_slope)))

    @property
    def rise_z(self) -> float:
        """``rise / rise_se`` (inf for an exact fit with a positive rise; see :func:`_rise_z`)."""
        return float(_rise_z(np.array(self.rise), np.array(self.rise_se), np.array(self.rss), np.array(self.tss)))

    @property
    def sharpness(self) -> float:
        """``1 - rss / rss_alt``: the share of the best one-knot fit's residual the bands remove.

        0 if a one-knot fit (e.g. a straight line) is already exact (to 1e-10 of the total
        variance).
        """
        return float(_sharpness(np.array(self.rss), np.array(self.rss_alt), np.array(self.tss)))

    @property
    def r2(self) -> float:
        """Coefficient of determination of the band fit (NaN for a constant curve)."""
        return float(1.0 - self.rss / self.tss) if self.tss > 0 else float("nan")


def _contrast(slope2: NDArray[np.float64], slope1: NDArray[np.float64], slope3: NDArray[np.float64]) -> NDArray[np.float64]:
    """``slope2 / max(slope1, slope3)``; +inf if neither outer band rises, 0 if ``slope2 <= 0``."""
    outer = np.maximum(slope1, slope3)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(outer > 0, slope2 / np.where(outer > 0, outer, 1.0), np.inf)
    return np.where(slope2 > 0, c, 0.0)


def _rise_z(rise: NDArray[np.float64], se: NDArray[np.float64], rss: NDArray[np.float64],
            tss: NDArray[np.float64]) -> NDArray[np.float64]:
    exact = rss <= 1e-12 * np.maximum(tss, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = rise / se
    return np.where(exact, np.where(rise > 0, np.inf, 0.0), np.where(np.isfinite(se) & (se > 0), z, 0.0))


def _sharpness(rss: NDArray[np.float64], rss_alt: NDArray[np.float64], tss: NDArray[np.float64]) -> NDArray[np.float64]:
    ok = rss_alt > 1e-10 * tss
    with np.errstate(divide="ignore", invalid="ignore"):
        s = 1.0 - rss / np.where(ok, rss_alt, 1.0)
    return np.where(ok, np.maximum(s, 0.0), 0.0)


def transition_score(rise_z: ArrayLike, sharpness: ArrayLike, contrast: ArrayLike, *, min_rise_z: float = MIN_RISE_Z,
                     min_sharpness: float = MIN_SHARPNESS, min_contrast: float = MIN_CONTRAST) -> NDArray[np.float64]:
    """``min(rise_z / min_rise_z, sharpness / min_sharpness, contrast / min_contrast)``.

    A transition is identifiable iff the score is >= 1 (all three pass). Element-wise on arrays.

    Args:
        rise_z, sharpness, contrast: :class:`BandFit` statistics (scalars or arrays).
        min_rise_z, min_sharpness, min_contrast: thresholds (> 0).

    Returns:
        float64 array of the broadcast shape (0-d for scalars).
    """
    return np.minimum.reduce([np.asarray(rise_z, dtype=np.float64) / min_rise_z,
                              np.asarray(sharpness, dtype=np.float64) / min_sharpness,
                              np.asarray(contrast, dtype=np.float64) / min_contrast])


_BASES: dict[int, dict[str, np.ndarray]] = {}


def _orthonormal(X: np.ndarray) -> NDArray[np.float64]:
    """``(P, L, k)`` orthonormal bases of the column spaces of ``X`` (zero-padded where rank < k)."""
    U, s, _ = np.linalg.svd(X, full_matrices=False)
    keep = s > 1e-10 * s[:, :1]
    return U * keep[:, None, :]


def _bases(L: int) -> dict[str, np.ndarray]:
    """Knot pairs, designs, bases and pseudo-inverses (cached per L) of the band model and its rival.

    Band model, for ``1 <= b1 < b2 <= L - 1``: columns ``fa = clip((b2 - l) / (b2 - b1), 0, 1)``,
    ``1 - fa`` (levels ``a`` at ``b1`` and ``c`` at ``b2``), ``min(l - b1, 0)`` (shared slope)
    and ``max(l - b2, 0)`` (refinement slope); a slope column is zero when its band has fewer
    than :data:`MIN_SLOPE_LAYERS` layers. Rival (one knot ``k`` in ``1..L-1``): ``1``,
    ``min(l - k, 0)``, ``max(l - k, 0)`` with the same rule (``k = 1`` is the straight line).
    """
    if L not in _BASES:
        layer = np.arange(1, L + 1, dtype=np.float64)[None, :]
        pairs = np.array([(b1, b2) for b1 in range(1, L - 1) for b2 in range(b1 + 1, L)], dtype=int)
        b1 = pairs[:, :1].astype(np.float64)
        b2 = pairs[:, 1:].astype(np.float64)
        fa = np.clip((b2 - layer) / (b2 - b1), 0.0, 1.0)
        g1 = np.minimum(layer - b1, 0.0) * (b1 >= MIN_SLOPE_LAYERS)
        g3 = np.maximum(layer - b2, 0.0) * ((L - b2) >= MIN_SLOPE_LAYERS)
        X = np.stack([fa, 1.0 - fa, g1, g3], axis=-1)
        k = np.arange(1, L, dtype=np.float64)[:, None]
        left = np.minimum(layer - k, 0.0) * (k >= MIN_SLOPE_LAYERS)
        right = np.maximum(layer - k, 0.0)
        alt = np.stack([np.ones_like(left), left, right], axis=-1)
        line = np.stack([np.ones(L), layer[0]], axis=-1)[None]
        _BASES[L] = {
            "pairs": pairs, "X": X, "Q": _orthonormal(X), "pinv": np.linalg.pinv(X),
            "rank": np.linalg.matrix_rank(X), "alt_Q": _orthonormal(alt), "line_Q": _orthonormal(line),
        }
    return _BASES[L]


def _resid_ss(Q: np.ndarray, Y: np.ndarray, yy: np.ndarray) -> NDArray[np.float64]:
    """``(N, P)`` residual sums of squares of the rows of ``Y`` (N, L) on each basis ``Q`` (P, L, k)."""
    proj = np.einsum("plk,nl->npk", Q, Y, optimize=True)
    return np.maximum(yy[:, None] - np.einsum("npk,npk->np", proj, proj), 0.0)


def fit_many(curves: Any) -> dict[str, NDArray[Any]]:
    """The band fit of many curves at once (the vectorised core of :func:`fit_bands`).

    Args:
        curves: ``(N, L)`` finite float values, one curve per row, ``L >= 3``.

    Returns:
        dict of ``(N,)`` arrays: ``last_shared, last_transition`` (int), ``shared_level,
        refined_level, shared_slope, refined_slope, rss, df, rss_alt, rss_line, tss, rise_se,
        rise, rise_z, sharpness, contrast`` (float64), and ``fitted`` ``(N, L)``.

    Raises:
        ValueError: not 2-D, fewer than 3 layers, or non-finite values.
    """
    Y = np.array(curves, dtype=np.float64)
    if Y.ndim != 2:
        raise ValueError(f"curves must be 2-D (curves x layers), got shape {Y.shape}")
    N, L = Y.shape
    if L < 3:
        raise ValueError(f"band detection needs at least 3 layers (one per band), got {L}")
    if not np.isfinite(Y).all():
        raise ValueError("curves has non-finite values")
    B = _bases(L)
    mean = Y.mean(axis=1, keepdims=True)
    Yc = Y - mean  # every model holds the constants; centring only improves rounding
    yy = np.einsum("nl,nl->n", Yc, Yc)
    rss_all = _resid_ss(B["Q"], Yc, yy)
    # deterministic tie-break: among fits equal to rounding, the first pair (smallest b1, b2)
    tol = 1e-12 * np.maximum(yy, 1e-300)
    best = np.argmax(rss_all <= rss_all.min(axis=1, keepdims=True) + tol[:, None], axis=1)
    coef = np.einsum("nkl,nl->nk", B["pinv"][best], Yc)
    fitted = np.einsum("nlk,nk->nl", B["X"][best], coef) + mean
    coef[:, :2] += mean  # the two level columns sum to 1
    rss = rss_all[np.arange(N), best]
    df = L - B["rank"][best]
    w = B["pinv"][best][:, 1, :] - B["pinv"][best][:, 0, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.where(df > 0, np.sqrt(rss / np.maximum(df, 1)), np.nan)
    rise_se = sigma * np.sqrt(np.einsum("nl,nl->n", w, w))
    rss_alt = _resid_ss(B["alt_Q"], Yc, yy).min(axis=1)
    rss_line = _resid_ss(B["line_Q"], Yc, yy)[:, 0]
    b1, b2 = B["pairs"][best, 0], B["pairs"][best, 1]
    rise = coef[:, 1] - coef[:, 0]
    out = {
        "last_shared": b1, "last_transition": b2, "shared_level": coef[:, 0], "refined_level": coef[:, 1],
        "shared_slope": coef[:, 2], "refined_slope": coef[:, 3], "rss": rss, "df": df, "rss_alt": rss_alt,
        "rss_line": rss_line, "tss": yy, "rise_se": rise_se, "rise": rise,
        "rise_z": _rise_z(rise, rise_se, rss, yy), "sharpness": _sharpness(rss, rss_alt, yy),
        "contrast": _contrast(rise / (b2 - b1), coef[:, 2], coef[:, 3]), "fitted": fitted,
    }
    return out


def fit_bands(curve: Any) -> BandFit:
    """Fit the two-breakpoint segmented band model to one layer curve (exact, deterministic).

    Args:
        curve: ``(L,)`` real values for layers 1..L (e.g. the median Delta CKA), ``L >= 3``.

    Returns:
        :class:`BandFit`.

    Raises:
        ValueError: not 1-D, fewer than 3 layers, or non-finite values (their layers named).
    """
    y = np.array(curve, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"curve must be 1-D (one value per layer), got shape {y.shape}")
    if y.shape[0] < 3:
        raise ValueError(f"band detection needs at least 3 layers (one per band), got {y.shape[0]}")
    if not np.isfinite(y).all():
        raise ValueError(
            f"curve has non-finite values at layer(s) {[int(i) + 1 for i in np.flatnonzero(~np.isfinite(y))]}"
        )
    f = fit_many(y[None, :])
    return BandFit(
        last_shared=int(f["last_shared"][0]), last_transition=int(f["last_transition"][0]),
        shared_level=float(f["shared_level"][0]), refined_level=float(f["refined_level"][0]),
        shared_slope=float(f["shared_slope"][0]), refined_slope=float(f["refined_slope"][0]),
        rss=float(f["rss"][0]), df=int(f["df"][0]), rss_alt=float(f["rss_alt"][0]),
        rss_line=float(f["rss_line"][0]), tss=float(f["tss"][0]), rise_se=float(f["rise_se"][0]),
        fitted=f["fitted"][0],
    )


def band_layers(last_shared: int, last_transition: int, n_layers: int) -> dict[str, tuple[int, int]]:
    """``{band: (first layer, last layer)}`` for boundaries ``b1 < b2 < L`` (1-based, inclusive).

    Raises:
        ValueError: boundaries that leave a band empty or fall outside 1..L.
    """
    b1, b2, L = int(last_shared), int(last_transition), int(n_layers)
    if not 1 <= b1 < b2 < L:
        raise ValueError(
            f"need 1 <= last_shared < last_transition < n_layers so every band has a layer, "
            f"got last_shared={b1}, last_transition={b2}, n_layers={L}"
        )
    return {"shared": (1, b1), "transition": (b1 + 1, b2), "refinement": (b2 + 1, L)}


# --------------------------------------------------------------------------------------------
# The rule on a CKA table, with bootstrap
# --------------------------------------------------------------------------------------------


def _from_fit(name: str, doc: str) -> property:
    """A read-only property of :class:`Bands` that returns its fit's attribute ``name``."""
    return property(lambda self: getattr(self.fit, name), doc=doc)


@dataclass(frozen=True)
class Bands:
    """Bands found by :func:`find_bands` (see the module docstring for the rule).

    Attributes:
        fit: :class:`BandFit` of the aggregate curve.
        n_layers: L. tasks: tasks used (sorted). measure, experimental, reference, signal,
            statistic: what was read and how it was aggregated.
        curve: ``(L,)`` aggregate curve the rule was fitted to (median Delta by default).
        ci: ``{"last_shared": (lo, hi), "last_transition": (lo, hi)}`` whole-layer percentile
            intervals from the task bootstrap (``(nan, nan)`` without a bootstrap).
        level: confidence level. n_boot: replicates (0 = none).
        rise_se: bootstrap standard error of the rise over tasks (NaN without a bootstrap;
            reported only: the criterion uses the fit's own :attr:`BandFit.rise_se`).
        min_rise_z, min_sharpness, min_contrast: thresholds of the identifiability criterion.
        boot: ``(n_boot, 3)`` replicates of (last_shared, last_transition, rise).
        summary: one row per band (see :func:`find_bands`).
    """

    fit: BandFit
    n_layers: int
    tasks: tuple[str, ...]
    measure: str
    experimental: str
    reference: str
    signal: str
    statistic: str
    curve: np.ndarray = field(repr=False, compare=False)
    ci: dict[str, tuple[float, float]]
    level: float
    n_boot: int
    rise_se: float
    min_rise_z: float
    min_sharpness: float
    boot: np.ndarray = field(repr=False, compare=False)
    summary: pd.DataFrame = field(repr=False, compare=False)
    min_contrast: float = MIN_CONTRAST

    # the fit's boundaries and statistics, read through (see BandFit)
    last_shared = _from_fit("last_shared", "Last layer of the shared band (1-based), int.")
    last_transition = _from_fit("last_transition", "Last layer of the transition band (1-based), int.")
    rise = _from_fit("rise", "Fitted rise ``c - a`` of the aggregate curve, float.")
    sharpness = _from_fit("sharpness", "See :attr:`BandFit.sharpness`.")
    contrast = _from_fit("contrast", "See :attr:`BandFit.contrast`.")
    rise_z = _from_fit("rise_z", "Rise over its least-squares standard error (:attr:`BandFit.rise_z`), float.")

    @property
    def layers(self) -> dict[str, tuple[int, int]]:
        """``{band: (first, last)}`` layers, inclusive."""
        return band_layers(self.last_shared, self.last_transition, self.n_layers)

    @property
    def noise_checked(self) -> bool:
        """True if the fit has residual degrees of freedom, so the rise was compared with its noise."""
        return self.fit.df > 0

    @property
    def transition_score(self) -> float:
        """``min(rise_z / min_rise_z, sharpness / min_sharpness, contrast / min_contrast)``.

        >= 1 means identifiable (see :func:`transition_score`).
        """
        return float(transition_score(self.rise_z, self.sharpness, self.contrast, min_rise_z=self.min_rise_z,
                                      min_sharpness=self.min_sharpness, min_contrast=self.min_contrast))

    @property
    def identifiable(self) -> bool:
        """Whether a transition band is identifiable (``transition_score >= 1``)."""
        return bool(self.transition_score >= 1.0)

    def relative(self) -> dict[str, float]:
        """Boundaries and their CIs as fractions of depth (see :func:`relative_depth`)."""
        L = self.n_layers
        out = relative_depth(self.last_shared, self.last_transition, L)
        for k, (lo, hi) in self.ci.items():
            out[f"rel_{k}_low"], out[f"rel_{k}_high"] = lo / L, hi / L
        return out

    def diagram(self, model: str | None = None) -> pd.DataFrame:
        """Figure-1 diagram data: see :func:`band_diagram_data`."""
        return band_diagram_data(self, model=model)

    def describe(self) -> str:
        """One line for logs and the book: bands, CIs, identifiability."""
        lay = self.layers
        ci = self.ci
        parts = [f"{b} {s}-{e}" for b, (s, e) in lay.items()]
        return (
            f"{', '.join(parts)} of {self.n_layers} (last shared {self.last_shared} "
            f"[{ci['last_shared'][0]:g}, {ci['last_shared'][1]:g}], last transition "
            f"{self.last_transition} [{ci['last_transition'][0]:g}, {ci['last_transition'][1]:g}]); "
            f"rise {self.rise:.3f}, rise_z {self.rise_z:.2f}, sharpness {self.sharpness:.2f}, "
            f"contrast {self.contrast:.2f}: "
            f"transition {'identifiable' if self.identifiable else 'NOT identifiable'} "
            f"(score {self.transition_score:.2f})"
        )


def _aggregate(statistic: str):
    if statistic == "median":
        return np.median
    if statistic == "mean":
        return np.mean
    raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}")


def _iqr(a: np.ndarray, axis: int = 0) -> NDArray[np.float64]:
    q75, q25 = np.quantile(a, [0.75, 0.25], axis=axis)
    return q75 - q25


def find_bands(
    cka: pd.DataFrame,
    *,
    signal: str = "delta",
    statistic: str = "median",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int | None = 0,
    min_rise_z: float = MIN_RISE_Z,
    min_sharpness: float = MIN_SHARPNESS,
    min_contrast: float = MIN_CONTRAST,
    **selection: Any,
) -> Bands:
    """Shared / transition / refinement bands of the layers 1..L by the segmented band rule.

    Args:
        signal: ``"delta"`` (default; Delta CKA per task) or ``"experimental"`` (the
            experimental comparison's CKA per task).
        statistic: ``"median"`` (default) or ``"mean"`` over tasks, per layer.
        n_boot: task-bootstrap replicates of the boundaries' intervals (0 = no intervals; the
            identifiability criterion does not need them).
        level: confidence level of the intervals. seed: RNG seed (deterministic given it).
        min_rise_z, min_sharpness, min_contrast: thresholds of the identifiability criterion
            (defaults: the calibrated :data:`MIN_RISE_Z`, :data:`MIN_SHARPNESS`, :data:`MIN_CONTRAST`).
        cka, **selection: the tidy CKA table and which curves to read from it, passed to
            :func:`task_curves` unchanged (as by :func:`delta_table`): ``measure`` (default
            ``"linear_cka"``), ``experimental`` and ``reference`` (comparison labels, Delta =
            experimental - reference; default SFT and PT; for RQ3 ``experimental=HELDOUT_SFT``),
            ``tasks`` (default: every task of the experimental comparison).

    Returns:
        :class:`Bands`. Its ``summary`` DataFrame has one row per band with columns ``band,
        first_layer, last_layer, n_layers, rel_start, rel_end`` (fractions of depth),
        ``curve_mean`` (mean of the aggregate curve over the band's layers), ``mean_delta`` (mean
        Delta over tasks and the band's layers) with ``mean_delta_low/high`` (task-bootstrap CI),
        ``task_sd`` (SD across tasks of each task's band-mean Delta), ``spread_iqr`` (across-task
        IQR of Delta, averaged over the band's layers), ``frac_tasks_above`` (share of tasks
        whose band-mean Delta > 0, i.e. experimental above reference), ``experimental_mean``,
        ``reference_mean`` (mean CKA of each comparison) and ``experimental_iqr`` (across-task
        IQR of the experimental CKA, averaged over the band's layers; the paper's "uniformly
        high" similarity shows as a small value).

    Raises:
        ValueError: bad table (see :func:`task_curves`), unknown ``signal``/``statistic``,
            bad ``level``/``n_boot``, thresholds <= 0.
        TypeError: a keyword that neither this function nor :func:`task_curves` takes.
    """
    chosen = inspect.signature(task_curves).bind(cka, **selection)  # TypeError for an unknown keyword
    chosen.apply_defaults()
    sel = chosen.arguments
    if signal not in ("delta", "experimental"):
        raise ValueError(f"signal must be 'delta' or 'experimental', got {signal!r}")
    agg = _aggregate(statistic)
    if not (min_rise_z > 0 and min_sharpness > 0 and min_contrast > 0):
        raise ValueError(f"min_rise_z, min_sharpness and min_contrast must be > 0, "
                         f"got {min_rise_z}, {min_sharpness}, {min_contrast}")
    if int(n_boot) < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    exp, ref = task_curves(cka, **selection)
    E, R = exp.to_numpy(), ref.to_numpy()
    D = E - R
    S = D if signal == "delta" else E
    T, L = S.shape
    curve = agg(S, axis=0)
    fit = fit_bands(curve)

    nb = int(n_boot) if T > 1 else 0
    if nb:
        curves = bootstrap_tasks(S, statistic=agg, n_boot=nb, level=level, seed=seed).samples
        f = fit_many(curves)
        boot = np.column_stack([f["last_shared"], f["last_transition"], f["rise"]]).astype(np.float64)
        ci = {}
        for j, k in enumerate(("last_shared", "last_transition")):
            lo, hi = percentile_ci(boot[:, j], level)
            ci[k] = (float(np.floor(lo + 1e-9)), float(np.ceil(hi - 1e-9)))
        rise_se = float(np.std(boot[:, 2], ddof=1)) if nb > 1 else 0.0
        if rise_se <= 1e-9 * max(abs(fit.rise), 1e-300):  # identical replicates up to rounding
            rise_se = 0.0
    else:
        boot = np.empty((0, 3))
        ci = {"last_shared": (float("nan"),) * 2, "last_transition": (float("nan"),) * 2}
        rise_se = float("nan")

    rows = []
    for k, (band, (s, e)) in enumerate(band_layers(fit.last_shared, fit.last_transition, L).items()):
        sl = slice(s - 1, e)
        per_task = D[:, sl].mean(axis=1)
        row = {
            "band": band, "first_layer": s, "last_layer": e, "n_layers": e - s + 1,
            "rel_start": (s - 1) / L, "rel_end": e / L,
            "curve_mean": float(curve[sl].mean()),
            "mean_delta": float(per_task.mean()),
        }
        if T > 1 and nb:
            b = bootstrap_tasks(per_task, n_boot=nb, level=level, seed=None if seed is None else seed + 1 + k)
            row["mean_delta_low"], row["mean_delta_high"] = float(b.low), float(b.high)
        else:
            row["mean_delta_low"] = row["mean_delta_high"] = float("nan")
        row.update({
            "task_sd": float(per_task.std(ddof=1)) if T > 1 else float("nan"),
            "spread_iqr": float(_iqr(D[:, sl]).mean()),
            "frac_tasks_above": float((per_task > 0).mean()),
            "experimental_mean": float(E[:, sl].mean()),
            "reference_mean": float(R[:, sl].mean()),
            "experimental_iqr": float(_iqr(E[:, sl]).mean()),
        })
        rows.append(row)
    return Bands(
        fit=fit, n_layers=L, tasks=tuple(map(str, exp.index)), measure=sel["measure"],
        experimental=sel["experimental"], reference=sel["reference"], signal=signal, statistic=statistic,
        curve=np.asarray(curve, dtype=np.float64), ci=ci, level=level, n_boot=nb, rise_se=rise_se,
        min_rise_z=float(min_rise_z), min_sharpness=float(min_sharpness), boot=boot,
        summary=pd.DataFrame(rows), min_contrast=float(min_contrast),
    )


# --------------------------------------------------------------------------------------------
# Relative depth and the Figure-1 diagram
# --------------------------------------------------------------------------------------------


def relative_depth(last_shared: int, last_transition: int, n_layers: int) -> dict[str, float]:
    """Boundaries as fractions of depth: ``{"rel_last_shared": b1 / L, "rel_last_transition": b2 / L}``.

    Raises:
        ValueError: see :func:`band_layers`.
    """
    band_layers(last_shared, last_transition, n_layers)
    L = int(n_layers)
    return {"rel_last_shared": int(last_shared) / L, "rel_last_transition": int(last_transition) / L}


def scale_boundaries(last_shared: int, last_transition: int, from_layers: int, to_layers: int) -> tuple[int, int]:
    """Boundaries at the same relative depth in a model with ``to_layers`` blocks.

    ``b' = round(b * to_layers / from_layers)`` (halves round up), clamped so that every band
    keeps at least one layer. E.g. the paper's (9, 15) of 32 -> (5, 8) of 18, (8, 14) of 30.

    Raises:
        ValueError: invalid boundaries for ``from_layers``, or ``to_layers < 3``.
    """
    band_layers(last_shared, last_transition, from_layers)
    M = int(to_layers)
    if M < 3:
        raise ValueError(f"to_layers must be >= 3 (one layer per band), got {M}")
    r = M / int(from_layers)
    b1 = min(max(int(np.floor(last_shared * r + 0.5)), 1), M - 2)
    b2 = min(max(int(np.floor(last_transition * r + 0.5)), b1 + 1), M - 1)
    return b1, b2


def _diagram_rows(model: str | None, b1: int, b2: int, L: int, identifiable: Any = None,
                  ci: dict[str, tuple[float, float]] | None = None) -> list[dict[str, Any]]:
    rows = []
    for band, (s, e) in band_layers(b1, b2, L).items():
        row = {"model": model, "band": band, "start": s, "end": e, "n_layers": L,
               "rel_start": (s - 1) / L, "rel_end": e / L}
        key = {"shared": "last_shared", "transition": "last_transition"}.get(band)
        lo, hi = (ci or {}).get(key, (float("nan"), float("nan"))) if key else (float("nan"),) * 2
        row.update({"end_low": lo, "end_high": hi, "rel_end_low": lo / L, "rel_end_high": hi / L,
                    "identifiable": identifiable})
        rows.append(row)
    return rows


def paper_bands(n_layers: int | None = None) -> pd.DataFrame:
    """The paper's Llama-2-7B bands (1-9, 10-15, 16-32 of 32) as diagram data.

    Args:
        n_layers: if given (and not 32), also the same relative boundaries mapped onto a model
            with ``n_layers`` blocks by :func:`scale_boundaries` (``model`` = "paper bands at
            relative depth, L=<n>").

    Returns:
        DataFrame in the :func:`band_diagram_data` format (``identifiable`` True: the paper
        reports a transition for the tuned tasks).
    """
    L = PAPER_BANDS["n_layers"]
    b1 = PAPER_BANDS["bands"]["shared"][1]
    b2 = PAPER_BANDS["bands"]["transition"][1]
    rows = _diagram_rows(PAPER_BANDS["model"], b1, b2, L, True)
    if n_layers is not None and int(n_layers) != L:
        s1, s2 = scale_boundaries(b1, b2, L, int(n_layers))
        rows += _diagram_rows(f"paper bands at relative depth, L={int(n_layers)}", s1, s2, int(n_layers), True)
    return pd.DataFrame(rows)


def band_diagram_data(
    bands: Bands | tuple[int, int, int] | Sequence[Bands | tuple[int, int, int]],
    *,
    model: str | Sequence[str | None] | None = None,
    include_paper: bool = False,
) -> pd.DataFrame:
    """Data for a Figure-1-style diagram: one row per (model, band).

    Args:
        bands: a :class:`Bands`, a tuple ``(last_shared, last_transition, n_layers)``, or a list
            of these (one per model).
        model: label(s) for the ``model`` column (one per item if a list).
        include_paper: append the paper's Llama-2-7B rows (:func:`paper_bands`).

    Returns:
        DataFrame with columns ``model, band, start, end`` (layers, inclusive), ``n_layers``,
        ``rel_start, rel_end`` (fractions of depth: band ``s..e`` covers ``((s-1)/L, e/L]``),
        ``end_low, end_high`` (CI of the band's last layer; NaN for the refinement band, for
        plain tuples and without a bootstrap), ``rel_end_low, rel_end_high`` and
        ``identifiable`` (None for plain tuples).

    Raises:
        ValueError: invalid boundaries; wrong number of model labels.
    """
    single = isinstance(bands, Bands) or (
        isinstance(bands, tuple) and len(bands) == 3 and all(isinstance(x, (int, np.integer)) for x in bands)
    )
    items = [bands] if single else list(bands)
    if model is None or isinstance(model, str):
        labels = [model] * len(items)
    else:
        labels = list(model)
        if len(labels) != len(items):
            raise ValueError(f"got {len(labels)} model labels for {len(items)} band sets")
    rows: list[dict[str, Any]] = []
    for item, label in zip(items, labels, strict=True):
        if isinstance(item, Bands):
            rows += _diagram_rows(label, item.last_shared, item.last_transition, item.n_layers,
                                  item.identifiable, item.ci)
        else:
            b1, b2, L = (int(x) for x in item)
            rows += _diagram_rows(label, b1, b2, L)
    df = pd.DataFrame(rows)
    if include_paper:
        df = pd.concat([df, paper_bands()], ignore_index=True)
    return df
