"""Altair charts of the book, and an Altair renderer that works offline inside Jupyter Book 1.

Rendering modes (``setup_altair``; chosen by ``$LAYERWISE_CHART_MODE``):

* ``book`` - a small ``text/html`` output (a ``<div>`` plus a call to ``window.vegaEmbed``); the
  Vega bundle itself is served once per site from ``_static/vega-embed-bundle.js`` (written by
  :func:`write_vega_bundle` from ``vl-convert``), so charts are interactive and need no CDN;
* ``svg`` (default for tests and plain Jupyter) - static SVG through ``vl-convert``;
* anything Altair knows (``default``, ``html``, ...) - passed through.

Chart functions take the tidy tables of :mod:`layerwise.pipeline` and return ``alt.Chart`` objects
with tooltips and task selection; tests check them with ``chart.to_dict()``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import altair as alt
import pandas as pd

from .vocab import COMPARISON_ORDER, CONTROL_ROLE, HELDOUT_ROLE, PT, PT_ROLE, SFT, SFT_ROLE

__all__ = [
    "setup_altair",
    "write_vega_bundle",
    "loss_curves",
    "response_loss_chart",
    "cka_by_layer_chart",
    "cka_spread_chart",
    "task_sizes_chart",
    "band_curve_chart",
]

_BUNDLE_NAME = "vega-embed-bundle.js"


def _book_renderer(spec: dict, **_: object) -> dict:
    div = f"vega-{uuid.uuid4().hex[:12]}"
    html = (
        f'<div id="{div}" class="layerwise-chart"></div>\n'
        "<script>(function(){var s=" + json.dumps(spec) + ";"
        "function draw(){if(window.vegaEmbed){window.vegaEmbed('#" + div + "',s,{actions:false})"
        ".catch(function(e){document.getElementById('" + div + "').innerText='chart error: '+e;});}"
        "else{setTimeout(draw,50);}}draw();})();</script>"
    )
    return {"text/html": html}


def setup_altair(mode: str | None = None) -> str:
    """Register and enable the chart renderer; returns the mode in use.

    Args:
        mode: ``book``, ``svg`` or any Altair renderer name; ``None`` reads
            ``$LAYERWISE_CHART_MODE`` (default ``svg``).

    Raises:
        ValueError: unknown renderer name (the message lists the registered ones).
    """
    mode = mode or os.environ.get("LAYERWISE_CHART_MODE", "svg")
    alt.renderers.register("book", _book_renderer)
    if mode not in alt.renderers.names():
        raise ValueError(f"unknown chart mode {mode!r}; valid: {sorted(alt.renderers.names())}")
    alt.renderers.enable(mode)
    return mode


def write_vega_bundle(static_dir: Path) -> Path:
    """Write the offline vega + vega-lite + vega-embed bundle to ``static_dir/vega-embed-bundle.js``.

    The bundle from ``vl_convert.javascript_bundle()`` declares top-level constants; it is wrapped
    in a function so they stay private and only ``window.vegaEmbed`` is set.
    """
    import vl_convert as vlc

    from .cache import atomic_write_text

    target = Path(static_dir) / _BUNDLE_NAME
    if target.is_file() and target.stat().st_size > 100_000:
        return target
    bundle = vlc.javascript_bundle()
    js = "(function(){\n" + bundle + "\nwindow.vegaEmbed = vegaEmbed;\n})();\n"
    return atomic_write_text(target, js)


_WIDTH = 430  # fits the book's content column with a legend beside it


def task_sizes_chart(tasks: pd.DataFrame) -> alt.Chart:
    """Bar chart of train/test examples per task, coloured by cluster.

    Args:
        tasks: :meth:`layerwise.pipeline.Run.task_table` (columns task, cluster_name, n_train, n_test).
    """
    long = tasks.melt(id_vars=["task", "cluster_name"], value_vars=["n_train", "n_test"], var_name="split", value_name="examples")
    long["split"] = long["split"].str.removeprefix("n_")
    return (
        alt.Chart(long, title="Examples per task")
        .mark_bar()
        .encode(
            y=alt.Y("task:N", sort=None, title=None),
            x=alt.X("examples:Q", title="examples"),
            color=alt.Color("cluster_name:N", title="cluster"),
            yOffset="split:N",
            tooltip=["task", "cluster_name", "split", "examples"],
        )
        .properties(width=_WIDTH)
    )


def loss_curves(log: pd.DataFrame) -> alt.Chart:
    """Training loss per optimiser step for every adapter (SFT and controls), selectable by legend.

    Args:
        log: :meth:`layerwise.pipeline.Run.training_log` (columns adapter, step, loss).
    """
    sel = alt.selection_point(fields=["adapter"], bind="legend")
    return (
        alt.Chart(log, title="Training loss (response tokens, nats per token)")
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="optimiser step"),
            y=alt.Y("loss:Q", title="loss"),
            color=alt.Color("adapter:N"),
            opacity=alt.condition(sel, alt.value(1.0), alt.value(0.12)),
            tooltip=["adapter", "step", "epoch", alt.Tooltip("loss:Q", format=".3f"), alt.Tooltip("learning_rate:Q", format=".2e")],
        )
        .add_params(sel)
        .properties(width=_WIDTH, height=300)
    )


def response_loss_chart(loss: pd.DataFrame) -> alt.Chart:
    """Test-split response loss per task for PT, SFT and the task's control (lower is better).

    Args:
        loss: :meth:`layerwise.pipeline.Run.response_loss` (columns task, role, loss).
    """
    return (
        alt.Chart(loss, title="Response loss on each task's test split (nats per token)")
        .mark_bar()
        .encode(
            y=alt.Y("task:N", title=None),
            yOffset=alt.YOffset("role:N", sort=[PT_ROLE, SFT_ROLE, CONTROL_ROLE]),
            x=alt.X("loss:Q", title="mean NLL per response token"),
            color=alt.Color("role:N", sort=[PT_ROLE, SFT_ROLE, CONTROL_ROLE], title="model"),
            tooltip=["task", "role", alt.Tooltip("loss:Q", format=".3f"), "n"],
        )
        .properties(width=_WIDTH)
    )


def cka_by_layer_chart(cka: pd.DataFrame, *, measure: str = "linear_cka") -> alt.Chart:
    """CKA by layer, one line per task, one panel per comparison; click the legend to pick tasks.

    Args:
        cka: :meth:`layerwise.pipeline.Run.cka` (columns task, cluster, layer, comparison, measure, value).
        measure: which measure to draw.
    """
    data = cka[(cka["measure"] == measure) & (cka["layer"] >= 1)]
    sel = alt.selection_point(fields=["task"], bind="legend")
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:Q", title="layer", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title="CKA", scale=alt.Scale(zero=False)),
            color=alt.Color("task:N"),
            opacity=alt.condition(sel, alt.value(1.0), alt.value(0.12)),
            tooltip=["task", "cluster", "comparison", "layer", alt.Tooltip("value:Q", format=".3f")],
        )
        .add_params(sel)
        .properties(width=220, height=240)
        .facet(column=alt.Column("comparison:N", title=None, sort=[PT, SFT]))
        .properties(title=f"{measure.replace('_', ' ')} between each model and the task's control, by layer")
    )


def cka_spread_chart(cka: pd.DataFrame, *, measure: str = "linear_cka") -> alt.Chart:
    """Spread over tasks per layer (the paper's Figure 2): box plots of CKA for PT and SFT side by side.

    Args:
        cka: as in :func:`cka_by_layer_chart`.
        measure: which measure to draw.
    """
    data = cka[(cka["measure"] == measure) & (cka["layer"] >= 1)]
    return (
        alt.Chart(data, title="Distribution over tasks of CKA with the control, per layer")
        .mark_boxplot(extent="min-max", size=9)
        .encode(
            x=alt.X("layer:O", title="layer"),
            xOffset=alt.XOffset("comparison:N", sort=[PT, SFT]),
            y=alt.Y("value:Q", title="CKA", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("comparison:N", sort=[PT, SFT], title=None),
            tooltip=["layer", "comparison"],
        )
        .properties(width=_WIDTH, height=300)
    )


# --------------------------------------------------------------------------------------------
# Analysis chapters
# --------------------------------------------------------------------------------------------

def cluster_curves_chart(means: pd.DataFrame, *, title: str) -> alt.Chart:
    """Mean CKA per cluster and layer (one line per cluster; legend selects).

    Args:
        means: :func:`layerwise.analysis.cluster_layer_means` (columns cluster, layer, value, n_tasks).
    """
    return _layer_lines(
        means, group="cluster", title=title, height=280,
        y=alt.Y("value:Q", title="CKA", scale=alt.Scale(zero=False)),
        color=alt.Color("cluster:N"),
        tooltip=["cluster", "layer", alt.Tooltip("value:Q", format=".3f"), "n_tasks"],
    )


def _layer_lines(data: pd.DataFrame, *, group: str, title: str, height: int, y: alt.Y, color: alt.Color,
                 tooltip: list) -> alt.Chart:
    """One line per ``group`` over the layers (x = ``layer``), clicking the legend highlights one."""
    sel = alt.selection_point(fields=[group], bind="legend")
    return (
        alt.Chart(data, title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:Q", axis=alt.Axis(tickMinStep=1)),
            y=y,
            color=color,
            opacity=alt.condition(sel, alt.value(1.0), alt.value(0.12)),
            tooltip=tooltip,
        )
        .add_params(sel)
        .properties(width=_WIDTH, height=height)
    )


def cluster_ranking_chart(ranking: pd.DataFrame, *, title: str) -> alt.Chart:
    """Clusters ranked by mean CKA with the controls, coloured by the paper's high/low grouping.

    Args:
        ranking: :func:`layerwise.analysis.cluster_ranking`.
    """
    return (
        alt.Chart(ranking, title=title)
        .mark_bar()
        .encode(
            y=alt.Y("cluster:N", sort="-x", title=None),
            x=alt.X("value:Q", title="mean CKA with the control", scale=alt.Scale(zero=False)),
            color=alt.Color("paper_group:N", title="paper's group",
                            scale=alt.Scale(domain=["high", "low", "-"], range=["#4c78a8", "#e45756", "#bab0ac"])),
            tooltip=["cluster", "rank", alt.Tooltip("value:Q", format=".3f"), "n_tasks", "paper_group"],
        )
        .properties(width=_WIDTH - 60)
    )


def delta_heatmap(delta: pd.DataFrame, *, title: str) -> alt.Chart:
    """ΔCKA per cluster and layer as a diverging heatmap (the paper's Figure 3 differences).

    Args:
        delta: :func:`layerwise.analysis.delta_by_cluster` (columns cluster, layer, delta, n_tasks).
    """
    lim = float(max(abs(delta["delta"].min()), abs(delta["delta"].max()), 1e-6))
    return (
        alt.Chart(delta, title=title)
        .mark_rect()
        .encode(
            x=alt.X("layer:O"),
            y=alt.Y("cluster:N", title=None),
            color=alt.Color("delta:Q", title="ΔCKA", scale=alt.Scale(scheme="redblue", domain=[-lim, lim], reverse=True)),
            tooltip=["cluster", "layer", alt.Tooltip("delta:Q", format="+.3f"), "n_tasks"],
        )
        .properties(width=_WIDTH, height=alt.Step(22))
    )


def band_diagram(diagram: pd.DataFrame, *, title: str = "Layer bands in relative depth") -> alt.Chart:
    """Figure-1-style diagram: each model's shared / transition / refinement bands over relative depth.

    Args:
        diagram: :func:`layerwise.bands.band_diagram_data` rows (model, band, start, end, rel_start, rel_end, ...).
    """
    data = diagram.copy()
    data["layers"] = data["start"].astype(str) + "-" + data["end"].astype(str) + " of " + data["n_layers"].astype(str)
    bars = (
        alt.Chart(data, title=title)
        .mark_bar(height=26)
        .encode(
            x=alt.X("rel_start:Q", title="relative depth (0 = input, 1 = last layer)", scale=alt.Scale(domain=[0, 1])),
            x2="rel_end:Q",
            y=alt.Y("model:N", title=None),
            color=alt.Color("band:N", sort=["shared", "transition", "refinement"],
                            scale=alt.Scale(domain=["shared", "transition", "refinement"], range=["#9ecae9", "#f58518", "#54a24b"])),
            tooltip=["model", "band", "layers", alt.Tooltip("rel_start:Q", format=".2f"), alt.Tooltip("rel_end:Q", format=".2f")],
        )
    )
    text = (
        alt.Chart(data)
        .mark_text(color="black", fontSize=10)
        .encode(x=alt.X("mid:Q"), y="model:N", text="layers:N")
        .transform_calculate(mid="(datum.rel_start + datum.rel_end) / 2")
    )
    return (bars + text).properties(width=_WIDTH, height=alt.Step(40))


def comparison_lines(sim: pd.DataFrame, *, comparisons: list[str], facet: str = "measure", title: str,
                     tasks: list[str] | None = None) -> alt.Chart:
    """Median over tasks per layer of several comparisons on the same axes, one panel per ``facet`` value.

    Args:
        sim: similarity rows (already filtered to the measures/poolings to show).
        comparisons: which comparisons to draw (baselines included).
        facet: column to facet by (``measure`` or ``pooling``).
        tasks: restrict to these tasks.
    """
    data = sim[sim["comparison"].isin(comparisons)]
    if tasks is not None:
        data = data[data["task"].isin(tasks)]
    grouped = data.groupby([facet, "comparison", "layer"])["value"]
    med = grouped.agg(["median", "min", "max", "count"])
    med["q25"], med["q75"] = grouped.quantile(0.25), grouped.quantile(0.75)
    med = med.reset_index()
    order = [c for c in COMPARISON_ORDER if c in comparisons]
    panels = list(dict.fromkeys(data[facet]))
    if facet == "measure":  # linear CKA (the paper's measure) first, then the caller's order
        panels.sort(key=lambda m: m != "linear_cka")
    tooltip = [facet, "comparison", "layer", alt.Tooltip("median:Q", format=".3f"),
               alt.Tooltip("q25:Q", format=".3f", title="25th percentile"), alt.Tooltip("q75:Q", format=".3f", title="75th percentile"),
               alt.Tooltip("min:Q", format=".3f"), alt.Tooltip("max:Q", format=".3f"), alt.Tooltip("count:Q", title="tasks")]
    return _median_band_panels(
        med, x=alt.X("layer:Q", axis=alt.Axis(tickMinStep=1)),
        color=alt.Color("comparison:N", sort=order, title=None, legend=alt.Legend(labelLimit=240, orient="bottom", columns=2)),
        select="comparison", facet=facet, panels=panels, y_title="similarity (median over tasks; band: middle 50 %)",
        band_opacity=0.18, tooltip=tooltip, title=title,
    )


def _median_band_panels(data: pd.DataFrame, *, x: alt.X, color: alt.Color, select: str, facet: str, panels: list[str],
                        y_title: str, band_opacity: float, tooltip: list, title: str) -> alt.Chart:
    """Median lines (``median``) over a shaded ``q25``-``q75`` band, one panel per ``facet`` value.

    A legend click on ``select`` highlights one line and its band. The band's opacity is an
    encoding of its own: a shared opacity encoding would override the mark's and draw it opaque.
    """
    sel = alt.selection_point(fields=[select], bind="legend")
    base = alt.Chart(data).encode(x=x, color=color)
    band = base.mark_area().encode(
        y=alt.Y("q25:Q", title=y_title), y2="q75:Q",
        opacity=alt.condition(sel, alt.value(band_opacity), alt.value(0.02)),
    )
    line = base.mark_line(point=True).encode(
        y="median:Q", opacity=alt.condition(sel, alt.value(1.0), alt.value(0.1)), tooltip=tooltip,
    )
    return (
        (band + line).add_params(sel).properties(width=250, height=200)
        .facet(facet=alt.Facet(f"{facet}:N", title=None, sort=panels), columns=2)
        .resolve_scale(y="independent")
        .properties(title=title)
    )


def depth_profile_chart(profiles: pd.DataFrame, *, title: str) -> alt.Chart:
    """Several models' median-over-tasks curves against relative depth, one panel per series.

    Args:
        profiles: :func:`layerwise.crossmodel.depth_profiles` rows (``model, series, layer,
            n_layers, depth, median, q25, q75, n_tasks``); each model is a colour, its
            interquartile band shaded. Clicking a legend entry highlights that model.
    """
    tooltip = ["model", "series", "layer", "n_layers", alt.Tooltip("depth:Q", format=".2f"),
               alt.Tooltip("median:Q", format=".3f"), alt.Tooltip("q25:Q", format=".3f", title="25th percentile"),
               alt.Tooltip("q75:Q", format=".3f", title="75th percentile"), alt.Tooltip("n_tasks:Q", title="tasks")]
    return _median_band_panels(
        profiles, x=alt.X("depth:Q", title="relative depth (layer / L)", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("model:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=320)),
        select="model", facet="series", panels=list(dict.fromkeys(profiles["series"])),
        y_title="median over tasks (band: middle 50 %)", band_opacity=0.15, tooltip=tooltip, title=title,
    )


def task_comparison_chart(sim: pd.DataFrame, *, comparisons: list[str], title: str) -> alt.Chart:
    """Per-task curves of several comparisons, one panel per task (for a handful of tasks, e.g. held-out ones)."""
    order = [c for c in COMPARISON_ORDER if c in comparisons]
    data = sim[sim["comparison"].isin(comparisons)]
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:Q", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title="CKA", scale=alt.Scale(zero=False)),
            color=alt.Color("comparison:N", sort=order, title=None, legend=alt.Legend(labelLimit=240, orient="bottom", columns=2)),
            tooltip=["task", "comparison", "layer", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(width=230, height=180)
        .facet(facet=alt.Facet("task:N", title=None), columns=2)
        .resolve_scale(y="independent")
        .properties(title=title)
    )


def spectra_chart(summary: pd.DataFrame, *, value: str = "effective_rank", title: str) -> alt.Chart:
    """A per-layer spectral summary (effective rank, n_99, ...) for each model role, median over tasks.

    Args:
        summary: rows of :func:`layerwise.spectra.layer_spectra` summaries with ``role`` and ``task`` columns.
        value: which summary column to draw.
    """
    med = summary.groupby(["role", "layer"])[value].median().reset_index()
    return _layer_lines(
        med, group="role", title=title, height=260,
        y=alt.Y(f"{value}:Q", title=value.replace("_", " ") + " (median over tasks)"),
        color=alt.Color("role:N", title="model"),
        tooltip=["role", "layer", alt.Tooltip(f"{value}:Q", format=".2f")],
    )


def task_metric_chart(metrics: pd.DataFrame) -> alt.Chart:
    """Task metric per task for each model role (accuracy / F1 / ROUGE-L; higher is better).

    Args:
        metrics: :meth:`layerwise.pipeline.Run.evaluate` (columns task, role, metric, value, n).
    """
    order = [PT_ROLE, SFT_ROLE, HELDOUT_ROLE, CONTROL_ROLE]
    data = metrics.assign(label=metrics["task"] + " (" + metrics["metric"] + ")")
    return (
        alt.Chart(data, title="Task metric on each task's evaluation examples")
        .mark_bar()
        .encode(
            y=alt.Y("label:N", title=None),
            yOffset=alt.YOffset("role:N", sort=order),
            x=alt.X("value:Q", title="metric (higher is better)", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("role:N", sort=order, title="model"),
            tooltip=["task", "metric", "role", alt.Tooltip("value:Q", format=".3f"), "n"],
        )
        .properties(width=_WIDTH - 80)
    )


def band_calibration_chart(recovery: pd.DataFrame, false_positives: pd.DataFrame, *, goal_recovery: float = 0.8,
                           max_false_positive: float = 0.1,
                           title: str | None = None) -> alt.VConcatChart:
    """Recovery rate (top) and false-positive rate (bottom) of the band rule against the number of tasks.

    One panel per layer count; dashed rules at the goals (``goal_recovery``, ``max_false_positive``).

    Args:
        recovery: :func:`layerwise.band_calibration.recovery_table` (columns shape, n_layers, n_tasks,
            noise_sd, recovered_1, recovered_2, ...).
        false_positives: :func:`layerwise.band_calibration.false_positive_table`.
        goal_recovery, max_false_positive: where the dashed rules are drawn (rates in [0, 1]).

    Raises:
        ValueError: the tables hold more than one noise level (filter them to one first).
    """
    levels = sorted(set(recovery["noise_sd"]) | set(false_positives["noise_sd"]))
    if len(levels) != 1:
        raise ValueError(f"noise_sd: the tables hold {len(levels)} noise levels {levels}; pass the rows of one")
    rec = recovery.melt(id_vars=["shape", "n_layers", "n_tasks", "noise_sd"], value_vars=["recovered_1", "recovered_2"],
                        var_name="tolerance", value_name="rate")
    rec["tolerance"] = rec["tolerance"].map({"recovered_1": "±1 layer", "recovered_2": "±2 layers"})
    rec["series"] = rec["shape"]
    fp = false_positives.assign(series=false_positives["shape"], rate=false_positives["false_positive"], tolerance="-")
    x = alt.X("n_tasks:Q", title="tasks", axis=alt.Axis(tickMinStep=1))
    tip = ["series", "tolerance", "n_layers", "n_tasks", alt.Tooltip("noise_sd:Q", format=".3f"), alt.Tooltip("rate:Q", format=".0%")]

    def panel(data: pd.DataFrame, goal: float, ytitle: str, dash: alt.StrokeDash | None) -> alt.FacetChart:
        enc = {"x": x, "y": alt.Y("rate:Q", title=ytitle, scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
               "color": alt.Color("series:N", title="shape"), "tooltip": tip}
        if dash is not None:
            enc["strokeDash"] = dash
        lines = alt.Chart(data).mark_line(point=True).encode(**enc)
        rule = alt.Chart(pd.DataFrame({"goal": [goal]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="goal:Q")
        return (lines + rule).properties(width=170, height=170).facet(
            column=alt.Column("n_layers:O", title="layers"), data=data)

    top = panel(rec, goal_recovery, "bands recovered", alt.StrokeDash("tolerance:N", title="boundaries within"))
    bottom = panel(fp, max_false_positive, "transition declared on null curves", None)
    title = title or f"Band rule on simulated curves (noise SD {levels[0]:.3f}): recovery and false positives"
    return alt.vconcat(top, bottom, title=title).resolve_scale(color="independent", strokeDash="independent")


def band_curve_chart(curve: Sequence[float], fitted: Sequence[float], *, title: str | None = None,
                     signal: str = "median ΔCKA") -> alt.Chart:
    """The curve the band rule reads and its fitted three-piece segmented line, by layer.

    Args:
        curve: ``(L,)`` aggregate curve of layers 1..L (:attr:`layerwise.bands.Bands.curve`, by default
            the median over tasks of ΔCKA = CKA(SFT, control) − CKA(PT, control), paper Fig. 3).
        fitted: ``(L,)`` the rule's fit (:attr:`layerwise.bands.BandFit.fitted`): continuous
            piecewise-linear with two breakpoints (the last shared and the last transition layer).
        title: chart title (default names the rule). signal: legend label of ``curve``.

    Returns:
        Line chart with points; series ``signal`` (solid) and ``"fitted"`` (dashed), tooltip with values.

    Raises:
        ValueError: ``curve`` and ``fitted`` differ in length, or are empty.
    """
    if len(curve) != len(fitted) or len(curve) == 0:
        raise ValueError(f"curve/fitted: lengths {len(curve)} and {len(fitted)}; need the same, non-zero, length")
    layers = range(1, len(curve) + 1)
    data = pd.concat([pd.DataFrame({"layer": layers, "series": signal, "value": list(curve)}),
                      pd.DataFrame({"layer": layers, "series": "fitted", "value": list(fitted)})], ignore_index=True)
    title = title or f"{signal[:1].upper()}{signal[1:]} over seen tasks and the band rule's three-piece segmented fit"
    return alt.Chart(data, title=title).mark_line(point=True).encode(
        x=alt.X("layer:Q", axis=alt.Axis(tickMinStep=1)), y=alt.Y("value:Q", title="ΔCKA"),
        color=alt.Color("series:N", sort=[signal, "fitted"], title=None),
        strokeDash=alt.StrokeDash("series:N", sort=[signal, "fitted"], legend=None),
        tooltip=["series", "layer", alt.Tooltip("value:Q", format="+.3f")],
    ).properties(width=_WIDTH, height=260)


def seed_spread_chart(spread: pd.DataFrame, *, title: str = "ΔCKA per SFT seed (median over tasks)") -> alt.Chart:
    """One line per training seed: the median over tasks of ΔCKA = CKA(SFT, control) − CKA(PT, control)
    by layer, one panel per experimental model (:func:`layerwise.chapters.seed_spread`)."""
    return (
        alt.Chart(spread, title=title)
        .mark_line(point=True)
        .encode(x=alt.X("layer:Q", title="layer"), y=alt.Y("delta:Q", title="median ΔCKA"),
                color=alt.Color("seed:N", title="seed"), tooltip=["comparison", "seed", "layer", alt.Tooltip("delta:Q", format=".3f")])
        .properties(width=_WIDTH // 2 + 60, height=220)
        .facet(column=alt.Column("comparison:N", title=None))
    )
