"""Task formats beyond the registry: Flan 2021 hub records, local alpaca files (JSON / JSONL / parquet),
name checking, chat templates, the per-cluster cap and prompt-length rules."""

import json
import warnings
from pathlib import Path

import pytest

import layerwise.tasks.external as external
from layerwise.tasks import (
    CapPlan,
    DownsizeWarning,
    cap_per_cluster,
    check_task_names,
    get_task,
    load_task,
    parse_external,
    read_task_file,
)
from layerwise.templates import (
    CHAT_TEMPLATES,
    ELLIPSIS,
    LLAMA2_DEFAULT_SYSTEM_PROMPT,
    render_given,
    render_prompt,
    truncate_middle,
    wrap_prompt,
)

EXT = Path(__file__).parents[1] / "fixtures" / "external"
HUB = EXT / "flan_hub"
V1 = EXT / "flan_v1"
GADGETS = EXT / "alpaca" / "gadgets.jsonl"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def fake_hub(monkeypatch):
    """Replace only the network call: files come from the fixture copy of Muennighoff/flan."""
    calls = []

    def download(filename, *, local_files_only):
        calls.append((filename, local_files_only))
        p = HUB / filename
        if not p.is_file():
            from huggingface_hub.errors import EntryNotFoundError

            raise EntryNotFoundError(f"404 {filename}")
        return str(p)

    monkeypatch.setattr(external, "_hub_download", download)
    return calls


# ------------------------------------------------------------------ names


def test_parse_names_and_clusters():
    f = parse_external("flan2021:rte")
    assert (f.kind, f.task, f.cluster, f.slug) == ("flan2021", "rte", "nli", "flan2021-rte")
    assert parse_external("flan2021:rte_10templates").task == "rte"
    g = parse_external(f"file:{V1}/rte")
    assert (g.kind, g.task, g.cluster, g.slug) == ("file", "rte", "nli", "file-rte")  # Flan name -> its cluster
    h = parse_external(f"file:{GADGETS}#cluster=closed_book_qa&name=my gadgets")
    assert (h.task, h.cluster, h.slug) == ("gadgets", "closed_book_qa", "file-my-gadgets")
    assert parse_external(f"file:{GADGETS}").cluster == "misc"


def test_check_task_names_accepts_all_forms_and_lists_valid_ones():
    check_task_names(["squad_v1", "flan2021:xsum", f"file:{V1}/rte", f"file:{GADGETS}#cluster=nli", f"file:{V1}"])
    with pytest.raises(KeyError, match=r"unknown task 'nope'; use a registry task name, 'flan2021:<Flan 2021 task>' or 'file:<path>.*squad_v1"):
        check_task_names(["nope"])
    with pytest.raises(KeyError, match="unknown Flan 2021 task 'sst3'.*valid names: .*sst2"):
        check_task_names(["flan2021:sst3"])
    with pytest.raises(KeyError, match="unknown cluster 'sports'.*valid clusters: nli"):
        check_task_names([f"file:{GADGETS}#cluster=sports"])
    with pytest.raises(ValueError, match="bad option 'colour=red'"):
        check_task_names([f"file:{GADGETS}#colour=red"])
    with pytest.raises(FileNotFoundError, match="no_such_task_train"):
        check_task_names([f"file:{V1}/no_such_task"])
    with pytest.raises(ValueError, match="listed twice"):
        check_task_names(["squad_v1", "squad_v1"])


def test_get_task_for_external_names(fake_hub):
    info = get_task("flan2021:rte")
    assert info.cluster == "nli" and info.flan_task == "rte" and info.match == "exact"
    assert info.source == "huggingface:Muennighoff/flan" and info.slug == "flan2021-rte"
    assert fake_hub == []  # no download for the provenance
    local = get_task(f"file:{V1}/rte")
    assert local.cluster == "nli" and "rte_train.json" in local.origin_split and "rte_test.json" in local.origin_split
    assert get_task(f"file:{GADGETS}#cluster=misc").origin_split == "all: gadgets.jsonl"
    assert get_task("squad_v1").slug == "squad_v1"
    with pytest.raises(KeyError, match="flan2021:<Flan 2021 task>"):
        get_task("nope")


# ------------------------------------------------------------------ Flan 2021 hub


def test_flan_record_to_example():
    rec = {"inputs": "Is it raining?\n\nOPTIONS:\n- yes\n- no", "targets": "no", "task": "rte_10templates"}
    assert external.flan_record_to_example(rec, "f: record 1") == {"question": rec["inputs"], "input": "", "target": "no"}
    with pytest.raises(ValueError, match="f: record 2: field 'targets' must be a string"):
        external.flan_record_to_example({"inputs": "x", "targets": 3}, "f: record 2")
    with pytest.raises(ValueError, match="f: record 3: expected a JSON object"):
        external.flan_record_to_example(["x"], "f: record 3")


def test_flan_hub_task_from_mocked_download(fake_hub):
    d = load_task("flan2021:rte", n_train=4, n_test=3, seed=1)
    assert {f for f, _ in fake_hub} == {"train/rte_10templates_train.jsonl", "test/rte_10templates_test.jsonl"}
    assert all(local is True for _, local in fake_hub)  # tests run with the hub off: cache only
    assert all(i.startswith("train-") for i in d["train"]["id"]) and all(i.startswith("test-") for i in d["test"]["id"])
    test_prompts = [json.loads(line)["inputs"] for line in open(HUB / "test" / "rte_10templates_test.jsonl")]
    assert set(d["test"]["prompt"]) <= set(test_prompts)
    assert set(d["test"]["target"]) <= {"yes", "no"} and set(d["train"]["template_id"]) == {-1}
    assert set(d["train"]["cluster"]) == {"nli"} and set(d["train"]["task"]) == {"flan2021:rte"}
    assert d["test"][0]["prompt"].endswith("OPTIONS:\n- yes\n- no")
    again = load_task("flan2021:rte", n_train=4, n_test=3, seed=1)
    assert again["train"].to_list() == d["train"].to_list()


def test_flan_hub_offline_error_is_clear(monkeypatch):
    """No mock: the real huggingface_hub call with the hub off and an empty HF cache."""
    monkeypatch.setenv("HF_HUB_CACHE", str(Path(external.__file__).parent / "no-such-hf-cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(Path(external.__file__).parent / "no-such-hf-cache"))
    with pytest.raises(RuntimeError, match=r"rte_10templates_train.jsonl of the hub dataset .* is not in the local Hugging Face cache .*HF_DATASETS_OFFLINE set.*`make fetch`"):
        load_task("flan2021:rte", n_train=1, n_test=1)


# ------------------------------------------------------------------ local files


def test_alpaca_json_folder_keeps_the_authors_split():
    d = load_task(f"file:{V1}/rte", n_train=5, n_test=4)
    assert len(d["train"]) == 5 and len(d["test"]) == 4
    assert not set(d["train"]["prompt"]) & set(d["test"]["prompt"])
    recs = json.loads((V1 / "rte_test.json").read_text())
    assert set(d["test"]["prompt"]) == {r["instruction"] for r in recs}
    # the folder form finds the one task in it
    folder = load_task(f"file:{V1}", n_train=5, n_test=4)
    assert set(folder["test"]["prompt"]) == set(d["test"]["prompt"]) and set(folder["test"]["cluster"]) == {"nli"}


def test_alpaca_single_file_jsonl_and_parquet_agree():
    a = load_task(f"file:{GADGETS}", n_train=5, n_test=3, seed=2)
    b = load_task(f"file:{GADGETS.with_suffix('.parquet')}", n_train=5, n_test=3, seed=2)
    a_all = sorted(zip([*a["train"]["prompt"], *a["test"]["prompt"]], [*a["train"]["target"], *a["test"]["target"]]))
    b_all = sorted(zip([*b["train"]["prompt"], *b["test"]["prompt"]], [*b["train"]["target"], *b["test"]["target"]]))
    assert a_all == b_all and len(a_all) == 8  # same records (the split differs: the name seeds it)
    assert not set(a["train"]["id"]) & set(a["test"]["id"])
    rows = dict(a_all)
    assert rows["Translate to French.\nThe door is open."] == "La porte est ouverte."  # instruction \n input
    assert rows["Name the tool used to tighten a bolt."] == "a wrench"  # empty input: instruction only
    assert set(a["test"]["cluster"]) == {"misc"}


def test_malformed_files_name_file_and_record(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n{"instruction": "e", "outp\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: record on line 3 is not valid JSON"):
        read_task_file(bad)
    bad2 = tmp_path / "bad.json"
    bad2.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c", "input": 5, "output": "d"}]))
    with pytest.raises(ValueError, match=r"bad.json: record 2: field 'input' must be a string"):
        load_task(f"file:{bad2}", n_train=1, n_test=1)
    bad3 = tmp_path / "bad3.json"
    bad3.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"question": "c"}]))
    with pytest.raises(ValueError, match=r"bad3.json: record 2: no 'instruction'/'output'"):
        read_task_file(bad3)
    bad4 = tmp_path / "bad4.json"
    bad4.write_text('{"instruction": "a"}')
    with pytest.raises(ValueError, match="bad4.json: expected a JSON list"):
        read_task_file(bad4)
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unknown task file type '.csv'"):
        load_task(f"file:{tmp_path / 'x.csv'}", n_train=1, n_test=1)


def test_too_small_local_file_and_explicit_downsize():
    with pytest.raises(ValueError, match=r"has 8 examples, fewer than .* = 12 requested.*allow_downsize=True"):
        load_task(f"file:{GADGETS}", n_train=8, n_test=4)
    with pytest.warns(DownsizeWarning, match="down-sized to n_train=6, n_test=2"):
        d = load_task(f"file:{GADGETS}", n_train=8, n_test=4, allow_downsize=True)
    assert (len(d["train"]), len(d["test"])) == (6, 2)
    with pytest.warns(DownsizeWarning, match=r"6 train and 4 test.*n_train=6, n_test=4"):
        d = load_task(f"file:{V1}/rte", n_train=10, n_test=4, allow_downsize=True)


# ------------------------------------------------------------------ prompt length


def test_truncate_middle_keeps_start_and_end():
    text = "Instruction first. " + "filler words here " * 200 + "Question: which one?\nOPTIONS:\n- yes\n- no"
    out = truncate_middle(text, 120)
    assert out.startswith("Instruction first.") and out.endswith("OPTIONS:\n- yes\n- no") and ELLIPSIS in out
    assert len(out) <= 120 + len(ELLIPSIS) + 1
    assert truncate_middle("short", 100) == "short"


def test_render_given_cuts_only_the_input():
    p = render_given("Summarize the text below in one line.", "word " * 1000, max_input_chars=50)
    assert p.startswith("Summarize the text below in one line.\n") and p.endswith(ELLIPSIS) and len(p) < 120


def test_registry_prompt_keeps_instruction_end_and_cue_when_cut():
    """Every registry template: the text after {input} (instruction end, options, cue) survives."""
    from layerwise.tasks import TASKS
    from layerwise.templates import TEMPLATES

    for task, info in TASKS.items():
        opts = ["one", "two"] if info.kind == "classification" else []
        for i, tpl in enumerate(TEMPLATES[task]):
            p = render_prompt(task, i, "x" * 5000, "the question?", opts, max_input_chars=30)
            tail = tpl[tpl.rfind("}") + 1 :]
            assert p.endswith(tail), (task, i)
            assert len(p) < len(tpl) + 200


# ------------------------------------------------------------------ chat templates


def test_wrap_prompt_templates():
    assert wrap_prompt("Hi:", "none") == "Hi:"
    llama = wrap_prompt("Hi:", "llama2")
    assert llama == f"[INST] <<SYS>>\n{LLAMA2_DEFAULT_SYSTEM_PROMPT}\n<</SYS>>\n\nHi: [/INST]"
    assert not llama.startswith("<s>") and LLAMA2_DEFAULT_SYSTEM_PROMPT.startswith("You are a helpful, respectful and honest assistant.")
    assert wrap_prompt("Hi:", "gemma") == "<start_of_turn>user\nHi:<end_of_turn>\n<start_of_turn>model\n"
    assert wrap_prompt("Hi:", "chatml") == "<|im_start|>user\nHi:<|im_end|>\n<|im_start|>assistant\n"
    assert wrap_prompt("use {user} literally", "gemma").count("{user}") == 1
    with pytest.raises(ValueError, match="unknown chat template 'llama3'; valid chat templates: none, llama2, gemma, chatml"):
        wrap_prompt("x", "llama3")
    assert set(CHAT_TEMPLATES) == {"none", "llama2", "gemma", "chatml"}


def test_load_task_applies_chat_template():
    plain = load_task(f"file:{GADGETS}", n_train=2, n_test=2)
    wrapped = load_task(f"file:{GADGETS}", n_train=2, n_test=2, chat_template="llama2")
    assert wrapped["test"]["prompt"] == [wrap_prompt(p, "llama2") for p in plain["test"]["prompt"]]
    assert wrapped["test"]["id"] == plain["test"]["id"]
    with pytest.raises(ValueError, match="valid chat templates"):
        load_task(f"file:{GADGETS}", n_train=2, n_test=2, chat_template="vicuna")


# ------------------------------------------------------------------ per-cluster cap

CLUSTER = {"a1": "nli", "a2": "nli", "a3": "nli", "b1": "sentiment", "c1": "misc"}


def test_cap_spreads_over_a_clusters_tasks():
    plan = cap_per_cluster({"a1": 100, "a2": 10, "a3": 100, "b1": 30, "c1": 5}, CLUSTER, cap=60, seed=0, verbose=False)
    assert isinstance(plan, CapPlan) and isinstance(plan, dict)
    assert plan["a2"] == 10 and plan["a1"] + plan["a3"] == 50 and {plan["a1"], plan["a3"]} == {25}
    assert plan["b1"] == 30 and plan["c1"] == 5  # within the cap: untouched
    assert plan.capped == {"nli": (210, 60)} and any("cluster nli" in n for n in plan.notes)


def test_cap_leftover_units_are_seeded_and_order_free():
    counts = {"a1": 100, "a2": 100, "a3": 100}
    plans = [cap_per_cluster(counts, CLUSTER, cap=10, seed=s, verbose=False) for s in range(8)]
    for p in plans:
        assert sum(p.values()) == 10 and sorted(p.values()) == [3, 3, 4]
    assert len({tuple(sorted(p.items())) for p in plans}) > 1  # the seed picks who gets the extra one
    rev = cap_per_cluster(dict(reversed(list(counts.items()))), CLUSTER, cap=10, seed=3, verbose=False)
    assert dict(rev) == dict(plans[3])
    ids = {t: [f"{t}-{i}" for i in range(n)] for t, n in counts.items()}
    assert dict(cap_per_cluster(ids, CLUSTER.get, cap=10, seed=3, verbose=False)) == dict(plans[3])
    assert dict(cap_per_cluster(counts, CLUSTER, cap=None, seed=0, verbose=False)) == counts


def test_cap_small_task_error_or_reported_downsize():
    with pytest.raises(ValueError, match="task 'a2' has 10 training examples, fewer than the 40 requested.*allow_downsize"):
        cap_per_cluster({"a1": 100, "a2": 10}, CLUSTER, cap=50, requested=40, verbose=False)
    with pytest.warns(DownsizeWarning, match="task a2: down-sized from 40 to 10"):
        plan = cap_per_cluster({"a1": 100, "a2": 10}, CLUSTER, cap=45, requested=40, allow_downsize=True, verbose=False)
    assert dict(plan) == {"a1": 35, "a2": 10} and plan.downsized == {"a2": (40, 10)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dict(cap_per_cluster({"a1": 100}, CLUSTER, cap=500, requested=40, verbose=False)) == {"a1": 40}
    with pytest.raises(ValueError, match="cap must be"):
        cap_per_cluster({"a1": 1}, CLUSTER, cap=0)


def test_cap_uses_registry_clusters_by_default():
    plan = cap_per_cluster({"squad_v1": 50, "drop": 50, "xsum": 50}, None, cap=60, verbose=False)
    assert dict(plan) == {"squad_v1": 30, "drop": 30, "xsum": 50}


# ------------------------------------------------------------------ suite tables and charts (chapter 1)


def test_suite_tables_and_charts():
    from layerwise.task_charts import cluster_coverage_chart, pool_sizes_chart, prompt_length_chart
    from layerwise.tasks import CLUSTERS, TASKS
    from layerwise.tasks.suite import cluster_coverage, example_prompts, length_summary, prompt_lengths, provenance_table

    run_tasks = {f"file:{GADGETS}": load_task(f"file:{GADGETS}", n_train=3, n_test=2),
                 f"file:{V1}/rte": load_task(f"file:{V1}/rte", n_train=3, n_test=2)}
    prov = provenance_table(list(run_tasks))
    assert prov["pool_size"].tolist() == [8, 10] and prov["cluster"].tolist() == ["misc", "nli"]
    reg = provenance_table()
    assert len(reg) == len(TASKS) and reg["pool_size"].isna().all()  # private empty cache: no pool built, and none is built now
    cov = cluster_coverage(list(run_tasks))
    assert list(cov["cluster"]) == list(CLUSTERS) and cov["flan2021_tasks"].sum() == 69
    assert cov.set_index("cluster").loc[["misc", "nli"], "run_tasks"].tolist() == [1, 1]

    class CharTokenizer:
        def __call__(self, texts):
            return {"input_ids": [[0, *map(ord, t)] for t in texts]}

    lengths = prompt_lengths(run_tasks, CharTokenizer())
    assert len(lengths) == 10 and (lengths["tokens"] == lengths["chars"] + 1).all()
    summary = length_summary(lengths)
    assert list(summary.columns) == ["task", "chars_median", "chars_p90", "chars_max", "tokens_median", "tokens_p90", "tokens_max"]
    assert "tokens" not in prompt_lengths(run_tasks)
    ex = example_prompts(run_tasks)
    assert [e["task"] for e in ex] == list(run_tasks) and all(e["template_id"] == -1 for e in ex)
    assert cluster_coverage_chart(cov).to_dict()["mark"]["type"] == "bar"
    prov.loc[1, "pool_size"] = None
    assert len(pool_sizes_chart(prov).data) == 1
    assert prompt_length_chart(lengths, "tokens").to_dict()["mark"]["type"] == "boxplot"
    with pytest.raises(ValueError, match="unit must be"):
        prompt_length_chart(lengths.drop(columns="tokens"), "tokens")
