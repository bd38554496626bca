"""The run's job graph and its plan, from the spec alone (nothing is trained, extracted or loaded)."""

import math

import pytest

from layerwise import plan
from layerwise.jobs import DEFAULT_RESOURCES
from layerwise.spec import JOB_KINDS, SpecError, load_spec


def _spec(path="specs/smoke.yaml", *overrides, tmp_path=None):
    extra = [f"output_dir={tmp_path}"] if tmp_path else []
    return load_spec(path, [*extra, *overrides])


def test_spec_job_kinds_are_the_executor_kinds():
    assert JOB_KINDS == tuple(DEFAULT_RESOURCES) == plan.KINDS


def test_smoke_graph_counts_deps_and_outputs(tmp_path):
    g = plan.build_graph(_spec(tmp_path=tmp_path))
    main = {k: sum(1 for j in g.jobs.values() if j.kind == k and "@" not in j.id) for k in plan.KINDS}
    # 9 adapters: SFT and held-out SFT of 2 seeds, 4 controls, 1 control replicate (the smoke spec);
    # extraction: 5 roles x 4 tasks minus 3 x 4 controls' other tasks (the replicates run in the table jobs)
    assert main == {"fetch": 1, "train": 9, "extract": 4 * 4 + 4, "evaluate": 3 * 4 + 4, "table": 3, "notebook": 10}
    comp = [j for j in g.jobs.values() if j.id.endswith("@tiny-random-gemma3")]
    assert sorted({j.kind for j in comp}) == ["extract", "fetch", "table", "train"] and len(comp) == 1 + 9 + 20 + 2
    assert {"train:sft+seed43", "train:sft-heldout+seed43", "train:control-rt_sentence_polarity+seed1"} <= set(g.jobs)
    assert g.jobs["train:sft"].deps == ("fetch:tiny-random-llama",)
    assert g.jobs["extract:control/squad_v1"].deps == ("train:control-squad_v1",)
    assert g.jobs["extract:pt/squad_v1"].deps == ("fetch:tiny-random-llama",)
    assert g.jobs["evaluate:sft-heldout/winogrande"].deps == ("train:sft-heldout",)
    assert "evaluate:random-init/squad_v1" not in g.jobs  # random-init is not evaluated
    sim = g.jobs["table:similarity"]
    assert len(sim.deps) == 23 and all(d.startswith(("extract:", "train:")) and "@" not in d for d in sim.deps)
    assert "train:sft+seed43" in sim.deps  # the replicates' models run in the table jobs
    nb = g.jobs["notebook:09_cross_model"]
    assert "table:similarity@tiny-random-gemma3" in nb.deps and "evaluate:pt/squad_v1" in nb.deps
    assert g.jobs["train:control-squad_v1@tiny-random-gemma3"].outputs == (
        "compare/tiny-random-gemma3/adapters/control-squad_v1-*/adapter_model.safetensors",)
    assert g.jobs["extract:sft-heldout/e2e_nlg"].outputs[0] == "hidden_states/held-out_SFT-*/e2e_nlg-*.safetensors"
    assert g.jobs["extract:pt/squad_v1"].params["variants"] is True
    assert g.jobs["extract:pt/squad_v1@tiny-random-gemma3"].params["variants"] is False
    assert g.order.index("table:spectra") > max(g.order.index(d) for d in g.jobs["table:spectra"].deps)


def test_graph_follows_the_spec(tmp_path):
    g = plan.build_graph(_spec("specs/smoke.yaml", "heldout_tasks=[]", "baselines=[]", "compare_models=[]",
                               "data.n_template_variant=0", "experimental_model=tiny-random-gemma3", "training.control_seeds=[]",
                               tmp_path=tmp_path),
                         notebooks=False)
    assert g.counts() == {"fetch": 1, "train": 4, "extract": 2 * 4 + 4, "evaluate": 2 * 4 + 4, "table": 2}
    assert g.jobs["extract:sft/squad_v1"].deps == ("fetch:tiny-random-llama",)  # off the shelf: no training


def test_a_notebook_job_without_the_book_parameters_is_an_error(tmp_path):
    g = plan.build_graph(_spec(tmp_path=tmp_path))
    with pytest.raises(ValueError, match="notebook job needs spec_path"):
        plan.execute_job(g.jobs["notebook:01_task_suite"])


def test_paper_spec_plan_counts_and_gpu_hours(monkeypatch):
    spec = _spec("specs/paper-llama2-7b.yaml")
    # the token counts of the pools are measured elsewhere; here the documented fallback, so no data is read
    monkeypatch.setattr(plan, "_tokens_per_example",
                        lambda s: ({t: (s.training.max_length / 2, 0.0) for t in s.tasks}, "max_length/2"))
    text = plan.plan_text(spec)
    assert "adapters: 26" in text and "extractions: 120" in text and "evaluations: 96" in text
    assert "train <- fetch" in text and "table <- extract" in text
    assert "published config" in text and "assumed A100-class bf16" in text
    table, _ = plan.estimate(spec)
    train = table.set_index("kind").loc["train"]
    # SFT: 24 x 300 examples, held-out SFT: 17 x 300, controls 24 x 300; 3 epochs of 512 tokens each
    assert train["tokens_per_job"] * 26 == pytest.approx((24 + 17 + 24) * 300 * 3 * 512)
    # 6 x 6.48e9 non-embedding parameters per training token at 312e12 x 0.4 FLOP/s
    shape = plan.model_shape(spec.base_model)
    assert shape.non_embedding_params == 32 * (4 * 4096**2 + 3 * 4096 * 11008)
    hours = 6 * shape.non_embedding_params * (24 + 17 + 24) * 300 * 3 * 512 / (312e12 * 0.4) / 3600
    assert train["est_hours"] == pytest.approx(hours)
    assert plan.gpu_hours(spec, table) > hours
    # bf16 weights (13.5 GB) + LoRA state + activations
    assert 2 * shape.params / 1e9 < train["est_memory_gb"] < 40


def test_plan_table_and_measured_throughput(tmp_path, monkeypatch):
    spec = _spec(tmp_path=tmp_path)
    monkeypatch.setattr(plan, "_tokens_per_example", lambda s: ({t: (100.0, 20.0) for t in s.tasks}, "fixed"))
    t = plan.plan_table(spec, device_tflops=1.0)
    assert list(t.columns) == ["kind", "jobs", "est. time", "est. memory"] and t["jobs"].tolist() == [1, 9, 20, 16, 3, 10]
    assert t.set_index("kind").loc["table", "est. time"] == "-"
    # a finished adapter of this run: its logged tokens / seconds become the training rate
    meta = tmp_path / "adapters" / "sft-0" / "layerwise_adapter.json"
    meta.parent.mkdir(parents=True)
    meta.write_text('{"base_model": "tiny-random-llama", "n_tokens_per_epoch": 1000, "recipe": {"epochs": 2}, "seconds": 4}')
    tp, _, _ = plan.throughput(spec, plan.model_shape(spec.base_model))
    assert tp.train == 500 and tp.forward == 1500 and "training logs" in tp.train_source


def test_ray_spec_keys():
    spec = load_spec("specs/smoke.yaml", ["executor=ray", "ray.address=auto", "ray.resources.train.num_gpus=1",
                                          "ray.resources.extract.memory=2GiB"])
    assert spec.ray.address == "auto" and spec.ray.max_retries == 3
    assert spec.ray.resources["train"].given() == {"num_gpus": 1.0}
    assert spec.ray.resources["extract"].given() == {"memory": 2 * 2**30}
    with pytest.raises(SpecError, match=r"executor = 'slurm' is not valid; choose one of \['local', 'ray'\]"):
        load_spec("specs/smoke.yaml", ["executor=slurm"])
    with pytest.raises(SpecError, match=r"unknown job kind\(s\) \['bake'\]"):
        load_spec("specs/smoke.yaml", ["ray.resources.bake.num_cpus=1"])
    with pytest.raises(SpecError, match="unknown spec key 'ray.resources.train.gpus' .did you mean 'num_gpus'"):
        load_spec("specs/smoke.yaml", ["ray.resources.train.gpus=1"])
    assert not math.isnan(load_spec("specs/smoke.yaml", ["ray.resources.train.num_cpus=0.5"]).ray.resources["train"].num_cpus)


def test_throughput_reads_the_bench_results_of_this_machine(tmp_path, monkeypatch):
    """``make bench`` writes benchmarks/results/bench_hotpath.json; the plan's rates come from it."""
    spec = _spec(tmp_path=tmp_path / "run")
    bench = tmp_path / "benchmarks" / "results" / "bench_hotpath.json"
    bench.parent.mkdir(parents=True)
    bench.write_text('{"model": "tiny-random-llama", "train_tokens_per_s": 250.0, "forward_tokens_per_s": 900.0, '
                     '"gemm_tflops": 0.15}')
    monkeypatch.setattr(plan, "PROJECT_ROOT", tmp_path)
    tp, tflops, source = plan.throughput(spec, plan.model_shape(spec.base_model))
    assert (tp.train, tp.forward, tflops) == (250.0, 900.0, 0.15)
    assert tp.train_source == "measured: benchmarks/results/bench_hotpath.json" and "results/bench_hotpath.json" in source
