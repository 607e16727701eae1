"""Exported examples are exactly the messages the agent saw (via ``build_messages``) plus its reply."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from crafter_tui.agents.base import HistoryTurn
from crafter_tui.agents.prompting import SYSTEM_PROMPT, TOOLS, build_messages
from crafter_tui.cli import main
from crafter_tui.dataset.examples import MessageEncoder, dumps, text_action_message
from crafter_tui.dataset.export import Cancelled, export_selection
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.dataset.validate import validate_file
from crafter_tui.traces.jsonl import iter_jsonl
from crafter_tui.traces.schema import TURNS_FILE
from crafter_tui.traces.store import TraceStore
from tests.trace_builders import Episode, Turn, small_store, write_run


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_store(tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="module")
def store(root: Path) -> TraceStore:
    return TraceStore.open(root, turns=True)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_turn_examples(root: Path, run_id: str, history_turns: int) -> dict[str, dict]:
    """Rebuild each turn's example from the raw turn records with build_messages (keyed by last user text)."""
    out: dict[str, dict] = {}
    history: dict[int, list[HistoryTurn]] = {}
    for line in iter_jsonl(root / run_id / TURNS_FILE):
        past = history.setdefault(line["episode"], [])
        messages = build_messages(SYSTEM_PROMPT, past, line["observation"], history_turns) + [line["assistant"]]
        out[line["observation"]] = {"messages": messages, "tools": TOOLS}
        past.append(HistoryTurn(line["observation"], line["assistant"], line["tool_result"]))
    return out


def test_turn_examples_are_exactly_the_prompts_the_model_saw(root: Path, store: TraceStore, tmp_path: Path) -> None:
    result = export_selection(store, FilterSpec(), tmp_path / "turns.jsonl")
    assert result.examples == 17
    examples = read(tmp_path / "turns.jsonl")
    expected = expected_turn_examples(root, "run-a", 2) | expected_turn_examples(root, "run-b", 1)
    for example in examples:
        last_user = [m for m in example["messages"] if m["role"] == "user"][-1]["content"]
        assert example == expected[last_user]
    by_user = {[m for m in e["messages"] if m["role"] == "user"][-1]["content"]: e for e in examples}
    # history 2, third turn: system, (user, assistant, tool) x2, user, assistant
    roles = [m["role"] for m in by_user["run-a episode 0 turn 2: you see grass and a tree."]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user", "assistant", "tool", "user", "assistant"]
    # history 1, fifth turn: only the fourth turn is shown
    roles = [m["role"] for m in by_user["run-b episode 1 turn 4: you see grass and a tree."]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user", "assistant"]
    # an invalid reply (plain text, no call) stays in later prompts as the model wrote it, without a tool message
    roles = [m["role"] for m in by_user["run-a episode 2 turn 2: you see grass and a tree."]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user", "assistant", "user", "assistant"]
    report = validate_file(tmp_path / "turns.jsonl")
    assert report.ok, report.errors


def test_drop_invalid_removes_only_invalid_replies(store: TraceStore, tmp_path: Path) -> None:
    export_selection(store, FilterSpec(drop_invalid=True), tmp_path / "v.jsonl")
    examples = read(tmp_path / "v.jsonl")
    assert len(examples) == 16
    assert all(e["messages"][-1].get("tool_calls") for e in examples)


def test_trajectory_examples_hold_whole_episodes(store: TraceStore, tmp_path: Path) -> None:
    export_selection(store, FilterSpec(mode="trajectory", runs=("run-b",)), tmp_path / "t.jsonl")
    examples = read(tmp_path / "t.jsonl")
    assert len(examples) == 3
    longest = max(examples, key=lambda e: len(e["messages"]))
    # 5 turns: system + 5 x (user, assistant) + 4 tool results (not after the last reply)
    assert [m["role"] for m in longest["messages"]] == ["system"] + ["user", "assistant", "tool"] * 4 + \
        ["user", "assistant"]
    assert validate_file(tmp_path / "t.jsonl").error_counts == {}


def test_keep_before_achievement_trajectory_windows(store: TraceStore, tmp_path: Path) -> None:
    export_selection(store, FilterSpec(mode="trajectory", keep_before_achievement=2, runs=("run-a",)),
                     tmp_path / "w.jsonl")
    users = sorted(tuple(m["content"].split(":")[0] for m in e["messages"] if m["role"] == "user")
                   for e in read(tmp_path / "w.jsonl"))
    assert users == [("run-a episode 0 turn 0", "run-a episode 0 turn 1", "run-a episode 0 turn 2"),
                     ("run-a episode 2 turn 2", "run-a episode 2 turn 3")]


def test_text_actions_are_plain_assistant_text(store: TraceStore, tmp_path: Path) -> None:
    export_selection(store, FilterSpec(text_actions=True, runs=("run-a",)), tmp_path / "x.jsonl")
    examples = read(tmp_path / "x.jsonl")
    assert len(examples) == 9
    for example in examples:
        assert "tools" not in example
        assert all(m["role"] in ("system", "user", "assistant") for m in example["messages"])
        assert all(isinstance(m["content"], str) for m in example["messages"])
    replies = [e["messages"][-1]["content"] for e in examples]
    assert '{"actions":["place_table","noop"],"reasoning":"reason 2"}' in replies
    assert validate_file(tmp_path / "x.jsonl").error_counts == {}


def test_text_action_message_shapes() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "terminate", "arguments": '{"reason": "done"}'}}]}
    assert json.loads(text_action_message(call)["content"]) == {"tool": "terminate", "reason": "done"}
    assert text_action_message({"role": "assistant", "content": "hi"}) == {"role": "assistant", "content": "hi"}


def test_parquet_output_holds_the_same_examples(store: TraceStore, tmp_path: Path) -> None:
    export_selection(store, FilterSpec(), tmp_path / "a.jsonl")
    export_selection(store, FilterSpec(), tmp_path / "a.parquet", fmt="parquet")
    rows = pq.read_table(tmp_path / "a.parquet").to_pylist()
    assert len(rows) == 17
    jsonl = read(tmp_path / "a.jsonl")
    for row, example in zip(rows, jsonl, strict=True):
        assert json.loads(row["tools"]) == example["tools"]
        assert [m["role"] for m in row["messages"]] == [m["role"] for m in example["messages"]]
        assert [m["content"] for m in row["messages"]] == [m.get("content") for m in example["messages"]]


def test_encoder_output_equals_json_dumps() -> None:
    assistant = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "interact", "arguments": '{"a": "é\\n"}'}}]}
    history = [HistoryTurn('obs "quoted"\nline ü', assistant, "done ✓")]
    messages = build_messages("sys\t", history, "now", 3) + [assistant]
    encoder = MessageEncoder()
    assert encoder.encode(messages) == dumps(messages)
    assert encoder.encode(messages) == json.dumps(messages, separators=(",", ":"))  # cached second pass


def test_cancel_leaves_no_file(store: TraceStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from crafter_tui.dataset import export as export_module
    monkeypatch.setattr(export_module, "PROGRESS_EVERY", 1)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        export_selection(store, FilterSpec(), tmp_path / "c.jsonl", cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def _reasoning_emptied(message: dict) -> dict:
    if not message.get("tool_calls"):
        return message
    calls = []
    for call in message["tool_calls"]:
        arguments = {**json.loads(call["function"]["arguments"]), "reasoning": ""}
        calls.append({**call, "function": {**call["function"], "arguments": arguments}})
    return {**message, "tool_calls": calls}


def _parsed(message: dict) -> dict:
    if not message.get("tool_calls"):
        return message
    return {**message, "tool_calls": [{**c, "function": {**c["function"], "arguments": json.loads(
        c["function"]["arguments"])}} for c in message["tool_calls"]]}


def test_drop_reasoning_empties_only_the_reasoning(store: TraceStore, tmp_path: Path) -> None:
    """Replies and the replies in the history window lose their reasoning; nothing else changes."""
    kept = read(export_selection(store, FilterSpec(mode="turn", drop_invalid=True), tmp_path / "k.jsonl").path)
    dropped_path = export_selection(store, FilterSpec(mode="turn", drop_invalid=True, drop_reasoning=True),
                                    tmp_path / "d.jsonl").path
    dropped = read(dropped_path)
    assert len(kept) == len(dropped) > 0
    assert any(json.loads(e["messages"][-1]["tool_calls"][0]["function"]["arguments"])["reasoning"] for e in kept)
    for before, after in zip(kept, dropped):
        assert [_reasoning_emptied(m) for m in before["messages"]] == [_parsed(m) for m in after["messages"]]
    assert validate_file(dropped_path).ok


def _arguments(message: dict) -> str:
    return message["tool_calls"][0]["function"]["arguments"]


def test_goal_reasoning_writes_the_recorded_goal_before_the_actions(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The expert's goal, a DAgger label's goal over the executing agent's, ``""`` where none was recorded;
    the same in the history window; through the CLI flag as through the spec."""
    root = tmp_path / "traces"
    write_run(root, "run-g", [Episode([
        Turn(["move_up", "move_up"], extra={"goal": "wood"}),
        Turn(["move_left"], extra={"goal": "drink", "label_goal": "table", "executed_by": "student"}),
        Turn(["noop"]),
        Turn(["do"], ["collect_wood"], extra={"goal": ["not", "a", "name"]}),
    ])], history_turns=1)
    store = TraceStore.open(root, turns=True)
    examples = read(export_selection(store, FilterSpec(goal_reasoning=True), tmp_path / "g.jsonl").path)
    replies = [_arguments(e["messages"][-1]) for e in examples]
    assert replies == ['{"reasoning": "wood", "actions": ["move_up", "move_up"]}',
                       '{"reasoning": "table", "actions": ["move_left"]}',
                       '{"reasoning": "", "actions": ["noop"]}',
                       '{"reasoning": "", "actions": ["do"]}']
    history = [m for m in examples[1]["messages"][:-1] if m["role"] == "assistant"]
    assert [_arguments(m) for m in history] == [replies[0]]
    assert validate_file(tmp_path / "g.jsonl").ok
    out = tmp_path / "cli.jsonl"
    assert main(["filter", "--input-dir", str(root), "--output", str(out), "--goal-reasoning", "--json"]) == 0
    capsys.readouterr()
    assert [_arguments(e["messages"][-1]) for e in read(out)] == replies
