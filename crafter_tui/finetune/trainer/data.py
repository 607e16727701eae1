"""Chat JSONL -> token rows with labels only on assistant tokens.

The input is the OpenAI chat fine-tuning format: one JSON object per line with
``messages`` (system/user/assistant/tool, assistant ``tool_calls``) and optional ``tools``.
Each line becomes ONE training sequence with the loss on every assistant message (like
OpenAI's fine-tuning, and free: no extra forward passes per turn); an assistant message
with ``"weight": 0`` is left out of the loss. Rows are tokenized here rather than by TRL
so that an over-long conversation loses its *oldest* turns (what the agent's history
window does at play time) instead of being cut on the right, which would cut the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from crafter_tui.errors import UserError

ROLES = {"system", "user", "assistant", "tool"}
IGNORE_INDEX = -100


@dataclass(slots=True)
class ChatExample:
    """One validated conversation and where it came from (for error messages)."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    where: str


@dataclass(slots=True)
class TokenRow:
    """A training sequence: token ids and labels (``-100`` outside assistant spans)."""

    input_ids: list[int]
    labels: list[int]


def _content_text(content: Any, where: str) -> str | None:
    """Plain text of a message's content (a string or a list of text parts)."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise UserError("only text content parts are supported", where=where)
            parts.append(part["text"])
        return "".join(parts)
    raise UserError(f"content must be a string, a list of text parts or null, not {type(content).__name__}",
                    where=where)


def _normalise_tool_call(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise UserError("each tool call needs a 'function' object", where=where)
    function = call["function"]
    name, arguments = function.get("name"), function.get("arguments")
    if not isinstance(name, str) or not name:
        raise UserError("tool call function.name must be a non-empty string", where=where)
    if isinstance(arguments, str):
        try:
            json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise UserError(f"tool call arguments are not valid JSON: {exc.msg}", where=where) from None
        except RecursionError:
            raise UserError("tool call arguments are not valid JSON: nested too deeply", where=where) from None
    elif isinstance(arguments, dict):
        arguments = json.dumps(arguments)
    else:
        raise UserError("tool call function.arguments must be a JSON string", where=where)
    return {"id": str(call.get("id", "")), "type": "function", "function": {"name": name, "arguments": arguments}}


def normalise_message(message: Any, where: str) -> dict[str, Any]:
    """A message reduced to the fields the chat template reads, validated."""
    if not isinstance(message, dict):
        raise UserError("each message must be an object", where=where)
    role = message.get("role")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r} (expected one of {sorted(ROLES)})", where=where)
    out: dict[str, Any] = {"role": role, "content": _content_text(message.get("content"), where)}
    if role == "assistant":
        calls = message.get("tool_calls") or []
        if not isinstance(calls, list):
            raise UserError("tool_calls must be a list", where=where)
        out["tool_calls"] = [_normalise_tool_call(call, where) for call in calls] or None
        if out["content"] is None and not out["tool_calls"]:
            raise UserError("assistant message has neither content nor tool_calls", where=where)
        if "weight" in message:
            if message["weight"] not in (0, 1):
                raise UserError("assistant weight must be 0 or 1", where=where)
            out["weight"] = int(message["weight"])
    elif role == "tool":
        out["tool_call_id"] = str(message.get("tool_call_id", ""))
    elif out["content"] is None:
        raise UserError(f"{role} message has no content", where=where)
    return out


def parse_example(record: Any, where: str) -> ChatExample:
    """Validate one decoded JSONL record."""
    if not isinstance(record, dict):
        raise UserError("each line must be a JSON object", where=where)
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise UserError("'messages' must be a non-empty list", where=where)
    normalised = [normalise_message(m, f"{where} (message {i})") for i, m in enumerate(messages)]
    if not any(m["role"] == "assistant" and m.get("weight", 1) for m in normalised):
        raise UserError("no assistant message to learn from", where=where)
    tools = record.get("tools")
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except (ValueError, RecursionError):
            raise UserError("'tools' is a string that is not valid JSON", where=where) from None
    if tools is not None and not isinstance(tools, list):
        raise UserError("'tools' must be a list", where=where)
    return ChatExample(messages=normalised, tools=tools or None, where=where)


def load_chat_jsonl(path: Path) -> list[ChatExample]:
    """Every conversation in ``path``; the first bad line raises a UserError naming file:line."""
    if not path.is_file():
        raise UserError("training data file not found", where=str(path))
    examples: list[ChatExample] = []
    with path.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"not valid JSON ({exc.msg})", where=where) from None
            except RecursionError:  # the trainer keeps to the stdlib here (it runs on remote hosts too)
                raise UserError("not valid JSON (nested too deeply)", where=where) from None
            examples.append(parse_example(record, where))
    if not examples:
        raise UserError("no conversations in file", where=str(path))
    return examples


def _turn_starts(messages: list[dict[str, Any]]) -> list[int]:
    """Indices of user messages after the leading system messages: where history turns begin."""
    return [i for i, m in enumerate(messages) if m["role"] == "user"]


def _render_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]],
                tools: list[dict[str, Any]] | None, **kwargs: Any) -> Any:
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True, **kwargs)


def fit_messages(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]],
                 tools: list[dict[str, Any]] | None, max_tokens: int,
                 add_generation_prompt: bool = False) -> tuple[list[dict[str, Any]], list[int]] | None:
    """Drop whole turns from the oldest history until the rendered chat fits ``max_tokens``.

    System messages and the last turn are always kept. Returns the kept messages and their
    token ids (rendered once here, reused by the caller), or None when even that is too long.
    """
    starts = _turn_starts(messages)
    head_end = starts[0] if starts else 0
    for first in starts or [head_end]:
        candidate = messages[:head_end] + messages[first:]
        ids = _render_ids(tokenizer, candidate, tools, add_generation_prompt=add_generation_prompt)["input_ids"]
        if len(ids) <= max_tokens:
            return candidate, list(ids)
    return None


def _labels_from_generation_mask(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]],
                                 tools: list[dict[str, Any]] | None) -> TokenRow:
    rendered = _render_ids(tokenizer, messages, tools, return_assistant_tokens_mask=True)
    ids, mask = rendered["input_ids"], rendered["assistant_masks"]
    return TokenRow(list(ids), [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)])


def _labels_from_prefixes(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]],
                          tools: list[dict[str, Any]] | None) -> TokenRow:
    """Assistant spans found by rendering each prefix: works with any template that extends its prefix."""
    ids = list(_render_ids(tokenizer, messages, tools)["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or not message.get("weight", 1):
            continue
        start = len(_render_ids(tokenizer, messages[:i], tools, add_generation_prompt=True)["input_ids"])
        end = len(_render_ids(tokenizer, messages[: i + 1], tools)["input_ids"])
        span = ids[start:end]
        if tokenizer.eos_token_id in span:  # learn up to end-of-turn, not the separator after it
            end = start + len(span) - span[::-1].index(tokenizer.eos_token_id)
        labels[start:end] = ids[start:end]
    return TokenRow(ids, labels)


def tokenize_example(tokenizer: PreTrainedTokenizerBase, example: ChatExample, max_length: int) -> TokenRow | None:
    """The training row of one conversation, or None when it cannot fit ``max_length``."""
    fitted = fit_messages(tokenizer, example.messages, example.tools, max_length)
    if fitted is None:
        return None
    messages = fitted[0]
    template = tokenizer.chat_template or ""
    uses_weights = any("weight" in m for m in messages)
    if "{% generation %}" in template and not uses_weights:
        row = _labels_from_generation_mask(tokenizer, messages, example.tools)
    else:
        row = _labels_from_prefixes(tokenizer, messages, example.tools)
    if all(label == IGNORE_INDEX for label in row.labels):
        return None
    return row


def tokenize_examples(tokenizer: PreTrainedTokenizerBase, examples: list[ChatExample],
                      max_length: int) -> tuple[list[TokenRow], list[str]]:
    """Rows for all examples, plus the places of the ones skipped because they cannot fit."""
    rows: list[TokenRow] = []
    skipped: list[str] = []
    for example in examples:
        row = tokenize_example(tokenizer, example, max_length)
        if row is None:
            skipped.append(example.where)
        else:
            rows.append(row)
    return rows, skipped
