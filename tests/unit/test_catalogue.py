"""The task catalogue files: read once, checked with one clear line per error."""

import dataclasses
import shutil

import pytest

from layerwise import catalogue
from layerwise.catalogue import CatalogueError


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A copy of the catalogue files that a test may break; the caches are cleared around it."""
    shutil.copytree(catalogue.DATA_DIR, tmp_path / "data")
    monkeypatch.setattr(catalogue, "DATA_DIR", tmp_path / "data")
    fns = (catalogue.read, catalogue.clusters, catalogue.flan2021_tasks, catalogue.task_entries, catalogue.source_entries)
    for fn in fns:
        fn.cache_clear()
    yield tmp_path / "data"
    for fn in fns:
        fn.cache_clear()


def _edit(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_catalogue_is_complete():
    tasks = catalogue.task_entries()
    assert len(catalogue.clusters()) == 12 and sum(map(len, catalogue.flan2021_tasks().values())) == 69
    assert len(tasks) >= 30 and {e["cluster"] for e in tasks.values()} == set(catalogue.clusters())
    assert {e["source"] for e in tasks.values()} <= set(catalogue.source_entries())


@pytest.mark.parametrize(
    "file, old, new, message",
    [
        ("tasks.yaml", "    kind: classification\n", "    kind: classfication\n",
         r"task 'vitaminc_nli': key 'kind' = 'classfication'; valid choices: classification, generation"),
        ("tasks.yaml", "    cluster: nli\n", "    cluster: nli\n    colour: red\n", r"task 'vitaminc_nli': unknown key\(s\) colour; valid keys: cluster"),
        ("tasks.yaml", "    cluster: nli\n", "    cluster: nli\n    cluster: nli\n", r"key 'cluster' written twice \(line \d+\)"),
        ("tasks.yaml", "    source: bigbench\n", "    source: bigbnech\n", r"key 'source' = 'bigbnech'; valid choices: bibles, bigbench"),
        ("tasks.yaml", "    flan_task: rte\n", "    flan_task: rtee\n", r"key 'flan_task' = 'rtee'; valid choices: .*rte"),
        ("tasks.yaml", "    match: analog\n", "", r"task 'vitaminc_nli': missing key\(s\) match"),
        ("tasks.yaml", "clusters:\n", "clusters: [\n", r"tasks.yaml: not valid YAML \(.*line"),
        ("sources.yaml", "    package: bigbench\n", "    package: ''\n", r"source 'bigbench': key 'package' must be a non-empty string"),
        ("sources.yaml", "    script: tasks/generators/math_dataset.py", "    script: tasks/generators/nope.py",
         r"key 'script' = 'tasks/generators/nope.py' is not a file of the layerwise package"),
    ],
)
def test_a_broken_catalogue_is_one_clear_line(data_dir, file, old, new, message):
    _edit(data_dir / file, old, new)
    with pytest.raises(CatalogueError, match=message) as err:
        catalogue.task_entries()
    assert "\n" not in str(err.value)


def test_builder_and_its_arguments_are_checked(monkeypatch):
    from layerwise.tasks import pools, registry

    info = registry.TASKS["e2e_nlg"]
    monkeypatch.setitem(registry.TASKS, "e2e_nlg", dataclasses.replace(info, builder="bigbench_generativ"))
    with pytest.raises(CatalogueError, match=r"task 'e2e_nlg': key 'builder' = 'bigbench_generativ'; valid choices: bigbench_generative"):
        pools._bound("e2e_nlg")
    monkeypatch.setitem(registry.TASKS, "e2e_nlg", dataclasses.replace(info, builder_args={"file": "x", "prefx": "e2e"}))
    with pytest.raises(CatalogueError, match=r"builder_args .* do not fit builder 'bigbench_generative'"):
        pools._bound("e2e_nlg")
