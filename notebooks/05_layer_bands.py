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
# **Caveats.** With few tasks the task bootstrap is coarse, and a curve over few layers (18 for
# Gemma 3 270M) leaves little room for two plateaus. When the transition is not identifiable, the
# fitted boundaries are reported but should not be read as bands.
