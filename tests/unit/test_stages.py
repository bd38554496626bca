"""The stage helpers: the cached-table helper (key parts, code digest, read-back) and warning filters."""

from __future__ import annotations

import importlib.util
import warnings

import pandas as pd
import pytest

from layerwise.report import quiet_third_party_warnings
from layerwise.similarity import NonFiniteRowsWarning
from layerwise.stages.cached import cached_table, code_digest, library_versions, table_key
from layerwise.tasks import DownsizeWarning


def test_key_changes_with_a_named_part_and_not_with_dict_order():
    def compute():
        return pd.DataFrame({"x": [1]})

    k = table_key({"measures": ["linear_cka"], "n_null": 20}, [compute])
    assert k == table_key({"n_null": 20, "measures": ["linear_cka"]}, [compute])
    assert k != table_key({"measures": ["linear_cka"], "n_null": 21}, [compute])
    assert k != table_key({"measures": ["linear_cka"], "n_nulls": 20}, [compute])  # the name is part of the key
    with pytest.raises(ValueError, match=r"reserved name\(s\) \['code'\]"):
        table_key({"code": 1}, [compute])


def test_key_changes_when_the_computing_code_changes(tmp_path):
    versions = []
    for body in ("return 1", "return 2"):
        path = tmp_path / f"m{len(versions)}.py"
        path.write_text(f"def f():\n    {body}\n")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        versions.append((code_digest([mod.f]), table_key({"a": 1}, [mod.f]), table_key({"a": 1}, [mod])))
    (d1, k1, m1), (d2, k2, m2) = versions
    assert len(d1) == 64 and d1 != d2 and k1 != k2 and m1 != m2
    with pytest.raises(TypeError, match="no Python source"):
        code_digest([len])


def test_library_versions_name_torch_transformers_and_peft():
    v = library_versions()
    assert set(v) == {"torch", "transformers", "peft"} and all(x is None or x[0].isdigit() for x in v.values())


def test_second_call_reads_instead_of_computing(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"layer": [1, 2], "value": [0.25, 0.5]})

    lines = []
    first = cached_table(tmp_path, "demo", {"task": "rte"}, compute, code=[compute], log=lines.append)
    second = cached_table(tmp_path, "demo", {"task": "rte"}, compute, code=[compute], log=lines.append)
    assert len(calls) == 1 and len(lines) == 1 and lines[0].startswith("demo table: 2 rows")
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    files = list(tmp_path.glob("demo-*.parquet"))
    assert len(files) == 1 and files[0].stem == f"demo-{table_key({'task': 'rte'}, [compute])}"
    cached_table(tmp_path, "demo", {"task": "mnli"}, compute, code=[compute])  # another part: computed again
    assert len(calls) == 2 and len(list(tmp_path.glob("demo-*.parquet"))) == 2


def test_open_run_filter_hides_third_party_warnings_only():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party_warnings()
        warnings.warn_explicit("generation flag", UserWarning, "modeling_utils.py", 1, module="transformers.modeling_utils")
        warnings.warn_explicit("old api", UserWarning, "x.py", 1, module="torch")
        warnings.warn("use the other argument", FutureWarning)
        warnings.warn("3 non-finite rows dropped", NonFiniteRowsWarning)
        warnings.warn_explicit("downsized to 10", DownsizeWarning, "sampling.py", 1, module="layerwise.tasks.sampling")
        warnings.warn_explicit("not ours", UserWarning, "x.py", 1, module="torchvision_like_but_other")
    assert [str(w.message) for w in caught] == ["3 non-finite rows dropped", "downsized to 10", "not ours"]


@pytest.mark.parametrize("damage", ["truncate", "foreign"])
def test_a_corrupt_cached_table_is_reported_and_recomputed(tmp_path, capsys, damage):
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"layer": [1, 2], "value": [0.5, 0.25]})

    first = cached_table(tmp_path, "demo", {"n": 1}, compute, code=[compute])
    (path,) = tmp_path.glob("demo-*.parquet")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:40])
    else:  # a parquet file without our format tag (another writer, an older version)
        pd.DataFrame({"layer": [9]}).to_parquet(path)
    again = cached_table(tmp_path, "demo", {"n": 1}, compute, code=[compute])
    assert len(calls) == 2 and again.equals(first)
    assert f"corrupt artefact, recomputing: {path}" in capsys.readouterr().err
