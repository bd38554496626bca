"""Each chapter's computed prose: its summary bullets and the run-dependent numbers it states.

Every chapter of the book ends with ``## Caveats``, ``## Summary`` and ``## References``. The
summary states the chapter's key numbers, computed from the run's tables by one function here per
chapter (``*_summary``; Markdown bullets, 3-5 of them), so no result is ever typed into a notebook.
Sentences a chapter shows in its body that need a small computation (the estimator floor, the
template shift, the response-loss comparison) live here too, so the chapter and its summary read
the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from . import vocab
from .band_calibration import MIN_STUDY_LAYERS
from .bands import Bands
from .findings.core import VERDICTS
from .findings.variants import Survival
from .report import fmt, interval_text
from .report_links import mark

__all__ = [
    "bullets", "verdict_bullet", "response_loss_comparison", "metric_comparison", "estimator_floor", "estimator_floor_markdown",
    "template_shift_markdown", "stand_in_caveat", "findings_summary", "task_suite_summary", "training_summary",
    "rq1_summary", "rq2_summary", "bands_summary", "rq3_summary", "robustness_summary", "survival_markdown",
    "spectra_summary", "cross_model_summary",
]


def bullets(items: Iterable[str]) -> str:
    """Markdown bullet list of the non-empty ``items``."""
    return "\n".join(f"- {s}" for s in items if s)


def verdict_bullet(findings: pd.DataFrame, fid: str) -> str:
    """One short line on a finding: id, verdict mark, estimate and interval, the paper's claim.

    Args:
        findings: :meth:`layerwise.pipeline.Run.findings` table. fid: finding id (``"F4"``).

    Raises:
        KeyError: ``fid`` is not in the table (the message lists the ids).
    """
    table = findings.set_index("id")
    if fid not in table.index:
        raise KeyError(f"finding {fid!r} not in this run's findings; ids: {list(table.index)}")
    f = table.loc[fid]
    return (f"**{fid}** {mark(f['verdict'])} (estimate {fmt(f['estimate'])}, 95 % CI "
            f"{interval_text(f['low'], f['high'])}): {f['claim']}")


# --------------------------------------------------------------------------------------------
# Numbers a chapter shows and summarises
# --------------------------------------------------------------------------------------------

def response_loss_comparison(loss: pd.DataFrame) -> pd.DataFrame:
    """Per task, the response-token loss of PT, SFT and the task's control, and who beats PT.

    Args:
        loss: :meth:`layerwise.pipeline.Run.response_loss` (columns ``task, role, loss``; nats per token).

    Returns:
        One row per task: ``task``, a column per role (the random-init role left out), ``control beats PT``
        and ``SFT beats PT`` (bool: lower loss than PT).
    """
    wide = loss[loss["role"] != vocab.RANDOM_ROLE].pivot(index="task", columns="role", values="loss").reset_index()
    wide["control beats PT"] = wide[vocab.CONTROL_ROLE] < wide[vocab.PT_ROLE]
    wide["SFT beats PT"] = wide[vocab.SFT_ROLE] < wide[vocab.PT_ROLE]
    return wide


def metric_comparison(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per task and metric, the task metric of every role side by side (higher is better).

    Args:
        metrics: :meth:`layerwise.pipeline.Run.evaluate` (columns ``task, metric, role, value, n``).

    Returns:
        One row per (task, metric), one column per role.
    """
    return metrics.pivot(index=["task", "metric"], columns="role", values="value").reset_index()


def estimator_floor(last: pd.DataFrame) -> dict[str, float]:
    """Median over tasks and layers of SFT vs control and of its shuffled-row null, biased and debiased CKA.

    Args:
        last: similarity rows of the last-token pooling (tidy table; ``n_examples`` column).

    Returns:
        ``{"n", "null", "observed", "debiased_null", "debiased_observed"}`` (NaN where the table lacks the rows).
    """
    def med(measure: str, comparison: str) -> float:
        return last.loc[(last["measure"] == measure) & (last["comparison"] == comparison), "value"].median()

    return {"n": int(last.loc[last["measure"] == "linear_cka", "n_examples"].iloc[0]),
            "null": med("linear_cka", vocab.SHUFFLED_SFT), "observed": med("linear_cka", vocab.SFT),
            "debiased_null": med("debiased_cka", vocab.SHUFFLED_SFT),
            "debiased_observed": med("debiased_cka", vocab.SFT)}


def estimator_floor_markdown(floor: Mapping[str, float]) -> str:
    """The sentence of :func:`estimator_floor` the robustness chapter shows."""
    return (f"At n = {floor['n']} test examples per task, the median biased CKA of the shuffled-row null is "
            f"{fmt(floor['null'])} against {fmt(floor['observed'])} for {vocab.SFT} (median over tasks and layers); "
            f"for debiased CKA the null is {fmt(floor['debiased_null'])} against {fmt(floor['debiased_observed'])}.")


def template_shift_markdown(tv: pd.DataFrame) -> str:
    """How much changing the instruction template moves CKA with the controls, and each model's own states.

    Args:
        tv: :meth:`layerwise.pipeline.Run.template_variation` (columns ``task, layer, comparison, measure,
            template`` (``original``/``other``/``across``), ``value, n_examples``); non-empty.

    Returns:
        One Markdown paragraph: the median absolute change of linear CKA with the control per comparison
        (over tasks and layers), and the median linear CKA of each model with itself across the templates.
    """
    lin = tv[tv["measure"] == "linear_cka"]
    wide = lin[lin["template"] != "across"].pivot_table(index=["task", "layer", "comparison"], columns="template",
                                                        values="value")
    shift = (wide["other"] - wide["original"]).abs().groupby(level="comparison").median()
    across = lin[lin["template"] == "across"].groupby("comparison")["value"].median()
    return (f"On {tv['n_examples'].iloc[0]} examples of each of {tv['task'].nunique()} tasks, changing the template "
            "moves " + " and ".join(f"CKA({c.split(' vs ')[0]}, control) by a median {v:.3f}" for c, v in shift.items())
            + " (absolute change, over tasks and layers), while each model's own states under the two templates "
            "have a median linear CKA of " + ", ".join(f"{v:.3f} ({c.split(':')[0]})" for c, v in across.items()) + ".")


def survival_markdown(s: Survival) -> str:
    """The verdict-survival sentence of the robustness chapter (see :func:`layerwise.findings.variants.survival`)."""
    text = (f"{len(s.survive)} of {s.n_findings} findings get the same verdict under every variant: "
            f"{', '.join(s.survive) or 'none'}.")
    if s.pair is not None:
        text += (f" With the other template, {len(s.pair_tested) - len(s.pair_changed)} of {len(s.pair_tested)} "
                 "findings keep the verdict they have on the same examples with the original template"
                 + (f"; changed: {', '.join(s.pair_changed)}." if s.pair_changed else "."))
    return text


def stand_in_caveat(overview: pd.DataFrame) -> str:
    """A caveat bullet naming the compared models whose 'PT' is already instruction-tuned ('' if none).

    Args:
        overview: :func:`layerwise.crossmodel.runs_overview` (columns ``model``, ``instruction_tuned``).
    """
    stand_ins = overview.loc[overview["instruction_tuned"], "model"].tolist()
    if not stand_ins:
        return ""
    return bullets([f"{', '.join(stand_ins)} is an instruction-tuned checkpoint: no base version of it is available "
                    "offline, so its 'PT' is an already instruction-tuned model and its 'SFT' one tuned further on "
                    "our tasks. Its PT-vs-control curves are not those of a pre-trained model."])


# --------------------------------------------------------------------------------------------
# Summaries, one per chapter
# --------------------------------------------------------------------------------------------

def findings_summary(findings: pd.DataFrame, robust: Mapping[str, pd.DataFrame]) -> str:
    """Findings page: the findings of each verdict (:data:`layerwise.findings.VERDICTS`; verdicts no finding got
    are left out), and how many keep their verdict under each robustness variant.

    Args:
        findings: :meth:`layerwise.pipeline.Run.findings` (columns ``id, verdict``).
        robust: variant label -> findings table of that variant.
    """
    items = []
    for v in VERDICTS:
        ids = findings.loc[findings["verdict"] == v, "id"].tolist()
        if ids:
            items.append(f"{mark(v)}: {len(ids)} of {len(findings)} ({', '.join(ids)}).")
    ref = findings.set_index("id")["verdict"]
    kept = [f"{int((t.set_index('id')['verdict'].reindex(ref.index) == ref).sum())} under {label}"
            for label, t in robust.items()]
    if kept:
        items.append(f"Findings that keep their verdict (of {len(ref)}): {', '.join(kept)}.")
    return bullets(items)


def task_suite_summary(table: pd.DataFrame, coverage: pd.DataFrame, lengths: pd.DataFrame) -> str:
    """Task-suite chapter: tasks and clusters of the run, provenance matches, sizes, prompt lengths.

    Args:
        table: provenance of the run's tasks merged with ``n_train``/``n_test`` (columns ``task, match,
            pool_size, n_train, n_test``). coverage: :func:`layerwise.tasks.suite.cluster_coverage`.
        lengths: :func:`layerwise.tasks.suite.length_summary` (``chars_median`` per task).
    """
    run_covered = int((coverage["run_tasks"] > 0).sum())
    matches = table["match"].value_counts()
    return bullets([
        f"{len(table)} tasks from {run_covered} of the {len(coverage)} Flan 2021 clusters.",
        f"{int(matches.get('exact', 0))} exact Flan 2021 datasets, {int(matches.get('near', 0))} near, "
        f"{int(matches.get('analog', 0))} analogs.",
        f"{int(table['n_train'].sum()):,} training and {int(table['n_test'].sum()):,} test examples, drawn from "
        f"pools of {int(table['pool_size'].sum()):,}.",
        f"Median prompt length {int(lengths['chars_median'].min()):,}-{int(lengths['chars_median'].max()):,} "
        "characters per task.",
    ])


def training_summary(summary: pd.DataFrame, loss: pd.DataFrame, metrics: pd.DataFrame) -> str:
    """Training chapter: adapters trained, controls and SFT against PT by response loss and by task metric.

    Args:
        summary: :meth:`layerwise.pipeline.Run.training_summary` (one row per adapter).
        loss, metrics: as for :func:`response_loss_comparison` and :func:`metric_comparison`.
    """
    wide, mw = response_loss_comparison(loss), metric_comparison(metrics)
    n = len(wide)
    return bullets([
        f"{len(summary)} LoRA adapters.",
        f"By response loss, the control beats PT on {int(wide['control beats PT'].sum())} of {n} tasks and the "
        f"multi-task SFT model on {int(wide['SFT beats PT'].sum())} of {n}.",
        f"By the task metric ({int(metrics['n'].iloc[0])} examples per task), the control beats PT on "
        f"{int((mw[vocab.CONTROL_ROLE] > mw[vocab.PT_ROLE]).sum())} of {len(mw)} tasks and SFT on "
        f"{int((mw[vocab.SFT_ROLE] > mw[vocab.PT_ROLE]).sum())}.",
    ])


def rq1_summary(ranking: pd.DataFrame, findings: pd.DataFrame) -> str:
    """RQ1 chapter: the highest and lowest clusters under PT, agreement with the paper's grouping, F1 and F6.

    Args:
        ranking: :func:`layerwise.analysis.cluster_ranking` (sorted, columns ``cluster, paper_group``).
    """
    k = max(1, min(4, len(ranking) // 2))  # top and bottom k never overlap
    top = ranking.head(k)
    high = int(ranking["paper_group"].eq("high").sum())
    return bullets([
        f"Highest CKA(PT, control): {', '.join(top['cluster'])}; lowest: {', '.join(ranking.tail(k)['cluster'][::-1])}.",
        f"{int(top['paper_group'].eq('high').sum())} of the {high} clusters the paper found high (present here) are "
        f"in this run's top {k}.",
        verdict_bullet(findings, "F1"), verdict_bullet(findings, "F6"),
    ])


def rq2_summary(findings: pd.DataFrame) -> str:
    """RQ2 chapter: the verdicts of the layer-wise findings F2, F2b, F3 and F5."""
    return bullets(verdict_bullet(findings, f) for f in ("F2", "F2b", "F3", "F5"))


def bands_summary(bands: Bands, findings: pd.DataFrame, recovery: pd.DataFrame) -> str:
    """Layer-bands chapter: the bands found, whether the transition is identifiable, F4, and the rule's recovery here.

    Args:
        bands: :func:`layerwise.bands.find_bands` of the run. recovery:
            :func:`layerwise.band_calibration.recovery_table` of the simulation at this run's size.
    """
    lay = bands.layers
    here = recovery[recovery["n_layers"] == bands.n_layers]
    return bullets([
        "Bands of this run: " + ", ".join(f"{b} {s}-{e}" for b, (s, e) in lay.items()) + f" of {bands.n_layers} layers.",
        f"Transition {'identifiable' if bands.identifiable else 'not identifiable'}: rise {bands.rise_z:.2f} SE "
        f"(needs {bands.min_rise_z:g}), sharpness {bands.sharpness:.2f} (needs {bands.min_sharpness:g}), contrast "
        f"{bands.contrast:.2f} (needs {bands.min_contrast:g}).",
        verdict_bullet(findings, "F4"),
        (f"At this run's size the rule recovers simulated bands within ±2 layers in "
         f"{here['recovered_2'].min():.0%}-{here['recovered_2'].max():.0%} of draws." if len(here) else
         f"This run's {bands.n_layers} layers are too few for the simulation study (at least {MIN_STUDY_LAYERS})."),
    ])


def rq3_summary(findings: pd.DataFrame, heldout: Sequence[str]) -> str:
    """RQ3 chapter: the held-out tasks and the verdicts of F7a and F7b (if the run has them)."""
    if not heldout:
        return bullets(["This run holds out no tasks, so RQ3 is not tested."])
    ids = [f for f in ("F7a", "F7b") if f in set(findings["id"])]
    return bullets([f"{len(heldout)} held-out task(s): {', '.join(heldout)}."]
                   + [verdict_bullet(findings, f) for f in ids])


def robustness_summary(floor: Mapping[str, float], table: pd.DataFrame, survive: Survival) -> str:
    """Robustness chapter: the estimator floor, and which findings survive the variants.

    Args:
        floor: :func:`estimator_floor`. table: :func:`layerwise.findings.variants.verdict_table`.
        survive: :func:`layerwise.findings.variants.survival` of ``table``.
    """
    return bullets([
        f"Shuffled-row null of biased CKA {fmt(floor['null'])} against {fmt(floor['observed'])} observed; debiased "
        f"{fmt(floor['debiased_null'])} against {fmt(floor['debiased_observed'])} (n = {floor['n']}).",
        f"{len(survive.survive)} of {survive.n_findings} findings keep their verdict under all {table.shape[1]} "
        f"variants: {', '.join(survive.survive) or 'none'}.",
        (f"With the other template, {len(survive.pair_changed)} of {len(survive.pair_tested)} tested findings change "
         "verdict." if survive.pair is not None else ""),
    ])


def spectra_summary(spectra: pd.DataFrame) -> str:
    """Spectra chapter: median effective rank per model at the first and last layer, and its ceiling.

    Args:
        spectra: :meth:`layerwise.pipeline.Run.spectra` (columns ``role, layer, effective_rank, n_examples``).
    """
    med = spectra.groupby(["role", "layer"])["effective_rank"].median().unstack("role")
    first, last = int(med.index.min()), int(med.index.max())
    return bullets([
        f"Median effective rank from layer {first} to layer {last}: "
        + "; ".join(f"{role} {med[role].iloc[0]:.1f} → {med[role].iloc[-1]:.1f}" for role in med.columns) + ".",
        f"At most {int(spectra['n_examples'].max())} (the number of examples).",
        f"Lowest at layer {last}: {med.iloc[-1].idxmin()}; highest: {med.iloc[-1].idxmax()}.",
    ])


def cross_model_summary(table: pd.DataFrame, corr: pd.DataFrame | None, agreement: pd.DataFrame | None) -> str:
    """Cross-model chapter: the models, where their transitions end in relative depth, profile and ranking agreement.

    Args:
        table: :func:`layerwise.crossmodel.bands_by_model`. corr: :func:`layerwise.crossmodel.profile_correlation`
            or ``None`` (one model). agreement: the second output of :func:`layerwise.crossmodel.cluster_rank_agreement`
            or ``None``.
    """
    items = [f"{len(table)} model(s): " + "; ".join(
        f"{r.model} ({r.n_layers} layers, transition {r.transition}, "
        f"{'identifiable' if r.identifiable else 'not identifiable'})" for r in table.itertuples()) + "."]
    if corr is not None:
        items += [f"ΔCKA profile shape, {r.model_a} vs {r.model_b}: r = {fmt(r.r, 2)} [{fmt(r.low, 2)}, {fmt(r.high, 2)}]."
                  for r in corr.itertuples()]
    if agreement is not None:
        items += [f"Cluster ranking under PT, {r.model_a} vs {r.model_b}: Spearman ρ = {fmt(r.rho, 2)} "
                  f"[{fmt(r.low, 2)}, {fmt(r.high, 2)}]." for r in agreement.itertuples()]
    if corr is None:
        items.append("No second model to compare (the spec's `compare_models` is empty).")
    return bullets(items)


# ------------------------------------------------------------------ the gate and the seeds


def gate_note(gate: pd.DataFrame, enforced: bool) -> str:
    """One line every chapter shows: which tasks the verdicts leave out because their control failed the gate.

    Args:
        gate: :meth:`layerwise.pipeline.Run.gate` (one row per task, ``passed``).
        enforced: whether failed tasks are left out (spec ``gate: enforce``) or only reported.
    """
    failed = list(gate.loc[~gate["passed"], "task"])
    if not failed:
        return f"**Gate:** every control ({len(gate)} of {len(gate)}) learned its task; no task is left out."
    names = ", ".join(f"`{t}`" for t in failed)
    if enforced:
        return (f"**Gate:** {len(failed)} of {len(gate)} controls did not learn their task ({names}); those tasks "
                "are left out of every verdict (see the training chapter).")
    return (f"**Gate (report only):** {len(failed)} of {len(gate)} controls did not learn their task ({names}); this "
            "run's spec keeps them in the verdicts (`gate: report`), so read their comparisons with care.")


def gate_display(gate: pd.DataFrame) -> pd.DataFrame:
    """The gate as the training chapter shows it: metric means, paired differences with intervals, verdict."""
    out = pd.DataFrame({
        "task": gate["task"], "metric": gate["metric"], "n": gate["n"],
        "control": gate["control"].round(3), vocab.PT_ROLE: gate[vocab.PT_ROLE].round(3),
        "other task's control": gate["other"].round(3),
        "control − PT [95% CI]": [f"{d:+.3f} {interval_text(lo, hi)}" for d, lo, hi in
                                  zip(gate["diff_pt"], gate["diff_pt_low"], gate["diff_pt_high"])],
        "NLL gain over PT, no EOS [95% CI]": [f"{d:+.3f} {interval_text(lo, hi)}" for d, lo, hi in
                                              zip(gate["nll_gain"], gate["nll_gain_low"], gate["nll_gain_high"])],
        "learned its task": gate["passed"].map({True: "✔ yes", False: "✘ no"}),
    })
    return out


def seed_spread(seeds: pd.DataFrame, similarity: pd.DataFrame, *, measure: str = "linear_cka") -> pd.DataFrame:
    """ΔCKA = CKA(SFT, control) − CKA(PT, control) per seed and layer, median over tasks.

    Args:
        seeds: :meth:`layerwise.pipeline.Run.seeds` (SFT and held-out SFT rows with ``seed``).
        similarity: the run's similarity table (for PT vs control).
        measure: which measure.

    Returns:
        Columns ``comparison, seed, layer, delta`` (one row per seed, layer and experimental model);
        empty when ``seeds`` is.
    """
    if seeds.empty:
        return pd.DataFrame(columns=["comparison", "seed", "layer", "delta"])
    pt = similarity[(similarity["comparison"] == vocab.PT) & (similarity["measure"] == measure)
                    & (similarity["pooling"] == "last")].set_index(["task", "layer"])["value"]
    s = seeds[seeds["measure"] == measure].copy()
    s["delta"] = s["value"].to_numpy() - pt.reindex(pd.MultiIndex.from_frame(s[["task", "layer"]])).to_numpy()
    out = s.groupby(["comparison", "seed", "layer"], as_index=False)["delta"].median()
    out["seed"] = out["seed"].astype(int).astype(str)
    return out


def seed_spread_markdown(spread: pd.DataFrame) -> str:
    """One sentence: how many seeds, and the largest seed-to-seed range of the median ΔCKA over layers."""
    sft = spread[spread["comparison"] == vocab.SFT]
    n = sft["seed"].nunique()
    if n < 2:
        return ("This run trains one SFT seed (`training.seeds`), so the chapters cannot show seed-to-seed spread "
                "and the findings' intervals do not include seed noise.")
    rng = sft.groupby("layer")["delta"].agg(lambda v: v.max() - v.min())
    return (f"Across the {n} SFT seeds the median ΔCKA of a layer differs by up to {rng.max():.3f} "
            f"(layer {int(rng.idxmax())}; mean range over layers {rng.mean():.3f}); the findings' intervals "
            "resample seeds as well as tasks.")
