"""Comparing a recomputed task slice with the committed similarity table; which adapters verify copies."""

import pandas as pd
import pytest

from layerwise.verify import KEY_COLUMNS, compare_rows, copy_adapters


def _rows(values):
    return pd.DataFrame([dict(zip(KEY_COLUMNS, ("t", "nli", layer, comp, "linear_cka", "last")), value=v)
                         for (comp, layer), v in values.items()])


def test_compare_rows_reports_the_largest_difference_per_comparison():
    committed = _rows({("PT vs control", 1): 0.5, ("PT vs control", 2): 0.6, ("SFT vs control", 1): 0.7})
    recomputed = _rows({("PT vs control", 1): 0.5, ("PT vs control", 2): 0.6001, ("SFT vs control", 1): 0.7})
    d = compare_rows(committed, recomputed)
    assert list(d["comparison"]) == ["PT vs control", "SFT vs control"]
    assert d.loc[0, "max_abs_diff"] == pytest.approx(1e-4) and d.loc[0, "layer_of_max"] == 2
    assert list(d["rows"]) == [2, 1] and d.loc[1, "max_abs_diff"] == 0


def test_compare_rows_refuses_tables_with_other_rows():
    committed = _rows({("PT vs control", 1): 0.5, ("PT vs control", 2): 0.6})
    with pytest.raises(ValueError, match="1 rows in one only"):
        compare_rows(committed, committed.iloc[:1])


def test_copy_adapters_leaves_out_the_task_controls_and_their_replicates(tmp_path):
    src = tmp_path / "src"
    for name in ("sft-aa", "sft+seed43-bb", "control-squad_v1-cc", "control-squad_v1+seed7-dd", "control-squad_v2-ee",
                 "control-xsum-ff"):
        (src / name).mkdir(parents=True)
        (src / name / "layerwise_adapter.json").write_text("{}")
    (src / ".work" / "sft-zz").mkdir(parents=True)  # an unfinished training: never copied
    copied = copy_adapters(src, tmp_path / "dst", except_control_of="squad_v1")
    assert copied == ["control-squad_v2-ee", "control-xsum-ff", "sft+seed43-bb", "sft-aa"]
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == copied
