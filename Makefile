# Layer by Layer, reproduced - one entry point for set-up, the book, tests and benchmarks.
#   make book                          default spec (Gemma 3 270M, real tasks) -> HTML book
#   make book SPEC=specs/smoke.yaml    tiny random model, a few minutes
#   make book BASE_MODEL=<alias|path|hf-id>   another base model
#   make book SET="training.epochs=3 data.n_test=300"   any spec overrides
#   make test                          the test suite (creates the environment if missing)
#   make test-crash                    kill the smoke run at each of 13 points in its own run (about an hour;
#                                      make test kills one run at 11 points in turn)
#   make bench                         benchmarks: CKA against the authors' route; the hot path (extraction,
#                                      LoRA training, GFLOP/s) against bare PyTorch loops
#   make reference HOURS=1.8           one piece of the reference run (specs/reference.yaml): continues where
#                                      the last stopped, stops starting work after HOURS (exit 3: not finished)
#   make reference-verify TASK=<task>  recompute one task of the committed reference run; largest differences

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SPEC   ?= specs/default.yaml
BASE_MODEL ?=
SET    ?=
PYTEST_ARGS ?=
HOURS  ?= 1.8
TASK   ?=
REFERENCE := specs/reference.yaml

# Offline by default (hub calls otherwise hang ~55 s each here); `make book HF_HUB_OFFLINE=0` to use the hub.
HF_HUB_OFFLINE ?= 1
HF_DATASETS_OFFLINE ?= 1
TRANSFORMERS_OFFLINE ?= $(HF_HUB_OFFLINE)
export HF_HUB_OFFLINE HF_DATASETS_OFFLINE TRANSFORMERS_OFFLINE
export HF_DATASETS_DISABLE_PROGRESS_BARS = 1
export TOKENIZERS_PARALLELISM = false

OVERRIDES := $(if $(BASE_MODEL),--set base_model=$(BASE_MODEL)) $(foreach s,$(SET),--set $(s))

.PHONY: setup fetch run book notebook test test-fast test-crash bench reference reference-verify sync clean
.DEFAULT_GOAL := book

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

fetch: setup
	$(PY) -m layerwise fetch --spec $(SPEC) $(OVERRIDES)

run: setup
	$(PY) -m layerwise run --spec $(SPEC) $(OVERRIDES)

# The reference run in pieces: each appends to results/reference/provenance.jsonl; commit its small results after.
reference: setup
	$(PY) -m layerwise run --spec $(REFERENCE) --set frozen=false --hours $(HOURS) $(OVERRIDES)

reference-verify: setup
	@test -n "$(TASK)" || (echo "make reference-verify: set TASK=<a task of $(REFERENCE)>" >&2; exit 2)
	$(PY) -m layerwise verify --spec $(REFERENCE) --task $(TASK) $(OVERRIDES)

book: setup
	$(PY) -m layerwise book --spec $(SPEC) $(OVERRIDES)

# make notebook NB=03_cka  - re-execute one chapter (then `make book` or jupyter-book build to render)
notebook: setup
	$(PY) -m layerwise notebook $(NB) --spec $(SPEC) $(OVERRIDES)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not smoke and not slow and not crash" $(PYTEST_ARGS)

# The long crash-resume suite: SIGKILL the smoke run at each of 13 points in its own run, rerun, compare every
# table (about an hour). `make test` has the short one: one run killed at 11 points in turn.
test-crash: setup
	$(PY) -m pytest -m crash tests/integration/test_crash_resume.py $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/bench_cka.py
	$(PY) benchmarks/bench_hotpath.py

# Pair notebooks/*.py with .ipynb for editing in Jupyter (the .py files stay the source of truth).
sync: setup
	$(VENV)/bin/jupytext --sync notebooks/*.py

clean:
	rm -rf book/_build book/executed book/_static build
