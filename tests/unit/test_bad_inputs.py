"""Bad inputs are refused before any compute: one line naming the key and the value, exit status 2.

Each case runs the CLI in-process (``layerwise run``: fetch, then training) on the smoke spec, with
the training and extraction stages replaced by functions that fail the test if they are ever
reached. A case passes only if the CLI returns 2 with exactly one error line on stderr, that line
holds the expected text (the key and the value), and no traceback was printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layerwise import cli
from layerwise.book import BOOK_ENV
from layerwise.spec import PROJECT_ROOT

SMOKE = (PROJECT_ROOT / "specs" / "smoke.yaml").read_text(encoding="utf-8")


def _line(text: str) -> int:
    """1-based line of the smoke spec that starts with ``text``."""
    return next(i for i, line in enumerate(SMOKE.splitlines(), 1) if line.startswith(text))
NOT_CACHED = "layerwise-tests/not-a-cached-model"


def _file(text: str):
    """A spec-file case: the smoke spec edited by ``text`` (a callable) or replaced by it (a str)."""
    return ("file", text)


def _without_training(s: str) -> str:
    head, _, rest = s.partition("training:\n")
    body = rest.split("extraction:", 1)[1]
    return head + "training: null\nextraction:" + body


# (id, input, text the one error line must contain). An input is a list of --set overrides on the
# smoke spec, ("argv", [...]) for raw CLI arguments, or ("file", text | edit) for a spec file.
CASES = [
    # ---- CLI arguments
    ("missing spec file", ("argv", ["--spec", "specs/no-such-spec.yaml"]), "run spec 'specs/no-such-spec.yaml' not found"),
    ("spec in missing folder", ("argv", ["--spec", "/no/such/folder/spec.yaml"]), "run spec '/no/such/folder/spec.yaml' not found"),
    ("--set without =", ["training.epochs"], "--set 'training.epochs' is not of the form key=value"),
    ("--set empty key", ["=3"], "--set '=3' is not of the form key=value"),
    ("--set YAML syntax", ["training.epochs=[1"], "--set 'training.epochs=[1': YAML syntax error at line 1, column 3 of the value: expected ',' or ']'"),
    ("--set YAML syntax in list", ["tasks=[squad_v1, {a"], "--set 'tasks=[squad_v1, {a': YAML syntax error at line 1, column 14"),
    ("--set duplicate key in value", ["training={epochs: 1, epochs: 2}"], "key 'epochs' is written twice (line 1, columns 2 and 13)"),
    ("--set same key twice", ["training.epochs=1", "training.epochs=2"], "--set training.epochs=... is given twice"),
    ("--set section null", ["training=null"], "training = None is not valid; a whole section cannot be null"),
    ("--set data section null", ["data=null"], "data = None is not valid; a whole section cannot be null"),
    ("--set section scalar", ["extraction=5"], "extraction = 5 is not valid; it must be a mapping of settings"),
    ("--set into a scalar", ["name.x=1"], "override 'name.x': 'name' is not a section"),
    # ---- keys and types
    ("unknown key", ["bogus=1"], "unknown spec key 'bogus'; valid keys: name, base_model"),
    ("misspelt key", ["training.epoch=2"], "unknown spec key 'training.epoch' (did you mean 'epochs'?)"),
    ("integer as text", ["data.n_test=many"], "data.n_test = 'many' is not valid; it must be an integer"),
    ("zero count", ["data.n_train=0"], "data.n_train = 0 is not valid; it must be > 0"),
    ("negative count", ["extraction.batch_size=-5"], "extraction.batch_size = -5 is not valid; it must be > 0"),
    ("float for an integer", ["training.max_length=1.5"], "training.max_length = 1.5 is not valid; it must be an integer"),
    ("NaN learning rate", ["training.learning_rate=.nan"], "training.learning_rate = nan is not valid; it must be a finite number"),
    ("infinite learning rate", ["training.learning_rate=.inf"], "training.learning_rate = inf is not valid; it must be a finite number"),
    ("overflowing epochs", ["training.epochs=1.0e999"], "training.epochs = inf is not valid; it must be a finite number"),
    ("dropout out of range", ["training.lora_dropout=1.5"], "training.lora_dropout = 1.5 is not valid; it must be < 1"),
    ("boolean as text", ["data.allow_downsize=maybe"], "data.allow_downsize = 'maybe' is not valid; it must be true or false"),
    ("negative threads", ["threads=-1"], "threads = -1 is not valid; it must be >= 0"),
    ("template mode", ["data.templates=some"], "data.templates = 'some' is not valid; choose one of ['all', 'first']"),
    ("preset", ["preset=huge"], "preset = 'huge' is not valid; choose one of ['cpu', 'paper']"),
    ("baseline", ["baselines=[random]"], "baselines[0] = 'random' is not valid; choose one of ['random_init', 'shuffled', 'other_task']"),
    ("n_eval above n_test", ["data.n_eval=1000"], "data.n_eval = 1000 is not valid; it must be <= data.n_test = 24"),
    ("template variants below 4", ["data.n_template_variant=3"], "data.n_template_variant = 3 is not valid"),
    # ---- seeds
    ("negative data seed", ["data.seed=-1"], "data.seed = -1 is not valid; it must be >= 0"),
    ("negative training seed", ["training.seed=-3"], "training.seed = -3 is not valid; it must be >= 0"),
    ("fractional seed", ["training.seed=1.5"], "training.seed = 1.5 is not valid; it must be an integer"),
    ("seed beyond 32 bits", ["training.seed=4294967296"], "training.seed = 4294967296 is not valid; it must be < 4294967296"),
    # ---- devices, dtype, chat template
    ("device tpu", ["extraction.device=tpu"], "extraction.device = 'tpu' is not valid; choose one of ['auto', 'cpu', 'mps', 'cuda', 'cuda:N']"),
    ("device cuda:x", ["training.device=cuda:x"], "training.device = 'cuda:x' is not valid; choose one of"),
    ("device cuda without a GPU", ["extraction.device=cuda"], "extraction.device = 'cuda' is not valid; device 'cuda' requested but CUDA is not available"),
    ("dtype", ["extraction.dtype=float16"], "extraction.dtype = 'float16' is not valid; choose one of ['auto', 'float32', 'bfloat16']"),
    ("training dtype", ["training.dtype=fp32"], "training.dtype = 'fp32' is not valid; choose one of ['auto', 'float32', 'bfloat16']"),
    ("chat template", ["data.chat_template=llama3"], "data.chat_template = 'llama3' is not valid; choose one of ['none', 'llama2', 'gemma', 'chatml']"),
    # ---- LoRA target modules: syntax in the spec, existence at fetch
    ("no target modules", ["training.target_modules=[]"], "training.target_modules = [] is not valid; it must not be empty"),
    ("target module syntax", ["training.target_modules=[q_proj, 'bad name!']"], "training.target_modules[1] = 'bad name!' is not valid"),
    ("auto with other targets", ["training.target_modules=[auto, q_proj]"], "training.target_modules = ['auto', 'q_proj'] is not valid; auto stands alone"),
    ("target module missing in the model", ["training.target_modules=[q_proj, nope_proj]", "compare_models=[]"],
     "training.target_modules = ['q_proj', 'nope_proj'] is not valid for 'tiny-random-llama'; LoRA target module(s) ['nope_proj'] do not exist in LlamaForCausalLM; its linear modules are: down_proj"),
    # ---- names and folders
    ("empty name", ["name="], "name = '' is not valid; it must not be empty"),
    ("null name", ["name=null"], "name = None is not valid; it must be a string"),
    ("empty output_dir", ["output_dir="], "output_dir = '' is not valid; it must not be empty"),
    ("output_dir is the project root", ["output_dir=."], "output_dir = '.' is not valid; it is the project root"),
    # ---- models
    ("unknown model", ["base_model=no-such-model"], "base_model = 'no-such-model' is not valid; it is not a packaged alias"),
    ("misspelt alias", ["base_model=tiny-random-lama"], "base_model = 'tiny-random-lama' is not valid; did you mean 'tiny-random-llama'?"),
    ("hub id offline", [f"base_model={NOT_CACHED}"], f"base_model = '{NOT_CACHED}' is not valid; it is not in the local Hugging Face cache and the hub is off"),
    ("folder without config.json", ["base_model=<tmp>"], "base_model = '<tmp>' is not valid; the path '<tmp>' exists but holds no config.json"),
    ("empty base_model", ["base_model="], "base_model = '' is not valid; it must not be empty"),
    ("experimental_model unknown", ["experimental_model=nonexistent-model"], "experimental_model = 'nonexistent-model' is not valid"),
    ("experimental_model offline", [f"experimental_model={NOT_CACHED}"], f"experimental_model = '{NOT_CACHED}' is not valid; it is not in the local Hugging Face cache"),
    ("compare_models unknown", ["compare_models=[no-such-alias]"], "compare_models[0] = 'no-such-alias' is not valid"),
    ("compare_models offline", [f"compare_models=[{NOT_CACHED}]"], f"compare_models[0] = '{NOT_CACHED}' is not valid; it is not in the local Hugging Face cache"),
    ("compare_models twice", ["compare_models=[tiny-random-gemma3, tiny-random-gemma3]"],
     "compare_models = ['tiny-random-gemma3', 'tiny-random-gemma3'] is not valid; ['tiny-random-gemma3'] listed twice"),
    ("compare_models same folder", ["compare_models=[<tmp>/a/b, <tmp>/a--b]"], "compare_models = ['<tmp>/a/b', '<tmp>/a--b'] is not valid; they map to the same folder names"),
    # ---- tasks
    ("no tasks", ["tasks=[]"], "tasks = [] is not valid; it must not be empty"),
    ("unknown task", ["tasks=[squad_v1, nope]", "heldout_tasks=[]"], "tasks[1] = 'nope' is not valid; unknown task 'nope'"),
    ("task twice", ["tasks=[squad_v1, squad_v1]", "heldout_tasks=[]"], "tasks = ['squad_v1', 'squad_v1'] is not valid; ['squad_v1'] listed twice"),
    ("unknown Flan 2021 task", ["tasks=[flan2021:nope, squad_v1]", "heldout_tasks=[]"], "tasks[0] = 'flan2021:nope' is not valid; unknown Flan 2021 task 'nope'"),
    ("Flan 2021 task offline", ["tasks=[flan2021:copa, squad_v1]", "heldout_tasks=[]"], "tasks[0] = 'flan2021:copa' is not valid; it needs train/copa_10templates_train.jsonl"),
    ("file task missing", ["tasks=[file:/no/such/folder/t, squad_v1]", "heldout_tasks=[]"], "tasks[0] = 'file:/no/such/folder/t' is not valid; task 'file:/no/such/folder/t': no task file"),
    ("held-out task not in tasks", ["heldout_tasks=[squad_v1x]"], "heldout_tasks = ['squad_v1x'] is not valid; ['squad_v1x'] are not in tasks"),
    ("every task held out", ["heldout_tasks=[rt_sentence_polarity, squad_v1, e2e_nlg, winogrande]"], "is not valid; it holds out every task"),
    # ---- measures
    ("no measures", ["measures=[]"], "measures = [] is not valid; it must not be empty"),
    ("unknown measure", ["measures=[cka]"], "measures[0] = 'cka' is not valid; unknown measure (did you mean 'rbf_cka'?); choose from ['debiased_cka'"),
    ("misspelt measure", ["measures=[linear_ckaa]"], "measures[0] = 'linear_ckaa' is not valid; unknown measure (did you mean 'linear_cka'?)"),
    ("measure without a Gram form", ["measures=[pwcca]"], "measures[0] = 'pwcca' is not valid; it needs the feature matrices"),
    ("n_test below debiased CKA's minimum", ["data.n_test=3", "data.n_eval=3", "data.n_template_variant=0", "measures=[debiased_cka]"],
     "data.n_test = 3 is not valid; too few test examples for the measures: debiased_cka needs 4"),
    ("n_test below RSA's minimum", ["data.n_test=2", "data.n_eval=2", "data.n_template_variant=0", "measures=[rsa]"],
     "data.n_test = 2 is not valid; too few test examples for the measures: rsa needs 3"),
    # ---- spec files
    ("file: duplicate top-level key", _file(SMOKE + "name: again\n"), f"key 'name' is written twice (lines {_line('name:')} and {len(SMOKE.splitlines()) + 1}); keep one"),
    ("file: duplicate nested key", _file(SMOKE.replace("  epochs: 1\n", "  epochs: 1\n  epochs: 2\n")), f"key 'training.epochs' is written twice (lines {_line('  epochs:')} and {_line('  epochs:') + 1})"),
    ("file: YAML syntax", _file(SMOKE.replace("heldout_tasks: [winogrande]", "heldout_tasks: [winogrande")), "YAML syntax error at line 9, column 9: expected ',' or ']', but got ':' (while parsing a flow sequence at line 8, column 16)"),
    ("file: bad indentation", _file(SMOKE.replace("  n_test: 24", " n_test: 24")), f"YAML syntax error at line {_line('  n_test:')}, column 2: expected <block end>"),
    ("file: top-level list", _file("- name\n- tasks\n"), "is not valid; it must hold a YAML mapping (key: value lines) at top level"),
    ("file: section null", _file(_without_training(SMOKE)), "training = None is not valid; a whole section cannot be null"),
    ("file: empty", _file(""), "tasks = [] is not valid; list at least one task"),
    ("file: unknown section", _file(SMOKE + "optimizer:\n  lr: 1\n"), "unknown spec key 'optimizer'; valid keys: name"),
    ("file: misspelt nested key", _file(SMOKE.replace("  n_eval: 8", "  n_evals: 8")), "unknown spec key 'data.n_evals' (did you mean 'n_eval'?)"),
]


@pytest.fixture(scope="module")
def imported():
    """torch and transformers imported once, outside the timed part of each case: their import
    (seconds, more on a loaded machine) is a cost of the process, not of the checks."""
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM, LlamaConfig  # noqa: F401


@pytest.fixture
def cli_env(monkeypatch, tmp_path, imported):
    """Offline, no LAYERWISE_BASE_MODEL, the CLI's environment defaults undone after the test, and
    training/extraction that fail the test if a bad input ever gets that far."""
    for k, v in BOOK_ENV.items():
        monkeypatch.setenv(k, os.environ.get(k, v))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("LAYERWISE_BASE_MODEL", raising=False)

    def reached(*args, **kwargs):
        raise AssertionError("a bad input reached training or extraction")

    monkeypatch.setattr("layerwise.training.train_adapter", reached)
    monkeypatch.setattr("layerwise.pipeline.Run.train", reached)
    monkeypatch.setattr("layerwise.pipeline.Run.run_models", reached)
    return tmp_path


def _argv(given, tmp: Path) -> list[str]:
    spec = tmp / "spec.yaml"
    base = SMOKE.replace("output_dir: runs/smoke", f"output_dir: {tmp / 'out'}")
    if isinstance(given, tuple) and given[0] == "argv":
        return ["run", *given[1]]
    if isinstance(given, tuple) and given[0] == "file":
        text = given[1].replace("output_dir: runs/smoke", f"output_dir: {tmp / 'out'}")
        spec.write_text(text, encoding="utf-8")
        return ["run", "--spec", str(spec)]
    spec.write_text(base, encoding="utf-8")
    return ["run", "--spec", str(spec), *(x for o in given for x in ("--set", o))]


def test_at_least_40_cases_across_cli_set_and_files():
    kinds = [c[1][0] if isinstance(c[1], tuple) else "set" for c in CASES]
    assert len(CASES) >= 40 and {"argv", "set", "file"} <= set(kinds)
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("given, expected", [pytest.param(c[1], c[2], id=c[0]) for c in CASES])
def test_bad_input_is_one_line_naming_key_and_value(given, expected, cli_env, capsys, request):
    if "cuda without a GPU" in request.node.callspec.id:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    folder = cli_env / "not-a-checkpoint"  # <tmp>: a folder, but no checkpoint in it ...
    for checkpoint in (folder / "a" / "b", folder / "a--b"):  # ... two checkpoints under it
        checkpoint.mkdir(parents=True)
        (checkpoint / "config.json").write_text("{}")
    if isinstance(given, list):
        given = [o.replace("<tmp>", str(folder)) for o in given]
    expected = expected.replace("<tmp>", str(folder))
    t0 = time.perf_counter()
    code = cli.main(_argv(given, cli_env))
    seconds = time.perf_counter() - t0
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err and "Traceback" not in out
    assert len(lines) == 1, err
    assert lines[0].startswith("layerwise: error: ") and expected in lines[0], lines[0]
    assert seconds < 20
    report = os.environ.get("LAYERWISE_BAD_INPUT_REPORT")  # a table of what each case prints, for review
    if report:
        shown = " ".join(given[1]) if isinstance(given, tuple) and given[0] == "argv" else (
            "a spec file" if isinstance(given, tuple) else " ".join(f"--set {o}" for o in given))
        printed = lines[0].replace(str(cli_env), "<tmp>").replace("|", "\\|")
        with open(report, "a", encoding="utf-8") as f:
            f.write(f"| {request.node.callspec.id} | `{shown.replace(str(folder), '<tmp>')}` | {printed} | "
                    f"{seconds:.1f} s |\n")


def test_every_problem_of_a_spec_is_reported_at_once(cli_env, capsys):
    code = cli.main(_argv(["data.n_test=many", "training.learning_rate=.nan", "extraction.device=tpu", "name="], cli_env))
    err = capsys.readouterr().err
    assert code == 2 and [line.split(" = ")[0] for line in err.strip().splitlines()] == [
        "layerwise: error: name", "layerwise: error: data.n_test", "layerwise: error: training.learning_rate",
        "layerwise: error: extraction.device"]


def test_python_m_layerwise_prints_the_line_and_exits_2(tmp_path):
    """The same as a new user sees it: a subprocess, no traceback, exit status 2."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "lib"), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "layerwise", "fetch", "--spec", "specs/smoke.yaml",
                        "--set", f"output_dir={tmp_path}", "--set", "training.learning_rate=.inf"],
                       cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == ("layerwise: error: training.learning_rate = inf is not valid; "
                                "it must be a finite number (not NaN or infinity)")
