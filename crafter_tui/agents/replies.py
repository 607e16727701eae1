"""Turning a chat-completions reply into an ``AgentDecision``: pure functions, no I/O.

Strict on purpose: a reply is valid only if it calls ``interact`` with 1-5 exact action
names and a reasoning string, or ``terminate`` with a reason. Anything else becomes an
*invalid* decision whose ``error`` says precisely what was wrong and whose ``raw`` keeps the
text the model produced, so traces show why a model fails and the filter can drop or keep
those turns. We never guess what a sloppy reply meant: guessing would hide exactly the
failures fine-tuning is meant to fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from crafter_tui.agents.base import AgentDecision
from crafter_tui.agents.prompting import MAX_ACTIONS_PER_TURN
from crafter_tui.traces.jsonl import loads_bounded
from crafter_tui.world.rules import ACTION_IDS, ACTIONS

INTERACT = "interact"
TERMINATE = "terminate"
KNOWN_TOOLS = (INTERACT, TERMINATE)


@dataclass(slots=True)
class ParsedCall:
    """What one chosen tool call amounts to."""

    actions: list[str] = field(default_factory=list)
    reasoning: str = ""
    terminate: bool = False
    error: str | None = None


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages the model author understands."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def assistant_message(message: dict[str, Any]) -> dict[str, Any]:
    """The assistant message as it can be re-sent in history: role, content, tool calls.

    Strings (content, arguments) are kept byte for byte. Tool calls are reduced to the fields
    every OpenAI-compatible server accepts back (id, type, function name and arguments); a call
    without an id gets ``call_<index>`` so the tool result can still reference it.
    """
    kept: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    calls = message.get("tool_calls") or []
    if calls:
        kept["tool_calls"] = [_normalised_call(call, index) for index, call in enumerate(calls)]
    elif kept["content"] is None:  # an empty reply: re-sent in history as "", which every endpoint takes
        kept["content"] = ""
    return kept


def _normalised_call(call: Any, index: int) -> dict[str, Any]:
    call = call if isinstance(call, dict) else {}
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    arguments = function.get("arguments")
    if arguments is not None and not isinstance(arguments, str):
        arguments = json.dumps(arguments)  # some servers send an object; the API shape is a string
    return {
        "id": str(call.get("id") or f"call_{index}"),
        "type": call.get("type") or "function",
        "function": {"name": function.get("name"), "arguments": arguments if arguments is not None else ""},
    }


def choose_call(calls: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Which call to execute: the first ``interact``, else the first ``terminate``, else the first.

    Returns its index and the names of the calls that are ignored, in order.
    """
    names = [call["function"]["name"] for call in calls]
    for wanted in KNOWN_TOOLS:
        if wanted in names:
            chosen = names.index(wanted)
            break
    else:
        chosen = 0
    ignored = [str(name) for i, name in enumerate(names) if i != chosen]
    return chosen, ignored


def decode_arguments(name: str, arguments: str) -> tuple[dict[str, Any] | None, str | None]:
    """The call's arguments as an object, or an error saying why they are not one."""
    try:
        decoded = loads_bounded(arguments)
    except ValueError as exc:
        return None, f"arguments of {name} are not valid JSON ({exc})"
    if not isinstance(decoded, dict):
        return None, f"arguments of {name} must be a JSON object, got {json_type(decoded)}"
    return decoded, None


def parse_interact(args: dict[str, Any]) -> ParsedCall:
    """Validate ``interact`` arguments: 1-5 known action names and a reasoning string."""
    for required in ("actions", "reasoning"):
        if required not in args:
            return ParsedCall(error=f"interact: missing field '{required}'")
    actions, reasoning = args["actions"], args["reasoning"]
    if not isinstance(actions, list):
        return ParsedCall(error=f"interact: 'actions' must be an array of action names, got {json_type(actions)}")
    if not actions:
        return ParsedCall(error=f"interact: 'actions' is empty (expected 1-{MAX_ACTIONS_PER_TURN} actions)")
    if len(actions) > MAX_ACTIONS_PER_TURN:
        return ParsedCall(error=f"too many actions ({len(actions)} > {MAX_ACTIONS_PER_TURN})")
    for position, action in enumerate(actions, start=1):
        if not isinstance(action, str):
            return ParsedCall(error=f"interact: action {position} must be a string, got {json_type(action)}")
        if action not in ACTION_IDS:
            return ParsedCall(error=f"unknown action name {action!r} (valid: {', '.join(ACTIONS)})")
    if not isinstance(reasoning, str):
        return ParsedCall(error=f"interact: 'reasoning' must be a string, got {json_type(reasoning)}")
    return ParsedCall(actions=list(actions), reasoning=reasoning)


def parse_terminate(args: dict[str, Any]) -> ParsedCall:
    """Validate ``terminate`` arguments: a reason string."""
    if "reason" not in args:
        return ParsedCall(error="terminate: missing field 'reason'")
    if not isinstance(args["reason"], str):
        return ParsedCall(error=f"terminate: 'reason' must be a string, got {json_type(args['reason'])}")
    return ParsedCall(reasoning=args["reason"], terminate=True)


def parse_call(call: dict[str, Any]) -> ParsedCall:
    """Validate one (normalised) tool call."""
    name, arguments = call["function"]["name"], call["function"]["arguments"]
    if name not in KNOWN_TOOLS:
        return ParsedCall(error=f"unknown tool {name!r} (expected interact or terminate)")
    args, error = decode_arguments(name, arguments)
    if args is None:
        return ParsedCall(error=error)
    return parse_interact(args) if name == INTERACT else parse_terminate(args)


def decision_from_message(message: dict[str, Any], finish_reason: str | None = None) -> AgentDecision:
    """The decision one assistant message amounts to (tokens and latency are the caller's)."""
    kept = assistant_message(message)
    calls = kept.get("tool_calls") or []
    extra: dict[str, Any] = {}
    if finish_reason is not None:
        extra["finish_reason"] = finish_reason
    if not calls:
        content = kept.get("content")
        error = ("no tool call in the reply (expected a call to interact or terminate)" if content
                 else "empty reply: no content and no tool call")
        raw = content if isinstance(content, str) else ""
        return _invalid(kept, _with_cutoff_hint(error, finish_reason), raw, extra)
    chosen, ignored = choose_call(calls)
    if ignored:
        extra["ignored_tool_calls"] = ignored
    call = calls[chosen]
    parsed = parse_call(call)
    if parsed.error is not None:
        return _invalid(kept, _with_cutoff_hint(parsed.error, finish_reason), call["function"]["arguments"], extra)
    return AgentDecision(actions=parsed.actions, reasoning=parsed.reasoning, assistant_message=kept,
                         terminate=parsed.terminate, extra=extra)


def decision_from_text(message: dict[str, Any], finish_reason: str | None = None) -> AgentDecision:
    """The decision of a reply that writes its call as text (a model trained on ``--text-actions`` data).

    The content must be what the export wrote for a call: the ``interact`` arguments as a JSON object
    (``{"actions": [...], "reasoning": ...}``), or ``{"tool": "terminate", "reason": ...}``. The same
    checks as a tool call's arguments apply; nothing else is guessed.
    """
    content = message.get("content")
    kept = {"role": "assistant", "content": content if isinstance(content, str) else ""}
    extra: dict[str, Any] = {"finish_reason": finish_reason} if finish_reason is not None else {}
    if not isinstance(content, str) or not content.strip():
        return _invalid(kept, _with_cutoff_hint("empty reply: no text", finish_reason), "", extra)
    args, error = decode_arguments("the reply", content)
    if args is None:
        return _invalid(kept, _with_cutoff_hint(error or "not a JSON object", finish_reason), content, extra)
    if args.get("tool") == TERMINATE:
        parsed = parse_terminate(args)
    elif "tool" in args and args["tool"] != INTERACT:
        parsed = ParsedCall(error=f"unknown tool {args['tool']!r} (expected interact or terminate)")
    else:
        parsed = parse_interact({k: v for k, v in args.items() if k != "tool"})
    if parsed.error is not None:
        return _invalid(kept, _with_cutoff_hint(parsed.error, finish_reason), content, extra)
    return AgentDecision(actions=parsed.actions, reasoning=parsed.reasoning, assistant_message=kept,
                         terminate=parsed.terminate, extra=extra)


def decision_from_completion(body: Any, *, text_actions: bool = False) -> AgentDecision:
    """The decision a whole ``chat.completion`` response body amounts to, with token usage
    (``text_actions``: the reply writes its call as text, see ``decision_from_text``)."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict) \
            or not isinstance(choices[0].get("message"), dict):
        raw = json.dumps(body)[:2000]
        return _invalid({"role": "assistant", "content": None}, "reply has no choices[0].message", raw, {})
    choice = choices[0]
    read = decision_from_text if text_actions else decision_from_message
    decision = read(choice["message"], choice.get("finish_reason"))
    usage = body.get("usage")
    if isinstance(usage, dict):
        decision.prompt_tokens = _count(usage.get("prompt_tokens"))
        decision.completion_tokens = _count(usage.get("completion_tokens"))
    else:
        decision.extra["usage_missing"] = True
    return decision


def _count(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else 0


def _with_cutoff_hint(error: str, finish_reason: str | None) -> str:
    if finish_reason == "length":
        return error + " (the reply was cut off at max_tokens: finish_reason=length)"
    return error


def _invalid(kept: dict[str, Any], error: str, raw: str, extra: dict[str, Any]) -> AgentDecision:
    return AgentDecision(actions=[], reasoning="", assistant_message=kept, valid=False, error=error,
                         raw=raw, extra=extra)


def truncated_reply(body: bytes | str, limit: int) -> AgentDecision:
    """The invalid decision for a reply larger than ``limit`` bytes (``[openai] max_reply_bytes``).

    Its first ``limit`` bytes are kept as the assistant's text (what the history re-sends and the trace
    stores, once), the rest is dropped: a 100 MB reply used to be stored twice a turn and re-sent.
    """
    data = body.encode("utf-8", "replace") if isinstance(body, str) else body
    text = data[:limit].decode("utf-8", "ignore")
    return _invalid({"role": "assistant", "content": text},
                    f"reply larger than {limit} bytes ([openai] max_reply_bytes): recorded truncated, not played",
                    None, {"reply_truncated": True})
