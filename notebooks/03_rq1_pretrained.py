# %% [markdown]
# # RQ1: what the pre-trained model already encodes
#
# If the pre-trained model's representation of a task's inputs is already close to that of a
# specialist trained on the task (high CKA between PT and the task's control), pre-training has
# already encoded most of what the task needs. The paper (Figure 3) finds this for closed-book QA,
# commonsense, paraphrase and sentiment, and finds low similarity for coreference, reading
# comprehension, struct-to-text, summarization and translation.
#
# **Reading guide.** The first chart shows, for each cluster, the mean CKA between PT and the
# controls of the cluster's tasks at every layer; click a cluster in the legend to highlight it.
# The second ranks clusters by that similarity averaged over all layers, coloured by the paper's
# grouping (blue: the paper found them high; red: low; grey: not characterised).

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
from layerwise.analysis import PAPER_CLUSTER_GROUPS, cluster_layer_means, cluster_ranking
from layerwise.charts import cluster_curves_chart, cluster_ranking_chart
from layerwise.chapters import gate_note
from layerwise.report import finding_sentence, markdown, open_run
from layerwise import vocab

run = open_run(spec_path, overrides)
markdown(gate_note(run.gate(), run.spec.gate == "enforce"))
sim = run.similarity()
findings = run.findings()
means = cluster_layer_means(sim, vocab.PT)
ranking = cluster_ranking(sim, vocab.PT)

# %% [markdown]
# ## Clusters under pre-training

# %% tags=["remove-input"]
cluster_curves_chart(means, title="CKA(PT, control) by cluster and layer")

# %% tags=["remove-input"]
cluster_ranking_chart(ranking, title="Clusters ranked by CKA(PT, control), mean over layers")

# %% tags=["remove-input"]
top = ranking.head(4)
markdown(
    f"Under PT the highest clusters of this run are {', '.join(top['cluster'])}; the lowest are "
    f"{', '.join(ranking.tail(4)['cluster'][::-1])}. Of the paper's four 'high' clusters present here, "
    f"{int(top['paper_group'].eq('high').sum())} are in this run's top four.\n\n"
    + finding_sentence(findings, "F1") + "\n\n" + finding_sentence(findings, "F6")
)
ranking.style.hide(axis="index").format({"value": "{:.3f}"})

# %% [markdown]
# ## Caveats
#
# - With one task per cluster (the default spec), a cluster's value is one task's value, so the
#   ranking says as much about the tasks picked as about the clusters.
# - The tasks here are offline stand-ins for the Flan 2021 datasets (see the task-suite chapter).
# - Biased linear CKA is inflated at few examples; the robustness chapter shows debiased CKA.

# %% [markdown]
# ## Summary

# %% tags=["remove-input"]
from layerwise.chapters import rq1_summary

markdown(rq1_summary(ranking, findings))

# %% [markdown]
# ## References

# %% tags=["remove-input"]
from layerwise.references import references_markdown

markdown(references_markdown("zhao2024", "kornblith2019", "wei2022", "hu2022"))
