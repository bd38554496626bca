"""What differs from the paper, and what this run can detect: two tables for the findings page.

:func:`deviations_table` is computed from a :class:`~layerwise.spec.RunSpec` (the paper's values
come from its §3-§5 and the authors' training configuration); :func:`power_table` from a findings
table (:func:`layerwise.findings.findings_table`).
"""

from __future__ import annotations

import math

import pandas as pd

from ..spec import RunSpec
from .core import REGISTRY

__all__ = ["optimizer_steps", "deviations_table", "power_table", "PAPER_SETTINGS"]

#: The paper's settings the deviations table compares with (Zhao, Ziser and Cohen 2024, §3-§5).
PAPER_SETTINGS: dict[str, str] = {
    "model": "Llama-2-7b-hf, 32 layers, fp16 (not quantised)",
    "chat template": "llama2, with the default Llama-2 system prompt",
    "templates per task": "10 Flan 2021 instruction templates per task",
    "tasks": "60 Flan 2021 tasks in 12 clusters",
    "training examples": "SFT: at most 50,000 per cluster; control: the task's whole training file",
    "test examples": "the first min(10,000, |test|) per task",
    "optimizer steps, SFT": "3 epochs over up to ~600,000 examples at batch 16: up to ~112,000",
    "optimizer steps, control": "3 epochs over the task's whole training file at batch 16 (differs per task)",
    "SFT : control steps": "about the ratio of the mixture to one task's file",
    "learning rate": "5e-05 (cosine)",
    "seeds": "one (42)",
    "control-seed ceiling": "none",
    "learned-its-task gate": "none (controls are assumed to be specialists)",
    "held-out tasks (RQ3)": "7 of 60 (which ones is not reported)",
}


def optimizer_steps(n_examples: int, *, epochs: float, batch_size: int, grad_accum: int) -> int:
    """Optimizer updates of a training run, as the Hugging Face ``Trainer`` counts them.

    ``ceil(epochs * max(ceil(n_examples / batch_size) // grad_accum, 1))``.

    Raises:
        ValueError: a non-positive size.
    """
    if n_examples < 1 or batch_size < 1 or grad_accum < 1 or not epochs > 0:
        raise ValueError(f"optimizer_steps needs positive sizes, got n_examples={n_examples}, epochs={epochs}, "
                         f"batch_size={batch_size}, grad_accum={grad_accum}")
    per_epoch = max(math.ceil(n_examples / batch_size) // grad_accum, 1)
    return int(math.ceil(epochs * per_epoch))


def _model_text(spec: RunSpec) -> str:
    from ..models import MODEL_ALIASES

    src = MODEL_ALIASES.get(spec.base_model)
    text = f"{spec.base_model}: {src.description}" if src else f"{spec.base_model} (as loaded; precision not recorded)"
    if spec.experimental_model:
        text += f"; experimental model: off-the-shelf {spec.experimental_model}"
    return text


def _templates_text(spec: RunSpec) -> str:
    from ..templates import n_templates

    counts = []
    for t in spec.tasks:
        try:
            counts.append(n_templates(t))
        except KeyError:
            pass
    rng = "?" if not counts else (f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}")
    mode = "one template per example, drawn from the task's" if spec.data.templates == "all" else "the first of the task's"
    return f"{mode} {rng} templates"


def deviations_table(spec: RunSpec) -> pd.DataFrame:
    """The settings where this run differs from the paper: setting, paper value, this run's value.

    Optimizer steps are computed from ``n_train``, ``epochs`` (``control_epochs`` for a control),
    ``batch_size``, ``grad_accum`` and the number of tasks (:func:`optimizer_steps`; the SFT mixture
    holds ``n_train`` examples of every task, fewer under ``data.max_train_per_cluster``).

    Args:
        spec: a validated run spec.

    Returns:
        DataFrame with columns ``setting, paper, this run`` (strings), one row per setting of
        :data:`PAPER_SETTINGS`.
    """
    from ..tasks import get_task

    d, tr = spec.data, spec.training
    n_tasks = len(spec.tasks)
    clusters = {get_task(t).cluster for t in spec.tasks}
    steps = dict(epochs=tr.epochs, batch_size=tr.batch_size, grad_accum=tr.grad_accum)
    eff = tr.batch_size * tr.grad_accum
    cap = " (at most; data.max_train_per_cluster caps clusters)" if d.max_train_per_cluster else ""
    sft = optimizer_steps(d.n_train * n_tasks, **steps)
    ctrl_epochs = tr.control_epochs or tr.epochs
    ctrl = optimizer_steps(d.n_train, **(steps | {"epochs": ctrl_epochs}))
    held = list(spec.heldout_tasks)
    ep = f"{tr.epochs:g} epoch{'' if tr.epochs == 1 else 's'}"
    sft_text = f"{ep} over {d.n_train} × {n_tasks} = {d.n_train * n_tasks} examples at batch {eff}: {sft}{cap}"
    if held:
        hs = optimizer_steps(d.n_train * (n_tasks - len(held)), **steps)
        sft_text += f"; held-out SFT: {hs}"
    seeds = tr.sft_seeds
    run = {
        "model": _model_text(spec),
        "chat template": d.chat_template,
        "templates per task": _templates_text(spec),
        "tasks": f"{n_tasks} tasks in {len(clusters)} of the 12 clusters",
        "training examples": f"{d.n_train} per task (SFT and each control)",
        "test examples": f"{d.n_test} per task",
        "optimizer steps, SFT": sft_text,
        "optimizer steps, control": (f"{ctrl_epochs:g} epoch{'' if ctrl_epochs == 1 else 's'} over {d.n_train} "
                                     f"examples at batch {eff}: {ctrl}"),
        "SFT : control steps": f"{sft / ctrl:.0f} : 1",
        "learning rate": f"{tr.learning_rate:g} (cosine)",
        "seeds": f"{len(seeds)} SFT seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))}); controls: {tr.seed}",
        "control-seed ceiling": (f"controls of the first {min(tr.ceiling_tasks, n_tasks)} tasks again with seed(s) "
                                 f"{', '.join(map(str, tr.control_seeds))}" if tr.control_seeds else "none"),
        "learned-its-task gate": (f"on {d.n_eval} evaluation examples per task; failed tasks "
                                  + ("left out of the verdicts" if spec.gate == "enforce" else "kept (gate: report)")),
        "held-out tasks (RQ3)": (f"{len(held)} of {n_tasks} ({', '.join(held)})" if held else "none (no RQ3 model)"),
    }
    return pd.DataFrame([(k, PAPER_SETTINGS[k], run[k]) for k in PAPER_SETTINGS], columns=["setting", "paper", "this run"])


def power_table(findings: pd.DataFrame) -> pd.DataFrame:
    """What this run can detect, per finding: statistic, MDE, the paper's effect, verdict.

    Args:
        findings: :func:`layerwise.findings.findings_table` (columns ``id, estimate, mde,
            paper_effect, verdict, n_tasks, interval``).

    Returns:
        DataFrame with columns ``finding, statistic, n_tasks, MDE, paper effect, effect read from,
        powered, verdict`` (``powered``: the MDE is at most the paper's effect).

    Raises:
        ValueError: a column is missing (names it).
    """
    need = ["id", "estimate", "mde", "paper_effect", "verdict", "n_tasks"]
    missing = [c for c in need if c not in findings]
    if missing:
        raise ValueError(f"power_table: the findings table lacks columns {missing}; it has {list(findings.columns)}")
    out = pd.DataFrame({
        "finding": findings["id"],
        "statistic": findings["estimate"],
        "n_tasks": findings["n_tasks"],
        "MDE": findings["mde"],
        "paper effect": findings["paper_effect"].abs(),
        "effect read from": findings["id"].map(lambda i: REGISTRY[i].effect_source if i in REGISTRY else ""),
    })
    out["powered"] = out["MDE"] <= out["paper effect"]
    out["verdict"] = findings["verdict"]
    return out
