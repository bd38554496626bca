"""Smoke run of the whole book: smoke spec (tiny random model, real task data) -> executed notebooks -> HTML.

Runs the CLI exactly as `make book SPEC=specs/smoke.yaml` does, into temporary folders, twice: the
second run must reuse every adapter, hidden state and table.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import pytest

from layerwise import vocab
from layerwise.book import notebook_names
from layerwise.cache import write_table
from layerwise.findings import UNDERPOWERED
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
    stale = root / "book" / "executed" / "03_cka.ipynb"  # a chapter since renamed
    shutil.copy2(root / "book" / "executed" / "00_findings.ipynb", stale)
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
    assert set(df["comparison"]) == set(vocab.COMPARISON_ORDER)
    assert sorted(df["layer"].unique()) == list(range(1, n_layers + 1))
    cka = df[(df["measure"] == "linear_cka") & (df["pooling"] == "last") & (df["comparison"] == vocab.SFT)]
    assert len(cka) == n_tasks * n_layers and cka["value"].between(0, 1 + 1e-9).all()
    assert {"linear_cka", "debiased_cka", "rbf_cka", "svcca", "procrustes", "mutual_knn", "rsa"} <= set(df["measure"])
    assert set(df["pooling"]) == {"last", "mean"}
    counts = df[df["pooling"] == "last"].groupby(["task", "comparison", "measure"]).size()
    assert counts.eq(n_layers).all()


def test_template_variation_pairs_the_same_examples_under_two_templates(smoke_book):
    """The variation table's 'original' rows are CKA on the first n test examples; 'other' differs only by template."""
    from layerwise.pipeline import Run
    from layerwise.similarity import cka_by_layer

    root, _, _ = smoke_book
    # closed at the end of the block: the findings test below rebuilds the book, which needs the lock
    with Run.from_spec("specs/smoke.yaml", [f"output_dir={root / 'run'}"], verbose=False) as run:
        tv = run.template_variation()
        n_tasks, n_layers, n = 4, 4, run.spec.data.n_template_variant
        task = run.spec.tasks[0]
        want = cka_by_layer(run.states("SFT", task)[1:, :n], run.states("control", task)[1:, :n])
    assert len(list((root / "run" / "tables").glob("template-variation-*.parquet"))) == 1
    assert len(tv) == n_tasks * n_layers * (4 + 3) * 2 and (tv["n_examples"] == n).all()
    assert set(tv.loc[tv["template"] == "across", "comparison"]) == {
        "PT: original vs other template", "SFT: original vs other template", "control: original vs other template"}
    got = tv[(tv["task"] == task) & (tv["template"] == "original") & (tv["comparison"] == vocab.SFT)
             & (tv["measure"] == "linear_cka")].sort_values("layer")["value"].to_numpy()
    assert np.allclose(got, want, atol=1e-6)
    across = tv[(tv["template"] == "across") & (tv["measure"] == "linear_cka")]["value"]
    assert across.between(0, 1 + 1e-9).all() and (across < 1 - 1e-6).any()  # the template changes the states


def test_cross_model_companion_run_has_its_own_tables(smoke_book):
    root, first, _ = smoke_book
    companion = root / "run" / "compare" / "tiny-random-gemma3"
    assert "cross-model companion run: tiny-random-gemma3" in first.stdout
    tables = list((companion / "tables").glob("similarity-*.parquet"))
    assert len(tables) == 1 and set(pd.read_parquet(tables[0])["task"]) == {
        "rt_sentence_polarity", "squad_v1", "e2e_nlg", "winogrande"}
    html = (root / "book" / "_build" / "html" / "executed" / "09_cross_model.html").read_text()
    assert "tiny-random-gemma3" in html and "tiny-random-llama" in html
    findings = (root / "book" / "_build" / "html" / "executed" / "00_findings.html").read_text()
    assert "compared in the cross-model chapter with: tiny-random-gemma3" in findings


def test_second_run_reuses_everything(smoke_book):
    root, first, second = smoke_book
    trained = re.compile(r"adapter \S+: trained in")
    assert trained.search(first.stdout)
    # SFT and held-out SFT of 2 seeds, 4 controls and 1 control replicate, for the run and its cross-model companion
    assert not trained.search(second.stdout) and second.stdout.count(": reused (") == 2 * 9
    assert "states + loss in" not in second.stdout
    assert "removing 03_cka.ipynb: not in _toc.yml" in second.stdout
    assert not (root / "book" / "executed" / "03_cka.ipynb").exists()


def test_losses_and_evaluations_are_computed_only_where_they_are_read(smoke_book):
    """Response losses: every model of the main design, and the other-task control the gate reads;
    task-metric evaluations: the same but random-init. Seed replicates, the second sibling's control
    and the control replicates give hidden states only."""
    from layerwise.pipeline import Run
    from layerwise.stages.evaluation import eval_path
    from layerwise.stages.slots import gate_other_control
    from layerwise.extraction import has_states
    from layerwise.stages.states import loss_path, states_path

    root, _, _ = smoke_book
    with Run.from_spec("specs/smoke.yaml", [f"output_dir={root / 'run'}", "frozen=true"], verbose=False) as run:
        others = {t: gate_other_control(run.slots, run.extra_slots, run.spec.tasks, t) for t in run.spec.tasks}
        assert all(o is not None and o.role == vocab.OTHER_ROLE for o in others.values())
        losses = {loss_path(run, s, t) for s in run.slots for t in s.tasks} | {loss_path(run, o, t) for t, o in others.items()}
        metrics = ({eval_path(run, s, t) for s in run.slots if s.role != vocab.RANDOM_ROLE for t in s.tasks}
                   | {eval_path(run, o, t) for t, o in others.items()})
        assert all(has_states(states_path(run, s, t)) for s in run.slots + run.extra_slots for t in s.tasks)
    written = set((root / "run" / "evaluation").glob("*/*.json"))
    assert written == losses | metrics, (sorted(p.name for p in written - losses - metrics),
                                         sorted(p.name for p in (losses | metrics) - written))


def test_each_book_records_its_time_and_the_task_suite_chapter_shows_it(smoke_book):
    from layerwise.provenance import read_pieces

    root, _, _ = smoke_book
    pieces = read_pieces(root / "run")
    assert [p["command"] for p in pieces] == ["book", "book: notebooks"] * 2
    cold, _, warm, _ = pieces
    assert cold["added"]["adapters"] == cold["artefacts"]["adapters"] > 0  # from cold: nothing was there before
    assert not any(warm["added"].values()) and set(cold["stage_seconds"]) >= {"fetch", "train"}
    html = (root / "book" / "_build" / "html" / "executed" / "01_task_suite.html").read_text()
    assert "What the run took" in html and "in 1 piece(s)" in html  # executed once, after the cold computation


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _load_page(path):
    """Load a built page in headless Chromium; return (rendered DOM, console messages)."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0",
           f"--user-data-dir={tempfile.mkdtemp()}", "--dump-dom", f"file://{path}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    console = [line for line in r.stderr.splitlines() if ":CONSOLE:" in line]
    return r.stdout, console


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_every_page_renders_its_charts_without_console_errors(smoke_book):
    root, _, _ = smoke_book
    html_dir = root / "book" / "_build" / "html"
    for name in notebook_names():
        dom, console = _load_page(html_dir / "executed" / f"{name}.html")
        errors = [c for c in console if re.search(r"Uncaught|Error|Failed", c)]
        assert not errors, f"{name}: console errors {errors}"
        # vega-embed adds its own classes to the chart's div and draws into a <canvas> or an <svg>
        n_charts = len(re.findall(r'class="layerwise-chart[ "]', dom))
        drawn = len(re.findall(r'<div id="vega-[0-9a-f]+" class="layerwise-chart[^"]*"[^>]*>\s*<(?:canvas|svg)', dom))
        assert n_charts >= 1 and drawn >= n_charts, f"{name}: {drawn} of {n_charts} charts drawn"


def test_findings_page_matches_the_tables_and_follows_them(smoke_book):
    """The findings page's numbers are recomputed from the cached tables; changing a table changes the page."""
    import io

    root, _, _ = smoke_book
    page = root / "book" / "_build" / "html" / "executed" / "00_findings.html"

    def findings():
        """The run's findings from its cached tables (similarity, seeds, halves, gate), computed in another
        process: a Run holds its output_dir's lock for its process's life, and the rebuild below needs it."""
        code = ("import sys; from layerwise.pipeline import Run; "
                "print(Run.from_spec('specs/smoke.yaml', [sys.argv[1]], verbose=False).findings().to_json(orient='records'))")
        r = subprocess.run([sys.executable, "-c", code, f"output_dir={root / 'run'}"], capture_output=True, text=True,
                           cwd=PROJECT_ROOT, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
        assert r.returncode == 0, r.stderr[-3000:]
        return pd.read_json(io.StringIO(r.stdout.strip().splitlines()[-1]), orient="records")

    html = page.read_text()
    for _, f in findings().iterrows():
        if np.isfinite(f["estimate"]):
            assert f"{f['estimate']:+.3f}" in html, f"{f['id']}: estimate {f['estimate']:+.3f} not on the page"
    # make every SFT seed far less similar than PT in every layer: F3's estimate (SFT below PT early) must
    # follow; with 4 tasks no exact 95 % interval exists, so its verdict can only be "inconclusive (underpowered)"
    sim = pd.read_parquet(next((root / "run" / "tables").glob("similarity-*.parquet")))
    pt = sim[(sim["comparison"] == vocab.PT) & (sim["measure"] == "linear_cka") & (sim["pooling"] == "last")]
    lookup = pt.set_index(["task", "layer"])["value"]
    table = next((root / "run" / "tables").glob("seeds-*.parquet"))
    seeds = pd.read_parquet(table)
    mask = (seeds["comparison"] == vocab.SFT) & (seeds["measure"] == "linear_cka")
    seeds.loc[mask, "value"] = [lookup[(t, l)] - 0.5 + 0.001 * i
                                for i, (t, l) in enumerate(zip(seeds.loc[mask, "task"], seeds.loc[mask, "layer"]))]
    write_table(seeds, table, "seeds-table/1")  # as the run writes it (format tag), so it is read, not recomputed
    f3 = findings().set_index("id").loc["F3"]
    assert f3["verdict"] == UNDERPOWERED and f3["estimate"] < -0.4
    cmd = [sys.executable, "-m", "layerwise", "book", "--spec", "specs/smoke.yaml",
           "--set", f"output_dir={root / 'run'}", "--book-dir", str(root / "book")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=1800,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    new_html = page.read_text()
    assert new_html != html and f"{f3['estimate']:+.3f}" in new_html


def test_a_frozen_copy_without_hidden_states_gives_every_table_and_names_stale_results(smoke_book, tmp_path):
    """What a committed run keeps (no hidden states, no Gram files) is enough to read every result with
    ``frozen=true``; a spec change makes the results stale, and the frozen run names them instead of recomputing."""
    root, _, _ = smoke_book
    copy = tmp_path / "run"
    shutil.copytree(root / "run", copy, ignore=shutil.ignore_patterns("hidden_states", "grams", ".lock"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    base = [sys.executable, "-m", "layerwise", "run", "--spec", "specs/smoke.yaml", "--set", f"output_dir={copy}",
            "--set", "frozen=true"]
    r = subprocess.run(base, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "frozen run: every result is present" in r.stdout and "trained in" not in r.stdout
    code = ("import sys; from layerwise.pipeline import Run\n"
            "with Run.from_spec('specs/smoke.yaml', [sys.argv[1], 'frozen=true'], verbose=False) as run:\n"
            "    for name in ('findings', 'gate', 'response_loss', 'seeds', 'halves', 'evaluate', 'training_summary',\n"
            "                 'spectra', 'template_variation'):\n"
            "        print(name, len(getattr(run, name)()))\n")
    r = subprocess.run([sys.executable, "-c", code, f"output_dir={copy}"], capture_output=True, text=True,
                       cwd=PROJECT_ROOT, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert all(int(line.split()[1]) > 0 for line in r.stdout.strip().splitlines()), r.stdout
    assert not list(copy.glob("**/hidden_states/*/*.safetensors"))  # nothing was extracted
    stale = subprocess.run(base + ["--set", "data.seed=1"], capture_output=True, text=True, cwd=PROJECT_ROOT,
                           env=env, timeout=900)
    assert stale.returncode == 1
    lines = stale.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("layerwise: error: frozen run: ") and "frozen=false" in lines[0]


def test_verify_recomputes_one_task_from_scratch_and_matches_the_committed_table(smoke_book, tmp_path):
    """``layerwise verify``: the task's control trained again, every model's states on the task extracted
    again, the task's similarity rows recomputed: equal to the run's table (same machine, same code)."""
    root, _, _ = smoke_book
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "layerwise", "verify", "--spec", "specs/smoke.yaml", "--set", f"output_dir={root / 'run'}",
           "--task", "squad_v1", "--scratch", str(tmp_path / "scratch")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "its controls are trained again" in r.stdout and "adapter control-squad_v1: trained in" in r.stdout
    last = r.stdout.strip().splitlines()[-1]
    assert re.search(r"verify squad_v1: \d+ rows recomputed; largest \|difference\| \S+ \(within the tolerance 1e-06\)", last)
    assert not list((tmp_path / "scratch").glob("hidden_states/*/winogrande-*"))  # the other tasks: nothing extracted
    bad = subprocess.run(cmd[:-4] + ["--task", "nope"], capture_output=True, text=True, cwd=PROJECT_ROOT, env=env,
                         timeout=300)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "layerwise: error: --task = 'nope' is not a task of specs/smoke.yaml; valid: "
        "rt_sentence_polarity, squad_v1, e2e_nlg, winogrande"]
