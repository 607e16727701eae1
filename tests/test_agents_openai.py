"""The ``openai`` agent: reply parsing (pure), and real HTTP against the scripted test double through
the lean ``ChatClient`` (the default) and through an injected ``openai`` SDK client, which must
behave and word their failures the same way."""

from __future__ import annotations

import dataclasses
import json
import socket

import openai
import pytest
from pydantic import SecretStr

from crafter_tui.agents import make_agent
from crafter_tui.agents.base import HistoryTurn, TurnObservation
from crafter_tui.agents.openai_agent import LLMCallError, OpenAIAgent, redact_url
from crafter_tui.agents.prompting import SYSTEM_PROMPT, TOOLS, interact_message
from crafter_tui.agents.replies import decision_from_completion, decision_from_message
from crafter_tui.config import AppConfig
from crafter_tui.world.env import CrafterWorld
from tests.doubles.openai_double import (
    DoubleProcess,
    OpenAIDouble,
    ScriptedReply,
    bad_json,
    http_error,
    interact,
    many_calls,
    openai_double,  # noqa: F401 - pytest fixture
    terminate,
    text,
    tool_call,
    delayed,
)

KEY = "sk-test-7d1f0c9a2b4e4e7f9a1c"


# --------------------------------------------------------------------------- helpers
def call(name: str, arguments: str, call_id: str = "call_a") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def message(*calls: dict, content: str | None = None) -> dict:
    msg: dict = {"role": "assistant", "content": content}
    if calls:
        msg["tool_calls"] = list(calls)
    return msg


def args(**values) -> str:
    return json.dumps(values)


@pytest.fixture(scope="module")
def observation() -> TurnObservation:
    world = CrafterWorld("peaceful", max_steps=100)
    state = world.reset(3)
    return TurnObservation(state=state, text="Step 0/100, turn 0, day. (test observation)", turn=0, max_steps=100)


def agent_for(double: OpenAIDouble, **kwargs) -> OpenAIAgent:
    kwargs.setdefault("max_retries", 2)
    kwargs.setdefault("timeout", 10.0)
    return OpenAIAgent("double-model", base_url=double.base_url, api_key=SecretStr(KEY), **kwargs)


# --------------------------------------------------------------------------- pure parsing
def test_valid_interact_keeps_the_exact_message():
    arguments = '{"actions": ["move_left", "do"], "reasoning": "tree to the west"}'
    decision = decision_from_message(message(call("interact", arguments)), "tool_calls")
    assert decision.valid and decision.error is None and decision.raw is None
    assert decision.actions == ["move_left", "do"]
    assert decision.reasoning == "tree to the west"
    assert decision.terminate is False
    assert decision.assistant_message == message(call("interact", arguments))
    assert decision.assistant_message["tool_calls"][0]["function"]["arguments"] == arguments


def test_terminate_call_ends_the_episode():
    decision = decision_from_message(message(call("terminate", args(reason="stuck"))))
    assert decision.valid and decision.terminate and decision.actions == []
    assert decision.reasoning == "stuck"


@pytest.mark.parametrize(
    ("msg", "error", "raw"),
    [
        (message(content="I will move left"), "no tool call in the reply (expected a call to interact or terminate)",
         "I will move left"),
        (message(), "empty reply: no content and no tool call", ""),
        (message(call("jump", args(height=3))), "unknown tool 'jump' (expected interact or terminate)",
         args(height=3)),
        (message(call("interact", '{"actions": ["noop"')), "arguments of interact are not valid JSON (",
         '{"actions": ["noop"'),
        (message(call("interact", '["noop"]')), "arguments of interact must be a JSON object, got array", '["noop"]'),
        (message(call("interact", args(actions=["noop", "foo"], reasoning="r"))),
         "unknown action name 'foo' (valid: noop, move_left,", None),
        (message(call("interact", args(actions=["noop"] * 7, reasoning="r"))), "too many actions (7 > 5)", None),
        (message(call("interact", args(reasoning="r"))), "interact: missing field 'actions'", None),
        (message(call("interact", args(actions=["noop"]))), "interact: missing field 'reasoning'", None),
        (message(call("interact", args(actions=[], reasoning="r"))),
         "interact: 'actions' is empty (expected 1-5 actions)", None),
        (message(call("interact", args(actions="noop", reasoning="r"))),
         "interact: 'actions' must be an array of action names, got string", None),
        (message(call("interact", args(actions=["noop", 3], reasoning="r"))),
         "interact: action 2 must be a string, got number", None),
        (message(call("interact", args(actions=["Move_Left"], reasoning="r"))),
         "unknown action name 'Move_Left'", None),
        (message(call("interact", args(actions=["noop"], reasoning=5))),
         "interact: 'reasoning' must be a string, got number", None),
        (message(call("terminate", "{}")), "terminate: missing field 'reason'", "{}"),
    ],
)
def test_each_malformed_reply_is_an_invalid_decision_with_a_precise_error(msg, error, raw):
    decision = decision_from_message(msg)
    assert decision.valid is False
    assert decision.actions == [] and decision.terminate is False
    assert decision.error.startswith(error), decision.error
    expected_raw = raw if raw is not None else msg["tool_calls"][0]["function"]["arguments"]
    assert decision.raw == expected_raw
    assert decision.assistant_message["role"] == "assistant"


def test_only_the_first_interact_runs_and_the_others_are_recorded():
    msg = message(call("terminate", args(reason="x"), "c1"),
                  call("interact", args(actions=["do"], reasoning="first"), "c2"),
                  call("interact", args(actions=["noop"], reasoning="second"), "c3"))
    decision = decision_from_message(msg)
    assert decision.valid and decision.actions == ["do"] and decision.reasoning == "first"
    assert decision.terminate is False
    assert decision.extra["ignored_tool_calls"] == ["terminate", "interact"]
    assert [c["id"] for c in decision.assistant_message["tool_calls"]] == ["c1", "c2", "c3"]


def test_cut_off_reply_says_so_and_a_call_without_id_gets_one():
    msg = {"role": "assistant", "content": None,
           "tool_calls": [{"type": "function", "function": {"name": "interact", "arguments": '{"act'}}]}
    decision = decision_from_message(msg, "length")
    assert not decision.valid
    assert "finish_reason=length" in decision.error
    assert decision.assistant_message["tool_calls"][0]["id"] == "call_0"


def test_completion_body_tokens_and_missing_parts():
    body = {"choices": [{"message": message(call("interact", args(actions=["do"], reasoning="r"))),
                         "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 9, "total_tokens": 129}}
    decision = decision_from_completion(body)
    assert (decision.prompt_tokens, decision.completion_tokens) == (120, 9)
    del body["usage"]
    assert decision_from_completion(body).extra["usage_missing"] is True
    empty = decision_from_completion({"choices": []})
    assert not empty.valid and empty.error == "reply has no choices[0].message"


def test_redact_url_drops_credentials_and_query():
    assert redact_url("https://user:pw@host.example:8443/v1?key=abc#x") == "https://host.example:8443/v1"


# --------------------------------------------------------------------------- over HTTP
async def test_tool_call_becomes_a_decision_with_tokens_and_latency(openai_double, observation):
    openai_double.push(interact("move_up", "do", reasoning="water north", usage=(321, 17)))
    agent = agent_for(openai_double)
    try:
        decision = await agent.act(observation, [])
    finally:
        await agent.aclose()
    assert decision.valid and decision.actions == ["move_up", "do"]
    assert decision.reasoning == "water north"
    assert (decision.prompt_tokens, decision.completion_tokens) == (321, 17)
    assert decision.latency_ms > 0
    assert decision.assistant_message["tool_calls"][0]["id"] == "call_0_0"
    sent = openai_double.chat_requests[0].json
    assert sent["model"] == "double-model"
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto"
    assert sent["temperature"] == 0.0 and sent["max_tokens"] == 512
    assert sent["messages"] == [{"role": "system", "content": SYSTEM_PROMPT},
                                {"role": "user", "content": observation.text}]


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (text("Let me think about it."), "no tool call in the reply"),
        (bad_json('{"actions": ["do",'), "arguments of interact are not valid JSON"),
        (interact("do", "fly"), "unknown action name 'fly'"),
        (interact(*["noop"] * 7), "too many actions (7 > 5)"),
        (tool_call("craft", {"item": "sword"}), "unknown tool 'craft'"),
        (tool_call("interact", {"actions": ["do"]}), "interact: missing field 'reasoning'"),
    ],
)
async def test_malformed_replies_over_http_are_invalid_turns(openai_double, observation, reply, error):
    openai_double.push(reply)
    agent = agent_for(openai_double)
    try:
        decision = await agent.act(observation, [])
    finally:
        await agent.aclose()
    assert decision.valid is False and decision.actions == []
    assert decision.error.startswith(error), decision.error
    assert decision.raw
    assert decision.prompt_tokens > 0  # tokens are still accounted for invalid turns


async def test_terminate_and_several_calls_over_http(openai_double, observation):
    openai_double.push(terminate("nothing left to do"),
                       many_calls(interact("do", reasoning="a"), interact("noop", reasoning="b")))
    agent = agent_for(openai_double)
    try:
        first = await agent.act(observation, [])
        second = await agent.act(observation, [])
    finally:
        await agent.aclose()
    assert first.terminate and first.valid and first.reasoning == "nothing left to do"
    assert second.actions == ["do"] and second.extra["ignored_tool_calls"] == ["interact"]


async def test_429_with_retry_after_is_retried_then_succeeds(openai_double, observation):
    openai_double.push(http_error(429, retry_after="0.2", message="slow down"), interact("do"))
    agent = agent_for(openai_double)
    try:
        decision = await agent.act(observation, [])
    finally:
        await agent.aclose()
    assert decision.valid and decision.actions == ["do"]
    assert decision.extra["retries"] == 1
    first, second = openai_double.chat_requests
    assert second.received_at - first.received_at >= 0.19  # Retry-After honoured
    assert second.json == first.json


async def test_500_is_retried_then_succeeds(openai_double, observation):
    openai_double.push(http_error(500, retry_after="0"), http_error(503, retry_after="0.01"), interact("noop"))
    agent = agent_for(openai_double)
    try:
        decision = await agent.act(observation, [])
    finally:
        await agent.aclose()
    assert decision.valid and decision.actions == ["noop"]
    assert decision.extra["retries"] == 2
    assert len(openai_double.chat_requests) == 3


async def test_exhausted_retries_raise_a_clear_error_without_the_key(openai_double, observation):
    echo = f"rate limited for key {KEY}"
    openai_double.push(*[http_error(429, retry_after="0.01", message=echo)] * 2)
    agent = agent_for(openai_double, max_retries=1)
    try:
        with pytest.raises(LLMCallError) as caught:
            await agent.act(observation, [])
    finally:
        await agent.aclose()
    text_ = str(caught.value)
    assert "HTTP 429 after 1 retries" in text_ and openai_double.base_url in text_
    assert KEY not in text_ and "***" in text_
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert len(openai_double.chat_requests) == 2


async def test_auth_error_is_not_retried(openai_double, observation):
    openai_double.push(http_error(401, message="invalid key"))
    agent = agent_for(openai_double)
    try:
        with pytest.raises(LLMCallError, match=r"HTTP 401: invalid key \(check OPENAI_API_KEY"):
            await agent.act(observation, [])
    finally:
        await agent.aclose()
    assert len(openai_double.chat_requests) == 1


@pytest.mark.parametrize("transport", ["lean", "sdk"])
async def test_timeout_and_connection_failure_are_clear_errors(openai_double, observation, transport):
    def build(base_url: str, timeout: float) -> OpenAIAgent:
        client = None if transport == "lean" else openai.AsyncOpenAI(
            base_url=base_url, api_key=KEY, timeout=timeout, max_retries=0)
        return OpenAIAgent("m", base_url=base_url, api_key=KEY, timeout=timeout, max_retries=0, client=client)

    openai_double.push(delayed(3000, interact("do")))
    agent = build(openai_double.base_url, 0.2)
    try:
        with pytest.raises(LLMCallError, match=r"timed out after 0.2 s"):
            await agent.act(observation, [])
    finally:
        await agent.aclose()
        if transport == "sdk":  # an injected client is closed by its owner
            await agent._client.close()
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    agent = build(f"http://127.0.0.1:{port}/v1", 2.0)
    try:
        with pytest.raises(LLMCallError, match=r"could not connect to model endpoint http://127.0.0.1"):
            await agent.act(observation, [])
    finally:
        await agent.aclose()
        if transport == "sdk":
            await agent._client.close()


@pytest.mark.parametrize("script", [
    [http_error(401, message="invalid key")],
    [http_error(404, message="no such model")],
    [http_error(429, retry_after="0.01", message=f"rate limited for key {KEY}")] * 2,
    [http_error(500, retry_after="0.01", message="boom")] * 2,
    [ScriptedReply(raw_body=b"<html>gateway</html>")],
], ids=["401", "404", "429-exhausted", "500-exhausted", "not-json"])
async def test_lean_client_and_sdk_fail_with_the_same_words(openai_double, observation, script):
    def sdk_agent() -> OpenAIAgent:
        sdk = openai.AsyncOpenAI(base_url=openai_double.base_url, api_key=KEY, timeout=5.0, max_retries=1)
        return OpenAIAgent("double-model", base_url=openai_double.base_url, api_key=KEY, timeout=5.0,
                           max_retries=1, client=sdk)

    words = []
    for build in (lambda: agent_for(openai_double, max_retries=1), sdk_agent):
        openai_double.set_script(list(script))
        agent = build()
        try:
            with pytest.raises(LLMCallError) as caught:
                await agent.act(observation, [])
        finally:
            await agent.aclose()
            if not agent._owns_client:
                await agent._client.close()
        words.append(str(caught.value))
    lean, sdk = words
    assert lean == sdk
    assert KEY not in lean
    assert len(openai_double.chat_requests) == 2 * len(script)  # the same number of attempts each


def test_the_lean_client_is_the_default_and_a_proxy_falls_back_to_the_sdk(monkeypatch):
    from crafter_tui.agents.transport.lean import ChatClient

    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    agent = OpenAIAgent("m", base_url="https://api.openai.com/v1", api_key=KEY)
    assert isinstance(agent._client, ChatClient)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    agent = OpenAIAgent("m", base_url="https://api.openai.com/v1", api_key=KEY)
    assert isinstance(agent._client.sdk, openai.AsyncOpenAI)
    assert agent._client.api_key == KEY and agent._client.sdk.max_retries == agent.max_retries


def _history(n: int) -> list[HistoryTurn]:
    return [HistoryTurn(observation=f"observation {i}",
                        assistant=interact_message(["do"], f"reason {i}", f"call_h{i}"),
                        tool_result=f"Executed 1 action(s): do. (turn {i})") for i in range(n)]


async def test_history_window_is_sent_with_matching_tool_call_ids(openai_double, observation):
    openai_double.push(interact("do"), interact("do"))
    history = _history(6)
    agent = agent_for(openai_double, history_turns=2)
    zero = agent_for(openai_double, history_turns=0)
    try:
        await agent.act(observation, history)
        await zero.act(observation, history)
    finally:
        await agent.aclose()
        await zero.aclose()
    windowed, bare = (r.messages for r in openai_double.chat_requests)
    assert [m["role"] for m in windowed] == ["system", "user", "assistant", "tool", "user", "assistant", "tool", "user"]
    user_contents = [m["content"] for m in windowed if m["role"] == "user"]
    assert user_contents == ["observation 4", "observation 5", observation.text]
    for assistant, tool in ((windowed[2], windowed[3]), (windowed[5], windowed[6])):
        assert tool["tool_call_id"] == assistant["tool_calls"][0]["id"]
    assert windowed[3]["content"] == "Executed 1 action(s): do. (turn 4)"
    assert windowed[2] == history[4].assistant
    assert [m["role"] for m in bare] == ["system", "user"]


async def test_invalid_turn_replayed_in_history_keeps_its_call_id(openai_double, observation):
    openai_double.push(bad_json('{"actions": [', call_id="call_bad"), interact("do"))
    agent = agent_for(openai_double)
    try:
        bad = await agent.act(observation, [])
        history = [HistoryTurn(observation.text, bad.assistant_message, f"Error: {bad.error}.")]
        await agent.act(observation, history)
    finally:
        await agent.aclose()
    sent = openai_double.chat_requests[1].messages
    assert sent[2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_bad", "type": "function", "function": {"name": "interact", "arguments": '{"actions": ['}}]}
    assert sent[3]["role"] == "tool" and sent[3]["tool_call_id"] == "call_bad"


async def test_key_only_in_the_authorization_header_and_never_in_results(openai_double, observation):
    openai_double.push(interact("do"), text("no"), http_error(500, retry_after="0.01"), interact("noop"))
    agent = agent_for(openai_double)
    try:
        decisions = [await agent.act(observation, _history(2)) for _ in range(3)]
        settings = json.dumps(agent.settings)
        attributes = repr(vars(agent).keys()) + repr({k: v for k, v in vars(agent).items() if k != "_client"})
    finally:
        await agent.aclose()
    for request in openai_double.requests:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        others = {k: v for k, v in request.headers.items() if k != "authorization"}
        assert KEY not in json.dumps(others) and KEY not in request.body.decode()
    for decision in decisions:
        assert KEY not in repr(decision) and KEY not in json.dumps(dataclasses.asdict(decision))
    assert KEY not in settings and KEY not in attributes


async def test_exhausted_script_fails_fast(openai_double, observation):
    agent = agent_for(openai_double)
    try:
        with pytest.raises(LLMCallError, match="script exhausted"):
            await agent.act(observation, [])
    finally:
        await agent.aclose()
    assert len(openai_double.chat_requests) == 1  # x-should-retry: false


async def test_a_body_that_is_not_json_is_an_endpoint_error(openai_double, observation):
    openai_double.push(ScriptedReply(raw_body=b"<html>gateway says hello</html>"))
    agent = agent_for(openai_double)
    try:
        with pytest.raises(LLMCallError, match=r"returned a body that is not JSON: '<html>gateway"):
            await agent.act(observation, [])
    finally:
        await agent.aclose()


async def test_policy_double_in_its_own_process_answers_after_its_latency(observation):
    with DoubleProcess(latency_ms=50, actions_per_turn=2) as double:
        agent = OpenAIAgent("policy", base_url=double.base_url, api_key=KEY, max_retries=0)
        try:
            decisions = [await agent.act(observation, []) for _ in range(2)]
        finally:
            await agent.aclose()
    assert [d.actions for d in decisions] == [["move_left", "do"], ["move_up", "do"]]
    assert all(d.valid and d.latency_ms >= 50 and d.prompt_tokens > 0 for d in decisions)


# --------------------------------------------------------------------------- config and factory
def test_from_config_and_factory_read_the_config_sections():
    config = AppConfig()
    config.openai.base_url = "http://127.0.0.1:9/v1"
    config.openai.api_key = SecretStr(KEY)
    config.openai.timeout = 7.5
    config.openai.max_retries = 3
    config.eval.temperature = 0.7
    config.eval.max_tokens = 99
    config.eval.history_turns = 6
    for agent in (OpenAIAgent.from_config(config, "m1"), make_agent("openai", model="m1", config=config)):
        assert isinstance(agent, OpenAIAgent) and agent.kind == "openai" and agent.model == "m1"
        assert agent.needs_semantic_map is False and agent.system_prompt == SYSTEM_PROMPT
        assert (agent.timeout, agent.max_retries, agent.temperature, agent.max_tokens, agent.history_turns) == (
            7.5, 3, 0.7, 99, 6)
        assert agent._client.max_retries == 3 and agent._client.api_key == KEY
        assert KEY not in repr(agent.settings)


def test_openai_host_needs_a_key_and_gets_max_completion_tokens(observation):
    with pytest.raises(Exception, match=r"no API key for api.openai.com"):
        OpenAIAgent("gpt-x", base_url="https://api.openai.com/v1")
    agent = OpenAIAgent("gpt-x", base_url="https://api.openai.com/v1", api_key=KEY, max_tokens=64)
    body = agent.request_body(observation, [])
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body
    with pytest.raises(Exception, match="needs a model name"):
        OpenAIAgent("", base_url="http://127.0.0.1:9/v1")


async def test_sampled_turns_carry_a_seed_from_the_episode_seed_and_the_turn(observation):
    """A server that honours ``seed`` then replays a sampled episode; greedy turns send none."""
    import dataclasses

    greedy = OpenAIAgent("m", base_url="http://127.0.0.1:9/v1", temperature=0.0)
    assert "seed" not in greedy.request_body(observation, [])
    sampled = OpenAIAgent("m", base_url="http://127.0.0.1:9/v1", temperature=0.7)
    await sampled.start_episode(5)
    first = sampled.request_body(observation, [])["seed"]
    later = sampled.request_body(dataclasses.replace(observation, turn=1), [])["seed"]
    await sampled.start_episode(6)
    other_episode = sampled.request_body(observation, [])["seed"]
    await sampled.start_episode(5)
    assert sampled.request_body(observation, [])["seed"] == first
    assert len({first, later, other_episode}) == 3


# --------------------------------------------------------------------------- end to end through the runner
def _policy_with_invalid_replies(request):
    """Every third reply is plain text (an invalid turn); the rest are valid moves."""
    if request.index % 3 == 1:
        return text("I am not sure what to do.")
    return interact("move_left" if request.index % 2 else "do", reasoning="e2e")


def test_rollout_against_the_double_counts_invalid_turns_and_writes_no_key(monkeypatch, tmp_path):
    from crafter_tui.cli import main

    with OpenAIDouble(_policy_with_invalid_replies) as double:
        monkeypatch.setenv("OPENAI_BASE_URL", double.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        out = tmp_path / "traces"
        code = main(["rollout", "--agent", "openai", "--model", "double-model", "--episodes", "2",
                     "--max-turns", "6", "--max-steps", "50", "--difficulty", "peaceful", "--concurrency", "2",
                     "--out", str(out), "--quiet", "--json"])
        served = len(double.chat_requests)
        invalid_served = sum(1 for r in double.chat_requests if r.index % 3 == 1)
    assert code == 0
    assert served == 12
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"run.json", "turns.jsonl", "steps.jsonl", "episodes.jsonl"}
    for path in files:
        assert KEY not in path.read_text(encoding="utf-8", errors="replace"), path
    summaries = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert len(summaries) == 2 and all(s["turns"] == 6 for s in summaries)
    assert sum(s["invalid_actions"] for s in summaries) == invalid_served == 4
    turns = [json.loads(line) for line in (run_dir / "turns.jsonl").read_text().splitlines()]
    invalid = [t for t in turns if not t["valid"]]
    assert len(invalid) == 4
    assert all(t["error"].startswith("no tool call") and t["raw"] == "I am not sure what to do." for t in invalid)
    assert sum(s["prompt_tokens"] for s in summaries) > 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["endpoint"] == double.base_url


def test_an_empty_reply_is_kept_as_empty_text_so_the_next_prompt_is_accepted():
    """A model that answers nothing (no content, no call) must not break the next request: history
    re-sends its turn, and an assistant message with neither content nor calls is refused by
    OpenAI and by our own service (``trainer.data.normalise_message``)."""
    from crafter_tui.finetune.trainer.data import normalise_message

    decision = decision_from_message({"role": "assistant", "content": None})
    assert not decision.valid and decision.error.startswith("empty reply")
    assert decision.assistant_message == {"role": "assistant", "content": ""}
    assert normalise_message(decision.assistant_message, "history")["content"] == ""
