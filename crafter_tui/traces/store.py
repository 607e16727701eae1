"""The trace store: DuckDB (in memory) as the query engine over run folders.

Files are the truth. The store never writes a DuckDB file; it keeps, per file, the byte
offset it has read up to, and ``refresh()`` reads only the complete lines appended since,
so it can follow a rollout that another process is writing. ``compact()`` writes Parquet
snapshots (plus the offsets they cover) next to the JSONL files; a later open reads those
and then only the bytes appended after them.

Tables (query them through ``cursor()``; only parameterised SQL):

- ``runs``       one row per run folder (from run.json)
- ``episodes``   one row per finished episode: the last summary line of each (run, episode),
                 with ``progression`` (unique achievements / 22) and ``tokens``
- ``turn_index`` loaded on demand (``ensure_turns``): one light row per turn (no texts), with
                 ``first_action``, a ``content_hash`` of what was seen and said, and where its
                 line is in turns.jsonl (``line_offset``, ``line_bytes``): the export reads turns
                 by position in (run, episode, turn) order, not in the order workers wrote them
- ``steps``      loaded on demand (``ensure_steps``)

Memory: the tables live in a *compressed* in-memory database (``DATABASE``), compacted by a
checkpoint after each load that added rows: 100k episodes + 1M turns take ~25 MB there
instead of ~270 MB as plain in-memory tables. DuckDB's allocator (jemalloc) returns freed
pages only from background threads, so those are on: without them the memory of a big load
or of the export's selection query stayed resident.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from crafter_tui.errors import UserError
from crafter_tui.traces import sql
from crafter_tui.traces.jsonl import LineProblem, loads_bounded, replacing, write_json_atomic
from crafter_tui.traces.loader import EPISODES, STEPS, TURNS, FileCursor, RecordKind, read_new
from crafter_tui.traces.memory import release_freed_memory
from crafter_tui.traces.schema import EPISODES_FILE, RUN_FILE, STEPS_FILE, TURNS_FILE, RunRecord

log = logging.getLogger(__name__)

#: The attached compressed in-memory database holding the tables; every cursor starts in it.
DATABASE = "store"
_USE = f"USE {DATABASE}"
_CHECKPOINT = f"CHECKPOINT {DATABASE}"
COMPACT_DIR = ".compact"
MANIFEST = "manifest.json"
#: Version of the snapshot columns; 2 added the turns' line positions. Older turn snapshots are
#: ignored (the JSONL is read instead) until the next ``compact``.
SNAPSHOT_FORMAT = 2
MAX_KEPT_PROBLEMS = 1000
#: How long ``close`` keeps interrupting a call still running on the connection before it gives up.
CLOSE_WAIT_S = 5.0

_KIND_FILES: dict[str, tuple[RecordKind, str, str]] = {
    "episodes": (EPISODES, EPISODES_FILE, "episode_lines"),
    "turns": (TURNS, TURNS_FILE, "turn_index"),
    "steps": (STEPS, STEPS_FILE, "steps"),
}


@dataclass(slots=True)
class RunState:
    """A run folder the store follows."""

    run_id: str
    path: Path
    record: RunRecord
    cursors: dict[str, FileCursor] = field(default_factory=dict)


class RefreshReport(BaseModel):
    """What one refresh found."""

    runs: int
    new_runs: int = 0
    new_episode_lines: int = 0
    new_turns: int = 0
    new_steps: int = 0
    problems: list[str] = []


class TraceStore:
    """Follows the run folders under ``root`` and answers SQL over them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError("trace directory not found", where=str(self.root))
        self._con = duckdb.connect(":memory:", config={"allocator_background_threads": True})
        self._con.execute(f"ATTACH ':memory:' AS {DATABASE} (COMPRESS)")
        self._con.execute(_USE)
        self._lock = threading.RLock()
        self._cursors: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()  # for close()
        self._cursors_lock = threading.Lock()  # not self._lock: close() must not wait for a refresh holding it
        self._runs: dict[str, RunState] = {}
        self._loaded: set[str] = {"episodes"}
        self._seq = 0
        self._skipped_dirs: dict[Path, str] = {}
        self.problems: list[LineProblem] = []
        self.problem_count = 0
        for statement in sql.CREATE_TABLES:
            self._con.execute(statement)

    # ----------------------------------------------------------------- public
    @classmethod
    def open(cls, root: Path, *, turns: bool = False) -> TraceStore:
        """A store over ``root`` with everything currently on disk loaded."""
        store = cls(root)
        if turns:
            store._loaded.add("turns")
        store.refresh()
        return store

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh cursor (one per query/thread) on the in-memory database."""
        cur = self._con.cursor()
        cur.execute(_USE)  # a cursor starts in the default database, not in the store's
        with self._cursors_lock:
            self._cursors.add(cur)
        return cur

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        return self._con

    @property
    def runs(self) -> dict[str, RunState]:
        return dict(self._runs)

    @property
    def turns_loaded(self) -> bool:
        return "turns" in self._loaded

    def ensure_turns(self) -> None:
        """Load the turn index (needed by export and turn-level statistics)."""
        with self._lock:
            if "turns" not in self._loaded:
                self._loaded.add("turns")
                for state in self._runs.values():
                    self._load_compacted(state, ("turns",))
                self.refresh()
                self._compress()
                release_freed_memory()

    def ensure_steps(self) -> None:
        with self._lock:
            if "steps" not in self._loaded:
                self._loaded.add("steps")
                self.refresh()

    def refresh(self) -> RefreshReport:
        """Pick up new run folders and the lines appended to known ones."""
        with self._lock:
            report = RefreshReport(runs=0)
            self._discover(report)
            changed = False
            for state in self._runs.values():
                self._reload_record(state)
                for kind_name in sorted(self._loaded):
                    count = self._read_file(state, kind_name, report)
                    changed |= kind_name == "episodes" and count > 0
                    if kind_name == "turns":
                        report.new_turns += count
                    elif kind_name == "steps":
                        report.new_steps += count
                    else:
                        report.new_episode_lines += count
            report.runs = len(self._runs)
            if changed or report.new_runs:
                self._rebuild_views()
            if changed or report.new_runs or report.new_turns or report.new_steps:
                self._compress()
                release_freed_memory()
            return report

    def run_dir(self, run_id: str) -> Path:
        state = self._runs.get(run_id)
        if state is None:
            raise UserError(f"unknown run {run_id!r}; known: {', '.join(sorted(self._runs)) or 'none'}",
                            where=str(self.root))
        return state.path

    def run_record(self, run_id: str) -> RunRecord:
        self.run_dir(run_id)
        return self._runs[run_id].record

    def compact(self) -> list[Path]:
        """Write Parquet snapshots of every run (episodes, turn index) for fast opening."""
        self.ensure_turns()
        written: list[Path] = []
        with self._lock:
            for state in self._runs.values():
                written.append(self._compact_run(state))
        return written

    def _compress(self) -> None:
        """Checkpoint: rows added since the last one are compressed (and their plain copies freed)."""
        try:
            self._con.execute(_CHECKPOINT)
        except duckdb.Error as exc:  # only memory is at stake: the rows are there either way
            log.debug("checkpoint skipped: %s", exc)

    def close(self) -> None:
        """Close the in-memory database, interrupting calls still running on it in other threads.

        DuckDB refuses to close a connection or cursor that is busy (the console quitting while
        statistics or a refresh run in a worker thread): each busy call is interrupted (its thread
        gets DuckDB's interrupt error) and closing is retried, so quitting never ends in a traceback
        and never waits for a long query to finish.
        """
        with self._cursors_lock:
            cursors = list(self._cursors)
        for connection in [*cursors, self._con]:
            _close_interrupting(connection)

    # ---------------------------------------------------------------- discovery
    def _discover(self, report: RefreshReport) -> None:
        candidates = [self.root] if (self.root / RUN_FILE).is_file() else sorted(
            {p.parent for pattern in ("*/" + RUN_FILE, "*/*/" + RUN_FILE) for p in self.root.glob(pattern)})
        known = {state.path for state in self._runs.values()}
        self._note_folders_without_record(candidates)
        for run_dir in candidates:
            if run_dir in known:
                continue
            record = self._read_record(run_dir)
            if record is None:
                continue
            if record.run_id in self._runs:
                self._skip_dir(run_dir, f"run_id {record.run_id!r} already read from {self._runs[record.run_id].path}")
                continue
            state = RunState(record.run_id, run_dir, record, {k: FileCursor() for k in _KIND_FILES})
            self._runs[record.run_id] = state
            self._load_compacted(state, tuple(self._loaded))
            report.new_runs += 1
        self._write_runs_table()

    def _note_folders_without_record(self, candidates: list[Path]) -> None:
        """Report folders that hold trace files but no ``run.json`` (a run copied without it): they cannot be
        read as runs, and dropping them silently would hide the data they hold."""
        if self.root in candidates:
            return
        found = set(candidates)
        for name in (EPISODES_FILE, TURNS_FILE, STEPS_FILE):
            for pattern in ("*/" + name, "*/*/" + name):
                for path in self.root.glob(pattern):
                    if path.parent not in found:
                        found.add(path.parent)
                        self._skip_dir(path.parent, f"{name} but no {RUN_FILE}")

    def _read_record(self, run_dir: Path) -> RunRecord | None:
        path = run_dir / RUN_FILE
        try:
            return RunRecord.model_validate_json(path.read_bytes())
        except (OSError, ValidationError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            self._skip_dir(run_dir, f"unreadable run record: {reason}")
            return None

    def _skip_dir(self, run_dir: Path, reason: str) -> None:
        if self._skipped_dirs.get(run_dir) != reason:
            self._skipped_dirs[run_dir] = reason
            self._problem(LineProblem(run_dir / RUN_FILE, 1, f"{reason}; run skipped"))

    def _reload_record(self, state: RunState) -> None:
        if state.record.status != "running":
            return
        record = self._read_record(state.path)
        if record is not None and record.run_id == state.run_id:
            state.record = record
            self._write_runs_table()

    def _write_runs_table(self) -> None:
        rows = [sql.run_row(state.record, state.path) for state in self._runs.values()]
        table = pa.Table.from_pylist(rows, schema=sql.RUNS_SCHEMA)
        cur = self.cursor()
        cur.register("_runs_new", table)
        cur.execute("DELETE FROM runs")
        cur.execute("INSERT INTO runs SELECT * FROM _runs_new")
        cur.unregister("_runs_new")
        cur.close()

    # ------------------------------------------------------------------ loading
    def _read_file(self, state: RunState, kind_name: str, report: RefreshReport) -> int:
        kind, file_name, table = _KIND_FILES[kind_name]
        added = 0
        for result in read_new(state.path / file_name, state.cursors[kind_name], kind):
            for problem in result.problems:
                self._problem(problem)
                report.problems.append(str(problem))
            if result.reset:
                self._con.execute(sql.DELETE_RUN[table], [state.run_id])
            if result.table is not None and result.table.num_rows:
                self._insert(table, state.run_id, result.table)
                added += result.table.num_rows
        return added

    def _insert(self, table: str, run_id: str, rows: pa.Table) -> None:
        rows = rows.append_column("_idx", pa.array(np.arange(rows.num_rows, dtype=np.int64)))
        cur = self.cursor()
        cur.register("_new_rows", rows)
        try:
            cur.execute(sql.INSERT[table], [run_id, self._seq])
        finally:
            cur.unregister("_new_rows")
            cur.close()
        self._seq += rows.num_rows

    def _rebuild_views(self) -> None:
        self._con.execute(sql.REBUILD_EPISODES)

    def _problem(self, problem: LineProblem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_KEPT_PROBLEMS:
            self.problems.append(problem)
        log.warning("%s", problem)

    # --------------------------------------------------------------- compaction
    def _compact_run(self, state: RunState) -> Path:
        folder = state.path / COMPACT_DIR
        folder.mkdir(exist_ok=True)
        manifest: dict[str, Any] = {"run_id": state.run_id, "format": SNAPSHOT_FORMAT, "files": {}}
        for kind_name in ("episodes", "turns"):
            _, file_name, table = _KIND_FILES[kind_name]
            data = self.cursor().sql(sql.SELECT_RUN_ROWS[table], params=[state.run_id]).to_arrow_table()
            target = folder / f"{kind_name}.parquet"
            with replacing(target) as tmp:
                pq.write_table(data, tmp)
            cursor = state.cursors[kind_name]
            manifest["files"][file_name] = {"kind": kind_name, "offset": cursor.offset, "lines": cursor.lines}
        write_json_atomic(folder / MANIFEST, manifest)
        return folder

    def _load_compacted(self, state: RunState, kinds: tuple[str, ...]) -> None:
        """Start from the run's Parquet snapshot when it still matches the files."""
        folder = state.path / COMPACT_DIR
        try:
            manifest = loads_bounded((folder / MANIFEST).read_bytes())
        except (OSError, ValueError):
            return
        for file_name, entry in manifest.get("files", {}).items():
            kind_name = entry.get("kind")
            if kind_name not in kinds or kind_name not in ("episodes", "turns"):
                continue
            if kind_name == "turns" and manifest.get("format", 1) < SNAPSHOT_FORMAT:
                # a notice, not only a log line: the user sees why this open is slow and how to fix it
                self._problem(LineProblem(folder / MANIFEST, 0, "turn snapshot predates line positions; turns read "
                                          "from the JSONL until `crafter-tui traces compact` runs again"))
                continue
            source = state.path / file_name
            if not source.is_file() or source.stat().st_size < int(entry["offset"]):
                self._problem(LineProblem(source, 0, "compacted snapshot is newer than the file; ignored"))
                continue
            # DuckDB reads the snapshot itself: going through an Arrow table cost ~4x its size in
            # memory the allocators kept (100k episodes + 1M turns: ~150 MB more resident)
            snapshot = str(folder / f"{kind_name}.parquet")
            _, _, target = _KIND_FILES[kind_name]
            cur = self.cursor()
            try:
                cur.execute(sql.INSERT_SNAPSHOT[target], [snapshot])
                last_seq = cur.execute(sql.SNAPSHOT_MAX_SEQ, [snapshot]).fetchone()[0]
            finally:
                cur.close()
            self._seq = max(self._seq, 0 if last_seq is None else int(last_seq) + 1)
            state.cursors[kind_name] = FileCursor(int(entry["offset"]), int(entry["lines"]))


def _close_interrupting(connection: duckdb.DuckDBPyConnection) -> None:
    """Close ``connection``; while a call in another thread keeps it busy, interrupt that call and retry
    (for up to ``CLOSE_WAIT_S``)."""
    deadline = time.monotonic() + CLOSE_WAIT_S
    while True:
        try:
            connection.close()
            return
        except duckdb.ResourceInUseException:
            if time.monotonic() > deadline:
                raise
            connection.interrupt()
            time.sleep(0.01)
