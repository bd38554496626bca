# %% [markdown]
# # The task suite
#
# The paper compares models *per task* and then groups tasks into the 12 task clusters of Flan 2021
# (natural language inference, commonsense, sentiment, paraphrase, closed-book QA, struct-to-text,
# translation, reading comprehension, reading comprehension with commonsense, coreference,
# miscellaneous, summarization). This chapter shows the tasks of this run: where each comes from,
# its licence, how many examples train the adapters and how many are used to read hidden states,
# and what a prompt looks like.
#
# Every task is turned into instruction-formatted prompts with FLAN-style templates written for
# this project. A prompt ends with its answer cue; the representation analysed in the later chapters
# is the hidden state of that last prompt token. Train and test examples are disjoint and drawn
# deterministically from the run's seed.

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
from layerwise.charts import task_sizes_chart
from layerwise.report import markdown, open_run, spec_table

run = open_run(spec_path, overrides)
tasks = run.task_table()

# %% [markdown]
# ## The run
#
# The settings below come from the run spec; every chapter of this book reads the same spec.

# %% tags=["remove-input"]
spec_table(run).style.hide(axis="index")

# %% [markdown]
# ## Tasks, clusters and provenance

# %% tags=["remove-input"]
markdown(
    f"This run uses **{len(tasks)} tasks** from **{tasks['cluster'].nunique()} of the 12 Flan 2021 "
    f"clusters**, with {int(tasks['n_train'].sum())} training and {int(tasks['n_test'].sum())} test "
    "examples in all."
)
tasks[["task", "cluster_name", "kind", "dataset", "origin_split", "source", "licence"]].style.hide(axis="index")

# %% tags=["remove-input"]
task_sizes_chart(tasks)

# %% [markdown]
# ## One prompt per task
#
# The first test prompt of each task, exactly as the models see it, and the reference response
# (used for training and for the response loss; never part of the prompt).

# %% tags=["remove-input"]
for name, splits in run.tasks.items():
    ex = splits["test"][0]
    markdown(
        f"**{name}** (template {ex['template_id']})\n\n```text\n{ex['prompt']}\n```\n\n"
        f"Reference response: `{ex['target'][:300]}`"
    )

# %% [markdown]
# ## Summary
#
# These prompts feed the training chapter (one multi-task SFT adapter on all training splits, one
# control adapter per task) and the CKA chapter (hidden states on the test splits).
