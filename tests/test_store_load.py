"""The trace store: what it loads, what it skips (with file:line), incremental refresh, compaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crafter_tui.cli import main
from crafter_tui.traces.schema import EPISODES_FILE, RUN_FILE, TURNS_FILE
from crafter_tui.traces.store import COMPACT_DIR, TraceStore
from tests.trace_builders import Episode, Turn, small_store, summary, turn_lines, write_run


def episode_rows(store: TraceStore) -> list[tuple]:
    return store.cursor().execute(
        "SELECT run_id, episode, turns, num_achievements, reward, termination, invalid_actions "
        "FROM episodes ORDER BY run_id, episode").fetchall()


def test_episodes_table_holds_one_row_per_summary(tmp_path: Path) -> None:
    store = TraceStore.open(small_store(tmp_path))
    assert episode_rows(store) == [
        ("run-a", 0, 3, 2, 2.0, "death", 0), ("run-a", 1, 2, 0, 0.0, "max_steps", 0),
        ("run-a", 2, 4, 1, 1.0, "timeout", 1), ("run-b", 0, 1, 2, 2.0, "agent_terminated", 0),
        ("run-b", 1, 5, 1, 0.5, "death", 0), ("run-b", 2, 2, 0, 0.0, "agent_error", 0),
    ]
    progression, achievements = store.cursor().execute(
        "SELECT progression, achievements FROM episodes WHERE run_id = 'run-a' AND episode = 0").fetchone()
    assert progression == pytest.approx(2 / 22) and achievements == ["collect_wood", "place_table"]
    runs = store.cursor().execute("SELECT run_id, model, history_turns FROM runs ORDER BY 1").fetchall()
    assert runs == [("run-a", "model-a", 2), ("run-b", "model-b", 1)]
    assert not store.turns_loaded and store.cursor().execute("SELECT count(*) FROM turn_index").fetchone() == (0,)
    store.ensure_turns()
    assert store.cursor().execute("SELECT count(*) FROM turn_index").fetchone() == (17,)
    store.ensure_steps()
    assert store.cursor().execute("SELECT count(*) FROM steps").fetchone() == (4 + 2 + 3 + 2 + 5 + 2,)


def test_corrupt_and_torn_lines_are_skipped_with_file_and_line(tmp_path: Path) -> None:
    root = small_store(tmp_path)
    episodes = root / "run-a" / EPISODES_FILE
    lines = episodes.read_text().splitlines()
    bad = [lines[0], "{not json", lines[1], json.dumps({"episode": "x"}), "[1, 2]",
           json.dumps({**json.loads(lines[2]), "termination": "exploded"})]
    episodes.write_text("\n".join(bad) + "\n" + lines[2][:40])  # ends with a torn line (write in progress)
    turns = root / "run-b" / TURNS_FILE
    turn_text = turns.read_text().splitlines()
    turn_text[3] = turn_text[3][:25]
    turns.write_text("\n".join(turn_text) + "\n")
    store = TraceStore.open(root, turns=True)
    problems = {(p.path.name, p.path.parent.name, p.line): p.reason for p in store.problems}
    assert set(problems) == {(EPISODES_FILE, "run-a", 2), (EPISODES_FILE, "run-a", 4), (EPISODES_FILE, "run-a", 5),
                             (EPISODES_FILE, "run-a", 6), (TURNS_FILE, "run-b", 4)}
    assert "not valid JSON" in problems[(EPISODES_FILE, "run-a", 2)]
    assert "termination" in problems[(EPISODES_FILE, "run-a", 6)]
    # the rest is read: run-a keeps episodes 0 and 1, run-b all three; run-b lost one turn line
    assert [r[:2] for r in episode_rows(store)] == [("run-a", 0), ("run-a", 1), ("run-b", 0), ("run-b", 1),
                                                    ("run-b", 2)]
    assert store.cursor().execute("SELECT count(*) FROM turn_index WHERE run_id = 'run-b'").fetchone() == (7,)
    # the torn last line is completed by the writer: the next refresh reads it, no new problem
    with episodes.open("a") as handle:
        handle.write(lines[2][40:] + "\n")
    report = store.refresh()
    assert report.new_episode_lines == 1 and report.problems == []
    assert ("run-a", 2) in [r[:2] for r in episode_rows(store)]


def test_warning_names_file_and_line_in_cli_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = small_store(tmp_path / "t")
    with (root / "run-b" / EPISODES_FILE).open("a") as handle:
        handle.write("{oops\n")
    assert main(["filter", "--input-dir", str(root), "--stats-only", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["episodes_total"] == 6
    assert out["problem_count"] == 1 and f"{root / 'run-b' / EPISODES_FILE}:4:" in out["problems"][0]


def test_refresh_reads_only_appended_lines_and_new_runs(tmp_path: Path) -> None:
    root = tmp_path / "traces"
    write_run(root, "run-1", [Episode([Turn(["noop"])])])
    store = TraceStore.open(root, turns=True)
    assert len(episode_rows(store)) == 1
    state = store.runs["run-1"]
    offset = state.cursors["episodes"].offset
    assert offset == (root / "run-1" / EPISODES_FILE).stat().st_size
    assert store.refresh().new_episode_lines == 0
    more = Episode([Turn(["do"], ["collect_wood"])])
    turns, _ = turn_lines(1, more, 5, "run-1")
    with (root / "run-1" / TURNS_FILE).open("a") as handle:
        handle.write(json.dumps(turns[0]) + "\n")
    with (root / "run-1" / EPISODES_FILE).open("a") as handle:
        handle.write(summary("run-1", 1, more, 5, "scripted-expert").model_dump_json() + "\n")
    write_run(root, "run-2", [Episode([Turn(["noop"])])])
    report = store.refresh()
    assert (report.new_runs, report.new_episode_lines, report.new_turns) == (1, 2, 2)
    assert [r[:2] for r in episode_rows(store)] == [("run-1", 0), ("run-1", 1), ("run-2", 0)]


def test_a_rerun_summary_replaces_the_old_one_and_its_attempt_is_used(tmp_path: Path) -> None:
    root = tmp_path / "traces"
    run = write_run(root, "run-1", [Episode([Turn(["noop"]), Turn(["noop"])], termination="timeout")])
    rerun = Episode([Turn(["do"], ["collect_wood"])], attempt=1)
    turns, _ = turn_lines(0, rerun, 100, "run-1")
    with (run / TURNS_FILE).open("a") as handle:
        handle.write(json.dumps(turns[0]) + "\n")
    with (run / EPISODES_FILE).open("a") as handle:
        handle.write(summary("run-1", 0, rerun, 100, "scripted-expert").model_dump_json() + "\n")
    store = TraceStore.open(root, turns=True)
    assert episode_rows(store) == [("run-1", 0, 1, 1, 1.0, "death", 0)]
    from crafter_tui.dataset.export import selection_stats
    from crafter_tui.dataset.spec import FilterSpec
    stats = selection_stats(store, FilterSpec(), tokens=False)
    assert stats.examples_selected == 1 and stats.action_distribution == {"do": 1}


def test_unreadable_run_record_skips_that_run_only(tmp_path: Path) -> None:
    root = small_store(tmp_path)
    (root / "run-b" / RUN_FILE).write_text("{broken")
    store = TraceStore.open(root)
    assert {r[0] for r in episode_rows(store)} == {"run-a"}
    assert any(p.path == root / "run-b" / RUN_FILE for p in store.problems)


def test_a_single_run_folder_can_be_opened_directly(tmp_path: Path) -> None:
    small_store(tmp_path)
    assert len(episode_rows(TraceStore.open(tmp_path / "run-b"))) == 3


def test_compact_writes_parquet_that_a_later_open_reads_then_follows_new_lines(tmp_path: Path) -> None:
    root = small_store(tmp_path)
    store = TraceStore.open(root, turns=True)
    before = episode_rows(store)
    written = store.compact()
    assert {p.name for p in written} == {COMPACT_DIR}
    assert (root / "run-a" / COMPACT_DIR / "episodes.parquet").is_file()
    # prove the snapshot is what is read: remove the JSONL lines it covers but keep the sizes
    episodes = root / "run-a" / EPISODES_FILE
    covered = episodes.stat().st_size
    episodes.write_bytes(b" " * (covered - 1) + b"\n")
    reopened = TraceStore.open(root, turns=True)
    assert episode_rows(reopened) == before and reopened.problems == []
    extra = Episode([Turn(["do"], ["collect_wood"])])
    with episodes.open("a") as handle:
        handle.write(summary("run-a", 3, extra, 9, "model-a").model_dump_json() + "\n")
    assert reopened.refresh().new_episode_lines == 1
    assert len(episode_rows(reopened)) == 7


def test_traces_cli_list_show_compact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = small_store(tmp_path / "t")
    assert main(["traces", "list", "--dir", str(root), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [(r["run_id"], r["episodes_finished"]) for r in runs] == [("run-a", 3), ("run-b", 3)]
    assert main(["traces", "show", "run-b", "--dir", str(root), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["terminations"] == {"agent_error": 1, "agent_terminated": 1, "death": 1}
    assert shown["achievements"] == {"collect_sapling": 1, "collect_wood": 1, "wake_up": 1}
    assert main(["traces", "show", "nope", "--dir", str(root)]) == 2
    assert "unknown run 'nope'" in capsys.readouterr().err
    assert main(["traces", "compact", "--dir", str(root)]) == 0
    assert (root / "run-b" / COMPACT_DIR / "manifest.json").is_file()
    assert main(["traces", "list", "--dir", str(root)]) == 0
    assert "run-a" in capsys.readouterr().out


def test_a_rerun_appended_after_the_snapshot_wins_over_the_compacted_line(tmp_path: Path) -> None:
    """DuckDB reads the snapshot itself; new lines must still get later sequence numbers."""
    root = small_store(tmp_path)
    TraceStore.open(root, turns=True).compact()
    reopened = TraceStore.open(root, turns=True)
    rerun = Episode([Turn(["do"], ["collect_wood"]), Turn(["noop"], ["place_table"])])
    with (root / "run-a" / EPISODES_FILE).open("a") as handle:
        handle.write(summary("run-a", 0, rerun, 9, "model-a").model_dump_json() + "\n")
    assert reopened.refresh().new_episode_lines == 1
    row = reopened.cursor().execute(
        "SELECT achievements, count(*) OVER () FROM episodes WHERE run_id = 'run-a' AND episode = 0").fetchall()
    assert row == [(["collect_wood", "place_table"], 1)]
    seqs = reopened.cursor().execute("SELECT count(DISTINCT seq), count(*) FROM episode_lines").fetchone()
    assert seqs[0] == seqs[1]


def test_freed_memory_is_given_back_where_glibc_allows() -> None:
    import sys

    from crafter_tui.traces.memory import _malloc_trim, release_freed_memory

    if sys.platform.startswith("linux"):
        assert _malloc_trim() is not None
    release_freed_memory()  # safe to call at any time


@pytest.mark.parametrize("through", ["connection", "cursor"])
def test_closing_interrupts_a_call_still_running_in_another_thread(tmp_path: Path, through: str) -> None:
    """The console quitting while a worker thread still queries the store (statistics on a cursor, a
    refresh on the connection): DuckDB refuses to close a busy connection, so ``close`` interrupts the
    call (its thread gets DuckDB's interrupt error) and closes at once instead of raising."""
    import threading
    import time

    import duckdb

    store = TraceStore.open(small_store(tmp_path))
    connection = store.connection if through == "connection" else store.cursor()
    errors: list[BaseException] = []

    def long_query() -> None:
        try:
            connection.execute("SELECT sum(i) FROM range(100000000000) t(i)").fetchall()
        except duckdb.Error as exc:
            errors.append(exc)

    worker = threading.Thread(target=long_query)
    worker.start()
    time.sleep(0.3)
    started = time.monotonic()
    store.close()
    worker.join(timeout=5)
    assert time.monotonic() - started < 2 and not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], duckdb.InterruptException)
