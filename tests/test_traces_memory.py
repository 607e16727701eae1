"""The store keeps its tables compressed (checkpointed after loads) and still follows new lines
while another cursor holds an open transaction during the checkpoint."""

from __future__ import annotations

from pathlib import Path

from tests.trace_builders import Episode, Turn, write_run

from crafter_tui.traces.store import DATABASE, TraceStore


def _counts(store: TraceStore) -> tuple[int, int]:
    cursor = store.cursor()
    return (cursor.execute("SELECT count(*) FROM episodes").fetchone()[0],
            cursor.execute("SELECT count(*) FROM turn_index").fetchone()[0])


def test_tables_live_in_the_compressed_database_and_every_cursor_sees_them(tmp_path: Path) -> None:
    write_run(tmp_path, "run-1", [Episode([Turn(["noop"]), Turn(["do"], ["collect_wood"])])])
    store = TraceStore.open(tmp_path, turns=True)
    tables = store.cursor().execute("SELECT database_name, table_name FROM duckdb_tables() "
                                    "WHERE table_name IN ('episodes', 'turn_index', 'runs')").fetchall()
    assert sorted(tables) == [(DATABASE, "episodes"), (DATABASE, "runs"), (DATABASE, "turn_index")]
    compressed = store.cursor().execute("SELECT count(*) FROM pragma_storage_info('turn_index') "
                                        "WHERE compression <> 'Uncompressed'").fetchone()[0]
    assert compressed > 0  # the load was checkpointed: its columns are stored compressed
    assert _counts(store) == (1, 2)
    store.close()


def test_refresh_while_another_cursor_holds_a_transaction(tmp_path: Path) -> None:
    write_run(tmp_path, "run-1", [Episode([Turn(["noop"])])])
    store = TraceStore.open(tmp_path, turns=True)
    reader = store.cursor()
    reader.execute("BEGIN TRANSACTION")
    assert reader.execute("SELECT count(*) FROM turn_index").fetchone()[0] == 1
    write_run(tmp_path, "run-2", [Episode([Turn(["noop"]), Turn(["noop"])])])
    report = store.refresh()  # checkpoints with the reader's transaction open
    assert (report.new_runs, report.new_turns) == (1, 2)
    assert _counts(store) == (2, 3)
    reader.execute("COMMIT")
    write_run(tmp_path, "run-3", [Episode([Turn(["noop"])])])
    store.refresh()
    assert _counts(store) == (3, 4)
    store.close()
