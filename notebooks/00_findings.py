# %% [markdown]
# # Layer by Layer, reproduced: what replicates
#
# *Layer by Layer* (Zhao, Ziser and Cohen, EMNLP 2024, arXiv:2410.20008) asks which NLP tasks a
# pre-trained language model already encodes, and in which layers multi-task instruction tuning
# turns general representations into task-specific ones. Its method (MOSSA) compares, for every
# task, the last-prompt-token hidden states of the pre-trained model (PT) and of its multi-task
# instruction-tuned version (SFT) with those of a *control* model fine-tuned on that task alone,
# layer by layer, with linear CKA. On Llama 2 7B it finds shared layers (1-9), transition layers
# (10-15) and refinement layers (16-32).
#
# This book reruns the whole design - base model, LoRA adapters, hidden states, similarity - on the
# model and tasks of a run spec, and states each of the paper's findings as a test with a verdict
# for this run. Every number on this page is computed from the run's result tables when the book
# is built.
#
# **Reading guide.** Each finding is turned into a statistic whose sign the paper predicts, with a
# 95 % interval over tasks, and gets one of four verdicts: *holds* - the interval lies on the
# paper's side; *does not hold* - it lies on the other side; *inconclusive* - it covers zero (or
# there are too few tasks for an interval); *inconclusive (underpowered)* - inconclusive, and the
# smallest effect this run could detect is larger than the effect the paper shows, so the run
# could not have seen it. The band findings use the explicit band rule of the layer-bands chapter.
# Start with "The findings" table; each row links to the chapter that shows it.

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
from layerwise.chapters import gate_note
from layerwise.report import findings_markdown, markdown, open_run, run_summary_markdown

run = open_run(spec_path, overrides)
markdown(gate_note(run.gate(), run.spec.gate == "enforce"))
findings = run.findings()
robust = {"debiased CKA": run.findings(measure="debiased_cka"), "mean-pooled states": run.findings(pooling="mean")}

# %% tags=["remove-input"]
markdown(run_summary_markdown(run))

# %% [markdown]
# ## At a glance
#
# Median over tasks, per layer, of the similarity between each model and the task's control
# (shaded: the middle half of the tasks, 25th to 75th percentile), with biased linear CKA (the paper's measure) on one side
# and debiased CKA on the other. The shuffled-row null shows what the estimator gives for unpaired
# examples; the random-init model what the architecture alone gives. Click a legend entry to
# highlight it.

# %% tags=["remove-input"]
from layerwise.charts import comparison_lines
from layerwise import vocab

sim = run.similarity()
overview = sim[(sim["pooling"] == "last") & sim["measure"].isin(["linear_cka", "debiased_cka"])]
comparison_lines(overview, comparisons=[c for c in (vocab.PT, vocab.SFT, vocab.HELDOUT_SFT,
                                                    vocab.RANDOM_INIT, vocab.SHUFFLED_SFT)
                                        if c in set(overview["comparison"])],
                 title="Each model against the task's control, by layer")

# %% [markdown]
# ## The findings

# %% tags=["remove-input"]
markdown(findings_markdown(findings, robust))

# %% [markdown]
# ## What this run does differently from the paper
#
# Each setting of the paper beside this run's, computed from the run spec: the model and its
# precision, the prompt format, the amount of training of the SFT and control adapters, the
# sizes, the seeds and the tasks held out for RQ3.

# %% tags=["remove-input"]
from layerwise.findings import deviations_table, power_table

deviations_table(run.spec)

# %% [markdown]
# ## What this run can detect
#
# For each finding: its statistic, the number of tasks behind it, the minimal detectable effect
# (MDE: the effect found with 80 % probability by a two-sided test at the 5 % level, at this
# run's size and noise) and the effect the paper's figures show. Where the MDE exceeds the
# paper's effect the verdict is *inconclusive (underpowered)*: the run could not have seen the
# effect, so its absence says nothing.

# %% tags=["remove-input"]
power_table(findings)

# %% [markdown]
# ## Chapters
#
# - **The task suite** - tasks, clusters, provenance and example prompts.
# - **Training** - the SFT, held-out SFT and control adapters; loss curves; does each control
#   learn its task (response loss and task metrics)?
# - **RQ1: what pre-training already encodes** - CKA(PT, control) by cluster; the cluster ranking.
# - **RQ2: what instruction tuning changes** - per-task curves, the spread over tasks per layer
#   (Figure 2) and ΔCKA by cluster and layer (Figure 3).
# - **Layer bands** - shared / transition / refinement bands found by an explicit rule, with
#   confidence intervals, in relative depth next to the paper's (Figure 1).
# - **RQ3: unseen tasks** - a multi-task model that never saw some tasks (Figure 7).
# - **Robustness** - debiased CKA, null and random-init baselines, other similarity measures,
#   mean-pooled states.
# - **Spectra** - singular-value spectra and effective rank per layer and model.
# - **Across models** - the same design on a second base model; curves, bands and the cluster
#   ranking compared in relative depth.

# %% [markdown]
# ## Caveats
#
# - The models and the training runs are far smaller than the paper's Llama 2 7B setting (see
#   "What this run does differently from the paper"); a verdict is about this run, not a
#   judgement of the paper.
# - The intervals resample tasks; with few tasks they are wide and many verdicts are
#   inconclusive. "What this run can detect" says which of them the run was too small to decide.
# - The tasks are offline stand-ins for the Flan 2021 datasets where the originals are not
#   available (see the task-suite chapter).

# %% [markdown]
# ## Summary

# %% tags=["remove-input"]
from layerwise.chapters import findings_summary

markdown(findings_summary(findings, robust))

# %% [markdown]
# ## References

# %% tags=["remove-input"]
from layerwise.references import references_markdown

markdown(references_markdown("zhao2024", "wei2022", "hu2022", "kornblith2019", "song2012", "efron1987"))
