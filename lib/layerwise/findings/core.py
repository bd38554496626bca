"""The findings registry: verdict vocabulary, the :class:`Finding` record, the ``@finding`` decorator.

A finding of the paper is one small function, registered with :func:`finding`, that takes the
:class:`Context` of one similarity table and returns a :class:`Finding`: its statistic, an
interval (saying what it resamples), a verdict and its power (the minimal detectable effect at
this run's size against the paper's effect). :func:`evaluate` runs every registered finding in
order. Adding a finding means adding one decorated function (see :mod:`layerwise.findings.paper`).

Verdicts:

* ``holds`` - the interval lies on the side the paper claims;
* ``does not hold`` - it lies on the other side, and the run could have seen the paper's effect;
* ``inconclusive`` - the interval covers zero (or the rule cannot decide), with enough power;
* ``inconclusive (underpowered)`` - the run is too small to see an effect of the paper's size
  (its minimal detectable effect exceeds it), so a missing effect says nothing.

Where a finding is shown in the book is not decided here: the report layer maps finding ids to
chapters (:mod:`layerwise.report_links`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from ..analysis import layer_thirds, select, task_layer_matrix
from ..vocab import HELDOUT_SFT, PT, SFT, SHUFFLED_PT

__all__ = [
    "HOLDS", "DOES_NOT_HOLD", "INCONCLUSIVE", "UNDERPOWERED", "VERDICTS",
    "verdict", "powered_verdict", "Finding", "Context", "FindingSpec", "REGISTRY", "finding",
    "evaluate", "findings_table", "DEBIASED_OF",
]

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive"
UNDERPOWERED = "inconclusive (underpowered)"
#: Every verdict a finding can have.
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, UNDERPOWERED)

#: The debiased version of a biased measure, used for the level findings (F1, F2, F2b).
DEBIASED_OF = {"linear_cka": "debiased_cka", "rbf_cka": "debiased_rbf_cka"}


def verdict(low: float, high: float, *, expect: str = "positive") -> str:
    """Verdict from a confidence interval of a statistic whose sign the paper predicts.

    Args:
        low, high: interval bounds (may be infinite).
        expect: ``"positive"`` (the paper claims > 0) or ``"negative"`` (claims < 0).

    Returns:
        ``"holds"``, ``"does not hold"`` or ``"inconclusive"`` (also for NaN bounds).

    Raises:
        ValueError: ``expect`` is neither ``"positive"`` nor ``"negative"``.
    """
    if expect not in ("positive", "negative"):
        raise ValueError(f"expect must be 'positive' or 'negative', got {expect!r}")
    if np.isnan(low) or np.isnan(high):
        return INCONCLUSIVE
    lo, hi = (low, high) if expect == "positive" else (-high, -low)
    if lo > 0:
        return HOLDS
    if hi < 0:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def powered_verdict(raw: str, mde: float, effect: float) -> str:
    """A verdict that says "underpowered" instead of "does not hold"/"inconclusive" when it must.

    Args:
        raw: the verdict of the interval (:func:`verdict`) or of a rule.
        mde: minimal detectable effect at this run's size (inf/NaN = none).
        effect: the paper's effect, in the same units (its size; the sign is ignored).

    Returns:
        ``raw`` if it is ``holds`` or if ``mde <= |effect|``; else ``inconclusive (underpowered)``.
    """
    if raw == HOLDS:
        return raw
    if not (np.isfinite(mde) and mde <= abs(effect)):
        return UNDERPOWERED
    return raw


@dataclass(frozen=True)
class Finding:
    """One finding of the paper as a testable statement, with this run's verdict and power.

    Attributes:
        id: short identifier (``F1`` ...).
        claim: the paper's finding in words.
        test: the statistic and the rule that decides the verdict.
        estimate, low, high: the statistic and its interval (NaN if not applicable; infinite
            bounds when no finite interval reaches the level at this size).
        verdict: one of :data:`VERDICTS`.
        detail: the numbers behind the verdict, in words (generated).
        interval: what the interval resamples or enumerates, and what noise it leaves out.
        measure: the measure the verdict reads (the level findings read debiased CKA).
        n_tasks: tasks behind the statistic. n_seeds: experimental-adapter seeds behind it.
        mde: minimal detectable effect at this run's size (80 % power, two-sided 5 %), in the
            statistic's units. paper_effect: the effect the paper's figures show, same units.
        paper_estimate, paper_low, paper_high, paper_verdict: the same statistic on the paper's
            (biased) measure, for the level findings; NaN / empty otherwise.
    """

    id: str
    claim: str
    test: str
    estimate: float
    low: float
    high: float
    verdict: str
    detail: str
    interval: str = ""
    measure: str = ""
    n_tasks: int = 0
    n_seeds: int = 1
    mde: float = float("nan")
    paper_effect: float = float("nan")
    paper_estimate: float = float("nan")
    paper_low: float = float("nan")
    paper_high: float = float("nan")
    paper_verdict: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict={self.verdict!r} of finding {self.id} is not one of {list(VERDICTS)}")


@dataclass
class Context:
    """What the findings read from one similarity table, computed once and shared.

    Attributes:
        sim: the tidy similarity table (columns of :data:`layerwise.vocab.SIMILARITY_COLUMNS`;
            optionally a ``seed`` column holding the experimental adapter's seed, NaN on rows of
            models without one).
        measure, pooling: the values the verdicts read (the level findings read the debiased
            version of ``measure`` when the table has it; see :attr:`level_measure`).
        heldout_tasks: tasks the held-out SFT model never saw.
        halves: optional split-half table (the similarity columns plus ``half`` in {"A", "B"}:
            values computed from two disjoint halves of each task's test examples), for F6.
        n_boot: bootstrap replicates. seed: bootstrap seed. level: confidence level.
        effects: the paper's effect per finding id (the registered ones unless overridden).
        n_power_sims, n_power_boot: simulated runs, and bootstrap replicates in each, of the
            band findings' power check (F4, F7b).
    """

    sim: pd.DataFrame
    measure: str = "linear_cka"
    pooling: str = "last"
    heldout_tasks: Sequence[str] = ()
    halves: pd.DataFrame | None = None
    n_boot: int = 2000
    seed: int = 0
    level: float = 0.95
    effects: dict[str, float] = field(default_factory=dict)
    n_power_sims: int = 20
    n_power_boot: int = 50
    cache: dict[str, object] = field(default_factory=dict)

    # ---- tables ------------------------------------------------------------
    def matrix(self, comparison: str, measure: str | None = None, sim: pd.DataFrame | None = None) -> pd.DataFrame:
        """``(n_tasks, n_layers)`` values of one comparison (averaged over seeds, if any)."""
        return task_layer_matrix(self.sim if sim is None else sim, comparison,
                                 measure=measure or self.measure, pooling=self.pooling)

    @cached_property
    def sim_seed_mean(self) -> pd.DataFrame:
        """The table with values averaged over experimental-adapter seeds (itself without a ``seed`` column)."""
        if "seed" not in self.sim:
            return self.sim
        keys = [c for c in self.sim.columns if c not in ("seed", "value", "n_examples")]
        return self.sim.groupby(keys, as_index=False, sort=False)["value"].mean()

    @cached_property
    def pt(self) -> pd.DataFrame:
        """CKA(PT, control) per task and layer, on :attr:`measure`."""
        return self.matrix(PT)

    @cached_property
    def sft_tasks(self) -> list[str]:
        """Every task with both PT and SFT values: all the tasks the SFT model trained on."""
        sft = self.matrix(SFT)
        return [t for t in self.pt.index if t in sft.index]

    @cached_property
    def n_layers(self) -> int:
        """L (the largest layer in the table)."""
        return int(self.pt.columns.max())

    @cached_property
    def thirds(self) -> dict[str, list[int]]:
        """:func:`layerwise.analysis.layer_thirds` of L."""
        return layer_thirds(self.n_layers)

    @cached_property
    def comparisons(self) -> set[str]:
        """Comparisons present for :attr:`measure` and :attr:`pooling`."""
        s = self.sim
        return set(s[(s["measure"] == self.measure) & (s["pooling"] == self.pooling)]["comparison"])

    @cached_property
    def heldout(self) -> list[str]:
        """Held-out tasks that have PT and held-out SFT values."""
        if HELDOUT_SFT not in self.comparisons:
            return []
        h = self.matrix(HELDOUT_SFT)
        return [t for t in self.heldout_tasks if t in self.pt.index and t in h.index]

    @cached_property
    def clusters(self) -> pd.Series:
        """task -> cluster."""
        return self.sim.drop_duplicates("task").set_index("task")["cluster"]

    def delta_by_seed(self, experimental: str, layers: list[int], tasks: list[str]) -> pd.DataFrame:
        """Per (seed, task): mean over ``layers`` of ΔCKA = CKA(experimental, control) − CKA(PT, control).

        Columns ``seed, task, value``; without a ``seed`` column in the table one seed (``0``).
        """
        sub = select(self.sim, measure=self.measure, pooling=self.pooling, comparisons=[experimental], tasks=tasks)
        sub = sub[sub["layer"].isin(layers)]
        if "seed" not in sub or sub["seed"].isna().all():
            sub = sub.assign(seed=0)
        e = sub.groupby(["seed", "task"])["value"].mean()
        pt = self.pt.loc[tasks, layers].mean(axis=1)
        d = (e - pt.reindex(e.index.get_level_values("task")).to_numpy()).rename("value").reset_index()
        return d

    # ---- the level measure (debiased, or null-adjusted) --------------------
    @cached_property
    def level_values(self) -> tuple[pd.DataFrame, str, str]:
        """CKA(PT, control) for the level findings: ``(matrix, measure label, how it was obtained)``.

        The debiased measure when the table has it; else the measure minus its shuffled-row null
        (per task and layer); else the measure itself, said so.
        """
        if self.measure.startswith("debiased"):
            return self.pt, self.measure, "the debiased measure itself"
        deb = DEBIASED_OF.get(self.measure)
        s = self.sim
        have = set(s[(s["pooling"] == self.pooling)]["measure"])
        if deb in have and PT in set(s[(s["measure"] == deb) & (s["pooling"] == self.pooling)]["comparison"]):
            return self.matrix(PT, measure=deb), deb, f"{deb} (debiased HSIC; near 0 for unrelated representations)"
        if SHUFFLED_PT in self.comparisons:
            null = self.matrix(SHUFFLED_PT)
            adj = (self.pt - null.reindex(index=self.pt.index, columns=self.pt.columns))
            if np.isfinite(adj.to_numpy()).any():
                return adj, f"{self.measure} − null", f"{self.measure} minus its shuffled-row null per task and layer"
        return self.pt, self.measure, f"{self.measure}, NOT adjusted (the table has no debiased or null values)"

    def effect(self, fid: str, default: float) -> float:
        """The paper's effect for finding ``fid`` (from :attr:`effects`, else ``default``)."""
        return float(self.effects.get(fid, default))


@dataclass(frozen=True)
class FindingSpec:
    """A registered finding: its id, the function that evaluates it, and the paper's effect."""

    id: str
    fn: Callable[[Context], Finding]
    paper_effect: float
    effect_source: str


#: Registered findings in the paper's order (filled by :func:`finding`).
REGISTRY: dict[str, FindingSpec] = {}


def finding(fid: str, *, paper_effect: float, source: str) -> Callable[[Callable[[Context], Finding | None]], Callable[[Context], Finding | None]]:
    """Register a finding function under ``fid`` (the order of registration is the book's order).

    Args:
        fid: the finding's id (``F1`` ...); registering an id twice is an error.
        paper_effect: the size of the effect the paper shows, in the statistic's units.
        source: where that size is read (figure of the paper), shown in the power table.

    The function takes a :class:`Context` and returns a :class:`Finding`, or None when the table
    lacks what it needs (e.g. no held-out SFT model); it reads its paper effect with
    ``ctx.effect(fid, default)``.

    Raises:
        ValueError: ``fid`` is registered already.
    """
    def wrap(fn: Callable[[Context], Finding | None]) -> Callable[[Context], Finding | None]:
        if fid in REGISTRY:
            raise ValueError(f"finding {fid!r} is registered twice ({REGISTRY[fid].fn.__name__} and {fn.__name__})")
        REGISTRY[fid] = FindingSpec(fid, fn, float(paper_effect), source)
        return fn

    return wrap


def evaluate(sim: pd.DataFrame, *, measure: str = "linear_cka", pooling: str = "last",
             heldout_tasks: Sequence[str] = (), halves: pd.DataFrame | None = None, n_boot: int = 2000,
             seed: int = 0, level: float = 0.95, effects: dict[str, float] | None = None,
             only: Sequence[str] | None = None, n_power_sims: int = 20,
             exclude_tasks: Sequence[str] = ()) -> list[Finding]:
    """Every registered finding evaluated on one similarity table, in the paper's order.

    Args:
        sim: tidy similarity table. measure, pooling: which values to read.
        heldout_tasks: tasks the held-out SFT model never saw (RQ3).
        halves: split-half table for F6 (see :class:`Context`); without it F6 is inconclusive.
        n_boot: bootstrap replicates. seed: bootstrap seed. level: confidence level.
        effects: finding id -> the paper's effect, overriding the registered ones.
        only: ids to evaluate (default: all registered).
        n_power_sims: simulated runs of the band findings' power check (0 = none: underpowered).
        exclude_tasks: tasks left out of every verdict (e.g. those whose control failed the
            "learned its task" gate); each finding's detail names them.

    Returns:
        list of :class:`Finding` (findings whose inputs are absent are left out).

    Raises:
        ValueError: the table lacks the measure, pooling or the PT/SFT comparisons; an unknown
            id in ``only``.
    """
    select(sim, measure=measure, pooling=pooling, comparisons=[PT, SFT])  # fail early, with the message
    excluded = sorted(set(exclude_tasks) & set(sim["task"]))
    if excluded:
        sim = sim[~sim["task"].isin(excluded)]
        halves = None if halves is None else halves[~halves["task"].isin(excluded)]
        heldout_tasks = [t for t in heldout_tasks if t not in excluded]
    ids = list(REGISTRY) if only is None else list(only)
    unknown = [i for i in ids if i not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown finding id(s) {unknown}; registered: {list(REGISTRY)}")
    eff = {k: v.paper_effect for k, v in REGISTRY.items()} | dict(effects or {})
    ctx = Context(sim, measure, pooling, tuple(heldout_tasks), halves, int(n_boot), int(seed), float(level), eff,
                  n_power_sims=int(n_power_sims))
    out = []
    for i in ids:
        f = REGISTRY[i].fn(ctx)
        if f is not None:
            if excluded:
                f = replace(f, detail=f"{f.detail}; left out: {', '.join(excluded)}")
            out.append(f)
    return out


def findings_table(findings: Sequence[Finding]) -> pd.DataFrame:
    """Findings as a DataFrame, one row each, columns the fields of :class:`Finding`."""
    return pd.DataFrame([asdict(f) for f in findings])
