# %% [markdown]
# # Layer bands, found by a rule
#
# The paper reads its three bands of Llama 2 7B - shared 1-9, transition 10-15, refinement 16-32
# (Figure 1) - off a plot. Here the bands come from an explicit rule applied to the median over
# tasks of ΔCKA = CKA(SFT, control) − CKA(PT, control): an exact least-squares fit of a continuous
# three-piece line with two breakpoints (segmented regression) - the shared band and the
# refinement band each with a slope of their own, joined by a straight transition. The first
# breakpoint is the last shared layer, the second the last transition layer. A transition counts
# as *identifiable* only if three criteria pass: its rise is large against its least-squares
# standard error, the second breakpoint removes a large enough share of what the best
# one-breakpoint fit leaves unexplained (sharpness), and the transition is steeper than the bands
# beside it (contrast). The three thresholds were calibrated by a simulation study, shown below
# with their values. Boundaries get 95 % intervals by resampling tasks. Bands are also given in
# relative depth (0 = input, 1 = last layer), so models of different depth compare with each
# other and with the paper.
#
# **Reading guide.** The curve chart shows the median ΔCKA per layer with the fitted three-piece
# line, and the table below it the bands with their intervals; the diagram draws this run's bands
# next to the paper's, in relative depth; the simulation study says how often the rule finds the
# right bands at this run's size, and how often it declares a transition where there is none.

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
from layerwise.bands import band_diagram_data, find_bands
from layerwise.charts import band_curve_chart, band_diagram
from layerwise.chapters import gate_note
from layerwise.report import finding_sentence, markdown, open_run

run = open_run(spec_path, overrides)
markdown(gate_note(run.gate(), run.spec.gate == "enforce"))
sim = run.similarity()
findings = run.findings()
lin = sim[(sim["measure"] == "linear_cka") & (sim["pooling"] == "last")]
seen = [t for t in run.spec.tasks if t not in run.spec.heldout_tasks]
bands = find_bands(lin, tasks=seen, seed=run.spec.data.seed)

# %% [markdown]
# ## The curve and its fit

# %% tags=["remove-input"]
L = bands.n_layers
band_curve_chart(bands.curve, bands.fit.fitted)

# %% tags=["remove-input"]
markdown(f"**Bands of this run:** {bands.describe()}.\n\n" + finding_sentence(findings, "F4"))
bands.summary.style.hide(axis="index").format(precision=3)

# %% [markdown]
# ## The bands in relative depth (Figure 1)

# %% tags=["remove-input"]
diagram = band_diagram_data(bands, model=f"{run.spec.base_model} (this run)", include_paper=True)
band_diagram(diagram)

# %% [markdown]
# ## How far can the rule be trusted here? A simulation study
#
# The rule is a two-breakpoint segmented fit of the median ΔCKA with free slopes in the shared and
# refinement bands; a transition counts as identifiable when its rise is at least `MIN_RISE_Z`
# times its standard error, the second breakpoint removes at least `MIN_SHARPNESS` of what the
# best one-breakpoint fit leaves unexplained, and the transition is at least `MIN_CONTRAST` times
# steeper than the bands beside it. These thresholds were chosen by the simulation study of
# `layerwise.band_calibration`: many sets of synthetic per-task curves with known bands, shaped
# like the paper's Figure 2 (ΔCKA slightly negative in the shared band, a steep transition, a
# slower continued rise in the refinement band while PT keeps falling and spreading; and a
# variant in which SFT's own curve dips before it rises), and null curves with no transition
# (flat, a steady rise, flat-then-steady rise). Below, the same study at this run's number of
# layers and tasks, with the noise measured on this run's ΔCKA curves, next to the goal sizes
# (`band_calibration.GOAL_SIZES`; the goal: high recovery within ±2 layers and few false
# positives, the dashed lines of the chart). A draw *recovers* the bands when the transition is
# identifiable and both boundaries are within ±1 (or ±2) layers of the truth.

# %% tags=["remove-input"]
from layerwise.band_calibration import (GOAL_SIZES, MIN_STUDY_LAYERS, calibration_study, estimate_task_noise, false_positive_table,
                                        recovery_table)
from layerwise.bands import MIN_CONTRAST, MIN_RISE_Z, MIN_SHARPNESS
from layerwise.charts import band_calibration_chart

noise = estimate_task_noise(lin, tasks=seen)
draws = calibration_study(L, len(seen), noise, seed=run.spec.data.seed)
recovery, false_positives = recovery_table(draws), false_positive_table(draws)
markdown(f"Per-task noise of ΔCKA measured on this run: SD {noise:.3f} per layer. Goal sizes: "
         + " and ".join(f"{n_layers} layers × {n_tasks} tasks" for n_layers, n_tasks in GOAL_SIZES) + ". Thresholds: "
         f"rise ≥ {MIN_RISE_Z:g} SE, sharpness ≥ {MIN_SHARPNESS:g}, contrast ≥ {MIN_CONTRAST:g}."
         + (f" This run's {L} layers are too few for the simulated shapes (at least {MIN_STUDY_LAYERS}); "
            "only the goal sizes are shown." if L < MIN_STUDY_LAYERS else ""))
band_calibration_chart(recovery, false_positives)

# %% tags=["remove-input"]
recovery.style.hide(axis="index").format(precision=2)

# %% tags=["remove-input"]
false_positives.style.hide(axis="index").format(precision=3)

# %% [markdown]
# ## Caveats
#
# - With few tasks the task bootstrap is coarse, and a curve over few layers (18 for Gemma 3
#   270M) leaves little room for three bands with slopes of their own.
# - When the transition is not identifiable, the fitted boundaries are reported but should not be
#   read as bands.
# - The simulated curves are a reading of the paper's description of Figure 2, not data from the
#   paper; the rule's recovery on real curves can differ.

# %% [markdown]
# ## Summary

# %% tags=["remove-input"]
from layerwise.chapters import bands_summary

markdown(bands_summary(bands, findings, recovery))

# %% [markdown]
# ## References

# %% tags=["remove-input"]
from layerwise.references import references_markdown

markdown(references_markdown("zhao2024", "kornblith2019", "hudson1966", "muggeo2003", "efron1987"))
