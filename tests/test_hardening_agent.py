"""Issue 23, model replies: a huge reply is stored and re-sent truncated (an invalid turn), and an error
says how many retries were really made."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from crafter_tui.agents.base import HistoryTurn, TurnObservation
from crafter_tui.agents.openai_agent import LLMCallError, OpenAIAgent
from crafter_tui.agents.transport.sdk import make_sdk_client
from crafter_tui.config import AppConfig
from crafter_tui.world.env import CrafterWorld
from tests.doubles.openai_double import (  # noqa: F401 - openai_double is a pytest fixture
    OpenAIDouble, http_error, interact, openai_double, text,
)

KEY = "sk-test-0123456789abcdef"
LIMIT = 4096


@pytest.fixture(scope="module")
def observation() -> TurnObservation:
    world = CrafterWorld("peaceful", max_steps=100)
    state = world.reset(3)
    return TurnObservation(state=state, text="Step 0/100, turn 0, day. (test observation)", turn=0, max_steps=100)


def _agent(double: OpenAIDouble, sdk: bool = False, **kwargs) -> OpenAIAgent:
    config = AppConfig.model_validate({"openai": {"max_reply_bytes": LIMIT}})
    client = make_sdk_client(double.base_url, KEY, 5.0, kwargs.get("max_retries", 0)) if sdk else None
    return OpenAIAgent("double-model", config=config, base_url=double.base_url, api_key=SecretStr(KEY),
                       client=client, **kwargs)


@pytest.mark.parametrize("sdk", [False, True], ids=["lean", "sdk"])
async def test_a_huge_reply_is_one_invalid_truncated_turn_never_resent_whole(openai_double, observation, sdk):
    openai_double.set_script([text("x" * 200_000), interact("noop")])
    agent = _agent(openai_double, sdk)
    try:
        decision = await agent.act(observation, [])
        assert not decision.valid and "max_reply_bytes" in (decision.error or "")
        content = decision.assistant_message["content"]
        assert 0 < len(content.encode()) <= LIMIT and decision.raw is None
        history = [HistoryTurn(observation.text, decision.assistant_message, None)]
        following = await agent.act(observation, history)
        assert following.valid
        resent = openai_double.chat_requests[-1].messages[2]  # the history carries the truncated text
        assert resent == {"role": "assistant", "content": content}
    finally:
        await agent.aclose()
        if not agent._owns_client:
            await agent._client.close()


async def test_a_too_long_retry_after_is_not_reported_as_retries(openai_double, observation):
    openai_double.set_script([http_error(429, retry_after="100000", message="slow down")] * 4)
    agent = _agent(openai_double, max_retries=3)
    try:
        with pytest.raises(LLMCallError) as caught:
            await agent.act(observation, [])
    finally:
        await agent.aclose()
    assert len(openai_double.chat_requests) == 1  # nothing was retried ...
    assert "answered HTTP 429: slow down" in str(caught.value)  # ... so no "after 3 retries"
    assert "retries" not in str(caught.value)


async def test_retries_really_made_are_reported(openai_double, observation):
    openai_double.set_script([http_error(429, retry_after="0.01", message="slow down")] * 3)
    agent = _agent(openai_double, max_retries=2)
    try:
        with pytest.raises(LLMCallError, match="answered HTTP 429 after 2 retries"):
            await agent.act(observation, [])
    finally:
        await agent.aclose()


async def test_deep_json_from_the_endpoint_is_an_error_not_a_recursionerror(openai_double, observation):
    from tests.doubles.openai_double import ScriptedReply, tool_call

    deep = "[" * 1500 + "]" * 1500  # under max_reply_bytes, past json's recursion limit
    openai_double.set_script([tool_call("interact", deep), ScriptedReply(raw_body=deep.encode())])
    agent = _agent(openai_double)
    try:
        decision = await agent.act(observation, [])
        assert not decision.valid and "nested deeper" in (decision.error or "")
        with pytest.raises(LLMCallError, match="not JSON"):
            await agent.act(observation, [])
    finally:
        await agent.aclose()
