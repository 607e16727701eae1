"""Check a chat fine-tuning JSONL file before paying for a job.

The checks are the OpenAI cookbook's chat data preparation (format error classes, missing
system/user warnings, token counts and distributions, per-model limits, default epochs,
cost), extended to tool-format data: ``tools`` well-formed, ``tool_calls`` well-formed with
JSON-object arguments naming a listed tool and carrying its required arguments, and every
``tool`` message answering an open call id. Every issue names its line. This is a pure
library function: the CLI prints the report and the fine-tuning helper calls it before upload.
"""

from __future__ import annotations

import statistics
from collections import Counter as CountMap
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from crafter_tui.dataset.tokens import (
    PRICE_TABLE_DATE, counter_for, default_epochs, example_tokens, token_limit, training_price,
    training_cost,
)
from crafter_tui.errors import UserError
from crafter_tui.traces.jsonl import loads_bounded

DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"
MIN_EXAMPLES = 10
MESSAGE_KEYS = frozenset({"role", "content", "name", "function_call", "weight", "tool_calls", "tool_call_id"})
ROLES = frozenset({"system", "user", "assistant", "tool", "function"})
TOP_KEYS = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
MAX_ISSUES_PER_CODE = 1000  # keep the report bounded on a badly broken file; counts stay exact


class Issue(BaseModel):
    """One problem: the 1-based line of the file, a stable code and a readable message."""

    line: int
    code: str
    message: str


class Distribution(BaseModel):
    count: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    median: float | None = None
    p5: float | None = None
    p95: float | None = None

    @classmethod
    def of(cls, values: list[int]) -> Distribution:
        if not values:
            return cls(count=0)
        ordered = sorted(values)

        def pct(q: float) -> float:
            return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])

        return cls(count=len(values), min=ordered[0], max=ordered[-1], mean=statistics.fmean(values),
                   median=float(statistics.median(ordered)), p5=pct(0.05), p95=pct(0.95))


class ValidationReport(BaseModel):
    """Everything ``validate_file`` found. ``ok`` is False when there is any error."""

    path: str
    model: str
    lines: int
    examples: int
    errors: list[Issue]
    warnings: list[Issue]
    error_counts: dict[str, int]
    warning_counts: dict[str, int]
    encoding: str
    encoding_note: str | None = None
    messages_per_example: Distribution
    tokens_per_example: Distribution
    assistant_tokens_per_example: Distribution
    token_limit: int
    examples_over_limit: int
    epochs: int
    billed_tokens: int
    estimated_cost_usd: float | None
    price_date: str

    @property
    def ok(self) -> bool:
        return not self.error_counts


def one_line(message: str) -> str:
    """``message`` with the control characters the data put in it (a key, an id) escaped: one line, always."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


class _Collector:
    def __init__(self) -> None:
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []
        self.error_counts: CountMap[str] = CountMap()
        self.warning_counts: CountMap[str] = CountMap()

    def error(self, line: int, code: str, message: str) -> None:
        self.error_counts[code] += 1
        if self.error_counts[code] <= MAX_ISSUES_PER_CODE:
            self.errors.append(Issue(line=line, code=code, message=one_line(message)))

    def warn(self, line: int, code: str, message: str) -> None:
        self.warning_counts[code] += 1
        if self.warning_counts[code] <= MAX_ISSUES_PER_CODE:
            self.warnings.append(Issue(line=line, code=code, message=one_line(message)))


def validate_file(path: Path | str, model: str = DEFAULT_MODEL, *, epochs: int | None = None) -> ValidationReport:
    """Validate a chat fine-tuning JSONL file for ``model``; raises ``UserError`` if it cannot be read."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UserError(f"cannot read dataset: {exc.strerror or exc}", where=str(path)) from None
    found = _Collector()
    counter = counter_for(model)
    limit = token_limit(model)
    n_messages: list[int] = []
    n_tokens: list[int] = []
    n_assistant: list[int] = []
    lines = examples = over = 0
    with handle:
        for number, raw in enumerate(handle, start=1):
            lines = number
            example = _parse_line(raw, number, found)
            if example is None:
                continue
            examples += 1
            if not _check_example(example, number, found):
                continue
            messages = example["messages"]
            total, assistant = example_tokens(counter, messages, example.get("tools"))
            n_messages.append(len(messages))
            n_tokens.append(total)
            n_assistant.append(assistant)
            if total > limit:
                over += 1
                found.warn(number, "over_token_limit",
                           f"{total} tokens > {limit} for {model}: the example will be truncated")
    if lines == 0:  # nothing to train on (a file of bad lines has errors of its own)
        found.error(0, "no_examples", "the file is empty: it holds no examples")
    elif examples < MIN_EXAMPLES:
        found.warn(0, "too_few_examples", f"{examples} examples; at least {MIN_EXAMPLES} are required")
    n_epochs = epochs or default_epochs(examples)
    billed = sum(min(limit, n) for n in n_tokens)
    return ValidationReport(
        path=str(path), model=model, lines=lines, examples=examples, errors=found.errors, warnings=found.warnings,
        error_counts=dict(found.error_counts), warning_counts=dict(found.warning_counts),
        encoding=counter.name, encoding_note=counter.note,
        messages_per_example=Distribution.of(n_messages), tokens_per_example=Distribution.of(n_tokens),
        assistant_tokens_per_example=Distribution.of(n_assistant), token_limit=limit, examples_over_limit=over,
        epochs=n_epochs, billed_tokens=billed, estimated_cost_usd=training_cost(model, billed, n_epochs),
        price_date=PRICE_TABLE_DATE if training_price(model) is not None else "",
    )


def _parse_line(raw: bytes, number: int, found: _Collector) -> dict[str, Any] | None:
    if not raw.strip():
        found.error(number, "blank_line", "empty line (every line must be one JSON object)")
        return None
    try:
        value = loads_bounded(raw)
    except ValueError as exc:
        found.error(number, "invalid_json", f"not valid JSON: {exc}")
        return None
    if not isinstance(value, dict):
        found.error(number, "data_type", f"expected a JSON object, got {type(value).__name__}")
        return None
    return value


def _check_example(example: dict[str, Any], number: int, found: _Collector) -> bool:
    """Cookbook format checks plus tool checks; True when tokens can be counted."""
    before = sum(found.error_counts.values())
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        found.error(number, "missing_messages_list", "'messages' must be a non-empty list")
        return False
    for key in example:
        if key not in TOP_KEYS:
            found.warn(number, "unrecognized_top_key", f"key {key!r} is not part of the chat format")
    tools = _check_tools(example.get("tools"), number, found)
    roles = [_check_message(message, index, number, found) for index, message in enumerate(messages)]
    if "assistant" not in roles:
        found.error(number, "example_missing_assistant_message", "no assistant message to learn from")
    if "system" not in roles:
        found.warn(number, "missing_system_message", "no system message")
    if "user" not in roles:
        found.warn(number, "missing_user_message", "no user message")
    _check_calls(messages, tools, number, found)
    return sum(found.error_counts.values()) == before


def _check_message(message: Any, index: int, number: int, found: _Collector) -> str | None:
    where = f"message {index}"
    if not isinstance(message, dict):
        found.error(number, "data_type", f"{where}: expected an object")
        return None
    role = message.get("role")
    has_call = bool(message.get("tool_calls") or message.get("function_call"))
    if "role" not in message or ("content" not in message and not has_call):
        missing = "role" if "role" not in message else "content"
        found.error(number, "message_missing_key", f"{where}: missing '{missing}'")
    unknown = sorted(key for key in message if key not in MESSAGE_KEYS)
    if unknown:
        found.error(number, "message_unrecognized_key", f"{where}: unrecognized key(s) {', '.join(unknown)}")
    if role not in ROLES:
        found.error(number, "unrecognized_role", f"{where}: role {role!r} is not one of {', '.join(sorted(ROLES))}")
    content = message.get("content")
    if not has_call and (not isinstance(content, str) or not content):
        found.error(number, "missing_content", f"{where}: content must be a non-empty string")
    elif has_call and content is not None and not isinstance(content, str):
        found.error(number, "missing_content", f"{where}: content must be a string or null")
    if has_call and role != "assistant":
        found.error(number, "tool_call_role", f"{where}: only assistant messages may call tools")
    if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)):
        found.error(number, "invalid_weight", f"{where}: weight must be 0 or 1 and only on assistant messages")
    return role if isinstance(role, str) else None


def _check_tools(tools: Any, number: int, found: _Collector) -> dict[str, dict[str, Any]] | None:
    """name -> parameters schema of the example's tools (None when the example lists none)."""
    if tools is None:
        return None
    if not isinstance(tools, list):
        found.error(number, "tools_malformed", "'tools' must be a list")
        return {}
    named: dict[str, dict[str, Any]] = {}
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(name, str) or not name:
            found.error(number, "tools_malformed", f"tool {index}: expected {{'type': 'function', 'function': "
                                                   f"{{'name': ..., 'parameters': {{...}}}}}}")
            continue
        parameters = function.get("parameters", {})
        if not isinstance(parameters, dict):
            found.error(number, "tools_malformed", f"tool {name!r}: 'parameters' must be a JSON schema object")
            parameters = {}
        named[name] = parameters
    return named


def _check_calls(messages: list[Any], tools: dict[str, dict[str, Any]] | None, number: int,
                 found: _Collector) -> None:
    """Calls well-formed, arguments valid, and each tool message answers an open call."""
    open_ids: set[str] = set()
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in open_ids:
                found.error(number, "tool_message_unanswered",
                            f"message {index}: tool message answers no open call (tool_call_id={call_id!r})")
            else:
                open_ids.discard(call_id)
            continue
        if open_ids:
            found.error(number, "tool_call_unanswered",
                        f"message {index}: call(s) {', '.join(sorted(open_ids))} got no tool message")
            open_ids.clear()
        if "tool_calls" in message:
            open_ids = _check_call_list(message["tool_calls"], tools, index, number, found)


def _check_call_list(calls: Any, tools: dict[str, dict[str, Any]] | None, index: int, number: int,
                     found: _Collector) -> set[str]:
    ids: set[str] = set()
    if not isinstance(calls, list) or not calls:
        found.error(number, "tool_calls_malformed", f"message {index}: tool_calls must be a non-empty list")
        return ids
    for k, call in enumerate(calls):
        where = f"message {index} call {k}"
        function = call.get("function") if isinstance(call, dict) else None
        if (not isinstance(call, dict) or not isinstance(call.get("id"), str) or call.get("type") != "function"
                or not isinstance(function, dict) or not isinstance(function.get("name"), str)
                or not isinstance(function.get("arguments"), str)):
            found.error(number, "tool_calls_malformed",
                        f"{where}: expected {{'id': str, 'type': 'function', 'function': {{'name': str, "
                        f"'arguments': str}}}}")
            continue
        ids.add(call["id"])
        name = function["name"]
        if tools is None or name not in tools:
            listed = ", ".join(sorted(tools or {})) or "none"
            found.error(number, "tool_call_unknown_name", f"{where}: tool {name!r} is not in 'tools' ({listed})")
        try:
            arguments = loads_bounded(function["arguments"])
        except ValueError as exc:
            found.error(number, "tool_call_arguments_not_json", f"{where}: arguments are not JSON: {exc}")
            continue
        if not isinstance(arguments, dict):
            found.error(number, "tool_call_arguments_not_json", f"{where}: arguments must be a JSON object")
            continue
        if tools and name in tools:
            missing = [key for key in tools[name].get("required", []) if key not in arguments]
            if missing:
                found.error(number, "tool_call_arguments_schema",
                            f"{where}: {name} is missing required argument(s) {', '.join(missing)}")
    return ids
