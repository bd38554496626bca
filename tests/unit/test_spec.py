"""Run spec: loading, overrides, and clear errors for bad input."""

import dataclasses
import re

import pytest

from layerwise.spec import PROJECT_ROOT, RunSpec, SpecError, apply_overrides, load_spec
from layerwise.validation import check_spec, load_checked_spec


def test_default_and_smoke_specs_load():
    for name in ("default", "smoke", "paper-llama2-7b"):
        spec = load_spec(f"specs/{name}.yaml")
        assert isinstance(spec, RunSpec)
        assert spec.name == name
        assert len(spec.tasks) >= 4 and set(spec.heldout_tasks) < set(spec.tasks)
        assert spec.training.target_modules == ("q_proj", "v_proj")
        assert spec.training.lora_r == 8 and spec.training.lora_alpha == 16


def test_overrides_parse_yaml_values_and_nested_keys():
    spec = load_spec("specs/smoke.yaml", ["training.epochs=3", "data.n_test=9", "base_model=tiny-random-gemma3"])
    assert spec.training.epochs == 3.0
    assert spec.data.n_test == 9
    assert spec.base_model == "tiny-random-gemma3"


def test_template_variation_size_is_checked():
    assert load_spec("specs/smoke.yaml", ["data.n_test=9"]).data.n_template_variant == 12  # uses the 9 there are
    assert load_spec("specs/smoke.yaml", ["data.n_template_variant=0"]).data.n_template_variant == 0
    for bad, why in ((["data.n_template_variant=3"], "= 3 is not valid; it must be 0"),
                     (["data.n_template_variant=-1"], "= -1 is not valid; it must be >= 0"),
                     (["data.n_test=3", "data.n_eval=3"], "= 12 is not valid; it must be 0")):
        with pytest.raises(SpecError, match=r"^data\.n_template_variant " + why):
            load_spec("specs/smoke.yaml", bad)


def test_env_base_model_override(monkeypatch):
    monkeypatch.setenv("LAYERWISE_BASE_MODEL", "some/model")
    assert load_spec("specs/smoke.yaml").base_model == "some/model"


def test_unknown_key_lists_valid_keys():
    with pytest.raises(SpecError, match=r"unknown spec key.*training\.epoch\b.*valid keys under training: .*epochs"):
        load_spec("specs/smoke.yaml", ["training.epoch=2"])
    with pytest.raises(SpecError, match=r"unknown spec key.*'bogus'.*base_model"):
        load_spec("specs/smoke.yaml", ["bogus=1"])


def test_unknown_task_lists_valid_tasks():
    # task names are checked against the task registry by layerwise.validation, not by the spec layer
    spec = load_spec("specs/smoke.yaml", {"tasks": ["squad_v1", "no_such_task"], "heldout_tasks": []})
    (line,) = check_spec(spec)
    assert re.match(r"tasks\[1\] = 'no_such_task' is not valid; unknown task 'no_such_task'.*flan2021:.*file:.*squad_v1", line)
    with pytest.raises(SpecError, match=r"tasks\[1\] = 'no_such_task'"):
        load_checked_spec("specs/smoke.yaml", {"tasks": ["squad_v1", "no_such_task"], "heldout_tasks": []})


def test_wrong_types_and_values_are_named():
    with pytest.raises(SpecError, match=r"data\.n_test = 'many' is not valid; it must be an integer"):
        load_spec("specs/smoke.yaml", ["data.n_test=many"])
    with pytest.raises(SpecError, match=r"data\.n_train = 0 is not valid; it must be > 0"):
        load_spec("specs/smoke.yaml", ["data.n_train=0"])
    with pytest.raises(SpecError, match=r"data\.templates = 'some' is not valid; choose one of \['all', 'first'\]"):
        load_spec("specs/smoke.yaml", ["data.templates=some"])
    with pytest.raises(SpecError, match="not of the form key=value"):
        load_spec("specs/smoke.yaml", ["training.epochs"])
    with pytest.raises(SpecError, match="listed twice"):
        load_spec("specs/smoke.yaml", {"tasks": ["squad_v1", "squad_v1"]})


def test_missing_spec_file_lists_available():
    with pytest.raises(FileNotFoundError, match=r"specs/default\.yaml"):
        load_spec("specs/nope.yaml")


def test_apply_overrides_does_not_mutate_input():
    raw = {"training": {"epochs": 1}}
    out = apply_overrides(raw, ["training.epochs=2"])
    assert raw == {"training": {"epochs": 1}} and out["training"]["epochs"] == 2


def test_output_path_is_resolved_against_project_root():
    spec = load_spec("specs/smoke.yaml")
    assert spec.output_path == PROJECT_ROOT / "runs" / "smoke"
    assert load_spec("specs/smoke.yaml", ["output_dir=/tmp/x"]).output_path.as_posix() == "/tmp/x"


def test_spec_key_changes_with_settings():
    a = load_spec("specs/smoke.yaml")
    b = load_spec("specs/smoke.yaml", ["training.seed=1"])
    assert a.key() != b.key() and a.key() == load_spec("specs/smoke.yaml").key()


def test_every_problem_is_reported_one_line_each():
    with pytest.raises(SpecError) as info:
        load_spec("specs/smoke.yaml", ["data.n_test=many", "training.learning_rate=.nan", "training.epoch=2",
                                       "extraction.device=tpu", "name="])
    lines = info.value.lines
    assert str(info.value) == "\n".join(lines) and all("\n" not in line for line in lines)
    assert lines == [
        "name = '' is not valid; it must not be empty",
        "data.n_test = 'many' is not valid; it must be an integer",
        "training.learning_rate = nan is not valid; it must be a finite number (not NaN or infinity)",
        "unknown spec key 'training.epoch' (did you mean 'epochs'?); valid keys under training: lora_r, lora_alpha, "
        "lora_dropout, target_modules, learning_rate, epochs, batch_size, grad_accum, max_length, seed, seeds, "
            "control_epochs, control_seeds, ceiling_tasks, group_by_length, save_steps, "
        "device, dtype",
        "extraction.device = 'tpu' is not valid; choose one of ['auto', 'cpu', 'mps', 'cuda', 'cuda:N']",
    ]


def test_float_fields_take_yaml_1_2_exponents_and_refuse_non_finite_numbers():
    assert load_spec("specs/smoke.yaml", ["training.learning_rate=5e-5"]).training.learning_rate == 5e-5
    for text in (".nan", ".inf", "1.0e999", "-.inf"):
        with pytest.raises(SpecError, match=r"^training\.learning_rate = .* is not valid; it must be a finite number"):
            load_spec("specs/smoke.yaml", [f"training.learning_rate={text}"])


def test_yaml_errors_and_duplicate_keys_are_located(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: a\ntasks: [squad_v1]\ntraining:\n  epochs: 1\n  epochs: 2\nname: b\n")
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert info.value.lines == [f"{spec}: key 'training.epochs' is written twice (lines 4 and 5); keep one",
                                f"{spec}: key 'name' is written twice (lines 1 and 6); keep one"]
    spec.write_text("name: a\ntasks: [squad_v1,\n")
    with pytest.raises(SpecError, match=rf"^{re.escape(str(spec))}: YAML syntax error at line 3, column 1: expected the node content"):
        load_spec(spec)
    with pytest.raises(SpecError, match=r"^--set 'training=\{epochs: 1, epochs: 2\}': key 'epochs' is written twice"):
        load_spec("specs/smoke.yaml", ["training={epochs: 1, epochs: 2}"])
    with pytest.raises(SpecError, match=r"^--set 'tasks=\[squad_v1': YAML syntax error at line 1, column 10 of the value: "):
        load_spec("specs/smoke.yaml", ["tasks=[squad_v1"])
    with pytest.raises(SpecError, match=r"^--set training.epochs=\.\.\. is given twice"):
        load_spec("specs/smoke.yaml", ["training.epochs=1", "training.epochs=2"])


def test_sections_cannot_be_null_but_can_be_empty():
    for section in ("data", "training", "extraction"):
        with pytest.raises(SpecError, match=rf"^{section} = None is not valid; a whole section cannot be null"):
            load_spec("specs/smoke.yaml", [f"{section}=null"])
    assert load_spec("specs/smoke.yaml", ["training={}"]).training == load_spec("specs/default.yaml", ["training={}"]).training


def test_output_dir_must_name_a_folder_of_its_own():
    for bad in ("", ".", "..", str(PROJECT_ROOT)):
        with pytest.raises(SpecError, match=rf"^output_dir = {re.escape(repr(bad))} is not valid"):
            load_spec("specs/smoke.yaml", [f"output_dir={bad}"] if bad else ["output_dir="])


def test_recipe_leaves_out_where_the_adapter_is_trained():
    t = load_spec("specs/smoke.yaml", ["training.device=cpu", "training.dtype=float32"]).training
    assert t.recipe() == dataclasses.replace(t, device="auto", dtype="auto", save_steps=1).recipe()
    assert "dtype" not in t.recipe() and t.recipe()["target_modules"] == ("q_proj", "v_proj")
