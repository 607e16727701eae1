"""The fast generation path (Qwen2Decoder + prompt cache) gives exactly what the Hugging Face model gives.

Random-initialised Qwen2 models (the built-in tokenizer, small shapes built from a config) are
compared with ``model.generate`` greedy decoding token for token, over consecutive prompts so
the prompt cache is exercised, and with the Hugging Face forward logit for logit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM

from crafter_tui.finetune.inference import LoadedModel
from crafter_tui.finetune.qwen2_decoder import Qwen2Decoder
from tests.trainer_support import rows_tokenizer, short_rows

#: (attention heads, key/value heads, attention bias): grouped-query and plain multi-head.
SHAPES = [(4, 2, True), (4, 4, True)]


@pytest.fixture(scope="module")
def rows():
    return short_rows(6, seed=5, history_turns=1)


@pytest.fixture(scope="module")
def tokenizer(rows):
    return rows_tokenizer(rows)


def _model(tokenizer, heads: int, kv_heads: int, seed: int = 0, **overrides) -> Qwen2ForCausalLM:
    settings = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=2048,
                    tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id, use_sliding_window=False)
    settings.update(overrides)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(**settings)).eval()
    with torch.no_grad():  # larger weights than the default init: peaked, varied logits
        for parameter in model.parameters():
            parameter.mul_(8.0 if parameter.dim() > 1 else 1.0)
    return model


def _greedy_reference(model: Qwen2ForCausalLM, ids: list[int], max_tokens: int, stop_ids: set[int]) -> list[int]:
    out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         max_new_tokens=max_tokens, do_sample=False, eos_token_id=sorted(stop_ids),
                         pad_token_id=model.config.pad_token_id)[0, len(ids):].tolist()
    return [t for t in out if t not in stop_ids]


@pytest.mark.parametrize(("heads", "kv_heads", "bias"), SHAPES)
def test_decoder_logits_match_the_hugging_face_forward(tokenizer, heads, kv_heads, bias):
    model = _model(tokenizer, heads, kv_heads)
    ids = torch.randint(0, len(tokenizer), (120,), generator=torch.Generator().manual_seed(1)).tolist()
    decoder, cache = Qwen2Decoder(model), DynamicCache(config=model.config)

    def reference(chunk: list[int]) -> torch.Tensor:
        return model(input_ids=torch.tensor([chunk]), cache=cache, use_cache=True, logits_to_keep=1).logits[0, -1]

    with torch.inference_mode():
        for chunk in (ids[:60], ids[60:100], [ids[100]], [ids[101]]):  # empty, prefix prefill, decode steps
            assert torch.allclose(decoder.forward(chunk), reference(chunk), atol=1e-4, rtol=1e-4)
        decoder.truncate(30)
        cache.crop(30 - cache.get_seq_length())
        assert decoder.length == 30
        assert torch.allclose(decoder.forward(ids[30:50]), reference(ids[30:50]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("heads", "kv_heads", "bias"), SHAPES)
def test_fast_greedy_replies_are_the_tokens_of_model_generate(tokenizer, rows, heads, kv_heads, bias):
    model = _model(tokenizer, heads, kv_heads, seed=3)
    loaded = LoadedModel(model, tokenizer, Path("unused"), max_length=1024, threads=1)
    assert loaded._decoder is not None
    reused_any = False
    for row in rows:  # consecutive turns: each call reuses the previous call's prefix
        ids = loaded.prompt_ids(row["messages"][:-1], row["tools"], 24)
        generated, reused, stopped = loaded.generate_ids(ids, 24)
        reused_any = reused_any or reused > 0
        assert generated == _greedy_reference(model, ids, 24, loaded.stop_ids)
        assert stopped == (len(generated) < 24)
    assert reused_any


def test_fast_and_plain_paths_agree_including_seeded_sampling(tokenizer, rows):
    fast = LoadedModel(_model(tokenizer, 4, 2, seed=4), tokenizer, Path("unused"), max_length=1024, threads=1)
    plain = LoadedModel(_model(tokenizer, 4, 2, seed=4), tokenizer, Path("unused"), max_length=1024, threads=1)
    plain._decoder = None  # the Hugging Face forward with a DynamicCache
    for row in rows[:3]:
        ids = fast.prompt_ids(row["messages"][:-1], row["tools"], 16)
        assert fast.generate_ids(ids, 16) == plain.generate_ids(ids, 16)
        sampled = fast.generate_ids(ids, 16, temperature=1.0, seed=9)
        assert sampled == plain.generate_ids(ids, 16, temperature=1.0, seed=9)
        assert sampled == fast.generate_ids(ids, 16, temperature=1.0, seed=9)  # seeded: repeatable


def test_chat_reply_shape_is_unchanged_on_the_fast_path(tokenizer, rows):
    loaded = LoadedModel(_model(tokenizer, 4, 2), tokenizer, Path("unused"), max_length=1024, threads=1)
    result = loaded.chat(rows[0]["messages"][:-1], rows[0]["tools"], max_tokens=8)
    ids = loaded.prompt_ids(rows[0]["messages"][:-1], rows[0]["tools"], 8)
    assert result.prompt_tokens == len(ids)
    assert result.completion_tokens == len(_greedy_reference(loaded.model, ids, 8, loaded.stop_ids)) + int(
        result.finish_reason == "stop")
    assert result.finish_reason in ("stop", "length", "tool_calls")


def test_models_the_decoder_cannot_mirror_use_the_plain_forward(tokenizer):
    scaled = _model(tokenizer, 4, 2, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    assert not Qwen2Decoder.supports(scaled)
    with pytest.raises(ValueError, match="rotary"):
        Qwen2Decoder(scaled)
    loaded = LoadedModel(scaled, tokenizer, Path("unused"), max_length=1024, threads=1)
    assert loaded._decoder is None
    assert Qwen2Decoder.supports(_model(tokenizer, 4, 2))


def test_the_cache_grows_past_its_first_allocation(tokenizer):
    model = _model(tokenizer, 4, 2)
    ids = torch.randint(0, len(tokenizer), (700,), generator=torch.Generator().manual_seed(2)).tolist()
    decoder, cache = Qwen2Decoder(model), DynamicCache(config=model.config)
    with torch.inference_mode():
        decoder.forward(ids[:500])
        model(input_ids=torch.tensor([ids[:500]]), cache=cache, use_cache=True)
        fast = decoder.forward(ids[500:700])  # past the first 512-position allocation
        slow = model(input_ids=torch.tensor([ids[500:700]]), cache=cache, use_cache=True, logits_to_keep=1)
    assert torch.allclose(fast, slow.logits[0, -1], atol=1e-4, rtol=1e-4)


def _logits_of_reply(loaded: LoadedModel, ids: list[int], seed: int) -> tuple[list[torch.Tensor], int]:
    """Every logit vector a seeded sampled reply was drawn from, and the prompt tokens reused."""
    seen: list[torch.Tensor] = []
    pick = loaded._pick

    def recording(logits, temperature, generator):
        seen.append(logits.clone())
        return pick(logits, temperature, generator)

    loaded._pick = recording  # type: ignore[method-assign]
    try:
        _, reused, _ = loaded.generate_ids(ids, 12, temperature=0.8, seed=seed)
    finally:
        del loaded._pick
    return seen, reused


@pytest.mark.parametrize("lean", [True, False])
def test_a_reply_does_not_depend_on_what_the_service_answered_before(tokenizer, rows, lean):
    """Concurrent episodes reach the service in any order: each prompt's logits must be bit-identical
    whether the cache is cold, holds another prompt, or holds this one (the prompt cache is only a speed-up)."""
    loaded = LoadedModel(_model(tokenizer, 4, 2, seed=6), tokenizer, Path("unused"), max_length=1024, threads=1)
    if not lean:
        loaded._decoder = None
    prompts = [loaded.prompt_ids(row["messages"][:-1], row["tools"], 12) for row in rows]
    reused_any = False
    for index, ids in enumerate(prompts):
        loaded.reset_prompt_cache()
        cold, _ = _logits_of_reply(loaded, ids, seed=index)
        for before in (prompts[index - 1], ids, prompts[(index + 2) % len(prompts)]):
            loaded.reset_prompt_cache()
            loaded.generate_ids(before, 5)
            warm, reused = _logits_of_reply(loaded, ids, seed=index)
            reused_any = reused_any or reused > 0
            assert len(warm) == len(cold) and all(torch.equal(a, b) for a, b in zip(warm, cold, strict=True))
    assert reused_any  # the system head is still taken from the cache
