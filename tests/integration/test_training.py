"""LoRA training: response-only loss, learning, caching, bad target modules (tiny random model)."""

import numpy as np
import pytest

from layerwise.models import load_model, load_tokenizer
from layerwise.spec import TrainingSpec
from layerwise import training
from layerwise.batching import Encoded, collate, encode
from layerwise.training import adapter_summary, load_adapter_model, resolve_target_modules, response_losses, train_adapter

pytestmark = pytest.mark.integration

PROMPTS = [f"Item {i}: the film was {'great' if i % 2 else 'awful'}.\nSentiment:" for i in range(16)]
TARGETS = ["positive" if i % 2 else "negative" for i in range(16)]
IDS = [f"ex{i}" for i in range(16)]
SPEC = TrainingSpec(epochs=3, batch_size=8, learning_rate=5e-3, save_steps=100, device="cpu")


def test_adapter_learns_and_is_reused(tmp_path):
    res = train_adapter(name="control-toy", base_model="tiny-random-llama", prompts=PROMPTS, targets=TARGETS,
                        example_ids=IDS, spec=SPEC, adapters_dir=tmp_path, progress=False)
    assert not res.reused and (res.path / "adapter_model.safetensors").is_file()
    assert len(res.log) == 6 and res.log[-1]["loss"] < res.log[0]["loss"]
    tok = load_tokenizer("tiny-random-llama")
    pt = np.mean(response_losses(load_adapter_model("tiny-random-llama", None), tok, PROMPTS, TARGETS)[0])
    ft = np.mean(response_losses(load_adapter_model("tiny-random-llama", res.path), tok, PROMPTS, TARGETS)[0])
    assert ft < pt - 0.05
    again = train_adapter(name="control-toy", base_model="tiny-random-llama", prompts=PROMPTS, targets=TARGETS,
                          example_ids=IDS, spec=SPEC, adapters_dir=tmp_path, progress=False)
    assert again.reused and again.path == res.path and again.log == res.log
    summary = adapter_summary(again)
    n_tokens = sum(len(tok(p + " " + t).input_ids) for p, t in zip(PROMPTS, TARGETS))  # about: +EOS, joining
    assert summary["optimizer_steps"] == 6 and summary["reused"]
    assert 0.8 < summary["tokens_per_second"] * summary["train_seconds"] / (3 * n_tokens) < 1.25
    other = train_adapter(name="control-toy", base_model="tiny-random-llama", prompts=PROMPTS, targets=TARGETS,
                          example_ids=IDS, spec=TrainingSpec(epochs=1, batch_size=8, learning_rate=5e-3, device="cpu"),
                          adapters_dir=tmp_path, progress=False)
    assert not other.reused and other.key != res.key
    assert not (tmp_path / ".work" / f"control-toy-{res.key}").exists()


def test_response_loss_ignores_the_prompt():
    tok = load_tokenizer("tiny-random-llama")
    model = load_model("tiny-random-llama", device="cpu")
    a, a_answer = response_losses(model, tok, ["Prompt one\nA:", "Another, much longer prompt text\nA:"], ["yes", "yes"])
    b, b_answer = response_losses(model, tok, ["Another, much longer prompt text\nA:"], ["yes"])
    assert len(a) == 2 and abs(a[1] - b[0]) < 1e-4 and abs(a_answer[1] - b_answer[0]) < 1e-4
    assert all(np.isfinite(a + a_answer))


@pytest.mark.parametrize("name", ["tiny-random-llama", "tiny-random-gemma3"])  # logits_to_keep and head-only routes
def test_one_pass_gives_the_losses_of_two_passes_with_and_without_eos(name, monkeypatch):
    """The loss without EOS from one pass equals a second pass on the sequences with EOS removed."""
    tok = load_tokenizer(name)
    model = load_model(name, device="cpu", dtype="float32")
    prompts = [PROMPTS[0], "Q: short?\nA:", PROMPTS[5] + " and a longer tail of words", "Q: empty answer\nA:"]
    targets = ["a much longer answer of several words", "b", "negative", ""]  # "": a separator token and EOS
    with_eos, without = response_losses(model, tok, prompts, targets, batch_size=3)

    def alone(item: Encoded) -> float:  # one example per forward pass: no padding
        batch = collate([item], tok.pad_token_id)
        labels = batch.pop("labels")
        sums, counts, _ = training._response_nll(model, batch, labels)
        return float((sums[0] / counts[0]).detach())

    for i, (p, t) in enumerate(zip(prompts, targets)):
        item = encode(tok, p, t)
        assert item.input_ids[-1] == tok.eos_token_id
        assert with_eos[i] == pytest.approx(alone(item), rel=1e-5, abs=1e-6)
        assert without[i] == pytest.approx(alone(Encoded(item.input_ids[:-1], item.n_prompt)), rel=1e-5, abs=1e-6)
        assert without[i] != pytest.approx(with_eos[i], rel=1e-6)
    # a response that is EOS alone keeps it (nothing else to score)
    item = encode(tok, "Q: x\nA:", "")
    alone_eos = Encoded(item.input_ids[: item.n_prompt] + [tok.eos_token_id], item.n_prompt)
    monkeypatch.setattr("layerwise.training.encode", lambda *a, **k: alone_eos)
    one, one_answer = response_losses(model, tok, ["Q: x\nA:"], [""])
    assert one == one_answer == [pytest.approx(alone(alone_eos), rel=1e-5)]
    with pytest.raises(ValueError, match="differ in length"):
        response_losses(model, tok, prompts, targets[:2])


def test_missing_target_module_lists_the_modules():
    model = load_model("tiny-random-llama", device="cpu")
    with pytest.raises(ValueError, match=r"\['c_attn'\] do not exist.*q_proj.*v_proj"):
        resolve_target_modules(model, ["q_proj", "c_attn"])


def test_mismatched_inputs_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="differ in length"):
        train_adapter(name="x", base_model="tiny-random-llama", prompts=PROMPTS, targets=TARGETS[:3],
                      example_ids=IDS, spec=SPEC, adapters_dir=tmp_path)
    with pytest.raises(ValueError, match="no training examples"):
        train_adapter(name="x", base_model="tiny-random-llama", prompts=[], targets=[], example_ids=[],
                      spec=SPEC, adapters_dir=tmp_path)
