"""Layer bands by an explicit rule: shared, transition and refinement layers (paper Fig. 1/2).

The paper reads its three bands of Llama 2 7B (shared 1-9, transition 10-15, refinement 16-32 of
32 blocks) off Figure 2 by eye and reports no rule. This module fixes one rule, computes its
boundaries with task-bootstrap confidence intervals, states when *no* transition can be
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

Rule (plateau - ramp - plateau, exact least squares)
    The paper describes the curve as flat-and-low (shared: SFT not above PT), a sharp rise
    (transition: "the biggest SFT-vs-PT changes"), then flat-and-high (refinement: "without much
    further change"). The rule fits exactly that shape: a continuous piecewise-linear function
    with two knots ``1 <= b1 < b2 <= L - 1``::

        f(l) = a                                    for l <= b1        (shared)
        f(l) = a + (c - a) (l - b1) / (b2 - b1)     for b1 < l <= b2   (transition)
        f(l) = c                                    for l > b2         (refinement)

    For every admissible pair ``(b1, b2)`` the levels ``(a, c)`` are the ordinary least-squares
    solution (2 regressors), and the pair with the smallest residual sum of squares wins; all
    ``(L-2)(L-1)/2`` pairs are enumerated, so the optimum is exact and deterministic (ties go to
    the smallest ``b1``, then the smallest ``b2``). ``b1`` is the **last shared layer** and ``b2``
    the **last transition layer**: the transition layers are exactly those whose fitted value
    differs from the previous layer's. Every band has at least one layer, so ``L >= 3``.

    Why not 3 piecewise-*constant* segments: on a ramp their middle segment sits at mid-height
    and its boundaries cut the rise in thirds instead of marking where the rise starts and ends,
    and they add two spurious jumps. Why not free slopes in the outer segments: the plateaus are
    what "shared" and "refinement" mean; a slight drift in the refinement band (the paper's
    "rises a little more") is left in the residual. Why not thresholds on the raw curve (sign of
    ``m(l)``, cumulative rise): they depend on arbitrary levels and flip with single noisy layers;
    least squares uses every layer. Whether the shared band has ``Delta <= 0`` (SFT more general
    than PT, finding 3) is *reported* (:attr:`Bands.summary`, ``mean_delta`` and its CI), not
    imposed, so the finding can fail.

Is a transition identifiable? (explicit criterion)
    Two numbers, both must pass:

    * ``rise_z = (c - a) / se(c - a) >= min_rise_z`` (default 3): the fitted rise must exceed
      ``min_rise_z`` times its bootstrap noise, where ``se`` is the standard deviation of the
      rise over task-bootstrap replicates, each *refitted* (boundaries re-chosen), so the
      selection of the knots is part of the noise. A falling curve (``c <= a``) fails.
    * ``sharpness = 1 - RSS_bands / RSS_alt >= min_sharpness`` (default 0.5): the three bands
      must remove at least half of the residual of the best fit of the same family that lacks
      a plateau -- no shared plateau (``b1 = 0``: the rise starts at layer 1) or no refinement
      plateau (``b2 = L``: the rise runs to the last layer); the straight line over all layers
      is one of these. A steady monotone trend, a flat curve, or a flat-then-steadily-rising
      "hinge" (SFT catching up with PT only gradually, as in the paper's Fig. 7) has nothing
      for the second knot to explain, so ``sharpness`` is near 0 (exactly 0 when the plateau-less
      fit is exact); fitting pure noise with the extra knot typically gains 0-0.3. A band
      fit whose shared or refinement band is a single layer is itself plateau-less (one point is
      no plateau), so it always fails: an identifiable transition has >= 2 layers on each side.
    ``transition_score = min(rise_z / min_rise_z, sharpness / min_sharpness)`` summarises both;
    the transition is identifiable iff ``transition_score >= 1``. With ``n_boot=0`` (or one
    task) there is no bootstrap, ``rise_z`` is NaN and only the rise sign and ``sharpness`` are
    checked (``Bands.noise_checked`` is False).

Confidence intervals
    Percentile intervals (:func:`layerwise.stats.percentile_ci`) of the refitted boundaries over
    ``n_boot`` replicates that resample **tasks** with replacement
    (:func:`layerwise.stats.bootstrap_tasks`), the unit the paper generalises over; bounds are
    rounded outward to whole layers. Example-level uncertainty is not resampled here (the tidy
    table holds no examples); per-task curves from :func:`layerwise.stats.bootstrap_examples_by_layer`
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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from layerwise.stats import bootstrap_tasks, percentile_ci

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
    "fit_bands",
    "find_bands",
    "band_layers",
    "relative_depth",
    "scale_boundaries",
    "paper_bands",
    "band_diagram_data",
]

#: Comparison labels of the tidy CKA table.
PT = "PT vs control"
SFT = "SFT vs control"
HELDOUT_SFT = "held-out SFT vs control"

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


def delta_table(
    cka: pd.DataFrame,
    *,
    measure: str = "linear_cka",
    experimental: str = SFT,
    reference: str = PT,
    tasks: Sequence[str] | None = None,
) -> pd.DataFrame:
    """``Delta = CKA(experimental) - CKA(reference)`` per task (rows) and layer (columns 1..L).

    See :func:`task_curves` for the arguments and errors.
    """
    exp, ref = task_curves(cka, measure=measure, experimental=experimental, reference=reference, tasks=tasks)
    return exp - ref


# --------------------------------------------------------------------------------------------
# The rule on one curve
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BandFit:
    """Plateau-ramp-plateau least-squares fit of one curve (see the module docstring).

    Attributes:
        last_shared: ``b1``, last layer of the shared band (1-based).
        last_transition: ``b2``, last layer of the transition band.
        shared_level: ``a``, fitted level of the shared plateau.
        refined_level: ``c``, fitted level of the refinement plateau.
        rss: residual sum of squares of the fit.
        rss_alt: of the best fit of the same family *without* a shared plateau (``b1 = 0``) or
            without a refinement plateau (``b2 = L``); this includes the straight line.
        rss_line: of the best straight line. tss: total sum of squares about the mean.
        fitted: ``(L,)`` fitted curve.
    """

    last_shared: int
    last_transition: int
    shared_level: float
    refined_level: float
    rss: float
    rss_alt: float
    rss_line: float
    tss: float
    fitted: np.ndarray = field(repr=False, compare=False)

    @property
    def rise(self) -> float:
        """``c - a``: the total rise of the fitted curve across the transition."""
        return self.refined_level - self.shared_level

    @property
    def sharpness(self) -> float:
        """``1 - rss / rss_alt``: the share of the best plateau-less fit's residual the bands remove.

        0 if a fit without one of the plateaus (e.g. a straight line) is already exact (to 1e-10
        of the total variance), or if the best band fit has a one-layer shared or refinement
        band (such a fit is also in the plateau-less family).
        """
        if not self.rss_alt > 1e-10 * self.tss:
            return 0.0
        return float(max(0.0, 1.0 - self.rss / self.rss_alt))

    @property
    def r2(self) -> float:
        """Coefficient of determination of the band fit (NaN for a constant curve)."""
        return float(1.0 - self.rss / self.tss) if self.tss > 0 else float("nan")


_BASES: dict[int, dict[str, np.ndarray]] = {}


def _design(pairs: np.ndarray, L: int) -> np.ndarray:
    """``(P, L, 2)`` regressors ``[f_a, f_c]`` of the plateau-ramp-plateau model for knot pairs."""
    layer = np.arange(1, L + 1, dtype=np.float64)[None, :]
    b1 = pairs[:, :1].astype(np.float64)
    b2 = pairs[:, 1:].astype(np.float64)
    fa = np.clip((b2 - layer) / (b2 - b1), 0.0, 1.0)  # 1 up to b1, linear to 0 at b2, then 0
    return np.stack([fa, 1.0 - fa], axis=-1)


def _bases(L: int) -> dict[str, np.ndarray]:
    """Knot pairs, designs and orthonormal bases (cached per L) of the band model and its rivals.

    ``pairs``: admissible ``(b1, b2)``, ``1 <= b1 < b2 <= L - 1``. ``alt_pairs``: the same
    family without a shared plateau (``b1 = 0``) or without a refinement plateau (``b2 = L``);
    ``(0, L)`` is the straight line. ``(0, 1)`` (a constant) is left out: it is rank-deficient
    and nested in the line.
    """
    if L not in _BASES:
        pairs = np.array([(b1, b2) for b1 in range(1, L - 1) for b2 in range(b1 + 1, L)], dtype=int)
        alt = sorted({(0, b2) for b2 in range(2, L + 1)} | {(b1, L) for b1 in range(0, L)})
        alt_pairs = np.array(alt, dtype=int)
        X = _design(pairs, L)
        _BASES[L] = {
            "pairs": pairs, "X": X, "Q": np.linalg.qr(X)[0],
            "alt_pairs": alt_pairs, "alt_Q": np.linalg.qr(_design(alt_pairs, L))[0],
        }
    return _BASES[L]


def _rss(Q: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Residual sums of squares of ``y`` after projection on each ``(L, 2)`` basis in ``Q``."""
    proj = np.einsum("pld,l->pd", Q, y)
    resid = y[None, :] - np.einsum("pld,pd->pl", Q, proj)
    return np.einsum("pl,pl->p", resid, resid)


def fit_bands(curve: Any) -> BandFit:
    """Fit the plateau-ramp-plateau rule to one layer curve (exact, deterministic).

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
    L = y.shape[0]
    if L < 3:
        raise ValueError(f"band detection needs at least 3 layers (one per band), got {L}")
    if not np.isfinite(y).all():
        raise ValueError(
            f"curve has non-finite values at layer(s) {[int(i) + 1 for i in np.flatnonzero(~np.isfinite(y))]}"
        )
    B = _bases(L)
    pairs, X = B["pairs"], B["X"]
    rss = _rss(B["Q"], y)
    tss = float(np.sum((y - y.mean()) ** 2))
    # deterministic tie-break: among fits equal to rounding, the first pair (smallest b1, b2)
    tol = 1e-12 * max(float(np.dot(y, y)), 1e-300)
    best = int(np.flatnonzero(rss <= rss.min() + tol)[0])
    coef, *_ = np.linalg.lstsq(X[best], y, rcond=None)
    layer = np.arange(1, L + 1, dtype=np.float64)
    line = np.polyval(np.polyfit(layer, y, 1), layer)
    return BandFit(
        last_shared=int(pairs[best, 0]),
        last_transition=int(pairs[best, 1]),
        shared_level=float(coef[0]),
        refined_level=float(coef[1]),
        rss=float(max(rss[best], 0.0)),
        rss_alt=float(max(_rss(B["alt_Q"], y).min(), 0.0)),
        rss_line=float(np.sum((y - line) ** 2)),
        tss=tss,
        fitted=X[best] @ coef,
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
        rise_se: bootstrap standard error of the rise (NaN without a bootstrap).
        min_rise_z, min_sharpness: thresholds of the identifiability criterion.
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

    @property
    def last_shared(self) -> int:
        """Last layer of the shared band (1-based)."""
        return self.fit.last_shared

    @property
    def last_transition(self) -> int:
        """Last layer of the transition band (1-based)."""
        return self.fit.last_transition

    @property
    def layers(self) -> dict[str, tuple[int, int]]:
        """``{band: (first, last)}`` layers, inclusive."""
        return band_layers(self.last_shared, self.last_transition, self.n_layers)

    @property
    def rise(self) -> float:
        """Fitted rise ``c - a`` of the aggregate curve."""
        return self.fit.rise

    @property
    def sharpness(self) -> float:
        """See :attr:`BandFit.sharpness`."""
        return self.fit.sharpness

    @property
    def noise_checked(self) -> bool:
        """True if the rise was compared with its bootstrap noise."""
        return self.n_boot > 0 and len(self.tasks) > 1

    @property
    def rise_z(self) -> float:
        """Rise over its bootstrap standard error (inf if the se is 0 and the rise positive)."""
        if not self.noise_checked:
            return float("nan")
        if self.rise_se > 0:
            return self.rise / self.rise_se
        return float("inf") if self.rise > 0 else (0.0 if self.rise == 0 else float("-inf"))

    @property
    def transition_score(self) -> float:
        """``min(rise_z / min_rise_z, sharpness / min_sharpness)``; >= 1 means identifiable.

        Without a bootstrap the first term is replaced by ``+inf`` for a positive rise and 0
        otherwise (the noise is not checked).
        """
        if self.noise_checked:
            z = self.rise_z / self.min_rise_z
        else:
            z = float("inf") if self.rise > 0 else 0.0
        return float(min(z, self.sharpness / self.min_sharpness))

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
            f"rise {self.rise:.3f}, rise_z {self.rise_z:.2f}, sharpness {self.sharpness:.2f}: "
            f"transition {'identifiable' if self.identifiable else 'NOT identifiable'} "
            f"(score {self.transition_score:.2f})"
        )


def _aggregate(statistic: str):
    if statistic == "median":
        return np.median
    if statistic == "mean":
        return np.mean
    raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}")


def _iqr(a: np.ndarray, axis: int = 0) -> np.ndarray:
    q75, q25 = np.quantile(a, [0.75, 0.25], axis=axis)
    return q75 - q25


def find_bands(
    cka: pd.DataFrame,
    *,
    measure: str = "linear_cka",
    experimental: str = SFT,
    reference: str = PT,
    tasks: Sequence[str] | None = None,
    signal: str = "delta",
    statistic: str = "median",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int | None = 0,
    min_rise_z: float = 3.0,
    min_sharpness: float = 0.5,
) -> Bands:
    """Shared / transition / refinement bands of the layers 1..L by the plateau-ramp-plateau rule.

    Args:
        cka: the tidy CKA table (see :func:`task_curves`).
        measure: which measure to read. experimental, reference: comparison labels
            (Delta = experimental - reference); for RQ3 use ``experimental=HELDOUT_SFT``.
        tasks: subset of tasks (default: all tasks of the experimental comparison).
        signal: ``"delta"`` (default; Delta CKA per task) or ``"experimental"`` (the
            experimental comparison's CKA per task).
        statistic: ``"median"`` (default) or ``"mean"`` over tasks, per layer.
        n_boot: task-bootstrap replicates (0 = no bootstrap: no CIs, noise not checked).
        level: confidence level of the intervals. seed: RNG seed (deterministic given it).
        min_rise_z, min_sharpness: thresholds of the identifiability criterion.

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
    """
    if signal not in ("delta", "experimental"):
        raise ValueError(f"signal must be 'delta' or 'experimental', got {signal!r}")
    agg = _aggregate(statistic)
    if not (min_rise_z > 0 and min_sharpness > 0):
        raise ValueError(f"min_rise_z and min_sharpness must be > 0, got {min_rise_z}, {min_sharpness}")
    if int(n_boot) < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    exp, ref = task_curves(cka, measure=measure, experimental=experimental, reference=reference, tasks=tasks)
    E, R = exp.to_numpy(), ref.to_numpy()
    D = E - R
    S = D if signal == "delta" else E
    T, L = S.shape
    curve = agg(S, axis=0)
    fit = fit_bands(curve)

    nb = int(n_boot) if T > 1 else 0
    if nb:
        def stat(v: np.ndarray, axis: int = 0) -> np.ndarray:
            f = fit_bands(agg(v, axis=axis))
            return np.array([f.last_shared, f.last_transition, f.rise])

        res = bootstrap_tasks(S, statistic=stat, n_boot=nb, level=level, seed=seed)
        boot = res.samples
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
        fit=fit, n_layers=L, tasks=tuple(map(str, exp.index)), measure=measure,
        experimental=experimental, reference=reference, signal=signal, statistic=statistic,
        curve=np.asarray(curve, dtype=np.float64), ci=ci, level=level, n_boot=nb, rise_se=rise_se,
        min_rise_z=float(min_rise_z), min_sharpness=float(min_sharpness), boot=boot,
        summary=pd.DataFrame(rows),
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
