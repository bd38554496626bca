# %% [markdown]
# # Training the SFT, held-out SFT and control models
#
# The MOSSA design needs three kinds of model (Zhao et al., 2024, §2):
#
# - **PT**: the pre-trained base model, untouched;
# - **SFT** (the *experimental* model): the base plus one LoRA adapter trained on the training
#   splits of all tasks together - multi-task instruction tuning;
# - **held-out SFT**: the same multi-task recipe without the run's held-out tasks (for RQ3);
# - **control** for each task: the base plus a LoRA adapter trained on that task alone - the
#   specialist whose representations define "task-specific".
#
# All adapters use the paper's LoRA shape (rank and targets from the run spec; the paper used r=8,
# alpha=16 on `q_proj` and `v_proj`) and a loss on response tokens only. A CKA between SFT and a
# control only means something if the control really learned its task, so this chapter also
# checks each control against PT on its own task's test split.
#
# **Reading guide.** The adapter table and the loss curves show the training itself; "Does each
# control learn its task?" compares the response-token loss of PT, SFT and each control on the
# task's test examples (lower is better), and "Task-level evaluation" the same with each task's
# own metric (higher is better). A control that does not beat PT is no specialist, and its CKA
# comparisons in the later chapters should be read with care.

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
from layerwise.charts import loss_curves, response_loss_chart
from layerwise.chapters import metric_comparison, response_loss_comparison
from layerwise.report import fmt, markdown, open_run
from layerwise import vocab

run = open_run(spec_path, overrides)
summary = run.training_summary()
log = run.training_log()
loss = run.response_loss()
metrics = run.evaluate()

# %% [markdown]
# ## Adapters
#
# One row per adapter: number of training examples, optimiser steps, the training loss at the
# first and last step, the wall time of its training and its throughput in tokens per second
# (prompt + response tokens, all epochs; a reused adapter shows what was recorded
# when it was trained).

# %% tags=["remove-input"]
summary.drop(columns="key").style.hide(axis="index").format({"first_loss": "{:.3f}", "last_loss": "{:.3f}", "train_seconds": "{:.0f}", "tokens_per_second": "{:.0f}"})

# %% [markdown]
# ## Loss curves
#
# Training loss per optimiser step (nats per response token). Click a legend entry to highlight one
# adapter.

# %% tags=["remove-input"]
loss_curves(log)

# %% [markdown]
# ## Does each control learn its task?
#
# Mean response-token loss on each task's first test examples (never seen in training) for PT, the
# multi-task SFT models and the task's own control. Lower is better. (The random-init model is left
# out: with untrained weights its loss is that of a near-uniform guess over the vocabulary.)

# %% tags=["remove-input"]
response_loss_chart(loss[loss["role"] != vocab.RANDOM_ROLE])

# %% tags=["remove-input"]
wide = response_loss_comparison(loss)
n_ctrl = int(wide["control beats PT"].sum())
n_sft = int(wide["SFT beats PT"].sum())
gap = (wide[vocab.SFT_ROLE] - wide[vocab.CONTROL_ROLE]).mean()
markdown(
    f"The control has a lower test loss than PT on **{n_ctrl} of {len(wide)}** tasks; the multi-task "
    f"SFT model beats PT on **{n_sft} of {len(wide)}**. On average the SFT model's loss is "
    f"{fmt(gap)} nats per token {'above' if gap > 0 else 'below'} the control's."
    + ("" if n_ctrl == len(wide) else
       " Where a control does not beat PT, its CKA comparisons in the next chapter should be read with care.")
)
wide[["task", vocab.PT_ROLE, vocab.SFT_ROLE, vocab.CONTROL_ROLE, "control beats PT", "SFT beats PT"]].style.hide(axis="index").format(precision=3)

# %% [markdown]
# ## Task-level evaluation
#
# The same examples scored with each task's own metric: accuracy by option scoring for
# classification tasks (the option with the highest likelihood as the response), token F1 for
# short-answer QA, ROUGE-L for other generation (greedy decoding). Higher is better.

# %% tags=["remove-input"]
from layerwise.charts import task_metric_chart

task_metric_chart(metrics)

# %% tags=["remove-input"]
mw = metric_comparison(metrics)
n_beat = int((mw[vocab.CONTROL_ROLE] > mw[vocab.PT_ROLE]).sum())
n_tie = int((mw[vocab.CONTROL_ROLE] == mw[vocab.PT_ROLE]).sum())
markdown(
    f"By the task metric, the control beats PT on **{n_beat} of {len(mw)}** tasks ({n_tie} ties) on "
    f"{int(metrics['n'].iloc[0])} examples per task; SFT beats PT on {int((mw[vocab.SFT_ROLE] > mw[vocab.PT_ROLE]).sum())}. "
    "With this few evaluation examples a metric moves in steps of "
    f"{1 / int(metrics['n'].iloc[0]):.3f}, so the response loss above is the finer check."
)
mw.style.hide(axis="index").format(precision=3)

# %% [markdown]
# ## The gate: did each control learn its task?
#
# A control enters the verdicts only if it beats PT on its own task, paired example by example on
# the evaluation examples: on the task metric, and on the response NLL **without** the EOS token (a
# base model never emits EOS, so with it any control would "beat" PT by learning to stop). Both
# 95 % intervals (BCa bootstrap over evaluation examples) must lie above zero. Another task's
# control, run on the same examples, is shown beside it: a control no better than that sibling
# learned the answer format, not the task.

# %% tags=["remove-input"]
from layerwise.chapters import gate_display, gate_note

gate = run.gate()
markdown(gate_note(gate, run.spec.gate == "enforce"))
gate_display(gate).style.hide(axis="index")

# %% [markdown]
# ## Caveats
#
# - The adapters are trained on few examples for a short schedule (see the run's settings), far
#   less than the paper's; the controls are specialists only as far as the comparisons above show.
# - The evaluation uses the first test examples of each task only, so a task metric moves in
#   coarse steps; the response loss is the finer check.
# - A reused adapter shows the wall time and throughput recorded when it was trained, possibly on
#   a busier machine.

# %% [markdown]
# ## Summary

# %% tags=["remove-input"]
from layerwise.chapters import training_summary

markdown(training_summary(summary, loss, metrics))

# %% [markdown]
# ## References

# %% tags=["remove-input"]
from layerwise.references import references_markdown

markdown(references_markdown("zhao2024", "hu2022", "wei2022", "lin2004"))
