"""Charts: valid Vega-Lite with the expected encodings; offline renderers."""

import numpy as np
import pandas as pd
import pytest

from conftest import tidy_table
from layerwise import charts


@pytest.fixture
def cka():
    layers = np.arange(0, 5)
    curves = {comp: np.tile(base - 0.05 * layers, (2, 1)) for comp, base in [("PT vs control", 0.9), ("SFT vs control", 0.7)]}
    return tidy_table(curves, tasks=["a", "b"], clusters=["sentiment", "coreference"], n_examples=10, first_layer=0)


def test_cka_by_layer_chart_drops_layer_zero_and_facets(cka):
    spec = charts.cka_by_layer_chart(cka).to_dict()
    assert spec["facet"]["column"]["field"] == "comparison"
    enc = spec["spec"]["encoding"]
    assert enc["x"]["field"] == "layer" and enc["y"]["field"] == "value" and enc["color"]["field"] == "task"
    values = next(iter(spec["datasets"].values()))
    assert min(v["layer"] for v in values) == 1 and len(values) == 2 * 4 * 2
    assert any(p.get("bind") == "legend" for p in spec["params"])


def test_spread_chart_is_a_boxplot_per_layer(cka):
    spec = charts.cka_spread_chart(cka).to_dict()
    assert spec["mark"]["type"] == "boxplot"
    assert spec["encoding"]["x"]["field"] == "layer" and spec["encoding"]["xOffset"]["field"] == "comparison"


def test_loss_and_response_charts():
    log = pd.DataFrame({"adapter": ["sft", "sft"], "step": [1, 2], "epoch": [0.5, 1.0], "loss": [2.0, 1.5], "learning_rate": [1e-3, 0.0]})
    assert charts.loss_curves(log).to_dict()["encoding"]["y"]["field"] == "loss"
    loss = pd.DataFrame({"task": ["a"] * 3, "role": ["PT", "SFT", "control"], "loss": [2.0, 1.5, 1.0], "n": [5] * 3})
    assert charts.response_loss_chart(loss).to_dict()["encoding"]["x"]["field"] == "loss"


def test_book_renderer_emits_html_calling_local_vega_embed(cka):
    assert charts.setup_altair("book") == "book"
    import altair as alt

    bundle = alt.renderers.get()(charts.cka_spread_chart(cka).to_dict())
    html = bundle["text/html"]
    assert "window.vegaEmbed" in html and "cdn" not in html.lower() and "<script src" not in html
    charts.setup_altair("svg")
    with pytest.raises(ValueError, match="unknown chart mode 'nope'"):
        charts.setup_altair("nope")


def test_vega_bundle_is_written_once(tmp_path):
    p = charts.write_vega_bundle(tmp_path)
    text = p.read_text()
    assert p.stat().st_size > 100_000 and text.startswith("(function(){") and "window.vegaEmbed = vegaEmbed" in text
    mtime = p.stat().st_mtime_ns
    assert charts.write_vega_bundle(tmp_path).stat().st_mtime_ns == mtime


def test_comparison_lines_band_is_translucent_and_linear_cka_comes_first(cka):
    debiased = cka.assign(measure="debiased_cka", value=cka["value"] - 0.5)
    both = pd.concat([debiased, cka])  # debiased rows first: the panel order must not follow them
    spec = charts.comparison_lines(both, comparisons=["PT vs control", "SFT vs control"], title="t").to_dict()
    assert spec["facet"]["sort"] == ["linear_cka", "debiased_cka"]
    band, line = spec["spec"]["layer"]
    assert band["mark"]["type"] == "area" and band["encoding"]["y"]["field"] == "q25" and band["encoding"]["y2"]["field"] == "q75"
    # a full-opacity band would hide the lines of the other models
    assert band["encoding"]["opacity"]["condition"]["value"] <= 0.25
    assert line["encoding"]["opacity"]["condition"]["value"] == 1.0
    rows = pd.DataFrame(spec["datasets"][spec["data"]["name"]])
    pt1 = rows[(rows["measure"] == "linear_cka") & (rows["comparison"] == "PT vs control") & (rows["layer"] == 1)].iloc[0]
    assert pt1["q25"] <= pt1["median"] <= pt1["q75"] and pt1["count"] == 2


def test_band_curve_chart_draws_the_curve_and_the_fit_by_layer():
    spec = charts.band_curve_chart([0.0, -0.01, 0.2, 0.25], [0.0, 0.0, 0.2, 0.25]).to_dict()
    assert spec["mark"]["type"] == "line" and spec["encoding"]["x"]["field"] == "layer"
    assert spec["title"].startswith("Median ΔCKA") and "segmented" in spec["title"] and "plateau" not in spec["title"]
    assert spec["encoding"]["strokeDash"]["legend"] is None  # one legend, not two
    rows = next(iter(spec["datasets"].values()))
    assert {r["series"] for r in rows} == {"median ΔCKA", "fitted"} and len(rows) == 8
    assert {r["layer"] for r in rows} == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="lengths"):
        charts.band_curve_chart([0.1, 0.2], [0.1])
