"""Seed replicates, the other-task and control-seed baselines, and the split-half table: the pieces."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import tidy_table
from layerwise import vocab
from layerwise.spec import load_spec
from layerwise.stages.slots import (SEED_MARK, adapter_name, adapter_role, gate_other_control, plan_extra_slots, plan_slots,
                                    siblings_of)
from layerwise.training import AdapterResult
from layerwise.stages.tables import findings_input, half_split


def test_adapter_names_and_roles_round_trip():
    assert adapter_name("sft", 42, 42) == "sft" and adapter_name("sft", 7, 42) == f"sft{SEED_MARK}7"
    assert adapter_role("sft+seed7") == vocab.SFT_ROLE and adapter_role("sft-heldout+seed7") == vocab.HELDOUT_ROLE
    assert adapter_role("control-squad_v1") == vocab.CONTROL_ROLE
    assert adapter_role("control-squad_v1+seed3") == vocab.REPLICATE_ROLE


def test_siblings_are_the_next_tasks_cyclically_and_never_the_task_itself():
    tasks = ["a", "b", "c", "d"]
    assert siblings_of(tasks, "a") == ["b", "c"] and siblings_of(tasks, "d") == ["a", "b"]
    assert siblings_of(["a", "b"], "b") == ["a"] and siblings_of(["a"], "a") == []
    # every task is a sibling of exactly two others: each control is run on two other tasks' inputs
    assert sorted(u for t in tasks for u in siblings_of(tasks, t)) == sorted(tasks * 2)


def test_the_gate_reads_the_control_of_the_first_sibling_run_on_the_task():
    spec = load_spec("specs/smoke.yaml", ["baselines=[other_task]"])
    names = ["sft", "sft+seed43", "sft-heldout", "sft-heldout+seed43", *(f"control-{t}" for t in spec.tasks),
             f"control-{spec.tasks[0]}+seed1"]
    adapters = {n: AdapterResult(n, Path(n), f"key-{n}", [], False, 0.0) for n in names}
    slots, extra = plan_slots(spec, adapters, str), plan_extra_slots(spec, adapters, str)
    for task in spec.tasks:
        other = gate_other_control(slots, extra, spec.tasks, task)
        assert other.role == vocab.OTHER_ROLE and task in other.tasks
        assert other.key == f"key-control-{siblings_of(spec.tasks, task)[0]}"
    # without the other_task baseline, or with one task, there is none
    assert gate_other_control(slots, [s for s in extra if s.role != vocab.OTHER_ROLE], spec.tasks, spec.tasks[0]) is None
    assert gate_other_control(slots, extra, spec.tasks[:1], spec.tasks[0]) is None


def test_half_split_is_disjoint_complete_and_seeded():
    a, b = half_split(25, 0)
    assert len(a) == 12 and len(b) == 13 and set(a).isdisjoint(b) and set(a) | set(b) == set(range(25))
    assert np.array_equal(half_split(25, 0)[0], a) and not np.array_equal(half_split(25, 1)[0], a)


def test_recipe_per_adapter_keeps_keys_of_single_seed_runs():
    spec = load_spec("specs/smoke.yaml")
    assert spec.training.for_adapter().recipe() == spec.training.recipe()  # the first adapter's key is unchanged
    more = load_spec("specs/smoke.yaml", ["training.seeds=[42,7]", "training.control_epochs=3"])
    assert more.training.sft_seeds == (42, 7) and more.training.recipe() == spec.training.recipe()
    assert more.training.for_adapter(control=True).epochs == 3 and more.training.for_adapter(seed=7).seed == 7


def test_findings_input_puts_every_seed_in_place_of_the_first():
    curves = {vocab.PT: np.full((2, 3), 0.5), vocab.SFT: np.full((2, 3), 0.6)}
    sim = tidy_table(curves)
    seeds = pd.concat([tidy_table({vocab.SFT: np.full((2, 3), v)}).assign(seed=s) for s, v in ((42, 0.6), (7, 0.7))])
    out = findings_input(sim, seeds)
    sft = out[out["comparison"] == vocab.SFT]
    assert sorted(sft["seed"].unique()) == [7, 42] and len(sft) == 12
    assert out[out["comparison"] == vocab.PT]["seed"].isna().all() and len(out) == 18
    assert findings_input(sim, pd.DataFrame())["seed"].isna().all()
