"""Small helpers the notebooks share: open a run, show its settings, write computed prose.

Notebooks stay thin: a ``parameters`` cell, ``run = open_run(spec_path, overrides)``, then calls
into the library and charts. Sentences that state a result are built here from the result tables
(:func:`markdown`), never typed into a notebook.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import pandas as pd
from IPython.display import Markdown, display

from .charts import setup_altair
from .findings.core import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, UNDERPOWERED
from .pipeline import Run
from .report_links import chapter_of, mark

__all__ = ["QUIET_PACKAGES", "quiet_third_party_warnings", "open_run", "spec_table", "markdown", "md_table", "fmt",
           "run_summary_markdown", "findings_markdown", "finding_sentence"]

#: Third-party packages whose own warnings (version notices, deprecations, tokenizer and
#: generation hints) the book hides; the warnings of ``layerwise`` itself are never hidden.
QUIET_PACKAGES = ("transformers", "torch", "peft", "accelerate", "datasets", "huggingface_hub", "tokenizers",
                  "safetensors", "altair", "tqdm")


def quiet_third_party_warnings() -> None:
    """Hide the warnings of third-party packages in the book, and only those.

    Two narrow filters: every warning raised from a module of :data:`QUIET_PACKAGES` (matched by
    module name), and the API-change categories ``FutureWarning`` and ``DeprecationWarning``
    (``layerwise`` raises neither; third-party packages often attribute them to their caller). The
    library's own warnings - e.g. :class:`layerwise.similarity.NonFiniteRowsWarning` and
    :class:`layerwise.tasks.DownsizeWarning`, both ``UserWarning`` raised from ``layerwise`` -
    still show.
    """
    for package in QUIET_PACKAGES:
        warnings.filterwarnings("ignore", module=rf"{package}(\.|$)")
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)


def open_run(spec_path: str, overrides: Sequence[str] | dict[str, Any] = ()) -> Run:
    """Validate the spec, hide third-party warnings, set up offline charts, and return the run.

    Args:
        spec_path: path of a run spec (YAML). overrides: spec overrides (``key=value`` strings or a dict).

    Returns:
        :class:`~layerwise.pipeline.Run`, with progress lines silenced.

    Raises:
        layerwise.spec.SpecError: the spec is invalid (one line naming the key and the valid choices).
    """
    quiet_third_party_warnings()
    setup_altair()
    return Run.from_spec(spec_path, overrides, verbose=False)


def spec_table(run: Run) -> pd.DataFrame:
    """The settings of a run as a two-column table (setting, value) for display."""
    d = run.spec.to_dict()
    rows = [("name", d["name"]), ("description", d["description"]), ("base model", d["base_model"]),
            ("tasks", ", ".join(d["tasks"])), ("held-out tasks", ", ".join(d["heldout_tasks"]) or "none"),
            ("experimental model", d["experimental_model"] or "SFT adapter trained on all tasks"),
            ("baselines", ", ".join(d["baselines"])), ("measures", ", ".join(d["measures"]))]
    for section in ("data", "training", "extraction"):
        for k, v in d[section].items():
            rows.append((f"{section}.{k}", ", ".join(map(str, v)) if isinstance(v, list) else v))
    return pd.DataFrame(rows, columns=["setting", "value"]).astype({"value": str})


def fmt(x: float, digits: int = 3) -> str:
    """Format a number for prose (fixed digits; NaN as 'n/a')."""
    return "n/a" if pd.isna(x) else f"{x:.{digits}f}"


def md_table(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A DataFrame as a Markdown table (for generated prose)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(text: str) -> None:
    """Display generated Markdown in the notebook (rendered as prose in the book)."""
    display(Markdown(text))




def interval_text(low: float, high: float) -> str:
    """An interval as the book prints it: ``[-0.120, +0.031]``; ``–`` when not computed; and "no interval
    at this size" when a bound is infinite (an exact interval needs more tasks than the run has)."""
    if pd.isna(low) or pd.isna(high):
        return "–"
    if math.isinf(low) or math.isinf(high):
        return "no interval at this size"
    return f"[{low:+.3f}, {high:+.3f}]"


def _num(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.3f}"


def run_summary_markdown(run: Run) -> str:
    """One paragraph describing the run (model, tasks, sizes), generated from the spec and task table."""
    tasks = run.task_table()
    spec = run.spec
    held = ", ".join(spec.heldout_tasks) or "none"
    compared = ", ".join(c.base_model for c in spec.companion_specs())
    return (
        f"**This run** (`{spec.name}`): base model **{spec.base_model}** ({run.n_layers} layers); "
        f"{len(tasks)} tasks from {tasks['cluster'].nunique()} of the 12 Flan 2021 clusters; "
        f"{spec.data.n_train} training and {spec.data.n_test} test examples per task; LoRA r={spec.training.lora_r}, "
        f"alpha={spec.training.lora_alpha} on {', '.join(spec.training.target_modules)}, "
        f"{spec.training.epochs:g} epochs at learning rate {spec.training.learning_rate:g}; "
        f"tasks held out of the held-out SFT model: {held}"
        + (f"; compared in the cross-model chapter with: {compared}" if compared else "")
        + f". {spec.description}"
    )


def findings_markdown(findings: pd.DataFrame, robust: dict[str, pd.DataFrame] | None = None) -> str:
    """The findings page body: one section per finding with verdict, numbers and link, generated.

    Args:
        findings: :meth:`layerwise.pipeline.Run.findings` (linear CKA, last token).
        robust: other variants (label -> findings table) whose verdicts are listed beside it.
    """
    robust = robust or {}
    counts = findings["verdict"].value_counts()
    head = (f"Of {len(findings)} findings, **{int(counts.get(HOLDS, 0))} hold**, "
            f"**{int(counts.get(DOES_NOT_HOLD, 0))} do not hold**, "
            f"**{int(counts.get(INCONCLUSIVE, 0))} are inconclusive** and "
            f"**{int(counts.get(UNDERPOWERED, 0))} are inconclusive because this run is too small to tell** "
            "(linear CKA, last prompt token).")
    cols = ["finding", "verdict"] + list(robust) + ["estimate", "95% CI"]
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, f in findings.iterrows():
        others = [mark(r.set_index("id").loc[f["id"], "verdict"]) if f["id"] in set(r["id"]) else "–" for r in robust.values()]
        lines.append(f"| {{ref}}`{f['id']} <{f['id'].lower()}>` | {mark(f['verdict'])} | " + " | ".join(others)
                     + f" | {_num(f['estimate'])} | {interval_text(f['low'], f['high'])} |")
    body = []
    for _, f in findings.iterrows():
        body += [
            "",
            f"({f['id'].lower()})=",
            f"### {f['id']}: {mark(f['verdict'])}",
            "",
            f"**Paper:** {f['claim']}",
            "",
            f"**Test:** {f['test']}",
            "",
            f"**This run:** {f['detail']}. See [the chapter]({chapter_of(f['id'])}.ipynb).",
        ]
    return "\n".join(lines + body)


def finding_sentence(findings: pd.DataFrame, fid: str) -> str:
    """One generated sentence stating a finding's verdict and numbers (for chapters)."""
    f = findings.set_index("id").loc[fid]
    return f"**{fid}** ({f['claim']}) - {mark(f['verdict'])} in this run: {f['detail']}."
