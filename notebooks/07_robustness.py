# %% [markdown]
# # Robustness: estimator bias, baselines, other measures, pooling, templates
#
# The paper uses one estimator (biased linear CKA), one pooling (the last prompt token) and no
# baselines. Biased CKA between two *independent* random matrices is far above zero when the
# number of examples is small relative to the hidden size, so a high CKA alone does not show
# shared structure. This chapter puts the run's comparisons next to
#
# - **debiased CKA** (unbiased HSIC; Song et al., 2007, as used by Kornblith et al., 2019), which is
#   about 0 for unrelated representations;
# - the **shuffled-row null**: the same two models with the examples of one permuted (mean of 20
#   permutations) - what the estimator gives when nothing is paired;
# - the **random-init baseline**: the base architecture with untrained weights against the control -
#   what the architecture and the input tokens alone give;
# - **other similarity measures**: RBF-kernel CKA, minibatch CKA, SVCCA, orthogonal Procrustes,
#   mutual k-nearest neighbours and RSA;
# - **mean-pooled states** instead of the last prompt token;
# - **template variation**: the same test examples rendered with another of the task's instruction
#   templates, read by every model;
#
# and re-evaluates the paper's findings under the variants, to say which conclusions survive.
#
# **Reading guide.** Each section puts one variant next to the paper's setting, as the median over
# tasks per layer (shaded: the middle half of the tasks); click a comparison in the legend to
# highlight it. The last section, "Which conclusions survive", is the chapter's answer: the
# verdict of every finding under every variant.

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
from IPython.display import display

from layerwise.chapters import estimator_floor, estimator_floor_markdown, survival_markdown, template_shift_markdown
from layerwise.charts import comparison_lines
from layerwise.findings.variants import survival, verdict_table
from layerwise.chapters import gate_note
from layerwise.report import markdown, open_run
from layerwise import vocab

run = open_run(spec_path, overrides)
markdown(gate_note(run.gate(), run.spec.gate == "enforce"))
sim = run.similarity()
last = sim[sim["pooling"] == "last"]
base = [vocab.PT, vocab.SFT, vocab.RANDOM_INIT, vocab.SHUFFLED_PT, vocab.SHUFFLED_SFT]

# %% [markdown]
# ## Biased and debiased CKA with the baselines
#
# Median over tasks per layer (shaded: the middle half of the tasks, 25th to 75th percentile). The shuffled lines show the
# estimator's floor at this number of examples; the random-init line what no learning gives.

# %% tags=["remove-input"]
comparison_lines(last[last["measure"].isin(["linear_cka", "debiased_cka"])], comparisons=base,
                 title="Linear CKA, biased and debiased, with null and random-init baselines")

# %% tags=["remove-input"]
floor = estimator_floor(last)
markdown(estimator_floor_markdown(floor))

# %% [markdown]
# ## Other similarity measures
#
# PT and SFT against the controls under every measure of the similarity engine (median over tasks
# per layer). Each measure has its own scale.

# %% tags=["remove-input"]
comparison_lines(last, comparisons=[vocab.PT, vocab.SFT, vocab.RANDOM_INIT],
                 title="PT and SFT vs control under each similarity measure")

# %% [markdown]
# ## Last-token versus mean-pooled states

# %% tags=["remove-input"]
pool = sim[(sim["measure"] == "linear_cka") & sim["comparison"].isin([vocab.PT, vocab.SFT])]
comparison_lines(pool, comparisons=[vocab.PT, vocab.SFT], facet="pooling",
                 title="Linear CKA of last-token and mean-pooled prompt states")

# %% [markdown]
# ## Template variation
#
# The first test examples of each task again, each rendered with another of its instruction
# templates, and every model (PT, SFT, the controls) run on them. Left: CKA with the controls on
# the original and on the other template (same examples, so the same estimator bias). Right: each
# model against itself across the two templates - how much the wording of the instruction alone
# moves its last-token states.

# %% tags=["remove-input"]
tv = run.template_variation()
if tv.empty:
    markdown("This run's spec asks for no template variation (`data.n_template_variant: 0`).")
else:
    tv_lin = tv[tv["measure"] == "linear_cka"]
    display(comparison_lines(tv_lin[tv_lin["template"] != "across"], comparisons=[vocab.PT, vocab.SFT],
                             facet="template", title="Linear CKA with the controls, original vs other template"))
    display(comparison_lines(tv[tv["template"] == "across"],
                             comparisons=sorted(set(tv.loc[tv["template"] == "across", "comparison"])),
                             title="Each model against itself across templates"))
    markdown(template_shift_markdown(tv))

# %% [markdown]
# ## Which conclusions survive
#
# The paper's findings evaluated on each variant (same tests as on the findings page). The two
# template columns use the template-variation examples only; compare them with each other.

# %% tags=["remove-input"]
variants = {
    "linear CKA, last token (paper)": run.findings(),
    "debiased CKA": run.findings(measure="debiased_cka"),
    "linear CKA, mean-pooled": run.findings(pooling="mean"),
}
for name in ("rbf_cka", "svcca", "procrustes"):
    if name in set(last["measure"]):
        variants[name.replace("_", " ")] = run.findings(measure=name)
templates = run.template_findings()
variants.update(templates)
table = verdict_table(variants)
survive = survival(table, pair=tuple(templates) if templates else None)
markdown(survival_markdown(survive))
table

# %% [markdown]
# ## Caveats
#
# - The shuffled-row null and the random-init baseline are computed on the same examples as the
#   comparisons, so they show the estimator's floor at this run's size, not in general.
# - The measures have different scales; compare the shape of their curves, not their values.
# - The template findings use only the template-variation examples, fewer than the test split, so
#   compare the two template columns with each other, not with the other variants.

# %% [markdown]
# ## Summary

# %% tags=["remove-input"]
from layerwise.chapters import robustness_summary

markdown(robustness_summary(floor, table, survive))

# %% [markdown]
# ## References

# %% tags=["remove-input"]
from layerwise.references import references_markdown

markdown(references_markdown("zhao2024", "kornblith2019", "gretton2005", "song2012", "murphy2024", "nguyen2021",
                             "raghu2017", "ding2021", "kriegeskorte2008", "klabunde2023"))
