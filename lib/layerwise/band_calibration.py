"""Calibration of the band rule by simulation: curves shaped like the paper's Figure 2, known truth.

The band rule of :mod:`layerwise.bands` (a two-breakpoint segmented fit of the median Delta CKA
plus an identifiability criterion) has thresholds. This module chooses them, and shows how well
the rule works at a run's size, by drawing many synthetic sets of per-task curves whose true band
boundaries are known, running the rule's core on each, and counting.

Curves (per task ``t`` and layer ``l`` of ``L``; ``x = l / L``), shaped after the paper's
description of Figure 2 (Zhao, Ziser & Cohen 2024, §4, Fig. 2 and the bands of Fig. 1)
    * **PT vs control** falls with depth and spreads across tasks:
      ``PT_t(l) = p0_t - fall_t * x ** 1.5`` with ``p0_t ~ U(0.80, 0.90)`` and
      ``fall_t ~ U(0.05, 0.35)`` (early layers close to the controls, then lower and wider).
    * **Delta_t = SFT - PT** (``SFT vs control = PT + Delta``):
      - shared band (``l <= b1_t``): slightly negative, ``a_t ~ N(-0.03, 0.015)`` (SFT a little
        *less* similar to the controls than PT: the paper's "more general" shared layers);
      - transition band (``b1_t < l <= b2_t``): a steep straight rise by ``R_t ~ N(0.20, 0.05)``
        (at least 0.05);
      - refinement band (``l > b2_t``): Delta keeps rising, more slowly: by PT's further fall
        ``PT_t(b2_t) - PT_t(l)`` plus 0.03 over the band (SFT stays high and "rises a little
        more" while PT keeps falling and spreading).
    * shape ``"dip"``: the same, but SFT's own curve dips and then rises: in the shared band Delta
      falls linearly from ``a_t`` at layer 1 to ``a_t - 0.05`` at ``b1_t``, and the transition
      rises from there.
    * null shapes, with no transition (for the false-positive rate), same PT, same noise, same
      total rise as the paper shape where there is one:
      ``"flat"`` (``Delta_t = a_t`` everywhere), ``"linear"`` (a steady rise from layer 1 to L),
      ``"hinge"`` (flat up to ``b1_t``, then a steady rise to layer L: SFT catching up with PT
      only gradually, like the paper's Fig. 7 for unseen tasks).
    * true boundaries: the paper's (9, 15) of 32 at the same relative depth
      (:func:`layerwise.bands.scale_boundaries`: (5, 8) of 18, (8, 14) of 30); each task's own
      boundaries are jittered by a uniform integer in ``[-jitter, jitter]`` (default 1 layer).
    * noise: independent normal noise with SD ``noise_sd / sqrt(2)`` on each of PT and SFT per
      task and layer, so Delta's per-task noise SD is ``noise_sd``. Match it to a run with
      :func:`estimate_task_noise`.

The magnitudes (0.03, 0.20, 0.05, ...) are a reading of the figure's description, not values
from the paper (which gives none); they are the defaults of :class:`CurveShape` and can be
changed.

Outputs (tidy DataFrames; everything is a pure function of its arguments and the seed)
    * :func:`simulate_band_draws` - one row per simulated draw (shape, layers, tasks, draw) with
      the true and fitted boundaries and the rule's statistics (``rise_z``, ``sharpness``,
      ``contrast``).
    * :func:`recovery_table` - per shape with a transition, layers and tasks: the share of draws
      where the transition is identifiable *and* both boundaries are within +-1 / +-2 layers.
    * :func:`false_positive_table` - per null shape, layers and tasks: the share of draws where a
      transition is declared identifiable.
    * :func:`choose_thresholds` - the thresholds the band rule uses
      (:data:`layerwise.bands.MIN_RISE_Z`, ...), chosen on a grid to keep the worst
      false-positive rate <= 10 %.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from layerwise.bands import (MIN_CONTRAST, MIN_RISE_Z, MIN_SHARPNESS, PAPER_BANDS, delta_table,
                             fit_many, scale_boundaries, transition_score)

__all__ = [
    "CurveShape",
    "SHAPES",
    "TRANSITION_SHAPES",
    "NULL_SHAPES",
    "DEFAULT_NOISE_SD",
    "THRESHOLD_GRID",
    "true_boundaries",
    "simulate_curves",
    "simulate_band_draws",
    "recovery_table",
    "false_positive_table",
    "choose_thresholds",
    "estimate_task_noise",
    "GOAL_SIZES",
    "MIN_STUDY_LAYERS",
    "calibration_study",
]

#: Shapes with a transition (recovery is measured on these) and without one (false positives).
TRANSITION_SHAPES = ("paper", "dip")
NULL_SHAPES = ("flat", "linear", "hinge")
SHAPES = TRANSITION_SHAPES + NULL_SHAPES

#: Default per-task noise SD of Delta CKA per layer, when no run's noise is given.
DEFAULT_NOISE_SD = 0.03

#: Candidate thresholds (min_rise_z, min_sharpness, min_contrast) searched by :func:`choose_thresholds`.
THRESHOLD_GRID: dict[str, tuple[float, ...]] = {
    "min_rise_z": (2.0, 3.0, 4.0, 6.0, 8.0),
    "min_sharpness": (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6),
    "min_contrast": (1.0, 1.5, 2.0, 3.0, 4.0),
}

#: The (layers, tasks) sizes of the goal: >= 80 % recovery, <= 10 % false positives (the
#: book's default shape, 18 layers x 12 tasks, and the paper's depth with twice the tasks).
GOAL_SIZES = ((18, 12), (32, 24))

#: The fewest layers the simulated shapes need (two layers per band).
MIN_STUDY_LAYERS = 6

#: Noise levels (per-task SD of Delta CKA per layer) the thresholds are calibrated over.
CALIBRATION_NOISE = (0.02, 0.04, 0.08)


@dataclass(frozen=True)
class CurveShape:
    """Magnitudes of the simulated Figure-2 curves (CKA units; see the module docstring).

    Attributes:
        pt_start: ``(low, high)`` of the uniform PT level at the first layer.
        pt_fall: ``(low, high)`` of the uniform PT fall from layer 0 to layer L.
        shared_delta, shared_delta_sd: mean and across-task SD of Delta in the shared band.
        rise, rise_sd: mean and across-task SD of Delta's rise over the transition band.
        refine_gain: SFT's own further rise over the refinement band.
        dip: how far Delta falls across the shared band in the ``"dip"`` shape.
        jitter: each task's boundaries move by a uniform integer in ``[-jitter, jitter]``.
    """

    pt_start: tuple[float, float] = (0.80, 0.90)
    pt_fall: tuple[float, float] = (0.05, 0.35)
    shared_delta: float = -0.03
    shared_delta_sd: float = 0.015
    rise: float = 0.20
    rise_sd: float = 0.05
    refine_gain: float = 0.03
    dip: float = 0.05
    jitter: int = 1


def true_boundaries(n_layers: int) -> tuple[int, int]:
    """The paper's (last shared, last transition) = (9, 15) of 32 at the same relative depth.

    Raises:
        ValueError: ``n_layers < 3``.
    """
    b = PAPER_BANDS["bands"]
    return scale_boundaries(b["shared"][1], b["transition"][1], PAPER_BANDS["n_layers"], int(n_layers))


def _check_sizes(n_layers: int, n_tasks: int, n_draws: int, noise_sd: float) -> None:
    if int(n_layers) < MIN_STUDY_LAYERS:
        raise ValueError(f"n_layers must be >= {MIN_STUDY_LAYERS} for the simulated shapes, got {n_layers}")
    if int(n_tasks) < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    if int(n_draws) < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    if not (np.isfinite(noise_sd) and noise_sd >= 0):
        raise ValueError(f"noise_sd must be a finite number >= 0, got {noise_sd}")


def simulate_curves(
    shape: str,
    n_layers: int,
    n_tasks: int,
    n_draws: int,
    *,
    noise_sd: float = DEFAULT_NOISE_SD,
    seed: int | Sequence[int] = 0,
    params: CurveShape = CurveShape(),
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Draw per-task CKA curves of PT and SFT vs control (see the module docstring for the shapes).

    Args:
        shape: one of :data:`SHAPES`.
        n_layers: L (>= 6). n_tasks: tasks per draw. n_draws: independent draws.
        noise_sd: per-task SD of Delta CKA's noise per layer (>= 0).
        seed: seed (or seed sequence entropy) of ``numpy.random.default_rng``.
        params: the curve magnitudes.

    Returns:
        ``(pt, sft)``: float64 arrays of shape ``(n_draws, n_tasks, n_layers)``; layer ``l`` is
        column ``l - 1``. The true boundaries are :func:`true_boundaries` ``(n_layers)``.

    Raises:
        ValueError: unknown shape or bad sizes (named, with the valid choices).
    """
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {list(SHAPES)}, got {shape!r}")
    _check_sizes(n_layers, n_tasks, n_draws, noise_sd)
    D, T, L = int(n_draws), int(n_tasks), int(n_layers)
    p = params
    rng = np.random.default_rng(seed)
    b1, b2 = true_boundaries(L)
    x = np.arange(1, L + 1, dtype=np.float64) / L
    layer = np.arange(1, L + 1, dtype=np.float64)
    size = (D, T, 1)
    p0 = rng.uniform(*p.pt_start, size)
    fall = rng.uniform(*p.pt_fall, size)
    j1 = rng.integers(-p.jitter, p.jitter + 1, size)
    j2 = rng.integers(-p.jitter, p.jitter + 1, size)
    a = rng.normal(p.shared_delta, p.shared_delta_sd, size)
    rise = np.maximum(rng.normal(p.rise, p.rise_sd, size), 0.05)
    noise = rng.normal(0.0, noise_sd / np.sqrt(2.0), (2, D, T, L))
    pt = p0 - fall * x ** 1.5
    t1 = np.clip(b1 + j1, 1, L - 2).astype(np.float64)
    t2 = np.clip(b2 + j2, t1 + 1, L - 1).astype(np.float64)
    pt_at = p0 - fall * (t2 / L) ** 1.5  # PT at the task's last transition layer
    refine = (pt_at - pt) + p.refine_gain * np.clip((layer - t2) / (L - t2), 0.0, 1.0)
    total = rise + (pt_at - pt[..., -1:]) + p.refine_gain  # Delta's whole rise in the paper shape
    if shape in TRANSITION_SHAPES:
        start = a - (p.dip if shape == "dip" else 0.0)
        shared = a - (p.dip * (layer - 1) / np.maximum(t1 - 1, 1) if shape == "dip" else 0.0)
        ramp = start + (a + rise - start) * np.clip((layer - t1) / (t2 - t1), 0.0, 1.0)
        delta = np.where(layer <= t1, shared, np.where(layer <= t2, ramp, a + rise + refine))
    elif shape == "flat":
        delta = np.broadcast_to(a, (D, T, L))
    elif shape == "linear":
        delta = a + total * (layer - 1) / (L - 1)
    else:  # hinge
        delta = a + total * np.clip((layer - t1) / (L - t1), 0.0, 1.0)
    return pt + noise[0], pt + delta + noise[1]


def _cell_seed(seed: int, shape: str, n_layers: int, n_tasks: int) -> list[int]:
    """Seed entropy of one (shape, L, T) cell: independent of which other cells are drawn."""
    return [int(seed), SHAPES.index(shape), int(n_layers), int(n_tasks)]


def simulate_band_draws(
    n_layers: Sequence[int] = (18, 30, 32),
    n_tasks: Sequence[int] = (6, 9, 12, 18, 24),
    *,
    noise_sd: float | Sequence[float] = DEFAULT_NOISE_SD,
    n_draws: int = 400,
    shapes: Sequence[str] = SHAPES,
    seed: int = 0,
    statistic: str = "median",
    params: CurveShape = CurveShape(),
) -> pd.DataFrame:
    """Run the band rule's core on simulated draws of every (shape, layers, tasks) cell.

    For each draw: simulate ``n_tasks`` curves (:func:`simulate_curves`), take Delta per task, its
    median (or mean) over tasks per layer - as :func:`layerwise.bands.find_bands` does - and fit
    the band model (:func:`layerwise.bands.fit_many`). Thresholds are *not* applied here, so the
    table serves any thresholds (:func:`recovery_table`, :func:`false_positive_table`,
    :func:`choose_thresholds`).

    Args:
        n_layers, n_tasks: the sizes (every combination is drawn).
        noise_sd: per-task SD of Delta CKA's noise per layer (e.g. :func:`estimate_task_noise`),
            or several (every level is drawn, with the same underlying random numbers).
        n_draws: draws per cell. shapes: a subset of :data:`SHAPES`.
        seed: base seed; each cell's generator is seeded by ``(seed, shape, L, T)``, so a cell's
            draws do not depend on which other cells are requested.
        statistic: ``"median"`` (the rule's default) or ``"mean"`` over tasks.
        params: curve magnitudes (:class:`CurveShape`).

    Returns:
        DataFrame, one row per draw: ``shape, null`` (bool: no true transition), ``n_layers,
        n_tasks, draw, noise_sd, true_last_shared, true_last_transition, last_shared,
        last_transition`` (int layers), ``rise, rise_z, sharpness, contrast`` (float).

    Raises:
        ValueError: unknown shape or statistic, bad sizes.
    """
    bad = [s for s in shapes if s not in SHAPES]
    if bad or not len(shapes):
        raise ValueError(f"shapes must be a non-empty subset of {list(SHAPES)}, got {list(shapes)}")
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}")
    noises = [float(v) for v in np.atleast_1d(np.asarray(noise_sd, dtype=np.float64))]
    for L in n_layers:
        for T in n_tasks:
            for sd in noises:
                _check_sizes(L, T, n_draws, sd)
    agg = np.median if statistic == "median" else np.mean
    parts = []
    for shape, L, T, sd in itertools.product(shapes, n_layers, n_tasks, noises):
        b1, b2 = true_boundaries(L)
        pt, sft = simulate_curves(shape, L, T, n_draws, noise_sd=sd, seed=_cell_seed(seed, shape, L, T), params=params)
        f = fit_many(agg(sft - pt, axis=1))
        parts.append(pd.DataFrame({
            "shape": shape, "null": shape in NULL_SHAPES, "n_layers": int(L), "n_tasks": int(T),
            "draw": np.arange(int(n_draws)), "noise_sd": sd,
            "true_last_shared": b1, "true_last_transition": b2,
            "last_shared": f["last_shared"], "last_transition": f["last_transition"],
            "rise": f["rise"], "rise_z": f["rise_z"], "sharpness": f["sharpness"], "contrast": f["contrast"],
        }))
    return pd.concat(parts, ignore_index=True)


def calibration_study(
    n_layers: int,
    n_tasks: int,
    noise_sd: float = DEFAULT_NOISE_SD,
    *,
    n_draws: int = 400,
    seed: int = 0,
    params: CurveShape = CurveShape(),
) -> pd.DataFrame:
    """The study a chapter shows: a run's own size and noise, plus the :data:`GOAL_SIZES`.

    Draws every shape at ``(n_layers, n_tasks)`` (skipped if ``n_layers <``
    :data:`MIN_STUDY_LAYERS`, too shallow for the simulated shapes) and at each goal size, all at ``noise_sd`` (e.g.
    :func:`estimate_task_noise` of the run). A pure function of its arguments (cacheable).

    Args:
        n_layers, n_tasks: the run's layer and task counts. noise_sd: per-task noise SD (>= 0).
        n_draws, seed, params: as in :func:`simulate_band_draws`.

    Returns:
        :func:`simulate_band_draws` rows of those sizes (each size once).

    Raises:
        ValueError: ``n_tasks < 1`` or bad ``noise_sd`` / ``n_draws``.
    """
    if int(n_tasks) < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    sizes = ([(int(n_layers), int(n_tasks))] if int(n_layers) >= MIN_STUDY_LAYERS else []) + list(GOAL_SIZES)
    sizes = list(dict.fromkeys(sizes))
    return pd.concat([simulate_band_draws((L,), (T,), noise_sd=noise_sd, n_draws=n_draws, seed=seed, params=params)
                      for L, T in sizes], ignore_index=True)


def _identifiable(draws: pd.DataFrame, **thresholds: float) -> NDArray[np.bool_]:
    """Which draws the rule declares identifiable under ``thresholds`` (``min_rise_z``, ``min_sharpness``,
    ``min_contrast``; default: the calibrated ones of :func:`layerwise.bands.transition_score`)."""
    score = transition_score(draws["rise_z"].to_numpy(), draws["sharpness"].to_numpy(), draws["contrast"].to_numpy(),
                             **thresholds)
    return score >= 1.0


def _check_draws(draws: pd.DataFrame) -> None:
    need = ["shape", "null", "n_layers", "n_tasks", "noise_sd", "rise_z", "sharpness", "contrast", "last_shared",
            "last_transition", "true_last_shared", "true_last_transition"]
    missing = [c for c in need if c not in getattr(draws, "columns", [])]
    if missing:
        raise ValueError(f"draws is missing column(s) {missing}; pass the table of simulate_band_draws")


def recovery_table(draws: pd.DataFrame, **thresholds: float) -> pd.DataFrame:
    """Recovery rate of the true bands, per shape with a transition, layers and tasks.

    A draw *recovers* the bands at tolerance ``k`` if its transition is identifiable under the
    given thresholds and both fitted boundaries are within ``k`` layers of the truth.

    Args:
        draws: :func:`simulate_band_draws`.
        thresholds: ``min_rise_z``, ``min_sharpness``, ``min_contrast`` (default: the calibrated ones).

    Returns:
        DataFrame with columns ``shape, n_layers, n_tasks, noise_sd, n_draws, identified`` (share declared
        identifiable), ``recovered_1, recovered_2`` (shares recovered within +-1, +-2 layers),
        ``recovered_2_se`` (binomial standard error), ``median_error_shared,
        median_error_transition`` (median signed error of each boundary, layers).

    Raises:
        ValueError: a required column is missing.
    """
    _check_draws(draws)
    d = draws[~draws["null"]].copy()
    d["identified"] = _identifiable(d, **thresholds)
    e1 = d["last_shared"] - d["true_last_shared"]
    e2 = d["last_transition"] - d["true_last_transition"]
    d["err_shared"], d["err_transition"] = e1, e2
    for k in (1, 2):
        d[f"recovered_{k}"] = d["identified"] & (e1.abs() <= k) & (e2.abs() <= k)
    g = d.groupby(["shape", "n_layers", "n_tasks", "noise_sd"], sort=True)
    out = g.agg(n_draws=("identified", "size"), identified=("identified", "mean"),
                recovered_1=("recovered_1", "mean"), recovered_2=("recovered_2", "mean"),
                median_error_shared=("err_shared", "median"),
                median_error_transition=("err_transition", "median")).reset_index()
    out.insert(out.columns.get_loc("recovered_2") + 1, "recovered_2_se",
               np.sqrt(out["recovered_2"] * (1 - out["recovered_2"]) / out["n_draws"]))
    return out


def false_positive_table(draws: pd.DataFrame, **thresholds: float) -> pd.DataFrame:
    """False-positive rate: share of null draws (no true transition) declared identifiable.

    Args:
        draws: :func:`simulate_band_draws`.
        thresholds: ``min_rise_z``, ``min_sharpness``, ``min_contrast`` (default: the calibrated ones).

    Returns:
        DataFrame with columns ``shape, n_layers, n_tasks, noise_sd, n_draws, false_positive,
        false_positive_se``.

    Raises:
        ValueError: a required column is missing.
    """
    _check_draws(draws)
    d = draws[draws["null"]].copy()
    d["false_positive"] = _identifiable(d, **thresholds)
    out = (d.groupby(["shape", "n_layers", "n_tasks", "noise_sd"], sort=True)
           .agg(n_draws=("false_positive", "size"), false_positive=("false_positive", "mean")).reset_index())
    out["false_positive_se"] = np.sqrt(out["false_positive"] * (1 - out["false_positive"]) / out["n_draws"])
    return out


def choose_thresholds(
    draws: pd.DataFrame,
    *,
    grid: dict[str, Sequence[float]] | None = None,
    max_false_positive: float = 0.10,
) -> dict[str, float]:
    """The thresholds of the band rule, chosen on a grid from a simulation study.

    Among all combinations of ``grid`` whose *largest* false-positive rate over every null cell
    (shape x layers x tasks x noise) of ``draws`` is ``<= max_false_positive``, take the one with
    the highest mean recovery rate within +-2 layers over all transition cells; ties go to the
    larger (more conservative) thresholds, compared in the order sharpness, rise_z, contrast.

    Args:
        draws: :func:`simulate_band_draws` with both null and transition shapes.
        grid: ``{"min_rise_z": [...], "min_sharpness": [...], "min_contrast": [...]}``
            (default :data:`THRESHOLD_GRID`).
        max_false_positive: the largest allowed false-positive rate, in (0, 1).

    Returns:
        ``{"min_rise_z", "min_sharpness", "min_contrast"}`` (floats) plus ``"max_false_positive"``
        and ``"mean_recovered_2"`` of the choice.

    Raises:
        ValueError: bad ``max_false_positive``, a grid key missing, draws without null or
            transition shapes, or no combination meets the false-positive limit.
    """
    _check_draws(draws)
    if not 0.0 < max_false_positive < 1.0:
        raise ValueError(f"max_false_positive must be in (0, 1), got {max_false_positive}")
    grid = dict(THRESHOLD_GRID if grid is None else grid)
    keys = ("min_rise_z", "min_sharpness", "min_contrast")
    missing = [k for k in keys if k not in grid]
    if missing:
        raise ValueError(f"grid is missing {missing}; it needs {list(keys)}")
    null, signal = draws[draws["null"]], draws[~draws["null"]]
    if null.empty or signal.empty:
        raise ValueError("draws needs both null shapes and transition shapes to choose thresholds")
    cells = ["shape", "n_layers", "n_tasks", "noise_sd"]
    null_cell = null.groupby(cells, sort=True).ngroup().to_numpy()
    sig_cell = signal.groupby(cells, sort=True).ngroup().to_numpy()
    close = ((signal["last_shared"] - signal["true_last_shared"]).abs() <= 2) & (
        (signal["last_transition"] - signal["true_last_transition"]).abs() <= 2)
    close = close.to_numpy()
    stats = {k: (d["rise_z"].to_numpy(), d["sharpness"].to_numpy(), d["contrast"].to_numpy()) for k, d in
             (("null", null), ("signal", signal))}
    best: tuple | None = None
    for rz, sh, co in itertools.product(*(sorted(grid[k]) for k in keys)):
        fp_hit = transition_score(*stats["null"], min_rise_z=rz, min_sharpness=sh, min_contrast=co) >= 1
        fp = np.bincount(null_cell, weights=fp_hit) / np.bincount(null_cell)
        if fp.max() > max_false_positive:
            continue
        hit = (transition_score(*stats["signal"], min_rise_z=rz, min_sharpness=sh, min_contrast=co) >= 1) & close
        rec = float(np.mean(np.bincount(sig_cell, weights=hit) / np.bincount(sig_cell)))
        key = (round(rec, 12), sh, rz, co)
        if best is None or key > best[0]:
            best = (key, {"min_rise_z": float(rz), "min_sharpness": float(sh), "min_contrast": float(co),
                          "max_false_positive": float(fp.max()), "mean_recovered_2": rec})
    if best is None:
        raise ValueError(f"no threshold combination of the grid keeps every false-positive rate <= {max_false_positive}")
    return best[1]


def estimate_task_noise(cka: pd.DataFrame, **selection: Any) -> float:
    """Per-task noise SD of Delta CKA per layer, measured on a run's similarity table.

    For each task's Delta curve ``y_1..y_L`` the pseudo-residuals
    ``e_l = (y_{l-1} - 2 y_l + y_{l+1}) / sqrt(6)`` (Gasser, Sroka & Jennen-Steinmetz 1986,
    Biometrika 73(3), eq. 2 for equally spaced layers) have mean 0 and variance ``sigma^2``
    wherever the true curve is locally linear, whatever its level and slope. The task's noise is
    their robust SD, ``1.4826 * median(|e_l|)`` (a few kinks, e.g. at the band boundaries, do not
    move it), and the run's value is the median over tasks. This is the ``noise_sd`` of
    :func:`simulate_curves`.

    Args:
        cka: the tidy similarity table (see :func:`layerwise.bands.task_curves`).
        **selection: ``measure``, ``experimental``, ``reference``, ``tasks``, as in
            :func:`layerwise.bands.task_curves` (same defaults).

    Returns:
        The noise SD (float, CKA units).

    Raises:
        ValueError: bad table (see :func:`layerwise.bands.task_curves`).
        TypeError: a keyword that :func:`layerwise.bands.task_curves` does not take.
    """
    D = delta_table(cka, **selection).to_numpy()
    e = (D[:, :-2] - 2.0 * D[:, 1:-1] + D[:, 2:]) / np.sqrt(6.0)
    return float(np.median(1.4826 * np.median(np.abs(e), axis=1)))
