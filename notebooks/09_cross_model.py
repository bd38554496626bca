# %% [markdown]
# # Across models: do the bands sit at the same relative depth?
#
# The paper studies one model, Llama 2 7B. Its bands (shared 1-9, transition 10-15, refinement
# 16-32) would say something about instruction tuning in general only if other models put them at
# the same *relative depth*. This chapter runs the whole design again with a second base model -
# the same tasks, test inputs, templates and training recipe; only the base model differs (the
# spec's `compare_models`) - and compares the models on relative depth (layer / L: 0 = the
# embeddings, 1 = the last block):
#
# 1. the median-over-tasks curves of PT vs control, SFT vs control and ΔCKA;
# 2. the *shape* of the ΔCKA profiles (correlation after interpolation onto a common depth grid);
# 3. the bands found by the rule of the layer-bands chapter, with their intervals;
# 4. the ranking of task clusters by CKA(PT, control) (the paper's RQ1).
#
# Intervals resample tasks, the same tasks for both models (the models ran the same inputs).
#
# **Reading guide.** In the curves, each colour is a model; the shaded band is the middle half of
# the tasks. Click a model in the legend to highlight it. The diagram draws each model's bands
# next to the paper's.

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
from layerwise.bands import band_diagram_data, find_bands
from layerwise.charts import band_diagram, depth_profile_chart
from layerwise.crossmodel import (band_agreement, bands_by_model, cluster_rank_agreement, depth_profiles,
                                  profile_correlation, runs_overview)
from layerwise.chapters import cross_model_summary, stand_in_caveat
from layerwise.chapters import gate_note
from layerwise.report import fmt, markdown, md_table, open_run

run = open_run(spec_path, overrides)
markdown(gate_note(run.gate(), run.spec.gate == "enforce"))
runs = [run, *run.companions]
sims = {r.spec.base_model: r.similarity() for r in runs}
seen = [t for t in run.spec.tasks if t not in run.spec.heldout_tasks]
overview = runs_overview(runs)
if len(runs) < 2:
    markdown("**This run compares no other model.** Add model strings to the spec's `compare_models` "
             "(e.g. `compare_models: [smollm2-135m-instruct]`) and rebuild the book.")

# %% [markdown]
# ## The models

# %% tags=["remove-input"]
lines = [md_table(overview.rename(columns={"depth_step": "1 / L", "controls_beat_PT": "controls beat PT (tasks)",
                                           "SFT_beats_PT": "SFT beats PT (tasks)"}), floatfmt=".3f")]
if stand_in_caveat(overview):
    lines.append("**Caveat.** One of the models is a stand-in; see the caveats at the end of the chapter.")
lines.append("The last two columns count the tasks whose response-token loss (nats per token, on the first "
             f"{run.spec.data.n_eval} test examples) is lower under the control / SFT model than under PT: a "
             "control that is no specialist makes its CKA comparisons hard to read.")
markdown("\n\n".join(lines))

# %% [markdown]
# ## Curves in relative depth

# %% tags=["remove-input"]
profiles = depth_profiles(sims, tasks=seen)
depth_profile_chart(profiles, title="Median over seen tasks against relative depth, per model")

# %% tags=["remove-input"]
corr = agreement = None
if len(runs) > 1:
    corr = profile_correlation(sims, tasks=seen, seed=run.spec.data.seed)
    sentences = [f"- {r.model_a} vs {r.model_b}: r = {fmt(r.r, 2)} (95 % CI [{fmt(r.low, 2)}, {fmt(r.high, 2)}], "
                 f"{r.n_tasks} tasks)" for r in corr.itertuples()]
    markdown("**Shape of the ΔCKA profiles.** Pearson correlation of the median ΔCKA curves on a common grid "
             "of relative depths (1 = same shape, 0 = unrelated, negative = opposite):\n\n" + "\n".join(sentences))

# %% [markdown]
# ## Bands in relative depth

# %% tags=["remove-input"]
bands = {model: find_bands(sim[sim["pooling"] == "last"], tasks=seen, seed=run.spec.data.seed)
         for model, sim in sims.items()}
table = bands_by_model(bands)
band_diagram(band_diagram_data(list(bands.values()), model=list(bands), include_paper=True),
             title="Bands of each model and of the paper, in relative depth")

# %% tags=["remove-input"]
show = table[["model", "n_layers", "shared", "transition", "refinement", "rise", "identifiable"]].copy()
for key, label in (("last_shared", "end of shared"), ("last_transition", "end of transition")):
    show[f"{label} (depth, 95 % CI)"] = [f"{r[f'rel_{key}']:.2f} [{r[f'rel_{key}_low']:.2f}, {r[f'rel_{key}_high']:.2f}]"
                                         for _, r in table.iterrows()]
lines = [md_table(show, floatfmt=".2f")]
models = list(bands)
for i, a in enumerate(models):
    for b in models[i + 1:]:
        verdict, reason = band_agreement(bands[a], bands[b], names=(a, b))
        lines.append(f"**{a} vs {b}: bands {verdict}** - {reason}.")
markdown("\n\n".join(lines))

# %% [markdown]
# ## Cluster ranking under pre-training (RQ1)

# %% tags=["remove-input"]
if len(runs) > 1:
    values, agreement = cluster_rank_agreement(sims, tasks=seen, seed=run.spec.data.seed)
    wide = values.pivot_table(index="cluster", columns="model", values="rank").astype(int)[models]
    wide = wide.sort_values(models[0])
    lines = [md_table(wide.reset_index(), floatfmt=".0f")]
    for r in agreement.itertuples():
        lines.append(f"**{r.model_a} vs {r.model_b}:** Spearman ρ = {fmt(r.rho, 2)} over {r.n_clusters} clusters "
                     f"(95 % CI [{fmt(r.low, 2)}, {fmt(r.high, 2)}], resampling {r.n_tasks} tasks).")
    markdown("Rank of each cluster by mean CKA(PT, control) over all layers (1 = most similar to the controls):"
             "\n\n" + "\n\n".join(lines))

# %% [markdown]
# ## Caveats
#
# - Two models that differ in architecture, width, tokenizer, pre-training data and (here)
#   quantisation of the released weights differ in more than depth; agreement in relative depth
#   is evidence of a shared pattern, disagreement does not say which difference causes it.
# - With few tasks the task bootstrap is coarse.

# %% tags=["remove-input"]
markdown(stand_in_caveat(overview))

# %% [markdown]
# ## Summary

# %% tags=["remove-input"]
markdown(cross_model_summary(table, corr, agreement))

# %% [markdown]
# ## References

# %% tags=["remove-input"]
from layerwise.references import references_markdown

markdown(references_markdown("zhao2024", "kornblith2019", "gemma2025", "allal2025", "hudson1966"))
