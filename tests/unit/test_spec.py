"""Run spec: loading, overrides, and clear errors for bad input."""

import pytest

from layerwise.spec import PROJECT_ROOT, RunSpec, SpecError, apply_overrides, load_spec


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
    for bad in (["data.n_template_variant=3"], ["data.n_template_variant=-1"], ["data.n_test=3", "data.n_eval=3"]):
        with pytest.raises(SpecError, match="n_template_variant must be 0"):
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
    with pytest.raises(SpecError, match=r"unknown task 'no_such_task'.*flan2021:.*file:.*squad_v1"):
        load_spec("specs/smoke.yaml", {"tasks": ["squad_v1", "no_such_task"]})


def test_wrong_types_and_values_are_named():
    with pytest.raises(SpecError, match=r"data\.n_test must be an integer, got 'many'"):
        load_spec("specs/smoke.yaml", ["data.n_test=many"])
    with pytest.raises(SpecError, match=r"data\.n_train must be > 0, got 0"):
        load_spec("specs/smoke.yaml", ["data.n_train=0"])
    with pytest.raises(SpecError, match=r"data\.templates = 'some'.*\['all', 'first'\]"):
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
