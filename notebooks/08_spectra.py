# %% [markdown]
# # Spectra of the representations
#
# The "spectral" half of MOSSA: for each model, task and layer, the singular-value spectrum of the
# centred last-token representations of the task's test prompts. Summaries per layer:
#
# - **effective rank** (Roy and Vetterli, 2007): exp of the entropy of the normalised spectrum - how
#   many directions the variance is spread over;
# - **directions for 99 % of the variance** (the cut SVCCA uses);
# - **variance of the top direction**: how dominated the representation is by one direction.
#
# **Reading guide.** Median over tasks per layer, one line per model; click a model in the legend to
# highlight it. A task-specific representation (the controls) is expected to concentrate its
# variance in fewer directions in the upper layers.

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
from layerwise.charts import spectra_chart
from layerwise.chapters import gate_note
from layerwise.report import markdown, open_run

run = open_run(spec_path, overrides)
markdown(gate_note(run.gate(), run.spec.gate == "enforce"))
spec = run.spectra()

# %% [markdown]
# ## Spectra by layer and model

# %% tags=["remove-input"]
spectra_chart(spec, value="effective_rank", title="Effective rank of the last-token representations")

# %% tags=["remove-input"]
spectra_chart(spec, value="n_99", title="Directions needed for 99% of the variance")

# %% tags=["remove-input"]
spectra_chart(spec, value="var_top_1", title="Share of variance in the top direction")

# %% tags=["remove-input"]
med = spec.groupby(["role", "layer"])["effective_rank"].median().unstack("role")
L = int(spec["layer"].max())
markdown(
    "Median effective rank at layer 1 and at layer {L}: ".format(L=L)
    + "; ".join(f"{role} {med[role].iloc[0]:.1f} → {med[role].iloc[-1]:.1f}" for role in med.columns)
    + f" (of at most {int(spec['n_examples'].max())}, the number of examples)."
)

# %% [markdown]
# ## Caveats
#
# - With fewer examples than hidden dimensions, the spectrum has at most as many non-zero values
#   as examples (less one, after centring), so every summary here is bounded by the number of
#   examples, not by the model's width.
# - The spectra of the random-init model show what the architecture and the input tokens give
#   without learning.

# %% [markdown]
# ## Summary

# %% tags=["remove-input"]
from layerwise.chapters import spectra_summary

markdown(spectra_summary(spec))

# %% [markdown]
# ## References

# %% tags=["remove-input"]
from layerwise.references import references_markdown

markdown(references_markdown("zhao2024", "roy2007", "raghu2017"))
