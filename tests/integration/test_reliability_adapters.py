"""A corrupt LoRA adapter is reported and retrained; a training killed while it saves a checkpoint
resumes from the last whole checkpoint (tiny random model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import layerwise.training as training
from layerwise.spec import load_spec
from layerwise.training import good_checkpoints, train_adapter

pytestmark = pytest.mark.integration

PROMPTS = [f"Item {i}: the film was {'great' if i % 2 else 'awful'}.\nSentiment:" for i in range(12)]
TARGETS = ["positive" if i % 2 else "negative" for i in range(12)]
IDS = [f"e{i}" for i in range(12)]


def _kw():
    spec = load_spec("specs/smoke.yaml", ["training.save_steps=2", "training.epochs=2", "training.batch_size=4",
                                          "training.device=cpu"]).training
    return dict(name="control-toy", base_model="tiny-random-llama", prompts=PROMPTS, targets=TARGETS,
                example_ids=IDS, spec=spec, progress=False)


def _same_weights(a, b):
    wa, wb = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    return train_adapter(adapters_dir=tmp_path_factory.mktemp("whole"), **_kw())


@pytest.mark.parametrize("damage", ["truncated weights", "garbage marker", "missing config"])
def test_corrupt_adapter_is_reported_and_retrained(whole, tmp_path, capsys, damage):
    import shutil

    shutil.copytree(whole.path, tmp_path / whole.path.name)
    path = tmp_path / whole.path.name
    if damage == "truncated weights":
        f = path / "adapter_model.safetensors"
        f.write_bytes(f.read_bytes()[:-100])
    elif damage == "garbage marker":
        (path / "layerwise_adapter.json").write_text('{"name": "control-toy", "ke')
    else:
        (path / "adapter_config.json").unlink()
    capsys.readouterr()
    again = train_adapter(adapters_dir=tmp_path, **_kw())
    err = capsys.readouterr().err
    assert not again.reused and again.path == path
    assert f"corrupt artefact, recomputing: {path}" in err, err
    _same_weights(whole.path, again.path)
    assert train_adapter(adapters_dir=tmp_path, **_kw()).reused


def test_kill_while_saving_a_checkpoint_resumes_from_the_last_whole_one(whole, tmp_path, monkeypatch, capsys):
    calls = []

    def die_in_second_checkpoint(name, detail=""):
        if name == "checkpoint":
            calls.append(1)
            if len(calls) == 2:  # checkpoint-4: adapter weights written, optimiser and trainer state not
                raise KeyboardInterrupt("simulated kill while saving checkpoint-4")

    monkeypatch.setattr(training, "kill_point", die_in_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_adapter(adapters_dir=tmp_path, **_kw())
    monkeypatch.undo()
    work = tmp_path / ".work" / f"control-toy-{whole.key}"
    assert sorted(p.name for p in work.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    capsys.readouterr()
    resumed = train_adapter(adapters_dir=tmp_path, **_kw())
    out = capsys.readouterr()
    assert f"corrupt artefact, recomputing: {work / 'checkpoint-4'} (trainer_state.json is missing)" in out.err, out.err
    assert "resuming from checkpoint-2" in out.out
    assert json.loads((resumed.path / "layerwise_adapter.json").read_text())["resumed"] is True
    _same_weights(whole.path, resumed.path)


def test_good_checkpoints_skips_each_kind_of_damage(whole, tmp_path, capsys):
    import shutil

    work = tmp_path / "w"
    work.mkdir()
    assert good_checkpoints(work) == []
    ok = work / "checkpoint-2"
    ok.mkdir()
    (ok / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    shutil.copy(whole.path / "adapter_model.safetensors", ok / "adapter_model.safetensors")
    import torch

    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({"x": torch.zeros(3)}, ok / name)
    bad = {}
    for step, what in [(4, "state step"), (6, "truncated weights"), (8, "broken optimizer")]:
        d = work / f"checkpoint-{step}"
        shutil.copytree(ok, d)
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        if what == "state step":
            (d / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
        elif what == "truncated weights":
            f = d / "adapter_model.safetensors"
            f.write_bytes(f.read_bytes()[:-10])
        else:
            f = d / "optimizer.pt"
            f.write_bytes(f.read_bytes()[:-30])
        bad[d] = what
    capsys.readouterr()
    assert good_checkpoints(work) == [ok]
    err = capsys.readouterr().err
    for d in bad:
        assert str(d) in err and not d.exists()
