# %% [markdown]
# # Layer bands, found by a rule
#
# The paper reads its three bands of Llama 2 7B - shared 1-9, transition 10-15, refinement 16-32
# (Figure 1) - off a plot. Here the bands come from an explicit rule applied to the median over
# tasks of ΔCKA = CKA(SFT, control) − CKA(PT, control): an exact least-squares fit of a
# plateau-ramp-plateau curve (flat up to the last shared layer, a straight rise through the
# transition layers, flat afterwards). A transition counts as *identifiable* only if the fitted rise
# exceeds three times its bootstrap noise and the two plateaus explain at least half of what a fit
# without one of them leaves unexplained. Boundaries get 95 % intervals by resampling tasks.
# Bands are also given in relative depth (0 = input, 1 = last layer), so models of different
# depth compare with each other and with the paper.
#
# **Reading guide.** The curve chart shows the median ΔCKA per layer with the fitted curve; the
# diagram below draws this run's bands next to the paper's, in relative depth.

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
import altair as alt
import pandas as pd

from layerwise.bands import band_diagram_data, find_bands
from layerwise.charts import band_diagram
from layerwise.report import finding_sentence, markdown, open_run

run = open_run(spec_path, overrides)
sim = run.similarity()
findings = run.findings()
lin = sim[(sim["measure"] == "linear_cka") & (sim["pooling"] == "last")]
seen = [t for t in run.spec.tasks if t not in run.spec.heldout_tasks]
bands = find_bands(lin, tasks=seen, seed=run.spec.data.seed)

# %% tags=["remove-input"]
L = bands.n_layers
curve = pd.DataFrame({"layer": range(1, L + 1), "median ΔCKA": bands.curve, "fitted": bands.fit.fitted})
long = curve.melt("layer", var_name="series", value_name="value")
alt.Chart(long, title="Median ΔCKA over seen tasks and the fitted plateau-ramp-plateau curve").mark_line(point=True).encode(
    x=alt.X("layer:Q", axis=alt.Axis(tickMinStep=1)), y=alt.Y("value:Q", title="ΔCKA"), color="series:N",
    strokeDash=alt.StrokeDash("series:N"), tooltip=["series", "layer", alt.Tooltip("value:Q", format="+.3f")],
).properties(width=430, height=260)

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
# layers and tasks, with the noise measured on this run's ΔCKA curves, next to the two goal sizes
# (18 layers × 12 tasks and 32 layers × 24 tasks; goal ≥ 80 % recovery within ±2 layers and
# ≤ 10 % false positives). A draw *recovers* the bands when the transition is identifiable and
# both boundaries are within ±1 (or ±2) layers of the truth.

# %% tags=["remove-input"]
from layerwise.band_calibration import (MIN_STUDY_LAYERS, calibration_study, estimate_task_noise, false_positive_table,
                                        recovery_table)
from layerwise.bands import MIN_CONTRAST, MIN_RISE_Z, MIN_SHARPNESS
from layerwise.charts import band_calibration_chart

noise = estimate_task_noise(lin, tasks=seen)
draws = calibration_study(L, len(seen), noise, seed=run.spec.data.seed)
recovery, false_positives = recovery_table(draws), false_positive_table(draws)
markdown(f"Per-task noise of ΔCKA measured on this run: SD {noise:.3f} per layer. Thresholds: "
         f"rise ≥ {MIN_RISE_Z:g} SE, sharpness ≥ {MIN_SHARPNESS:g}, contrast ≥ {MIN_CONTRAST:g}."
         + (f" This run's {L} layers are too few for the simulated shapes (at least {MIN_STUDY_LAYERS}); "
            "only the goal sizes are shown." if L < MIN_STUDY_LAYERS else ""))
band_calibration_chart(recovery, false_positives)

# %% tags=["remove-input"]
recovery.style.hide(axis="index").format(precision=2)

# %% tags=["remove-input"]
false_positives.style.hide(axis="index").format(precision=3)

# %% [markdown]
# **Caveats.** With few tasks the task bootstrap is coarse, and a curve over few layers (18 for
# Gemma 3 270M) leaves little room for two plateaus. When the transition is not identifiable, the
# fitted boundaries are reported but should not be read as bands.
