"""Incremental, tolerant loading of trace JSONL files into Arrow tables.

Why not ``iter_jsonl`` + pydantic for everything: 100k episode summaries or a million turns
must load in seconds. The fast path hands a block of complete new lines to Arrow's
multithreaded JSON reader with an explicit schema. Arrow cannot skip a bad line, so when a
block fails (corrupt JSON, a wrong type, a missing required field) that one block is read
again line by line with the same semantics as ``traces.jsonl.iter_jsonl`` and the record's
pydantic model, and each bad line is reported with its file and line number. The rest of
the block is kept.

A last line without a newline is a write in progress: it is not consumed, and the next
refresh reads it once it is complete (so a live rollout can be tailed).

Every loaded row carries where its line is in the file (``_line_offset``, ``_line_bytes`` with
the newline): the export reads the turns it needs by position, in (episode, turn) order,
whatever order parallel workers appended them in.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
from pydantic import BaseModel, ValidationError

from crafter_tui.traces.jsonl import (
    MAX_LINE_BYTES,
    FileCursor,
    LineProblem,
    lines_may_nest_deeper,
    loads_bounded,
    read_appended,
)
from crafter_tui.traces.schema import EpisodeSummary, StepRecord, TurnRecord

__all__ = ["EPISODES", "STEPS", "TURNS", "FileCursor", "LoadResult", "RecordKind", "read_new"]

_STR_LIST = pa.list_(pa.string())

EPISODE_SCHEMA = pa.schema([
    ("episode", pa.int64()), ("seed", pa.int64()), ("attempt", pa.int64()), ("run_id", pa.string()),
    ("agent", pa.string()), ("model", pa.string()), ("difficulty", pa.string()),
    ("steps", pa.int64()), ("turns", pa.int64()), ("reward", pa.float64()),
    ("achievements", _STR_LIST), ("num_achievements", pa.int64()), ("termination", pa.string()),
    ("error", pa.string()), ("invalid_actions", pa.int64()), ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()), ("wall_s", pa.float64()),
])
EPISODE_REQUIRED = ("episode", "seed", "run_id", "agent", "model", "steps", "turns", "reward",
                    "achievements", "num_achievements", "termination", "wall_s")

_CALL = pa.struct([("id", pa.string()), ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())]))])
TURN_SCHEMA = pa.schema([
    ("episode", pa.int64()), ("attempt", pa.int64()), ("turn", pa.int64()), ("step", pa.int64()),
    ("observation", pa.string()),
    ("assistant", pa.struct([("content", pa.string()), ("tool_calls", pa.list_(_CALL))])),
    ("tool_result", pa.string()), ("actions", _STR_LIST), ("valid", pa.bool_()),
    ("new_achievements", _STR_LIST),
])
TURN_REQUIRED = ("episode", "turn", "step", "observation", "assistant")

STEP_SCHEMA = pa.schema([
    ("episode", pa.int64()), ("attempt", pa.int64()), ("step", pa.int64()), ("turn", pa.int64()),
    ("action", pa.int64()), ("action_name", pa.string()), ("reward", pa.float64()),
    ("done", pa.bool_()), ("new_achievements", _STR_LIST),
])
STEP_REQUIRED = ("episode", "step", "turn", "action", "action_name", "reward")


@dataclass(frozen=True, slots=True)
class RecordKind:
    """What a file holds: its Arrow schema, required columns and the model that checks a line."""

    name: str
    schema: pa.Schema
    required: tuple[str, ...]
    model: type[BaseModel]
    defaults: tuple[tuple[str, Any], ...] = ()


EPISODES = RecordKind("episodes", EPISODE_SCHEMA, EPISODE_REQUIRED, EpisodeSummary,
                      (("attempt", 0), ("invalid_actions", 0), ("prompt_tokens", 0), ("completion_tokens", 0),
                       ("difficulty", "normal")))
TURNS = RecordKind("turns", TURN_SCHEMA, TURN_REQUIRED, TurnRecord,
                   (("attempt", 0), ("valid", True), ("actions", []), ("new_achievements", [])))
STEPS = RecordKind("steps", STEP_SCHEMA, STEP_REQUIRED, StepRecord,
                   (("attempt", 0), ("done", False), ("new_achievements", [])))


@dataclass(slots=True)
class LoadResult:
    """New rows of one file plus the problems met on the way."""

    table: pa.Table | None  # plus ``_line_offset`` and ``_line_bytes``: each row's line in the file
    problems: list[LineProblem] = field(default_factory=list)
    reset: bool = False  # the file shrank: the caller must drop what it had from it


def read_new(path: Path, cursor: FileCursor, kind: RecordKind) -> Iterator[LoadResult]:
    """Yield tables of the complete lines appended to ``path`` since ``cursor`` (advanced in place).

    The blocks come from ``traces.jsonl.read_appended``, the one tail reader; this only parses them."""
    for piece in read_appended(path, cursor):
        if piece.problem is not None or piece.reset:
            yield LoadResult(None, [piece.problem] if piece.problem else [], reset=piece.reset)
        if piece.block:
            yield parse_block(path, piece.block, piece.first_line, kind, first_offset=piece.first_offset)


LINE_OFFSET, LINE_BYTES = "_line_offset", "_line_bytes"


def _with_positions(table: pa.Table, offsets: np.ndarray, sizes: np.ndarray) -> pa.Table:
    """``table`` plus where each row's line lies in the file (its offset and length, newline included)."""
    table = table.append_column(LINE_OFFSET, pa.array(offsets.astype(np.int64, copy=False)))
    return table.append_column(LINE_BYTES, pa.array(sizes.astype(np.int64, copy=False)))


def _looks_like_objects(block: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """(start, end) of every line (the end is its newline) if every line is ``{...}`` with no blank
    line, else None.

    Arrow's reader is only given blocks that pass this check: it crashes (segfault, Arrow 26)
    on a block starting with a top-level ``null``, and counts ``{..}{..}`` on one line as two
    rows; both would break the line <-> row correspondence the problem reports rely on.
    """
    data = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(data == 10)
    if len(ends) == 0:
        return None
    starts = np.concatenate(([0], ends[:-1] + 1))
    if np.any(starts == ends):  # a blank line
        return None
    if np.any(data[starts] != ord("{")) or np.any(data[ends - 1] != ord("}")):
        return None
    return starts, ends


def parse_block(path: Path, block: bytes, first_line: int, kind: RecordKind, *,
                first_offset: int = 0) -> LoadResult:
    """Arrow fast path; on any failure, the line-by-line path for this block only.

    ``first_offset``: where the block starts in the file (for the rows' line positions).
    """
    bounds = _looks_like_objects(block)
    if bounds is None or lines_may_nest_deeper(block):  # Arrow's reader crashes on a very deep line
        return _parse_slow(path, block, first_line, kind, first_offset)
    starts, ends = bounds
    lines = len(ends)
    try:
        table = pajson.read_json(
            io.BytesIO(block),
            read_options=pajson.ReadOptions(block_size=4 * 1024 * 1024),
            parse_options=pajson.ParseOptions(explicit_schema=kind.schema, unexpected_field_behavior="ignore"),
            memory_pool=pa.system_memory_pool(),  # malloc: its freed pages can be trimmed (traces.memory)
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        return _parse_slow(path, block, first_line, kind, first_offset)
    if (table.num_rows != lines or any(table.column(name).null_count for name in kind.required)
            or (kind is TURNS and _calls_without_id(table))):
        return _parse_slow(path, block, first_line, kind, first_offset)
    return LoadResult(_with_positions(_fill_defaults(table, kind), starts + first_offset, ends - starts + 1))


def _calls_without_id(table: pa.Table) -> bool:
    """Whether some turn's tool call has no ``id``: the slow path names the line (``TurnRecord``).

    The export and the rollout's history answer each call by its id, so such a turn is refused here.
    """
    calls = pc.list_flatten(pc.struct_field(table.column("assistant"), "tool_calls"))
    if len(calls) == 0:
        return False
    return bool(calls.null_count or pc.struct_field(calls, "id").null_count)


def _fill_defaults(table: pa.Table, kind: RecordKind) -> pa.Table:
    """Optional fields absent from a line come back null from Arrow: give them the model default."""
    for name, default in kind.defaults:
        column = table.column(name)
        if column.null_count:
            index = table.schema.get_field_index(name)
            filled = [default if value is None else value for value in column.to_pylist()]
            table = table.set_column(index, name, pa.array(filled, type=column.type))
    return table


def _parse_slow(path: Path, block: bytes, first_line: int, kind: RecordKind, first_offset: int = 0) -> LoadResult:
    rows: list[dict[str, Any]] = []
    positions: list[tuple[int, int]] = []
    problems: list[LineProblem] = []
    offset = first_offset
    for number, raw in enumerate(block.split(b"\n")[:-1], start=first_line):
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        row = _check_line(path, number, raw, kind, problems)
        if row is not None:
            rows.append(row)
            positions.append((start, len(raw) + 1))
    if not rows:
        return LoadResult(None, problems)
    where = np.array(positions, dtype=np.int64)
    return LoadResult(_with_positions(pa.Table.from_pylist(rows, schema=kind.schema), where[:, 0], where[:, 1]),
                      problems)


def _check_line(path: Path, number: int, raw: bytes, kind: RecordKind,
                problems: list[LineProblem]) -> dict[str, Any] | None:
    try:
        value = loads_bounded(raw, max_bytes=MAX_LINE_BYTES)
    except ValueError as exc:
        problems.append(LineProblem(path, number, f"not valid JSON ({exc.__class__.__name__}: {exc})"))
        return None
    if not isinstance(value, dict):
        problems.append(LineProblem(path, number, "not a JSON object"))
        return None
    try:
        record = kind.model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        problems.append(LineProblem(path, number, f"not a valid {kind.name} record: {where}: {first['msg']}"))
        return None
    data = record.model_dump(mode="json", include=set(kind.schema.names))
    if kind is TURNS:
        data["assistant"] = _assistant_columns(value.get("assistant") or {})
    return data


def _assistant_columns(message: dict[str, Any]) -> dict[str, Any]:
    calls = message.get("tool_calls") or []
    content = message.get("content")
    return {
        "content": content if isinstance(content, str) else None,
        "tool_calls": [{"id": call.get("id"), "function": {"name": str((call.get("function") or {}).get("name")),
                                     "arguments": str((call.get("function") or {}).get("arguments"))}}
                       for call in calls if isinstance(call, dict)] or None,
    }
