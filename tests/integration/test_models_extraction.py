"""Model resolution and the extraction contract, on tiny random models built from a config."""

import numpy as np
import pytest
import torch

from layerwise.batching import collate, encode
from layerwise.extraction import body_of, last_token_hidden_states, load_states, save_states
from layerwise.models import MODEL_ALIASES, ModelNotFoundError, load_model, load_tokenizer, resolve_model

pytestmark = pytest.mark.integration

PROMPTS = [
    "Review: a warm, funny film.\nDid the reviewer like the movie?\nAnswer:",
    "Hi\nAnswer:",
    "Read this and answer the question.\n\nThe Normans were a people who gave their name to Normandy.\n\nWho were the Normans?",
]


@pytest.fixture(scope="module", params=["tiny-random-llama", "tiny-random-gemma3"])
def tiny(request):
    return request.param, load_model(request.param, device="cpu"), load_tokenizer(request.param)


def test_unknown_model_names_aliases():
    with pytest.raises(ModelNotFoundError, match="not a packaged alias.*gemma-3-270m"):
        resolve_model("no-such-model")
    with pytest.raises(ModelNotFoundError, match="non-empty"):
        resolve_model("")


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_offline_hub_id_fails_fast_with_reason(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE=1"):
        resolve_model("layerwise-test/definitely-not-cached")


def test_local_path_is_a_model_string(tiny):
    name, _, _ = tiny
    path = resolve_model(name)
    assert resolve_model(str(path)) == path.resolve()
    assert "tiny-random" in MODEL_ALIASES[name].alias


def test_hidden_states_shape_and_final_norm_convention(tiny):
    name, model, tok = tiny
    states = last_token_hidden_states(model, tok, PROMPTS, batch_size=2)
    n_layers = model.config.num_hidden_layers
    assert states.shape == (n_layers + 1, len(PROMPTS), model.config.hidden_size)
    assert states.dtype == np.float32
    # index L is the last block's output *after* the final norm (Hugging Face convention, as in the paper)
    captured = {}
    body = body_of(model)
    hook = body.layers[-1].register_forward_hook(lambda m, i, o: captured.update(out=o[0] if isinstance(o, tuple) else o))
    enc = tok(PROMPTS[0], return_tensors="pt")
    with torch.no_grad():
        body(**enc)
    hook.remove()
    normed = body.norm(captured["out"])[0, -1].detach().numpy()
    np.testing.assert_allclose(states[-1, 0], normed, rtol=1e-5, atol=1e-5)
    # index 0 is the embedding output
    with torch.no_grad():
        emb = body(**enc, output_hidden_states=True).hidden_states[0][0, -1].numpy()
    np.testing.assert_allclose(states[0, 0], emb, rtol=1e-6, atol=1e-6)


def test_left_padding_does_not_change_states(tiny):
    _, model, tok = tiny
    batched = last_token_hidden_states(model, tok, PROMPTS, batch_size=3)
    for i, p in enumerate(PROMPTS):
        alone = last_token_hidden_states(model, tok, [p], batch_size=1)
        np.testing.assert_allclose(batched[:, i], alone[:, 0], rtol=1e-4, atol=1e-5)


def test_collate_left_pads_with_positions_and_masks_prompt():
    items = [encode(_Tok(), "abc", "xy"), encode(_Tok(), "a", "z")]
    b = collate(items, pad_token_id=0)
    assert b["input_ids"].tolist() == [[1, 97, 98, 99, 32, 120, 121, 2], [0, 0, 0, 1, 97, 32, 122, 2]]
    assert b["attention_mask"].tolist()[1] == [0, 0, 0, 1, 1, 1, 1, 1]
    assert b["position_ids"].tolist()[1] == [0, 0, 0, 0, 1, 2, 3, 4]
    assert b["labels"].tolist()[0] == [-100, -100, -100, -100, 32, 120, 121, 2]


def test_prompt_longer_than_max_length_is_an_error():
    with pytest.raises(ValueError, match=r"prompt of 6 tokens does not fit max_length=4.*data.max_input_chars"):
        encode(_Tok(), "hello", "x", max_length=4)


def test_states_round_trip(tmp_path, tiny):
    _, model, tok = tiny
    states = last_token_hidden_states(model, tok, PROMPTS[:2])
    path = save_states(tmp_path / "s.safetensors", states, ["a", "b"], {"role": "PT"})
    back, ids, meta = load_states(path)
    np.testing.assert_array_equal(back, states)
    assert ids == ["a", "b"] and meta == {"role": "PT"}
    with pytest.raises(ValueError, match="3 ids for 2 rows"):
        save_states(tmp_path / "t.safetensors", states, ["a", "b", "c"], {})


class _Tok:
    """Character tokenizer: bos=1, eos=2, ord(c) per character (enough to test batching)."""

    eos_token_id = 2

    def __call__(self, text, add_special_tokens=True):
        ids = [ord(c) for c in text]
        return {"input_ids": ([1] if add_special_tokens else []) + ids}
