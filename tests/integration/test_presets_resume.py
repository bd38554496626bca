"""The paper preset for Llama 2 7B (config only, no weights) and resuming a killed training."""

import json

import pytest
import torch
from safetensors.numpy import load_file
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, TrainerCallback

from layerwise.spec import SpecError, load_spec
from layerwise.training import resolve_target_modules, train_adapter, training_config

pytestmark = pytest.mark.integration

LLAMA2_7B = dict(  # the published config.json of meta-llama/Llama-2-7b-hf
    vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
    bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
)


def test_paper_preset_builds_the_papers_configuration_for_llama2_7b(tmp_path):
    local = tmp_path / "Llama-2-7b-hf"
    LlamaConfig(**LLAMA2_7B).save_pretrained(local)  # config only: no weights on this machine
    spec = load_spec("specs/default.yaml", {"preset": "paper", "base_model": str(local), "training": {}, "data": {}})
    t = spec.training
    assert (t.lora_r, t.lora_alpha, t.lora_dropout) == (8, 16, 0.0)
    assert t.target_modules == ("q_proj", "v_proj")
    assert (t.learning_rate, t.epochs, t.batch_size * t.grad_accum, t.max_length) == (5e-5, 3.0, 16, 1024)
    assert (spec.data.n_test, spec.data.max_train_per_cluster) == (10_000, 50_000)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(local))
    assert model.config.num_hidden_layers == 32 and model.config.hidden_size == 4096
    lora, args = training_config(t, model, output_dir=tmp_path / "work", device="cpu")
    assert lora.r == 8 and lora.lora_alpha == 16 and lora.lora_dropout == 0.0
    assert set(lora.target_modules) == {"q_proj", "v_proj"} and lora.task_type == "CAUSAL_LM"
    assert args.learning_rate == 5e-5 and args.lr_scheduler_type.value == "cosine"
    assert args.num_train_epochs == 3 and args.per_device_train_batch_size == 4 and args.gradient_accumulation_steps == 4
    assert args.warmup_steps == 0 and args.weight_decay == 0.0 and args.seed == 42
    # LoRA on q/v of 32 layers: 2 * 32 * r * (4096 + 4096) trainable parameters
    from peft import get_peft_model

    with torch.device("meta"):
        peft_model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == 2 * 32 * 8 * (4096 + 4096)


def test_auto_targets_and_unknown_preset():
    with torch.device("meta"):
        gpt2 = AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", n_layer=2, n_embd=32, n_head=2))
    assert resolve_target_modules(gpt2, ["auto"]) == ["c_attn"]
    with pytest.raises(ValueError, match=r"\['q_proj'\] do not exist in GPT2LMHeadModel.*c_attn"):
        resolve_target_modules(gpt2, ["q_proj"])
    with pytest.raises(SpecError, match=r"preset = 'huge' is not valid; choose one of \['cpu', 'paper'\]"):
        load_spec("specs/smoke.yaml", ["preset=huge"])


class _Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt("simulated kill after step 3")


def test_killed_training_resumes_to_the_same_adapter(tmp_path):
    spec = load_spec("specs/smoke.yaml", ["training.save_steps=2", "training.epochs=2", "training.batch_size=4",
                                          "training.device=cpu"]).training
    prompts = [f"Item {i}: the film was {'great' if i % 2 else 'awful'}.\nSentiment:" for i in range(12)]
    targets = ["positive" if i % 2 else "negative" for i in range(12)]
    ids = [f"e{i}" for i in range(12)]
    kw = dict(name="control-toy", base_model="tiny-random-llama", prompts=prompts, targets=targets,
              example_ids=ids, spec=spec, progress=False)
    whole = train_adapter(adapters_dir=tmp_path / "a", **kw)
    with pytest.raises(KeyboardInterrupt):
        train_adapter(adapters_dir=tmp_path / "b", callbacks=[_Crash()], **kw)
    work = tmp_path / "b" / ".work" / f"control-toy-{whole.key}"
    assert [p.name for p in work.glob("checkpoint-*")] == ["checkpoint-2"]  # step 3 lost, steps 1-2 kept
    resumed = train_adapter(adapters_dir=tmp_path / "b", **kw)
    meta = json.loads((resumed.path / "layerwise_adapter.json").read_text())
    assert meta["resumed"] is True and resumed.key == whole.key
    a = load_file(str(whole.path / "adapter_model.safetensors"))
    b = load_file(str(resumed.path / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and len(a) == 2 * 4 * 2  # q and v, A and B, 4 layers
    for k in a:
        assert abs(a[k] - b[k]).max() < 1e-6, k
    assert [r["step"] for r in resumed.log][-1] == [r["step"] for r in whole.log][-1] == 6


def test_training_stopped_at_the_deadline_saves_a_checkpoint_and_resumes_to_the_same_adapter(tmp_path, monkeypatch):
    """``layerwise run --hours``: at the deadline a training saves a checkpoint at its current step and
    stops (TimeBudgetSpent); the next call resumes there and ends with the uninterrupted adapter."""
    import layerwise.training as training
    from layerwise.cache import TimeBudgetSpent

    spec = load_spec("specs/smoke.yaml", ["training.save_steps=100", "training.epochs=2", "training.batch_size=4",
                                          "training.device=cpu"]).training
    prompts = [f"Item {i}: the film was {'great' if i % 2 else 'awful'}.\nSentiment:" for i in range(12)]
    targets = ["positive" if i % 2 else "negative" for i in range(12)]
    kw = dict(name="control-toy", base_model="tiny-random-llama", prompts=prompts, targets=targets,
              example_ids=[f"e{i}" for i in range(12)], spec=spec, progress=False)
    whole = train_adapter(adapters_dir=tmp_path / "a", **kw)
    calls = []
    monkeypatch.setattr(training, "deadline_passed", lambda: calls.append(1) or len(calls) >= 4)  # 1 check before, then after each step: stops after step 3
    with pytest.raises(TimeBudgetSpent, match="stopped at optimizer step 3 of 6, checkpoint saved"):
        train_adapter(adapters_dir=tmp_path / "b", **kw)
    work = tmp_path / "b" / ".work" / f"control-toy-{whole.key}"
    assert [p.name for p in work.glob("checkpoint-*")] == ["checkpoint-3"]  # not a save step: saved for the deadline
    assert not (tmp_path / "b" / f"control-toy-{whole.key}").exists()  # no finished adapter
    monkeypatch.setattr(training, "deadline_passed", lambda: False)
    resumed = train_adapter(adapters_dir=tmp_path / "b", **kw)
    assert json.loads((resumed.path / "layerwise_adapter.json").read_text())["resumed"] is True
    a = load_file(str(whole.path / "adapter_model.safetensors"))
    b = load_file(str(resumed.path / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]).max() < 1e-6 for k in a)
    monkeypatch.setattr(training, "deadline_passed", lambda: True)  # a deadline already past: nothing starts
    with pytest.raises(TimeBudgetSpent, match="before training control-toy"):
        train_adapter(adapters_dir=tmp_path / "c", **kw)
