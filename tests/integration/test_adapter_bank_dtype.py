"""One base model with switched LoRA adapters, bf16 compute and how far it moves CKA (tiny random model)."""

import dataclasses

import numpy as np
import pytest
import torch

from layerwise import training
from layerwise.batching import collate, encode
from layerwise.extraction import dtype_cka_shift, prompt_hidden_states
from layerwise.models import load_model, load_tokenizer
from layerwise.similarity import linear_cka
from layerwise.spec import TrainingSpec
from layerwise.training import AdapterBank, load_adapter_model, read_json, train_adapter

pytestmark = pytest.mark.integration

MODEL = "tiny-random-llama"
PROMPTS = [f"Item {i}: the film was {'great' if i % 2 else 'awful'} and {'long' * (i % 3)}.\nSentiment:" for i in range(16)]
TARGETS = ["positive" if i % 2 else "negative" for i in range(16)]
IDS = [f"ex{i}" for i in range(16)]
SPEC = TrainingSpec(epochs=2, batch_size=8, learning_rate=5e-2, save_steps=100, device="cpu")


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    out = tmp_path_factory.mktemp("adapters")
    a = train_adapter(name="control-a", base_model=MODEL, prompts=PROMPTS, targets=TARGETS, example_ids=IDS,
                      spec=SPEC, adapters_dir=out, progress=False, dtype="float32")
    b = train_adapter(name="control-b", base_model=MODEL, prompts=PROMPTS, targets=TARGETS[::-1], example_ids=IDS,
                      spec=SPEC, adapters_dir=out, progress=False, dtype="float32")
    return {"control-a": a.path, "control-b": b.path}


def _states(model, tok):
    return prompt_hidden_states(model, tok, PROMPTS, batch_size=8)["last"]


def test_bank_in_float32_is_bit_identical_to_reloading(adapters):
    tok = load_tokenizer(MODEL)
    bank = AdapterBank(MODEL, adapters, device="cpu", dtype="float32")
    assert bank.merge
    pt = _states(load_model(MODEL, device="cpu", dtype="float32"), tok)
    with bank.use(None) as m:
        assert np.array_equal(_states(m, tok), pt)
    for name, path in adapters.items():
        want = _states(load_adapter_model(MODEL, path, device="cpu", dtype="float32"), tok)
        with bank.use(name) as m:
            got = _states(m, tok)
        assert np.array_equal(got, want), name
        assert not np.array_equal(got, pt)
    with bank.use(None) as m:  # the base weights are restored exactly after every adapter
        assert np.array_equal(_states(m, tok), pt)
    with pytest.raises(KeyError, match="no adapter 'sft' in this bank"):
        with bank.use("sft"):
            pass


def test_unmerged_bank_computes_the_same_model(adapters):
    tok = load_tokenizer(MODEL)
    bank = AdapterBank(MODEL, adapters, device="cpu", dtype="float32", merge=False)
    want = _states(load_adapter_model(MODEL, adapters["control-b"], device="cpu", dtype="float32"), tok)
    with bank.use("control-b") as m:
        np.testing.assert_allclose(_states(m, tok), want, rtol=1e-4, atol=1e-4)


def test_bf16_cka_shift_on_a_tiny_model(adapters):
    tok = load_tokenizer(MODEL)
    ref, low = {}, {}
    for dtype, store in (("float32", ref), ("bfloat16", low)):
        bank = AdapterBank(MODEL, adapters, device="cpu", dtype=dtype)
        assert bank.merge == (dtype == "float32")
        for name in (None, "control-a", "control-b"):
            with bank.use(name) as m:
                store[name or "PT"] = _states(m, tok)
    assert all(v.dtype == np.float32 for v in low.values())  # stored states stay float32
    shift = dtype_cka_shift(ref, low)
    assert shift["pairs"] == [("PT", "control-a"), ("PT", "control-b"), ("control-a", "control-b")]
    assert shift["shift"].shape == (3, ref["PT"].shape[0] - 1)
    layer = ref["PT"].shape[0] - 1
    want = abs(linear_cka(low["PT"][layer], low["control-b"][layer]) - linear_cka(ref["PT"][layer], ref["control-b"][layer]))
    assert shift["shift"][1, -1] == pytest.approx(want, abs=1e-12)
    assert dtype_cka_shift(ref, ref)["max_shift"] == 0.0
    # bf16 states are close to the fp32 ones (CKA > 0.999) and move CKA by a few 1e-3 at most on
    # this tiny random model with 16 prompts (measured 6e-3: more than the 1e-3 budget the book
    # allows, which is why bf16 is only an option, and measured on the real model by the bench)
    assert shift["min_self_cka"] > 0.999
    assert 0.0 < shift["max_shift"] < 2e-2
    with pytest.raises(ValueError, match="differ"):
        dtype_cka_shift(ref, {"PT": low["PT"]})


def test_bf16_training_keeps_lora_and_optimizer_in_float32(tmp_path, monkeypatch):
    seen = {}
    real = training._trainer_class

    def spy():
        cls = real()

        class Spy(cls):
            def create_optimizer(self, *a, **k):
                opt = super().create_optimizer(*a, **k)
                seen["params"] = {p.dtype for g in opt.param_groups for p in g["params"]}
                seen["base"] = {p.dtype for n, p in self.model.named_parameters() if "lora_" not in n}
                return opt

        return Spy

    monkeypatch.setattr(training, "_trainer_class", spy)
    res = train_adapter(name="control-bf16", base_model=MODEL, prompts=PROMPTS, targets=TARGETS, example_ids=IDS,
                        spec=SPEC, adapters_dir=tmp_path, progress=False, dtype="bfloat16")
    assert seen["params"] == {torch.float32} and seen["base"] == {torch.bfloat16}
    meta = read_json(res.path / "layerwise_adapter.json")
    assert meta["dtype"] == "bfloat16" and res.log[-1]["loss"] < res.log[0]["loss"]
    fp32 = train_adapter(name="control-bf16", base_model=MODEL, prompts=PROMPTS, targets=TARGETS, example_ids=IDS,
                         spec=SPEC, adapters_dir=tmp_path, progress=False, dtype="float32")
    assert fp32.key != res.key and not fp32.reused  # the dtype is part of the adapter's key


def test_length_grouping_pads_less(tmp_path):
    spec = dataclasses.replace(SPEC, epochs=1, batch_size=4)
    plain = train_adapter(name="c", base_model=MODEL, prompts=PROMPTS, targets=TARGETS, example_ids=IDS, spec=spec,
                          adapters_dir=tmp_path, progress=False, dtype="float32")
    grouped = train_adapter(name="c", base_model=MODEL, prompts=PROMPTS, targets=TARGETS, example_ids=IDS, spec=spec,
                            adapters_dir=tmp_path, progress=False, dtype="float32", group_by_length=True)
    assert grouped.key != plain.key
    pad_plain, pad_grouped = (read_json(r.path / "layerwise_adapter.json")["padding_fraction"] for r in (plain, grouped))
    assert 0.0 <= pad_grouped < pad_plain


def test_logits_at_response_positions_only_are_bit_identical(monkeypatch):
    tok = load_tokenizer(MODEL)
    model = load_model(MODEL, device="cpu", dtype="float32")
    items = [encode(tok, p, t) for p, t in zip(PROMPTS[:6], ["a much longer answer here", "b", "yes", "no", "", "x y"])]
    batch = collate(items, tok.pad_token_id)
    labels = batch.pop("labels")
    out = {}
    for route in ("head-only", "logits_to_keep"):
        if route == "logits_to_keep":
            monkeypatch.setattr(training, "_HEAD_ONLY_ARCHS", ())
        model.zero_grad()
        emb = model.get_input_embeddings().weight
        emb.requires_grad_(True)
        sums, counts, _ = training._response_nll(model, dict(batch), labels)
        (sums.sum() / counts.sum()).backward()
        out[route] = (sums.detach(), counts, emb.grad.clone())
    a, b = out["head-only"], out["logits_to_keep"]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
