"""The one tail reader (``traces.jsonl.read_appended``) as its dict follower sees it: ``tail_jsonl``."""

from __future__ import annotations

from pathlib import Path

from crafter_tui.traces.jsonl import FileCursor, LineProblem, tail_jsonl


def test_a_torn_line_waits_bad_lines_are_named_and_a_poll_reads_only_what_is_new(tmp_path: Path):
    path = tmp_path / "steps.jsonl"
    cursor = FileCursor()
    assert tail_jsonl(path, cursor).records == []  # not written yet
    path.write_bytes(b'{"a": 1}\n{not json\n[1]\n{"a": 2')
    problems: list[LineProblem] = []
    tail = tail_jsonl(path, cursor, problems=problems)
    assert tail.records == [{"a": 1}] and not tail.reset
    assert [(p.line, p.reason.split(" (")[0]) for p in problems] == [(2, "not valid JSON"), (3, "not a JSON object")]
    assert (cursor.offset, cursor.lines) == (len(b'{"a": 1}\n{not json\n[1]\n'), 3)
    with path.open("ab") as handle:
        handle.write(b'}\n{"a": 3}\n')
    assert tail_jsonl(path, cursor).records == [{"a": 2}, {"a": 3}]
    assert tail_jsonl(path, cursor).records == []


def test_a_file_rewritten_shorter_is_read_again_from_its_start(tmp_path: Path):
    path = tmp_path / "episodes.jsonl"
    path.write_text('{"episode": 0}\n{"episode": 1}\n')
    cursor = FileCursor()
    assert len(tail_jsonl(path, cursor).records) == 2
    path.write_text('{"episode": 7}\n')
    problems: list[LineProblem] = []
    tail = tail_jsonl(path, cursor, problems=problems)
    assert tail.reset and tail.records == [{"episode": 7}]
    assert "file shrank" in problems[0].reason
