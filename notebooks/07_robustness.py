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

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
import pandas as pd
from IPython.display import display

from layerwise.charts import comparison_lines
from layerwise.report import markdown, open_run
from layerwise import vocab

run = open_run(spec_path, overrides)
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
lin = last[last["measure"] == "linear_cka"]
null = lin[lin["comparison"] == vocab.SHUFFLED_SFT]["value"].median()
obs = lin[lin["comparison"] == vocab.SFT]["value"].median()
deb = last[(last["measure"] == "debiased_cka")]
deb_null = deb[deb["comparison"] == vocab.SHUFFLED_SFT]["value"].median()
deb_obs = deb[deb["comparison"] == vocab.SFT]["value"].median()
n = int(lin["n_examples"].iloc[0])
markdown(
    f"At n = {n} test examples per task, the median biased CKA of the shuffled-row null is {null:.3f} "
    f"against {obs:.3f} for SFT vs control (median over tasks and layers); for debiased CKA the null is "
    f"{deb_null:.3f} against {deb_obs:.3f}."
)

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
    wide = tv_lin[tv_lin["template"] != "across"].pivot_table(index=["task", "layer", "comparison"], columns="template",
                                                             values="value")
    shift = (wide["other"] - wide["original"]).abs().groupby(level="comparison").median()
    across = tv_lin[tv_lin["template"] == "across"].groupby("comparison")["value"].median()
    markdown(
        f"On {tv['n_examples'].iloc[0]} examples of each of {tv['task'].nunique()} tasks, changing the template moves "
        + " and ".join(f"CKA({c.split(' vs ')[0]}, control) by a median {v:.3f}" for c, v in shift.items())
        + " (absolute change, over tasks and layers), while each model's own states under the two templates have a "
        "median linear CKA of " + ", ".join(f"{v:.3f} ({c.split(':')[0]})" for c, v in across.items()) + "."
    )

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
table = pd.DataFrame({k: v.set_index("id")["verdict"] for k, v in variants.items()}).fillna("–")
survive = table.eq(table.iloc[:, 0], axis=0).all(axis=1)
lines = [f"{int(survive.sum())} of {len(table)} findings get the same verdict under every variant: "
         f"{', '.join(table.index[survive]) or 'none'}."]
if templates:
    a, b = (table[k] for k in templates)
    tested = a.ne("–") & b.ne("–")
    same = (a == b) & tested
    lines.append(f"With the other template, {int(same.sum())} of {int(tested.sum())} findings keep the verdict they "
                 f"have on the same examples with the original template"
                 + (f"; changed: {', '.join(table.index[tested & ~same])}." if (tested & ~same).any() else "."))
markdown(" ".join(lines))
table
