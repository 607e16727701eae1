"""Constrained decoding in ``crafter-tui serve``: a random-weight built-in model answers with
schema-valid tool calls and JSON when the request asks for them, and unsupported schemas are 400s.

The model is a tiny random Qwen2 on the built-in tokenizer, saved as an imported model of the
service (``<data_dir>/models/<name>``) and served by the real app through FastAPI's test client.
Random weights are the hard case: nothing but the mask makes their replies valid.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from transformers import Qwen2Config, Qwen2ForCausalLM

from crafter_tui.agents.base import TurnObservation
from crafter_tui.agents.openai_agent import OpenAIAgent
from crafter_tui.agents.prompting import INTERACT_TOOL, TOOLS
from crafter_tui.config import AppConfig
from crafter_tui.finetune.constrained import OutputSpec, SchemaError, check_schema, output_spec
from crafter_tui.finetune.inference import LoadedModel, parse_reply
from crafter_tui.servers.ft_server import ServeSettings, create_app
from crafter_tui.world.env import CrafterWorld
from crafter_tui.world.rules import ACTIONS
from tests.ft_support import ServerThread
from tests.trainer_support import rows_tokenizer, short_rows

MODEL = "tiny-random"
MESSAGES = [{"role": "system", "content": "Play Crafter. Call interact with actions."},
            {"role": "user", "content": "Step 1/100. A tree is 1 north."}]


def _random_model(tokenizer) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, use_sliding_window=False)
    return Qwen2ForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return rows_tokenizer(short_rows(4, seed=2))


@pytest.fixture(scope="module")
def settings(tmp_path_factory, tokenizer) -> ServeSettings:
    data_dir = tmp_path_factory.mktemp("svc")
    folder = data_dir / "models" / MODEL
    _random_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "crafter_tui_training.json").write_text(json.dumps({"max_length": 1024}), encoding="utf-8")
    return ServeSettings(data_dir=data_dir, threads=1, default_max_tokens=200)


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as http:
        yield http


def _chat(client, **body):
    return client.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, **body})


def _valid_interact(arguments: dict) -> bool:
    actions = arguments.get("actions")
    return (set(arguments) == {"actions", "reasoning"} and isinstance(arguments["reasoning"], str)
            and isinstance(actions, list) and 1 <= len(actions) <= 5 and all(a in ACTIONS for a in actions))


def test_required_tool_choice_gives_a_valid_call_every_time(client):
    valid = 0
    for seed in range(50):
        reply = _chat(client, tools=TOOLS, tool_choice="required", temperature=1.0, seed=seed, max_tokens=200)
        assert reply.status_code == 200, reply.text
        choice = reply.json()["choices"][0]
        calls = choice["message"]["tool_calls"] or []
        if choice["finish_reason"] == "tool_calls" and len(calls) == 1:
            function = calls[0]["function"]
            arguments = json.loads(function["arguments"])
            if function["name"] == "interact":
                valid += _valid_interact(arguments)
            elif function["name"] == "terminate":
                valid += set(arguments) == {"reason"} and isinstance(arguments["reason"], str)
    assert valid == 50


def test_without_constraint_the_random_model_does_not_call(client):
    """The control: the same model unconstrained answers junk, so the test above measures the mask."""
    reply = _chat(client, tools=TOOLS, tool_choice="auto", temperature=1.0, seed=0, max_tokens=40).json()
    assert reply["choices"][0]["message"]["tool_calls"] is None


def test_named_function_is_honoured(client):
    for seed in range(5):
        reply = _chat(client, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "terminate"}},
                      temperature=1.0, seed=seed).json()
        call = reply["choices"][0]["message"]["tool_calls"][0]["function"]
        assert call["name"] == "terminate" and set(json.loads(call["arguments"])) == {"reason"}


def test_references_to_definitions_resolve_inside_a_call(client):
    step = {"type": "function", "function": {"name": "step", "parameters": {
        "type": "object", "properties": {"move": {"$ref": "#/$defs/move"}}, "required": ["move"],
        "$defs": {"move": {"type": "string", "enum": ["left", "right"]}}}}}
    for seed in range(5):
        reply = _chat(client, tools=[*TOOLS, step], tool_choice={"type": "function", "function": {"name": "step"}},
                      temperature=1.0, seed=seed).json()
        call = reply["choices"][0]["message"]["tool_calls"][0]["function"]
        assert call["name"] == "step" and json.loads(call["arguments"])["move"] in ("left", "right")
    both = _chat(client, tools=[*TOOLS, step], tool_choice="required", temperature=1.0, seed=0)
    assert both.status_code == 200


def test_strict_tool_with_auto_is_a_valid_call_or_text(client):
    strict = [{**INTERACT_TOOL, "function": {**INTERACT_TOOL["function"], "strict": True, "parameters": {
        **INTERACT_TOOL["function"]["parameters"], "additionalProperties": False}}}]
    for seed in range(5):
        message = _chat(client, tools=strict, temperature=1.0, seed=seed).json()["choices"][0]["message"]
        for call in message["tool_calls"] or []:
            assert _valid_interact(json.loads(call["function"]["arguments"]))
        assert "<tool_call>" not in (message["content"] or "")


def test_tool_choice_none_gives_text(client):
    for seed in range(3):
        reply = _chat(client, tools=TOOLS, tool_choice="none", temperature=1.0, seed=seed, max_tokens=30).json()
        message = reply["choices"][0]["message"]
        assert message["tool_calls"] is None and "<tool_call>" not in (message["content"] or "")


def test_json_schema_response_is_parseable_and_valid(client):
    schema = {"type": "object", "properties": {
        "action": {"type": "string", "enum": ["noop", "do", "sleep"]},
        "count": {"type": "integer", "minimum": 1, "maximum": 3},
        "ok": {"type": "boolean"}}, "required": ["action", "count", "ok"], "additionalProperties": False}
    response_format = {"type": "json_schema", "json_schema": {"name": "step", "schema": schema, "strict": True}}
    for seed in range(10):
        reply = _chat(client, response_format=response_format, temperature=1.0, seed=seed).json()
        choice = reply["choices"][0]
        assert choice["message"]["tool_calls"] is None and choice["finish_reason"] == "stop"
        value = json.loads(choice["message"]["content"])
        assert set(value) == {"action", "count", "ok"} and value["action"] in ("noop", "do", "sleep")
        assert isinstance(value["count"], int) and 1 <= value["count"] <= 3 and isinstance(value["ok"], bool)


def test_json_object_response_is_an_object(client):
    reply = _chat(client, response_format={"type": "json_object"}, temperature=1.0, seed=1, max_tokens=200).json()
    if reply["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(reply["choices"][0]["message"]["content"]), dict)
    else:  # ran out of tokens inside the object: still a prefix of one
        assert reply["choices"][0]["message"]["content"].startswith("{")


@pytest.mark.parametrize(("body", "feature"), [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string"}}, "patternProperties": {"x": {}}}}}],
      "tool_choice": "required"}, "patternProperties"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"allOf": [{"type": "string"}]}}}}}}, "allOf"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"type": "string", "format": "uri-template"}}}}}}, "uri-template"),
    ({"tools": [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {
        "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}}}]}, "additionalProperties"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "fly"}}}, "fly"),
    ({"tool_choice": "required"}, "at least one tool"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
])
def test_unsupported_schema_features_are_400(client, body, feature):
    reply = _chat(client, **body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert feature in error["message"] and set(error) == {"message", "type", "param", "code"}


def test_the_agent_gets_valid_decisions_from_our_service(settings):
    """End to end: the openai agent recognises the service as ours and every sampled turn is valid."""
    server = ServerThread(create_app(settings)).start()
    try:
        config = AppConfig()
        config.openai.base_url = config.finetune.local_url = server.base_url
        agent = OpenAIAgent(MODEL, config=config, temperature=1.0, max_tokens=120)
        world = CrafterWorld("peaceful", max_steps=10)
        obs = TurnObservation(state=world.reset(1), text="Step 0/10.", turn=0, max_steps=10)

        async def play() -> list:
            await agent.start_episode(4)
            try:
                return [await agent.act(dataclasses.replace(obs, turn=turn), []) for turn in range(5)]
            finally:
                await agent.aclose()

        decisions = asyncio.run(play())
        assert agent.settings["structured"] is True
        assert all(d.valid and (d.actions or d.terminate) for d in decisions), [d.error for d in decisions]
    finally:
        server.stop()


def test_auto_with_plain_tools_is_not_constrained():
    """Today's behaviour: no constraint, and an odd schema is nobody's business."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "not": {}}}}]
    assert output_spec(tools, "auto", None) is None
    assert output_spec(None, None, None) is None
    assert output_spec(TOOLS, None, {"type": "text"}) is None


def test_exported_interact_tool_is_accepted_strict_once_closed():
    parameters = INTERACT_TOOL["function"]["parameters"]
    with pytest.raises(SchemaError, match="additionalProperties"):
        check_schema(parameters, "p", strict=True)
    check_schema({**parameters, "additionalProperties": False}, "p", strict=True)


def test_grammar_uses_special_tool_call_tokens_only_when_they_exist():
    spec = output_spec(TOOLS, "required", None)
    assert isinstance(spec, OutputSpec) and spec.kind == "tool_call"
    assert "| <tool_call>" in spec.grammar(True, True) and "| <tool_call>" not in spec.grammar(False, False)


@pytest.mark.parametrize("fast", [True, False])
def test_greedy_constrained_reply_parses_on_the_engine(tokenizer, fast):
    """The engine alone (no server), on the lean decoder and on the Hugging Face forward (other
    architectures): the constrained text is what ``parse_reply`` turns into a call."""
    loaded = LoadedModel(_random_model(tokenizer), tokenizer, Path("unused"), max_length=1024, threads=1)
    if not fast:
        loaded._decoder = None
    spec = output_spec(TOOLS, {"type": "function", "function": {"name": "interact"}}, None)
    result = loaded.chat(MESSAGES, TOOLS, max_tokens=200, output=spec)
    assert result.finish_reason == "tool_calls" and result.tool_calls[0]["function"]["name"] == "interact"
    ids = loaded.prompt_ids(MESSAGES, TOOLS, 200)
    generated, _, _ = loaded.generate_ids(ids, 200, matcher=loaded.constrainer().matcher(spec))
    content, calls = parse_reply(tokenizer.decode(generated, skip_special_tokens=False))
    assert calls and _valid_interact(json.loads(calls[0]["function"]["arguments"]))


class _FreeOnlyModel:
    """An inference engine from before constrained decoding: its ``chat`` takes no ``output``."""

    def chat(self, messages, tools, max_tokens=64, temperature=0.0, seed=None):
        raise AssertionError("a constrained request must not reach an engine that cannot constrain")


def free_only_loader(path: Path, threads: int | None = None) -> _FreeOnlyModel:
    return _FreeOnlyModel()


def test_an_engine_that_cannot_constrain_answers_400(settings):
    app = create_app(settings.model_copy(update={"inference": f"{__name__}:free_only_loader"}))
    with TestClient(app) as http:
        reply = _chat(http, tools=TOOLS, tool_choice="required")
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "unsupported_value"


def test_a_tokenizer_without_tool_call_tokens_spells_the_call_in_text():
    """Hugging Face tokenizers without ``<tool_call>`` tokens: the grammar's text form is used."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from crafter_tui.finetune.trainer.tokenizer import CHAT_TEMPLATE, seed_corpus

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(seed_corpus(), trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    plain = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                    additional_special_tokens=["<|im_start|>"])
    plain.chat_template = CHAT_TEMPLATE
    assert plain.convert_tokens_to_ids("<tool_call>") in (None, plain.unk_token_id)
    loaded = LoadedModel(_random_model(plain), plain, Path("unused"), max_length=1024, threads=1)
    for seed in range(3):
        result = loaded.chat(MESSAGES, TOOLS, max_tokens=300, temperature=1.0, seed=seed,
                             output=output_spec(TOOLS, {"type": "function", "function": {"name": "interact"}}, None,
                                                300))
        assert result.finish_reason == "tool_calls", result.content
        assert _valid_interact(json.loads(result.tool_calls[0]["function"]["arguments"]))
