"""Small helpers the notebooks share: open a run, show its settings, write computed prose.

Notebooks stay thin: a ``parameters`` cell, ``run = open_run(spec_path, overrides)``, then calls
into the library and charts. Sentences that state a result are built here from the result tables
(:func:`markdown`), never typed into a notebook.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

__all__ = ["open_run", "spec_table", "markdown", "md_table", "fmt"]


def open_run(spec_path: str, overrides: Sequence[str] | dict[str, Any] = ()):
    """Validate the spec, set up offline charts, and return the :class:`~layerwise.pipeline.Run`."""
    import warnings

    from .charts import setup_altair
    from .pipeline import Run

    warnings.filterwarnings("ignore")
    setup_altair()
    return Run.from_spec(spec_path, overrides, verbose=False)


def spec_table(run) -> pd.DataFrame:
    """The settings of a run as a two-column table (setting, value) for display."""
    d = run.spec.to_dict()
    rows = [("name", d["name"]), ("base model", d["base_model"]), ("tasks", ", ".join(d["tasks"]))]
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


def markdown(text: str):
    """Display generated Markdown in the notebook (rendered as prose in the book)."""
    from IPython.display import Markdown, display

    display(Markdown(text))
