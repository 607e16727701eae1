"""The turn lines an export needs, read by position in (episode, file order) order.

Why not the file from top to bottom: a run recorded with ``--workers N`` has its episodes'
lines interleaved in ``turns.jsonl`` in an order that differs from one recording to the next,
so examples written in line order came out in a different order each time (and a seeded
shuffle or split downstream differed too). The store records where every turn's line is
(``turn_index.line_offset`` / ``line_bytes``); the export reads the lines of each selected
episode by position, episode by episode. Its output order is then a function of the data only:

    (run_id, episode, turn)    -- an example sits at the turn it ends with

Within an episode the lines keep their file order (its worker wrote them turn after turn), so
the readers' rules (the first line of a repeated turn wins, the episode ends at its last
selected turn) are unchanged. Consecutive lines are read with one ``pread`` per few MB: a run
written by one worker is read sequentially, as before.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

#: Bytes read at once (consecutive lines share a read).
READ_BYTES = 4 * 1024 * 1024

#: The selected episodes (with their summarised attempt) of each source of examples.
_EPISODES = {
    "selection": "SELECT DISTINCT run_id, episode, attempt FROM selection",
    "token_sample": """SELECT DISTINCT s.run_id, s.episode, s.attempt FROM selection s
                       JOIN token_sample USING (example_key)""",
}


def _run_index(episodes: str) -> str:
    return f"""SELECT run_id, CAST(row_number() OVER (ORDER BY run_id) - 1 AS INTEGER) AS run
               FROM (SELECT DISTINCT run_id FROM ({episodes}))"""


#: The runs of a source numbered in export order (``run`` 0, 1, ...).
RUN_INDEX_SQL = {source: _run_index(episodes) for source, episodes in _EPISODES.items()}
#: Every line of the selected attempt of each selected episode of runs ``$first``..``$last`` (numbers of
#: ``RUN_INDEX_SQL``), in reading order: many runs per query (a query per run scanned the whole turn index
#: once per run), not necessarily all (one sort of a million rows held ~100 MB more at once).
LINES_SQL = {source: f"""SELECT r.run, ti.episode, ti.line_offset, ti.line_bytes FROM turn_index ti
                         JOIN ({episodes}) e USING (run_id, episode, attempt)
                         JOIN ({RUN_INDEX_SQL[source]}) r USING (run_id)
                         WHERE r.run BETWEEN $first AND $last
                         ORDER BY r.run, ti.episode, ti.line_offset"""
             for source, episodes in _EPISODES.items()}


@dataclass(slots=True)
class LineRows:
    """Where the lines of one run's selected episodes are, in reading order."""

    episode: np.ndarray
    offset: np.ndarray
    size: np.ndarray  # newline included

    def __len__(self) -> int:
        return len(self.offset)

    def take(self, start: int, stop: int) -> LineRows:
        return LineRows(self.episode[start:stop], self.offset[start:stop], self.size[start:stop])


def run_order(cursor: duckdb.DuckDBPyConnection, source: str = "selection") -> list[str]:
    """The run ids of ``RUN_INDEX_SQL[source]``, by their number."""
    return [run_id for run_id, _ in sorted(cursor.execute(RUN_INDEX_SQL[source]).fetchall(), key=lambda row: row[1])]


def line_rows(cursor: duckdb.DuckDBPyConnection, first: int, last: int, source: str = "selection") -> list[LineRows]:
    """Where the lines of runs ``first``..``last`` (their numbers) are: views into one fetch, one per run."""
    columns = cursor.execute(LINES_SQL[source], {"first": first, "last": last}).fetchnumpy()
    rows = LineRows(*(np.asarray(columns[name], dtype=np.int64) for name in ("episode", "line_offset", "line_bytes")))
    bounds = np.searchsorted(np.asarray(columns["run"]), np.arange(first, last + 2)).tolist()
    return [rows.take(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]


def all_line_rows(cursor: duckdb.DuckDBPyConnection, source: str = "selection") -> dict[str, LineRows]:
    """``line_rows`` of every run of ``source``, by run id."""
    run_ids = run_order(cursor, source)
    return dict(zip(run_ids, line_rows(cursor, 0, len(run_ids) - 1, source))) if run_ids else {}


def read_boundaries(rows: LineRows, block: int = READ_BYTES) -> np.ndarray:
    """Indices where a new read starts (plus ``len(rows)``): where a line does not follow the previous
    one in the file, or a read would pass ``block`` bytes."""
    offsets, count = rows.offset, len(rows)
    if count == 0:
        return np.zeros(1, dtype=np.int64)
    ends = offsets + rows.size
    jump = np.r_[True, offsets[1:] != ends[:-1]]
    segment = np.cumsum(jump) - 1
    base = offsets[np.flatnonzero(jump)][segment]
    piece = (offsets - base) // block
    new = np.r_[True, (segment[1:] != segment[:-1]) | (piece[1:] != piece[:-1])]
    return np.r_[np.flatnonzero(new), count]


def read_lines(path: Path, rows: LineRows, block: int = READ_BYTES) -> Iterator[bytes]:
    """The lines at ``rows`` (without their newline), in order.

    A line that is no longer where the store saw it (the file was rewritten since) comes back as
    whatever bytes are there now; the readers check episode and attempt of every line they parse.
    """
    bounds = read_boundaries(rows, block).tolist()
    offsets, sizes = rows.offset.tolist(), rows.size.tolist()
    with path.open("rb", buffering=0) as handle:
        fd = handle.fileno()
        for first, stop in zip(bounds[:-1], bounds[1:]):
            start = offsets[first]
            length = offsets[stop - 1] + sizes[stop - 1] - start
            data = os.pread(fd, length, start)
            lines = data.split(b"\n")
            if len(data) == length and len(lines) == stop - first + 1:
                del lines[-1]
                yield from lines
                continue
            for index in range(first, stop):  # not the lines the store saw: each line's own bytes
                at = offsets[index] - start
                yield data[at:at + sizes[index]].rstrip(b"\n")
