"""Project-level invariants: one dependency list, notebooks well-formed, CI runs the README command."""

import re
import tomllib

import jupytext
import yaml

from layerwise.book import notebook_names
from layerwise.spec import PROJECT_ROOT


def test_environment_yml_installs_the_project_through_pip_only():
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict)]
    assert pip_sections == [["-e .[dev]"]], "environment.yml must install exactly `-e .[dev]` (deps live in pyproject.toml)"
    assert len(deps) == 3, "no conda packages besides python and pip: they would drift from pyproject.toml"
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert "dev" in project["optional-dependencies"]
    assert project["requires-python"].startswith(">=3.11")


def test_dependencies_are_pinned_and_torch_is_exact():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    assert "torch==2.13.0" in deps
    loose = [d for d in deps if "==" not in d and not d.startswith("tqdm")]
    assert loose == [], f"unpinned dependencies: {loose}"
    assert any(d.startswith("jupyter-book==1.") for d in deps), "Jupyter Book must be 1.x"


def test_every_toc_chapter_has_a_notebook_with_one_parameters_cell():
    names = notebook_names()
    assert names, "_toc.yml lists no notebooks"
    for name in names:
        nb = jupytext.read(PROJECT_ROOT / "notebooks" / f"{name}.py")
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{name}: {len(tagged)} cells tagged 'parameters'"
        assert "spec_path" in tagged[0].source and "overrides" in tagged[0].source
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), f"{name}: first cell must be a '# Title'"
    on_disk = sorted(p.stem for p in (PROJECT_ROOT / "notebooks").glob("*.py"))
    assert sorted(names) == on_disk, "every notebook must be in _toc.yml"


def test_ci_runs_the_readme_test_command():
    readme = (PROJECT_ROOT / "README.md").read_text()
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", readme, re.M)
    assert re.search(r"^make test\s*$", ci, re.M)
