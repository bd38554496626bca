"""The hot-path benchmark runs end to end in --quick mode (tiny random Gemma 3) and writes its JSON."""

import importlib.util
import json
import math

import pytest

from layerwise.spec import PROJECT_ROOT

pytestmark = pytest.mark.integration


def test_bench_hotpath_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_hotpath", PROJECT_ROOT / "benchmarks" / "bench_hotpath.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "hotpath.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    for section in ("extraction", "training"):
        r = d[section]
        assert r["tokens"] > 0 and 0.0 <= r["padding_fraction"] < 1.0
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("library_tok_s", "bare_tok_s", "ratio", "library_gflop_s", "bare_gflop_s"))
    # same model, LoRA init and first batch: the first step's loss is the same in both loops
    assert d["training"]["library_losses"][0] == pytest.approx(d["training"]["bare_losses"][0], rel=1e-6)
    assert set(d["gemm_gflop_s"]) == {"float32", "bfloat16"}
    assert d["cka_bf16_shift"]["n_prompts"] == 6 and d["cka_bf16_shift"]["min_cka_fp32_vs_bf16"] > 0.99


def test_flops_per_token_of_a_causal_sequence():
    spec = importlib.util.spec_from_file_location("bench_hotpath", PROJECT_ROOT / "benchmarks" / "bench_hotpath.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench._attended(4, None) == 10 and bench._attended(4, 2) == 3 + 2 + 2
