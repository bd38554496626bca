# %% [markdown]
# # RQ3: tasks left out of instruction tuning
#
# Do the effects of multi-task tuning carry over to tasks the tuned model never saw? A second
# multi-task model (the "held-out SFT") is trained with the same recipe on every task but the run's
# held-out tasks; each held-out task still has its own control. The paper (Figure 7) found that
# the held-out model is slightly *below* PT in the early layers (more general even on unseen tasks),
# matches and then exceeds PT higher up, with a wide spread across tasks and no identifiable
# transition block.
#
# **Reading guide.** One panel per held-out task: CKA with the task's control for PT, the SFT model
# that did see the task, and the held-out SFT model that did not.

# %% tags=["parameters"]
spec_path = "specs/default.yaml"
overrides = []

# %% tags=["remove-input"]
from layerwise.analysis import select
from layerwise.charts import task_comparison_chart
from layerwise.chapters import gate_note
from layerwise.report import finding_sentence, markdown, open_run
from layerwise import vocab

run = open_run(spec_path, overrides)
markdown(gate_note(run.gate(), run.spec.gate == "enforce"))
sim = run.similarity()
findings = run.findings()
held = list(run.spec.heldout_tasks)

# %% [markdown]
# ## Held-out tasks against their controls

# %% tags=["remove-input"]
if held:
    comps = [vocab.PT, vocab.SFT, vocab.HELDOUT_SFT]
    display_chart = task_comparison_chart(select(sim, comparisons=comps, tasks=held), comparisons=comps,
                                          title="Held-out tasks: CKA with the task's control")
    markdown(f"Held-out tasks of this run: {', '.join(held)}.")
else:
    display_chart = None
    markdown("This run's spec holds out no tasks (`heldout_tasks` is empty), so there is no held-out SFT model.")
display_chart

# %% tags=["remove-input"]
if held:
    markdown("\n\n".join(finding_sentence(findings, f) for f in ("F7a", "F7b")))

# %% [markdown]
# ## Caveats
#
# - With few held-out tasks the verdicts on unseen tasks rest on very few curves; below the
#   findings' minimum number of held-out tasks they are marked underpowered by design.
# - The held-out SFT model is trained on fewer tasks than the SFT model, so part of any
#   difference between them is the smaller training set, not unseen-ness alone.

# %% [markdown]
# ## Summary

# %% tags=["remove-input"]
from layerwise.chapters import rq3_summary

markdown(rq3_summary(findings, held))

# %% [markdown]
# ## References

# %% tags=["remove-input"]
from layerwise.references import references_markdown

markdown(references_markdown("zhao2024", "kornblith2019", "wei2022", "hu2022"))
