"""Issue 23, bad inputs: each probe gets one clear line naming what and where, never a traceback.

Every test here failed on the code before the fix (a KeyError, a RecursionError, a
UnicodeDecodeError, an IsADirectoryError or a silent success); ``docs/probes.md`` lists them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from crafter_tui.cli import main
from crafter_tui.config import load_config, read_toml
from crafter_tui.errors import ConfigError
from crafter_tui.traces.jsonl import (
    MAX_JSON_DEPTH, JsonLimitError, iter_jsonl, json_depth, lines_may_nest_deeper, loads_bounded,
    remove_stale_temps,
)
from crafter_tui.traces.loader import EPISODES, parse_block
from tests.trace_builders import small_store

DEEP = "[" * 1500 + "]" * 1500  # 3 KB of brackets: json's decoder raised RecursionError on it


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and "Error:" not in text.replace("error:", ""), text


def _edit_first_line(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    edit(record)
    lines[0] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    return small_store(tmp_path / "traces")


# ------------------------------------------------------------------ bounded JSON parsing

def test_bounded_loads_refuses_deep_and_long_input_as_value_errors() -> None:
    with pytest.raises(JsonLimitError, match="nested deeper than"):
        loads_bounded(DEEP.encode())
    with pytest.raises(JsonLimitError, match="nested deeper than"):
        loads_bounded("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))  # under json's own limit
    with pytest.raises(JsonLimitError, match="over the limit"):
        loads_bounded(b'"' + b"x" * 100 + b'"', max_bytes=50)
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert json.dumps(loads_bounded(nested)) == nested.replace("][", "], [")
    # brackets inside strings are text, not nesting
    text = json.dumps({"a": "[" * 500 + '\\"{{', "b": [[1]]})
    assert json_depth(text) == 3 and loads_bounded(text)["b"] == [[1]]


def test_block_depth_estimate_never_misses_a_deep_line() -> None:
    shallow = b'{"a":[1,2]}\n' * 50
    assert not lines_may_nest_deeper(shallow)
    assert lines_may_nest_deeper(shallow + b'{"a":' + DEEP.encode() + b"}\n" + shallow)


def test_arrow_block_with_a_very_deep_line_is_read_line_by_line(tmp_path: Path) -> None:
    # Arrow's JSON reader crashed the process (segfault) on a 100k-deep line that starts with '{'
    good = (small_store(tmp_path / "t") / "run-a" / "episodes.jsonl").read_bytes()
    deep = b'{"episode":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    result = parse_block(tmp_path / "e.jsonl", good + deep, 1, EPISODES)
    assert result.table is not None and result.table.num_rows == 3
    assert [p.line for p in result.problems] == [4] and "nested deeper" in result.problems[0].reason


def test_iter_jsonl_reports_a_deep_line_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n' + DEEP + '\n{"a": 2}\n')
    problems: list = []
    assert [r["a"] for r in iter_jsonl(path, problems=problems)] == [1, 2]
    assert problems[0].line == 2 and "nested deeper" in problems[0].reason


# ------------------------------------------------------------------ trace files through the CLI

@pytest.mark.parametrize("name", ["episodes.jsonl", "turns.jsonl"])
def test_deep_line_in_a_trace_file_is_one_reported_line(store: Path, name: str, tmp_path: Path, caplog,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with (store / "run-a" / name).open("a") as handle:
        handle.write(DEEP + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["filter", "--input-dir", str(store), "--output", str(out)]) == 0
    _no_traceback(capsys.readouterr().err)
    assert f"run-a/{name}:" in caplog.text and "nested deeper" in caplog.text
    assert len(out.read_text().splitlines()) == 17
    assert main(["traces", "list", "--input-dir", str(store)]) == 0
    assert main(["traces", "show", "run-a", "--input-dir", str(store)]) == 0
    _no_traceback(capsys.readouterr().err)


def test_tool_call_without_id_is_refused_when_read_not_a_keyerror(store: Path, tmp_path: Path, caplog,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _edit_first_line(store / "run-a" / "turns.jsonl", lambda r: r["assistant"]["tool_calls"][0].pop("id"))
    assert main(["filter", "--input-dir", str(store), "--stats-only"]) == 0
    _no_traceback(capsys.readouterr().err)
    assert "run-a/turns.jsonl:1: not a valid turns record: assistant" in caplog.text
    assert "no string 'id'" in caplog.text
    for parallel in (False, True):  # the fast path and the reference agree: the turn is not in the store
        from crafter_tui.dataset.export import export_selection
        from crafter_tui.dataset.spec import FilterSpec
        from crafter_tui.traces.store import TraceStore
        opened = TraceStore.open(store, turns=True)
        try:
            result = export_selection(opened, FilterSpec(), tmp_path / f"o{parallel}.jsonl", parallel=parallel)
        finally:
            opened.close()
        assert result.examples == 16
    assert (tmp_path / "oFalse.jsonl").read_bytes() == (tmp_path / "oTrue.jsonl").read_bytes()


def test_nan_reward_in_a_trace_file_is_refused(store: Path, caplog, capsys: pytest.CaptureFixture[str]) -> None:
    _edit_first_line(store / "run-a" / "episodes.jsonl", lambda r: r.update(reward="NaN"))
    assert main(["filter", "--input-dir", str(store), "--stats-only", "--json"]) == 0
    captured = capsys.readouterr()
    assert "run-a/episodes.jsonl:1: not a valid episodes record: reward" in caplog.text
    assert json.loads(captured.out)["episodes_total"] == 5


def test_run_folder_without_run_json_is_reported(store: Path, caplog) -> None:
    (store / "run-a" / "run.json").unlink()
    assert main(["traces", "list", "--input-dir", str(store)]) == 0
    assert "run-a/run.json" in caplog.text and "no run.json" in caplog.text


def test_resume_reads_a_deep_line_as_a_bad_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["rollout", "--agent", "random", "--episodes", "2", "--max-steps", "10", "--out", str(tmp_path),
                 "--run-id", "r", "--json"]) == 0
    for name in ("episodes.jsonl", "turns.jsonl", "steps.jsonl"):
        with (tmp_path / "r" / name).open("a") as handle:
            handle.write(DEEP + "\n")
    capsys.readouterr()
    assert main(["rollout", "--out", str(tmp_path), "--resume", "r", "--json"]) == 0
    _no_traceback(capsys.readouterr().err)


# ------------------------------------------------------------------ datasets

def test_validate_reports_a_deep_line_and_refuses_an_empty_file(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.jsonl"
    deep.write_text(DEEP + "\n")
    assert main(["validate", str(deep)]) == 1
    out = capsys.readouterr().out
    assert "deep.jsonl:1: error invalid_json: not valid JSON: nested deeper than" in out
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["validate", str(empty)]) == 1
    assert "no_examples" in capsys.readouterr().out


def test_deep_tool_call_arguments_in_a_dataset_are_an_error_line(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    line = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "interact", "arguments": DEEP}}]}]}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(line) + "\n")
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "tool_call_arguments_not_json" in out and "nested deeper" in out


# ------------------------------------------------------------------ config and CLI values

def test_config_that_is_not_utf8_a_directory_or_too_deep_is_a_config_error(tmp_path: Path) -> None:
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe[x]\n")
    with pytest.raises(ConfigError, match="bin.toml: not UTF-8"):
        read_toml(binary)
    with pytest.raises(ConfigError, match="is a directory"):
        read_toml(tmp_path)
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + DEEP + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        read_toml(deep)


@pytest.mark.parametrize("argv, message", [
    (["--config", "{tmp}/bin.toml", "traces", "list"], "bin.toml: not UTF-8"),
    (["--config", "{tmp}", "traces", "list"], "is a directory"),
    (["rollout", "--agent", "openai", "--model", "m", "--base-url", "notaurl", "--out", "{tmp}/t"],
     "openai.base_url"),
    (["rollout", "--agent", "random", "--episodes", "1", "--out", "/proc/nope"], "/proc/nope: "),
    (["rollout", "--agent", "random", "--env", "remote", "--env-url", "notaurl", "--out", "{tmp}/t"], "env_url"),
    (["filter", "--input-dir", "{store}", "--output", "{tmp}"], "is a directory; name the file"),
])
def test_bad_paths_and_values_are_one_line(argv: list[str], message: str, tmp_path: Path, store: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[x]\n")
    code = main([part.format(tmp=tmp_path, store=store) for part in argv])
    err = capsys.readouterr().err
    assert code != 0
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t").exists()


def test_every_endpoint_setting_must_be_an_http_url(tmp_path: Path) -> None:
    for key, section in (("base_url", "openai"), ("local_url", "finetune"), ("synth_base_url", "finetune")):
        with pytest.raises(ConfigError, match=f"{section}.{key}"):
            load_config(None, flags={section: {key: "notaurl"}}, environ={})
    with pytest.raises(ConfigError, match="environment.*openai.base_url"):
        load_config(None, environ={"OPENAI_BASE_URL": "ftp://x"})


# ------------------------------------------------------------------ leftovers of a killed export

def test_a_killed_exports_temp_file_is_removed_by_the_next_export(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    dead_pid = 2 ** 22 + 12345  # above the default pid_max: never a live process
    stale = tmp_path / f".out.jsonl.{dead_pid}.abcdef012345.tmp"
    live = tmp_path / f".out.jsonl.{os.getpid()}.abcdef012345.tmp"
    other = tmp_path / f".other.jsonl.{dead_pid}.abcdef012345.tmp"
    for path in (stale, live, other):
        path.write_text("half")
    assert main(["filter", "--input-dir", str(store), "--output", str(out)]) == 0
    assert not stale.exists() and live.exists() and other.exists()
    assert remove_stale_temps(tmp_path / "other.jsonl") == [other]


def test_a_call_with_an_id_but_no_usable_function_is_kept(store: Path, caplog) -> None:
    # a model's malformed call is recorded as an invalid turn: it stays in the store (only a missing id,
    # which the export and the history need, refuses the line)
    _edit_first_line(store / "run-a" / "turns.jsonl",
                     lambda r: r["assistant"]["tool_calls"][0].update(function={"name": None, "arguments": 5}))
    from crafter_tui.traces.store import TraceStore
    opened = TraceStore.open(store, turns=True)
    try:
        assert opened.cursor().execute("SELECT count(*) FROM turn_index").fetchone()[0] == 17
    finally:
        opened.close()
    assert "not a valid turns record" not in caplog.text


def test_an_over_long_line_is_skipped_without_being_held_whole(tmp_path: Path, monkeypatch) -> None:
    import crafter_tui.traces.jsonl as jsonl
    import crafter_tui.traces.loader as loader
    from crafter_tui.traces.loader import EPISODES as KIND, FileCursor, read_new

    source = small_store(tmp_path / "t") / "run-a" / "episodes.jsonl"
    good = source.read_bytes().splitlines(keepends=True)
    path = tmp_path / "e.jsonl"
    path.write_bytes(good[0] + b'{"x":"' + b"y" * 5000 + b'"}\n' + good[1] + good[2])
    problems: list = []
    assert len(list(iter_jsonl(path, problems=problems, max_line_bytes=1000))) == 3
    assert [(p.line, p.reason) for p in problems] == [(2, "line longer than 1000 bytes, skipped")]
    monkeypatch.setattr(loader, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 1000)  # the tail reader the loader reads through
    monkeypatch.setattr(jsonl, "TAIL_BLOCK_BYTES", 700)  # the long line spans several reads
    cursor = FileCursor()
    results = list(read_new(path, cursor, KIND))
    rows = sum(r.table.num_rows for r in results if r.table is not None)
    reported = [(p.line, p.reason) for r in results for p in r.problems]
    assert rows == 3 and reported == [(2, "line longer than 1000 bytes, skipped")]
    assert (cursor.offset, cursor.lines) == (path.stat().st_size, 4)


def test_deep_or_binary_experiments_and_pipeline_files_are_user_errors(tmp_path: Path) -> None:
    from crafter_tui.errors import UserError
    from crafter_tui.evaluation.experiments import load_experiments_file
    from crafter_tui.services.pipeline import STATE_FILE, PipelineState

    deep, binary = tmp_path / "deep.json", tmp_path / "bin.json"
    deep.write_text(DEEP)
    binary.write_bytes(b"\xff\xfe{}")
    with pytest.raises(UserError, match="deep.json: not valid JSON: nested too deeply"):
        load_experiments_file(deep)
    with pytest.raises(UserError, match="bin.json: not UTF-8"):
        load_experiments_file(binary)
    for data in (DEEP.encode(), b"\xff\xfe{}"):
        (tmp_path / STATE_FILE).write_bytes(data)
        with pytest.raises(UserError, match="pipeline state is corrupt"):
            PipelineState(tmp_path)
