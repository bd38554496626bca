# %% [markdown]
# # CKA by layer: pre-trained and instruction-tuned models against the task controls
#
# For each task, the last-prompt-token hidden states of the test prompts are taken from every
# layer of three models: PT, SFT and the task's control. Linear CKA (centered kernel alignment,
# Kornblith et al., 2019) compares PT with the control and SFT with the control, layer by layer.
# High CKA means the model represents the task's inputs much as the specialist does.
#
# The paper (Llama 2 7B, 32 layers) found that PT stays close to the controls in early layers and
# drifts away with depth, with a growing spread across tasks; SFT is *less* similar than PT in the
# first layers ("shared" layers 1-9), rises sharply to high similarity with every control in the
# middle ("transition" layers 10-15) and stays high to the top ("refinement" layers 16-32).
# This chapter shows the same curves for this run's model.
#
# Layer 0 (the embeddings) is left out, as in the paper: LoRA on attention projections does not
# change it, and the last prompt token is the same answer-cue token in every prompt, so its
# embedding carries no information about the input. The last layer is the output after the final
# norm, as in the paper.

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
from layerwise.charts import cka_by_layer_chart, cka_spread_chart
from layerwise.report import fmt, markdown, open_run

run = open_run(spec_path, overrides)
cka = run.cka()
lin = cka[(cka["measure"] == "linear_cka") & (cka["layer"] >= 1)]

# %% [markdown]
# ## Per task
#
# One line per task; the left panel is PT against the control, the right panel SFT against the
# control. Click a task in the legend to highlight it; hover for values.

# %% tags=["remove-input"]
cka_by_layer_chart(cka)

# %% [markdown]
# ## Spread over tasks per layer
#
# The analogue of the paper's Figure 2: for every layer, the distribution over tasks of CKA with
# the control, PT and SFT side by side (boxes span the quartiles, whiskers the minimum and maximum).

# %% tags=["remove-input"]
cka_spread_chart(cka)

# %% tags=["remove-input"]
per_layer = lin.groupby(["layer", "comparison"])["value"].agg(["median", "std"]).unstack("comparison")
median = per_layer["median"]
delta = (median["SFT vs control"] - median["PT vs control"]).rename("median SFT - PT")
L = int(lin["layer"].max())
first_half, second_half = delta[delta.index <= L // 2], delta[delta.index > L // 2]
spread = per_layer["std"]["PT vs control"]
markdown(
    f"Across the {lin['task'].nunique()} tasks and {L} layers, the median CKA of PT with the controls "
    f"goes from {fmt(median['PT vs control'].iloc[0])} at layer 1 to {fmt(median['PT vs control'].iloc[-1])} "
    f"at layer {L}; that of SFT from {fmt(median['SFT vs control'].iloc[0])} to "
    f"{fmt(median['SFT vs control'].iloc[-1])}. The median difference SFT - PT averages "
    f"{fmt(first_half.mean())} over layers 1-{L // 2} and {fmt(second_half.mean())} over layers "
    f"{L // 2 + 1}-{L}; it is largest at layer {int(delta.idxmax())} ({fmt(delta.max())}). "
    f"The spread across tasks (standard deviation of PT vs control) is {fmt(spread.iloc[0])} at layer 1 "
    f"and {fmt(spread.iloc[-1])} at layer {L}."
)

# %% [markdown]
# ## The numbers
#
# CKA per task, layer and comparison (rows: layers; columns: task and comparison).

# %% tags=["remove-input"]
table = lin.pivot_table(index="layer", columns=["task", "comparison"], values="value")
table.round(3)

# %% [markdown]
# ## Reading guide and caveats
#
# - The models here are far smaller than Llama 2 7B and the adapters are trained on few examples
#   (see the training chapter), so the size of the SFT-vs-PT differences is not comparable with the
#   paper's; the shape of the curves is what to compare.
# - Biased linear CKA is inflated when the number of examples is small relative to the hidden size;
#   debiased CKA and null baselines are added by the robustness chapter of this book.
