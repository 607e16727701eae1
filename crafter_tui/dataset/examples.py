"""Turn a selection into chat examples, streaming the turn files with constant memory.

The messages of every example come from ``agents.prompting.build_messages`` with the run's
recorded system prompt and ``history_turns``: a turn-mode example is byte for byte the
prompt the model was sent, plus the reply it gave. Trajectory examples are the whole
conversation of an episode (or of one run of consecutive kept turns).

Speed: a million examples with a history window repeat each past message several times.
Each message dict is JSON-encoded once per episode and the example line is joined from the
encoded pieces (``MessageEncoder``); the result is identical to ``json.dumps`` of the
message list (a test checks it), it is just not re-encoded for every example.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from crafter_tui.agents.base import HistoryTurn
from crafter_tui.agents.prompting import SYSTEM_PROMPT, TOOLS, build_messages
from crafter_tui.dataset.source import all_line_rows, read_lines, run_order
from crafter_tui.traces.schema import TURNS_FILE, RunRecord

_ENCODER = json.JSONEncoder(separators=(",", ":"))
_escape = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def dumps(value: Any) -> str:
    """The one JSON encoding of exported data (compact, ASCII; one shared encoder: no per-call setup)."""
    return _ENCODER.encode(value)


TOOLS_JSON = dumps(TOOLS)


@dataclass(slots=True)
class ExampleLine:
    """One exported example as its JSONL line (no newline) and where it came from."""

    run_id: str
    episode: int
    turns: tuple[int, ...]
    is_valid: bool
    line: str

    @property
    def pieces(self) -> tuple[bytes, ...]:
        """The line and its newline as the one piece the JSONL writer takes (``lines.PiecedLine`` has several)."""
        return ((self.line + "\n").encode("utf-8"),)


@dataclass(slots=True)
class Example(ExampleLine):
    """An example of the reference path: its line plus the messages it was encoded from."""

    messages: list[dict[str, Any]]


def text_action_message(assistant: dict[str, Any]) -> dict[str, Any]:
    """The assistant message as plain text (``--text-actions``): the call as a JSON object.

    ``interact`` becomes its arguments (``{"actions": [...], "reasoning": ...}``); any other
    call ``{"tool": name, ...arguments}``. A reply that already was text stays as it is.
    """
    calls = assistant.get("tool_calls") or []
    if not calls:
        return {"role": "assistant", "content": assistant.get("content") or ""}
    parts = []
    for call in calls:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            arguments = {"arguments": function.get("arguments")}
        if not isinstance(arguments, dict):
            arguments = {"arguments": arguments}
        parts.append(arguments if function.get("name") == "interact" else {"tool": function.get("name"), **arguments})
    content = dumps(parts[0] if len(parts) == 1 else parts)
    return {"role": "assistant", "content": content}


def without_reasoning(assistant: dict[str, Any]) -> dict[str, Any]:
    """The assistant message with the ``reasoning`` of its interact calls emptied (kept as a key,
    so the call still matches the tool schema). Replies that are not valid interact calls stay as they are."""
    return _rewrite_interact(assistant, lambda arguments: {**arguments, "reasoning": ""})


def _rewrite_interact(assistant: dict[str, Any],
                      rewrite: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """``assistant`` with the arguments of each interact call that has a reasoning key rewritten."""
    calls = assistant.get("tool_calls") or []
    if not any((call.get("function") or {}).get("name") == "interact" for call in calls):
        return assistant
    rewritten = []
    for call in calls:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "")
        except (TypeError, ValueError):
            arguments = None
        if function.get("name") == "interact" and isinstance(arguments, dict) and "reasoning" in arguments:
            call = {**call, "function": {**function, "arguments": json.dumps(rewrite(arguments))}}
        rewritten.append(call)
    return {**assistant, "tool_calls": rewritten}


def recorded_goal(line: dict[str, Any]) -> str:
    """The goal a turn's reply was given for: a DAgger turn's ``extra.label_goal`` (its reply is the
    expert's label, whoever moved), else the agent's own ``extra.goal``; ``""`` when none was recorded
    (a model's turns: their reasoning is free text)."""
    extra = line.get("extra")
    if not isinstance(extra, dict):
        return ""
    goal = extra["label_goal"] if "label_goal" in extra else extra.get("goal")
    return goal if isinstance(goal, str) else ""


def with_goal_reasoning(assistant: dict[str, Any], goal: str) -> dict[str, Any]:
    """The assistant message with the reasoning of its interact calls replaced by ``goal`` and
    written *before* the actions (``{"reasoning": "wood", "actions": [...]}``).

    Why first: a model writes its reply left to right, so a goal named first is a decision the
    actions are then conditioned on (which of the things in view to walk to), and the goal gets its
    own loss term instead of being folded into the first move. Replies that are not valid interact
    calls stay as they are.
    """
    return _rewrite_interact(assistant, lambda arguments: {
        "reasoning": goal, **{key: value for key, value in arguments.items() if key != "reasoning"}})


def exported_reply(assistant: dict[str, Any], *, drop_reasoning: bool, text_actions: bool,
                   goal: str | None = None) -> dict[str, Any]:
    """The assistant message as an example carries it (both export paths shape replies here).

    ``goal``: the turn's recorded goal when the export writes goals as the reasoning
    (``FilterSpec.goal_reasoning``), else None.
    """
    if goal is not None:
        assistant = with_goal_reasoning(assistant, goal)
    elif drop_reasoning:
        assistant = without_reasoning(assistant)
    return text_action_message(assistant) if text_actions else assistant


class MessageEncoder:
    """JSON-encodes message dicts once per episode (keyed by object identity of their parts)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], str] = {}

    def encode(self, messages: Sequence[dict[str, Any]]) -> str:
        return "[" + ",".join(self._one(m) for m in messages) + "]"

    def _one(self, message: dict[str, Any]) -> str:
        role = message["role"]
        key: Any = id(message) if role == "assistant" else (role, id(message["content"]), message.get("tool_call_id"))
        text = self._cache.get(key)
        if text is None:
            text = _encode_message(message)
            self._cache[key] = text
        return text


def _encode_message(message: dict[str, Any]) -> str:
    """``dumps(message)``, spelled out for the two plain shapes (same bytes, a third of the time)."""
    content = message.get("content")
    if isinstance(content, str):
        if len(message) == 2 and list(message) == ["role", "content"] and isinstance(message["role"], str):
            return '{"role":' + _escape(message["role"]) + ',"content":' + _escape(content) + "}"
        call_id = message.get("tool_call_id")
        if (len(message) == 3 and isinstance(call_id, str) and isinstance(message["role"], str)
                and list(message) == ["role", "tool_call_id", "content"]):
            return ('{"role":' + _escape(message["role"]) + ',"tool_call_id":' + _escape(call_id)
                    + ',"content":' + _escape(content) + "}")
    return dumps(message)


@dataclass(slots=True)
class _EpisodePlan:
    attempt: int
    groups: dict[int, tuple[int, ...]]  # last turn of an example -> the example's turns
    is_valid: bool
    last_turn: int
    history: list[HistoryTurn] = field(default_factory=list)
    turn_numbers: list[int] = field(default_factory=list)
    encoder: MessageEncoder = field(default_factory=MessageEncoder)


PLAN_SQL = {
    # the kept turns of each example of one run; example groups are consecutive turns
    "selection": """SELECT episode, any_value(attempt), list(turn ORDER BY turn), list(example_key ORDER BY turn),
                           bool_or(is_valid)
                    FROM selection WHERE run_id = ? GROUP BY episode ORDER BY episode""",
    "token_sample": """SELECT s.episode, any_value(s.attempt), list(s.turn ORDER BY s.turn),
                              list(s.example_key ORDER BY s.turn), bool_or(s.is_valid)
                       FROM selection s JOIN token_sample USING (example_key)
                       WHERE s.run_id = ? GROUP BY s.episode ORDER BY s.episode""",
}
def _plans(cursor: duckdb.DuckDBPyConnection, run_id: str, source: str) -> dict[int, _EpisodePlan]:
    plans: dict[int, _EpisodePlan] = {}
    for episode, attempt, turns, keys, is_valid in cursor.execute(PLAN_SQL[source], [run_id]).fetchall():
        groups: dict[int, tuple[int, ...]] = {}
        members: dict[int, list[int]] = {}
        for turn, key in zip(turns, keys, strict=True):
            members.setdefault(key, []).append(turn)
        for turn_list in members.values():
            groups[turn_list[-1]] = tuple(turn_list)
        plans[episode] = _EpisodePlan(attempt, groups, bool(is_valid), max(turns))
    return plans


def iter_examples(cursor: duckdb.DuckDBPyConnection, runs: dict[str, tuple[Path, RunRecord]], *,
                  mode: str, text_actions: bool, drop_reasoning: bool = False, goal_reasoning: bool = False,
                  source: str = "selection") -> Iterator[Example]:
    """Every example of the materialised selection in (run_id, episode, turn) order (``source``:
    a function of the data, not of the order parallel workers appended the lines in)."""
    lines_by_run = all_line_rows(cursor, source)
    for run_id in run_order(cursor, source):
        path, record = runs[run_id]
        plans = _plans(cursor, run_id, source)
        lines = read_lines(path / TURNS_FILE, lines_by_run[run_id])
        yield from _run_examples(run_id, lines, record, plans, mode=mode, text_actions=text_actions,
                                 drop_reasoning=drop_reasoning, goal_reasoning=goal_reasoning)


def _run_examples(run_id: str, lines: Iterable[bytes], record: RunRecord, plans: dict[int, _EpisodePlan], *,
                  mode: str, text_actions: bool, drop_reasoning: bool = False,
                  goal_reasoning: bool = False) -> Iterator[Example]:
    """The examples of one run from its selected episodes' turn lines, in (episode, file) order."""
    system = record.system_prompt if record.system_prompt is not None else SYSTEM_PROMPT
    tools_tail = "}" if text_actions else ',"tools":' + TOOLS_JSON + "}"
    for raw in lines:
        if not plans:
            return
        try:
            line = json.loads(raw)
            plan = plans.get(line["episode"])
            if plan is None or line.get("attempt", 0) != plan.attempt or line["turn"] in plan.turn_numbers:
                continue
            observation, assistant, turn = line["observation"], line["assistant"], line["turn"]
        except (ValueError, KeyError, TypeError, RecursionError):
            continue  # reported when the store loaded the file
        assistant = exported_reply(assistant, drop_reasoning=drop_reasoning, text_actions=text_actions,
                                   goal=recorded_goal(line) if goal_reasoning else None)
        tool_result = None if text_actions else line.get("tool_result")
        group = plan.groups.get(turn)
        if group is not None:
            messages = _messages(system, record.history_turns, plan, group, observation, assistant, mode)
            encoded = plan.encoder.encode(messages)
            yield Example(run_id, line["episode"], group, plan.is_valid,
                          '{"messages":' + encoded + tools_tail, messages)
        plan.history.append(HistoryTurn(observation=observation, assistant=assistant, tool_result=tool_result))
        plan.turn_numbers.append(turn)
        if turn >= plan.last_turn:
            del plans[line["episode"]]


def _messages(system: str, history_turns: int, plan: _EpisodePlan, group: tuple[int, ...], observation: str,
              assistant: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    if mode == "turn":
        messages = build_messages(system, plan.history, observation, history_turns)
    else:
        positions = {turn: index for index, turn in enumerate(plan.turn_numbers)}
        earlier = [plan.history[positions[turn]] for turn in group[:-1] if turn in positions]
        messages = build_messages(system, earlier, observation, len(earlier))
    messages.append(assistant)
    return messages
