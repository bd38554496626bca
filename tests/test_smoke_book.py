"""Smoke run of the whole book: smoke spec (tiny random model, real task data) -> executed notebooks -> HTML.

Runs the CLI exactly as `make book SPEC=specs/smoke.yaml` does, into temporary folders, twice: the
second run must reuse every adapter, hidden state and table.
"""

import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from layerwise.book import notebook_names
from layerwise.spec import PROJECT_ROOT

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    cmd = [sys.executable, "-m", "layerwise", "book", "--spec", "specs/smoke.yaml",
           "--set", f"output_dir={root / 'run'}", "--book-dir", str(root / "book")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=1800)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    second = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=1800)
    assert second.returncode == 0, second.stderr[-5000:]
    return root, first, second


def test_book_has_every_chapter_with_interactive_charts(smoke_book):
    root, first, _ = smoke_book
    index = root / "book" / "_build" / "html" / "index.html"
    assert first.stdout.strip().splitlines()[-1] == str(index)
    assert index.is_file()
    assert (root / "book" / "_build" / "html" / "_static" / "vega-embed-bundle.js").is_file()
    for name in notebook_names():
        html = (root / "book" / "_build" / "html" / "executed" / f"{name}.html").read_text()
        assert "Traceback" not in html and "PapermillExecutionError" not in html, name
        assert "vega-embed-bundle.js" in html, name
        charts = re.findall(r"window\.vegaEmbed\('#vega-[0-9a-f]+'", html)
        assert len(charts) >= 1, f"{name}: no chart"
        assert "spec_path = " not in html, f"{name}: parameter cells must be hidden"


def test_similarity_table_is_complete_and_bounded(smoke_book):
    root, _, _ = smoke_book
    tables = list((root / "run" / "tables").glob("similarity-*.parquet"))
    assert len(tables) == 1
    df = pd.read_parquet(tables[0])
    n_tasks, n_layers = 4, 4  # smoke spec: 4 tasks; tiny-random-llama: 4 blocks
    assert set(df["comparison"]) == {
        "PT vs control", "SFT vs control", "held-out SFT vs control", "random-init vs control",
        "shuffled PT vs control", "shuffled SFT vs control",
    }
    assert sorted(df["layer"].unique()) == list(range(1, n_layers + 1))
    cka = df[(df["measure"] == "linear_cka") & (df["pooling"] == "last") & (df["comparison"] == "SFT vs control")]
    assert len(cka) == n_tasks * n_layers and cka["value"].between(0, 1 + 1e-9).all()
    assert {"linear_cka", "debiased_cka", "rbf_cka", "svcca", "procrustes", "mutual_knn", "rsa"} <= set(df["measure"])
    assert set(df["pooling"]) == {"last", "mean"}
    counts = df[df["pooling"] == "last"].groupby(["task", "comparison", "measure"]).size()
    assert counts.eq(n_layers).all()


def test_second_run_reuses_everything(smoke_book):
    _, first, second = smoke_book
    assert "trained in" in first.stdout
    assert "trained in" not in second.stdout and second.stdout.count(": reused (") == 6  # SFT, held-out SFT, 4 controls
    assert "states + loss in" not in second.stdout
