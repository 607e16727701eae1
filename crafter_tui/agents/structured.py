"""Whether the ``openai`` agent asks its endpoint for structured output, and the tools it then sends.

An endpoint that constrains decoding (our ``crafter-tui serve``, OpenAI, vLLM) answers
``tool_choice: "required"`` with ``strict: true`` tools by a call that satisfies the schema, so
no turn is lost to a malformed reply. Others may reject ``strict`` or ignore it, so the agent
asks only when ``[openai] structured`` says so: ``"on"``, ``"off"``, or ``"auto"`` (the
default), which is on for our own service, recognised without a request by its address: the
``[finetune] local_url`` the demo and the pipeline serve their models from. Replies are
still validated either way (``replies.decision_from_completion``), so an endpoint that does
not constrain still has its invalid replies recorded.
"""

from __future__ import annotations

import copy
from typing import Any, Literal
from urllib.parse import urlsplit

Structured = Literal["auto", "on", "off"]


def _address(url: str) -> tuple[str, int | None, str]:
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    host = "127.0.0.1" if host in ("localhost", "::1") else host
    return host, parts.port or {"http": 80, "https": 443}.get(parts.scheme), parts.path.rstrip("/")


def wants_structured(setting: Structured, base_url: str, own_service_url: str | None) -> bool:
    """True when the agent should send ``tool_choice: "required"`` and strict tools."""
    if setting != "auto":
        return setting == "on"
    return own_service_url is not None and _address(base_url) == _address(own_service_url)


def strict_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``tools`` in the form OpenAI's strict mode accepts: ``strict: true`` and every object closed
    (``additionalProperties: false``). A tool with an optional property stays non-strict (strict
    mode requires every property), so the copy is always one the endpoint takes."""
    out = []
    for tool in tools:
        tool = copy.deepcopy(tool)
        function = tool.get("function", {})
        parameters = function.get("parameters")
        if isinstance(parameters, dict) and _all_required(parameters):
            _close(parameters)
            function["strict"] = True
        out.append(tool)
    return out


def tool_request(tools: list[dict[str, Any]], tool_choice: str | dict[str, Any] | None,
                 structured: bool) -> tuple[list[dict[str, Any]], str | dict[str, Any]]:
    """(tools, tool_choice) for the request body; an explicit ``tool_choice`` is kept as given."""
    if not structured:
        return tools, tool_choice or "auto"
    return strict_tools(tools), tool_choice or "required"


def _all_required(schema: dict[str, Any]) -> bool:
    properties = schema.get("properties")
    if isinstance(properties, dict):
        if set(properties) - set(schema.get("required") or []):
            return False
        if not all(_all_required(sub) for sub in properties.values() if isinstance(sub, dict)):
            return False
    items = schema.get("items")
    return _all_required(items) if isinstance(items, dict) else True


def _close(schema: dict[str, Any]) -> None:
    if isinstance(schema.get("properties"), dict):
        schema["additionalProperties"] = False
        for sub in schema["properties"].values():
            if isinstance(sub, dict):
                _close(sub)
    if isinstance(schema.get("items"), dict):
        _close(schema["items"])
