# %% [markdown]
# # The task suite
#
# The paper compares models *per task* and then groups tasks into the 12 task clusters of Flan 2021
# (natural language inference, commonsense, sentiment, paraphrase, closed-book QA, struct-to-text,
# translation, reading comprehension, reading comprehension with commonsense, coreference,
# miscellaneous, summarization). This chapter shows the tasks of this run and of the whole offline
# suite: where each comes from, its licence, how many examples it has, how many train the adapters
# and how many are used to read hidden states, how long the prompts are, and what a prompt looks like.
#
# Every offline task is turned into instruction-formatted prompts with FLAN-style templates written
# for this project (at least three per task; the template of each example is chosen from the seed).
# A prompt ends with its answer cue; the representation analysed in the later chapters is the hidden
# state of that last prompt token, so when a long input has to be shortened, only the input is cut
# and the end of the prompt is always kept. Train and test examples are disjoint and drawn
# deterministically from the run's seed. Tasks named `flan2021:<task>` (the paper's own data from the
# hub) or `file:<path>` (local alpaca files) keep the prompts their source wrote.
#
# **Reading guide.** "The run" lists the settings every chapter reads; "Clusters" shows which of
# the 12 clusters this run and the offline registry cover; the provenance table says where each
# task's data comes from and how close it is to the paper's; the last sections show prompt lengths
# and one prompt per task as the models see it. These prompts feed the training chapter (one
# multi-task SFT adapter on all training splits, one control adapter per task) and the CKA
# chapters (hidden states on the test splits).

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
from layerwise.charts import task_sizes_chart
from layerwise.plan import plan_table
from layerwise.provenance import read_pieces, time_summary, time_table
from layerwise.report import markdown, md_table, open_run, spec_table
from layerwise.task_charts import cluster_coverage_chart, pool_sizes_chart, prompt_length_chart
from layerwise.tasks import FLAN2021_TASKS, TASKS
from layerwise.tasks.suite import cluster_coverage, example_prompts, length_summary, prompt_lengths, provenance_table

run = open_run(spec_path, overrides)
tasks = run.task_table()
run_prov = provenance_table(list(run.tasks))
registry = provenance_table()
coverage = cluster_coverage(list(run.tasks))

# %% [markdown]
# ## The run
#
# The settings below come from the run spec; every chapter of this book reads the same spec.

# %% tags=["remove-input"]
spec_table(run).style.hide(axis="index")

# %% [markdown]
# ### The job graph
#
# The run as jobs (`layerwise plan` prints the same; `executor: ray` runs them on a cluster): how
# many of each kind and their estimated time and memory, from the throughput measured on this
# machine where there is a measurement (this run's training logs, `make bench`), else from FLOPs
# at an assumed device rate; the lines below the table name each source.

# %% tags=["remove-input"]
plan = plan_table(run)
markdown("\n".join(f"- {line}" for line in plan.attrs["notes"]))
plan.style.hide(axis="index")

# %% [markdown]
# ### What the run took
#
# The estimates above against what computing this run's results measured: every `layerwise run`
# piece and every `layerwise book` appends a record to `<output_dir>/provenance.jsonl` with the
# wall minutes of each stage, the machine and what the piece added. One row per record, as the
# file stood when this chapter was executed (a later `make book` with nothing new to compute reuses
# this page). A piece killed outright (SIGKILL, power loss) leaves no record.

# %% tags=["remove-input"]
pieces = read_pieces(run.out)
markdown(time_summary(pieces))
times = time_table(pieces)
times.style.hide(axis="index").format(precision=1) if len(times) else None

# %% [markdown]
# ## Clusters
#
# How many tasks each cluster has in the paper's Flan 2021 list, in this project's offline
# registry (built from packages that ordinary package registries serve), and in this run.

# %% tags=["remove-input"]
n_flan = sum(len(v) for v in FLAN2021_TASKS.values())
covered = int((coverage["registry_tasks"] > 0).sum())
run_covered = int((coverage["run_tasks"] > 0).sum())
missing = coverage.loc[coverage["run_tasks"] == 0, "cluster_name"].tolist()
markdown(
    f"The paper's code lists **{n_flan} Flan 2021 tasks** in {len(coverage)} clusters. The offline "
    f"registry has **{len(TASKS)} tasks** covering **{covered} of the {len(coverage)} clusters**; "
    f"{int(coverage['exact'].sum())} of them are the same datasets as in Flan 2021. This run uses "
    f"**{len(tasks)} tasks** from **{run_covered} clusters**"
    + (f"; it has no task from: {', '.join(missing)}." if missing else ", so every cluster is represented.")
)
cluster_coverage_chart(coverage)

# %% tags=["remove-input"]
coverage[["cluster_name", "flan2021_tasks", "registry_tasks", "exact", "run_tasks", "registry_names"]].rename(
    columns={"cluster_name": "cluster", "flan2021_tasks": "Flan 2021", "registry_tasks": "offline", "exact": "exact",
             "run_tasks": "this run", "registry_names": "offline tasks"}
).style.hide(axis="index")

# %% [markdown]
# ## The tasks of this run and their provenance
#
# `source` is the pinned package (or file, or hub dataset) the data is read from; `origin split` is
# the split of the original dataset that package holds; `pool` is the number of usable examples
# after cleaning (empty or repeated inputs removed); `train` and `test` are the samples this run
# draws from it. `match` says whether the task is the Flan 2021 dataset itself (`exact`), the same
# data in another form (`near`), or a different dataset of the same cluster (`analog`).

# %% tags=["remove-input"]
table = run_prov.merge(tasks[["task", "n_train", "n_test"]], on="task")
markdown(
    f"The {len(table)} tasks hold {int(table['pool_size'].sum()):,} examples in all; this run trains on "
    f"{int(table['n_train'].sum()):,} and reads hidden states on {int(table['n_test'].sum()):,}. "
    f"{int((table['match'] == 'exact').sum())} of them are exact Flan 2021 datasets, "
    f"{int((table['match'] == 'near').sum())} near and {int((table['match'] == 'analog').sum())} analogs."
)
table[["task", "cluster_name", "kind", "match", "flan_task", "dataset", "citation", "source", "licence", "origin_split",
       "pool_size", "n_train", "n_test"]].rename(
    columns={"cluster_name": "cluster", "flan_task": "Flan 2021 task", "origin_split": "origin split", "pool_size": "pool",
             "n_train": "train", "n_test": "test"}
).style.hide(axis="index")

# %% tags=["remove-input"]
task_sizes_chart(tasks)

# %% [markdown]
# ## The whole offline suite
#
# Every task of the offline registry, whether or not this run uses it. Pool sizes are shown for the
# pools already built on this machine (`python -m layerwise` builds them on first use; a source that
# cannot be fetched, for example without `apt-get` or `npm`, is skipped with a message).

# %% tags=["remove-input"]
built = int(registry["pool_size"].notna().sum())
markdown(
    f"{built} of the {len(registry)} registry pools are built here, with "
    f"{int(registry['pool_size'].sum()):,} examples in all."
)
pool_sizes_chart(registry)

# %% tags=["remove-input"]
registry[["task", "cluster_name", "kind", "match", "dataset", "source", "licence", "pool_size", "description"]].rename(
    columns={"cluster_name": "cluster", "pool_size": "pool"}
).style.hide(axis="index")

# %% [markdown]
# ## Prompt lengths
#
# Lengths of the prompts of this run (train and test), in characters and, where the base model's
# tokenizer loads, in tokens as the model sees them. Inputs longer than `data.max_input_chars`
# characters are shortened at the input, so the instruction's end and the answer cue are kept.

# %% tags=["remove-input"]
try:
    from layerwise.models import load_tokenizer

    tokenizer = load_tokenizer(run.spec.base_model)
except Exception as exc:  # the chapter still shows characters
    tokenizer = None
    markdown(f"(The tokenizer of `{run.spec.base_model}` could not be loaded here ({type(exc).__name__}), so lengths are in characters only.)")
lengths = prompt_lengths(run.tasks, tokenizer)
summary = length_summary(lengths)
longest = summary.sort_values("chars_median", ascending=False).iloc[0]
markdown(
    f"Median prompt length ranges from {int(summary['chars_median'].min()):,} characters to "
    f"{int(summary['chars_median'].max()):,} ({longest['task']})"
    + (f"; in tokens, the longest prompt of the run has {int(summary['tokens_max'].max()):,}." if "tokens_max" in summary else ".")
)
prompt_length_chart(lengths, "chars")

# %% tags=["remove-input"]
prompt_length_chart(lengths, "tokens") if "tokens" in lengths else None

# %% tags=["remove-input"]
summary.style.hide(axis="index")

# %% [markdown]
# ## One prompt per task
#
# The first test prompt of each task, exactly as the models see it (template `-1`: the prompt was
# written by the task's source), and the reference response (used for training and for the response
# loss; never part of the prompt).

# %% tags=["remove-input"]
for ex in example_prompts(run.tasks):
    markdown(
        f"**{ex['task']}** ({ex['cluster']}, template {ex['template_id']})\n\n```text\n{ex['prompt']}\n```\n\n"
        f"Reference response: `{ex['target']}`"
    )

# %% [markdown]
# ## Caveats
#
# - Most offline sources hold the original datasets' dev or test splits, and Flan-T5-style models
#   were trained on the train splits of several of them (SQuAD, XSum, E2E, WebNLG, CommonGen,
#   CoQA, WinoGrande, Cosmos QA), so a pre-trained model may have seen related text.
# - BIG-bench files carry a canary string, and several licences (WebNLG, XSum, the pattern
#   corpora, the Brown corpus) limit use to research.
# - No raw data is committed to this repository; it is fetched at setup.

# %% [markdown]
# ## Summary

# %% tags=["remove-input"]
from layerwise.chapters import task_suite_summary

markdown(task_suite_summary(table, coverage, summary))

# %% [markdown]
# ## References

# %% tags=["remove-input"]
from layerwise.references import references_markdown

markdown(references_markdown("zhao2024", "wei2022"))
