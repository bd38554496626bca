"""The run's model plan: roles, held-out SFT, off-the-shelf experimental model (no training needed)."""

import pytest

from layerwise import pipeline
from layerwise.training import AdapterResult


def _fake_train(monkeypatch, calls):
    def fake(*, name, base_model, prompts, targets, example_ids, spec, adapters_dir, progress=True, callbacks=(),
             dtype="auto", group_by_length=False):
        calls.append((name, len(prompts), tuple(example_ids), spec.seed, spec.epochs))
        return AdapterResult(name, adapters_dir / name, f"key-{name}", [], False, 0.0)

    monkeypatch.setattr("layerwise.training.train_adapter", fake)


def test_held_out_sft_leaves_out_exactly_the_heldout_tasks(monkeypatch, tmp_path):
    calls = []
    _fake_train(monkeypatch, calls)
    run = pipeline.Run.from_spec("specs/smoke.yaml", [f"output_dir={tmp_path}"], verbose=False)
    run.train()
    by = {c[0]: c for c in calls}
    assert set(by) == {"sft", "sft-heldout", "sft+seed43", "sft-heldout+seed43", "control-rt_sentence_polarity",
                       "control-squad_v1", "control-e2e_nlg", "control-winogrande",
                       "control-rt_sentence_polarity+seed1"}  # the smoke spec: seeds [42, 43], one control replicate
    assert by["sft"][3] == 42 and by["sft+seed43"][3] == 43 and by["control-rt_sentence_polarity+seed1"][3] == 1
    assert by["sft+seed43"][2] == by["sft"][2]  # a replicate sees the same examples; only its seed differs
    wino = set(run.tasks["winogrande"]["train"]["id"])
    assert wino <= set(by["sft"][2]) and not wino & set(by["sft-heldout"][2])
    assert by["sft"][1] == 4 * 16 and by["sft-heldout"][1] == 3 * 16
    roles = [s.role for s in run.slots]
    assert roles[:4] == ["PT", "SFT", "held-out SFT", "random-init"] and roles.count("control") == 4
    assert run.slot("control", "squad_v1").adapter.name == "control-squad_v1"
    with pytest.raises(KeyError, match="its tasks"):
        run.slot("PT", "xsum")


def test_off_the_shelf_experimental_model_replaces_the_sft_adapter(monkeypatch, tmp_path):
    calls = []
    _fake_train(monkeypatch, calls)
    run = pipeline.Run.from_spec("specs/smoke.yaml", [f"output_dir={tmp_path}", "experimental_model=tiny-random-gemma3",
                                                      "heldout_tasks=[]", "baselines=[]"], verbose=False)
    run.train()
    assert "sft" not in {c[0] for c in calls}
    sft = run.slot("SFT", "squad_v1")
    assert sft.model == "tiny-random-gemma3" and sft.adapter is None
    assert run.roles == ["PT", "SFT", "control"]
    with pytest.raises(KeyError, match=r"no model of role 'held-out SFT'.*\['PT', 'SFT', 'control'\]"):
        run.slot("held-out SFT", "squad_v1")


def test_per_cluster_cap_limits_the_mixture(monkeypatch, tmp_path):
    calls = []
    _fake_train(monkeypatch, calls)
    run = pipeline.Run.from_spec("specs/smoke.yaml", [f"output_dir={tmp_path}", "data.max_train_per_cluster=5"], verbose=False)
    p, _, ids = run._mixture()
    assert len(p) == 4 * 5  # four tasks, each alone in its cluster
