"""The store records where each turn line is in turns.jsonl (the export reads turns by position),
through every way a line gets in: the Arrow fast path, the line-by-line path, snapshots."""

from __future__ import annotations

import json
from pathlib import Path

from crafter_tui.traces.schema import TURNS_FILE
from crafter_tui.traces.store import COMPACT_DIR, MANIFEST, TraceStore
from tests.trace_builders import Episode, Turn, write_run


def _positions_point_at_their_lines(store: TraceStore, run_dir: Path) -> int:
    data = (run_dir / TURNS_FILE).read_bytes()
    rows = store.cursor().execute("SELECT episode, turn, line_offset, line_bytes FROM turn_index ORDER BY seq").fetchall()
    for episode, turn, offset, size in rows:
        line = data[offset:offset + size]
        assert line.endswith(b"\n") and b"\n" not in line[:-1]
        parsed = json.loads(line)
        assert (parsed["episode"], parsed["turn"]) == (episode, turn)
    return len(rows)


def test_positions_from_the_fast_and_the_line_by_line_path(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "run-1", [Episode([Turn(["noop"]), Turn(["do"], ["collect_wood"])]),
                                            Episode([Turn(["noop"])])])
    store = TraceStore.open(tmp_path, turns=True)
    assert _positions_point_at_their_lines(store, run_dir) == 3
    with (run_dir / TURNS_FILE).open("ab") as handle:  # a corrupt line: that block is read line by line
        handle.write(b'{"episode": 1, "turn": \n')
        good = json.loads((run_dir / TURNS_FILE).read_bytes().splitlines()[2])
        good["turn"] = 1
        handle.write(json.dumps(good).encode() + b"\n")
    store.refresh()
    assert _positions_point_at_their_lines(store, run_dir) == 4


def test_a_snapshot_keeps_positions_and_one_without_them_is_read_from_the_jsonl(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "run-1", [Episode([Turn(["noop"]), Turn(["do"])])])
    TraceStore.open(tmp_path, turns=True).compact()
    assert _positions_point_at_their_lines(TraceStore.open(tmp_path, turns=True), run_dir) == 2
    manifest_path = run_dir / COMPACT_DIR / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["format"]  # as written before the positions existed
    manifest_path.write_text(json.dumps(manifest))
    (run_dir / COMPACT_DIR / "turns.parquet").write_bytes(b"not parquet")  # would fail if it were read
    store = TraceStore.open(tmp_path, turns=True)
    assert _positions_point_at_their_lines(store, run_dir) == 2
    assert any("traces compact" in problem.reason and problem.path == manifest_path for problem in store.problems)
