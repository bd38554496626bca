# %% [markdown]
# # RQ2: what instruction tuning changes, layer by layer
#
# For each task, the last-prompt-token hidden states of the test prompts are taken from every layer
# of PT, of the multi-task SFT model and of the task's control, and linear CKA (Kornblith et al.,
# 2019) compares PT with the control and SFT with the control. High CKA means the model represents
# the task's inputs much as the specialist does.
#
# The paper (Llama 2 7B, 32 layers) found that PT stays close to the controls in the early layers
# and drifts away with depth, with a growing spread across tasks; SFT is *less* similar than PT in
# the first layers ("shared", 1-9), rises sharply to high similarity with every control in the
# middle ("transition", 10-15) and stays high to the top ("refinement", 16-32).
#
# Layer 0 (the embeddings) is left out, as in the paper: LoRA on attention projections does not
# change it, and the last prompt token is the same answer-cue token in every prompt. The last layer
# is the output after the final norm, as in the paper.
#
# **Reading guide.** "Per task" draws one curve per task, "Spread over tasks per layer" the
# distribution over tasks (the paper's Figure 2), and the heat map ΔCKA by cluster and layer (the
# paper's Figure 3); the verdicts of the layer-wise findings are stated below the spread chart.

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
from layerwise.analysis import delta_by_cluster, select
from layerwise.charts import cka_by_layer_chart, cka_spread_chart, delta_heatmap
from layerwise.chapters import gate_note
from layerwise.report import finding_sentence, markdown, open_run
from layerwise import vocab

run = open_run(spec_path, overrides)
markdown(gate_note(run.gate(), run.spec.gate == "enforce"))
sim = run.similarity()
findings = run.findings()
cka = select(sim, comparisons=[vocab.PT, vocab.SFT])

# %% [markdown]
# ## Per task
#
# One line per task; left: PT against the control, right: SFT against the control. Click a task
# in the legend to highlight it; hover for values. The y axis is fitted to the data.

# %% tags=["remove-input"]
cka_by_layer_chart(cka)

# %% [markdown]
# ## Spread over tasks per layer (Figure 2)
#
# For every layer, the distribution over tasks of CKA with the control, PT and SFT side by side
# (boxes span the quartiles, whiskers the minimum and maximum).

# %% tags=["remove-input"]
cka_spread_chart(cka)

# %% tags=["remove-input"]
markdown("\n\n".join(finding_sentence(findings, f) for f in ("F2", "F2b", "F3", "F5")))

# %% [markdown]
# ## ΔCKA by cluster and layer (Figure 3)
#
# ΔCKA = CKA(SFT, control) − CKA(PT, control), averaged over each cluster's tasks. Blue: instruction
# tuning made the representation more like the specialist's; red: less (more general).

# %% tags=["remove-input"]
delta_heatmap(delta_by_cluster(sim), title="ΔCKA = CKA(SFT, control) − CKA(PT, control)")

# %% [markdown]
# ## The numbers
#
# CKA per task, layer and comparison.

# %% tags=["remove-input"]
cka.pivot_table(index="layer", columns=["comparison", "task"], values="value").round(3)

# %% [markdown]
# ## From seed to seed
#
# The SFT (and held-out SFT) adapter is trained once per seed of `training.seeds`. Every ΔCKA of the
# book shares the SFT adapter of a seed, so its seed noise moves every task at once; these lines
# show how far the median ΔCKA moves between seeds. The findings' intervals resample seeds as well
# as tasks.

# %% tags=["remove-input"]
from layerwise.chapters import seed_spread, seed_spread_markdown
from layerwise.charts import seed_spread_chart

spread = seed_spread(run.seeds(), sim)
markdown(seed_spread_markdown(spread))
seed_spread_chart(spread) if spread["seed"].nunique() > 1 else None

# %% [markdown]
# ## Caveats
#
# - The models are far smaller than Llama 2 7B and the adapters are trained on few examples (see
#   the training chapter), so the size of the SFT − PT differences is not comparable with the
#   paper's; the shape of the curves is what to compare.
# - Biased linear CKA is inflated when the number of examples is small relative to the hidden
#   size; the robustness chapter shows debiased CKA and null baselines on the same axes.

# %% [markdown]
# ## Summary

# %% tags=["remove-input"]
from layerwise.chapters import rq2_summary

markdown(rq2_summary(findings))

# %% [markdown]
# ## References

# %% tags=["remove-input"]
from layerwise.references import references_markdown

markdown(references_markdown("zhao2024", "kornblith2019", "wei2022", "hu2022"))
