"""The ``openai`` agent asks for structured output (tool_choice "required", strict tools) from
endpoints that constrain decoding: ours by address, others when ``[openai] structured = "on"``."""

from __future__ import annotations

import asyncio

import pytest

from crafter_tui.agents.base import TurnObservation
from crafter_tui.agents.openai_agent import OpenAIAgent
from crafter_tui.agents.prompting import TOOLS
from crafter_tui.agents.structured import strict_tools, tool_request, wants_structured
from crafter_tui.config import AppConfig
from crafter_tui.finetune.constrained import check_schema, output_spec
from crafter_tui.world.env import CrafterWorld

LOCAL = "http://127.0.0.1:8000/v1"


@pytest.mark.parametrize(("setting", "url", "expected"), [
    ("auto", "http://127.0.0.1:8000/v1", True),
    ("auto", "http://localhost:8000/v1/", True),
    ("auto", "http://127.0.0.1:8001/v1", False),
    ("auto", "https://api.openai.com/v1", False),
    ("on", "https://api.openai.com/v1", True),
    ("off", "http://127.0.0.1:8000/v1", False),
])
def test_wants_structured(setting, url, expected):
    assert wants_structured(setting, url, LOCAL) is expected


def test_strict_tools_pass_strict_mode_and_leave_the_originals_alone():
    tools = strict_tools(TOOLS)
    for tool in tools:
        assert tool["function"]["strict"] is True
        check_schema(tool["function"]["parameters"], "p", strict=True)
    assert "strict" not in TOOLS[0]["function"] and "additionalProperties" not in TOOLS[0]["function"]["parameters"]
    assert output_spec(tools, "required", None, 96) is not None


def test_a_tool_with_an_optional_property_stays_non_strict():
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string"}}, "required": []}}}
    assert "strict" not in strict_tools([tool])[0]["function"]


def test_explicit_tool_choice_is_kept():
    assert tool_request(TOOLS, None, True)[1] == "required"
    assert tool_request(TOOLS, "auto", True)[1] == "auto"
    assert tool_request(TOOLS, None, False) == (TOOLS, "auto")


def _body(config: AppConfig) -> dict:
    world = CrafterWorld("peaceful", max_steps=10)
    obs = TurnObservation(state=world.reset(1), text="Step 0/10.", turn=0, max_steps=10)
    agent = OpenAIAgent("m", config=config)
    try:
        return agent.request_body(obs, [])
    finally:
        asyncio.run(agent.aclose())


def test_agent_asks_our_own_service_for_structured_output():
    config = AppConfig()
    config.openai.base_url = config.finetune.local_url
    body = _body(config)
    assert body["tool_choice"] == "required" and all(t["function"]["strict"] for t in body["tools"])


def test_agent_leaves_other_endpoints_as_they_were_unless_configured():
    config = AppConfig()
    config.openai.base_url = "http://127.0.0.1:9999/v1"
    body = _body(config)
    assert body["tool_choice"] == "auto" and body["tools"] == TOOLS
    config.openai.structured = "on"
    assert _body(config)["tool_choice"] == "required"
