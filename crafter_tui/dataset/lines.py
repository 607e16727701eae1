"""The export's fast path: example JSONL lines joined from per-turn pieces, no message lists.

``examples.iter_examples`` (the reference) builds every example's message list with
``build_messages`` and encodes it. A million examples with a history window repeat each
past turn several times, so here every turn is turned into text once, when its line is read:

- its *segment*: the messages ``build_messages`` emits for it as a past turn (user
  observation, the reply, the tool results), encoded and joined with commas;
- its *head*: the user observation and the reply, i.e. how it ends its own example.

An example is then ``{"messages":[<system>,<segments of its window>,<head>]<tools>}``: its
pieces are bytes, handed to ``writev`` as they are (``dataset.writer``), never joined. The pieces are spelled out as ``build_messages`` shapes messages, and
``composition_holds`` proves on a probe before every export that joining them gives exactly
``dumps(build_messages(...) + [reply])``; if ``build_messages`` ever changes, the export takes
the reference path. Tests compare both paths byte for byte on small stores.

Parsing uses orjson when installed (3-4x faster than ``json``; the same values, falling back
to ``json`` for what orjson rejects, e.g. NaN). Replies are encoded by orjson only when its
bytes are provably what ``json.dumps`` writes (ASCII without DEL, no float): else by ``json``.
Strings (observations, tool results, call ids) by orjson when ASCII without DEL: then its
escapes are ``json``'s, character for character (a test checks all 127).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from crafter_tui.agents.base import HistoryTurn
from crafter_tui.agents.prompting import SYSTEM_PROMPT, build_messages
from crafter_tui.dataset.source import RUN_INDEX_SQL, LineRows, line_rows, read_lines
from crafter_tui.dataset.examples import (
    TOOLS_JSON, _encode_message, dumps, exported_reply, recorded_goal,
)
from crafter_tui.traces.schema import TURNS_FILE, RunRecord

try:  # optional speed-up: the exact same values, parsed 3-4x faster
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; plain json still works
    orjson = None  # type: ignore[assignment]

_C_ENCODER = json.encoder.c_make_encoder  # type: ignore[attr-defined]
_escape = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
#: Bytes that can be part of a float or need ``json``'s escaping: only then the careful check.
_SUSPECT = b".+-\x7f"
_encode_c = (_C_ENCODER(None, None, _escape, None, ":", ",", False, False, True)
             if _C_ENCODER is not None else None)


def parse_line(raw: bytes) -> tuple[Any, bool]:
    """``json.loads(raw)`` and whether the value can be encoded by orjson (it came from orjson: no NaN)."""
    if orjson is not None:
        try:
            return orjson.loads(raw), True
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw), False


def _orjson_matches(data: bytes) -> bool:
    """Are orjson's bytes what ``json.dumps`` writes? Not with non-ASCII or DEL (``json`` escapes them), nor
    with a float: orjson spells some differently (``0.00001`` for ``1e-05``); a float always has a digit
    before a dot, or an ``e+``/``e-``. Text that merely looks like that costs speed, not exactness."""
    if not data.isascii():
        return False
    if len(data.translate(None, _SUSPECT)) == len(data):  # the usual case, in one pass
        return True
    if b"\x7f" in data or b"e+" in data or b"e-" in data:
        return False
    dot = data.find(b".")
    while dot > 0:
        if 48 <= data[dot - 1] <= 57:
            return False
        dot = data.find(b".", dot + 1)
    return True


def encode_value(value: Any, orjson_ok: bool) -> str:
    """Exactly ``examples.dumps(value)`` (compact, ASCII), by orjson when its bytes provably match."""
    return encode_bytes(value, orjson_ok).decode("ascii")


def encode_bytes(value: Any, orjson_ok: bool) -> bytes:
    """``examples.dumps(value)`` as ASCII bytes, by orjson when its bytes provably match."""
    if orjson_ok and orjson is not None:
        try:
            data = orjson.dumps(value)
        except TypeError:
            data = b"\x7f"  # not encodable by orjson (e.g. an int beyond 64 bits): json does it
        if _orjson_matches(data):
            return data
    if _encode_c is not None:
        return "".join(_encode_c(value, 0)).encode("ascii")
    return dumps(value).encode("ascii")  # pragma: no cover - CPython always has the C encoder


def encode_text(value: Any) -> bytes:
    """``examples.dumps(value)`` of a message's string part (ASCII bytes): orjson's escapes are ``json``'s
    for every ASCII character but DEL, so plain text skips ``json``'s slower encoder."""
    if type(value) is str and orjson is not None and value.isascii() and "\x7f" not in value:
        return orjson.dumps(value)
    return dumps(value).encode("ascii")


class _Episode:
    """One selected episode while its lines are read: its plan and its turns encoded so far."""

    __slots__ = ("attempt", "groups", "is_valid", "last_turn", "window", "by_turn", "seen")

    def __init__(self, attempt: int, groups: dict[int, tuple[int, ...]], is_valid: bool, last_turn: int) -> None:
        self.attempt = attempt
        self.groups = groups  # last turn of an example -> the example's turns
        self.is_valid = is_valid
        self.last_turn = last_turn
        self.window: list[bytes] = []  # turn mode: the last ``history_turns`` segments (file order)
        self.by_turn: dict[int, bytes] = {}  # trajectory mode: every segment, by turn number
        self.seen: set[int] = set()


_USER = b'{"role":"user","content":'
_TOOL = b',{"role":"tool","tool_call_id":'
_CONTENT = b',"content":'


def turn_pieces(observation: Any, assistant: dict[str, Any], tool_result: str | None,
                orjson_ok: bool) -> tuple[bytes, bytes]:
    """(segment, head) of one turn: the messages ``build_messages`` makes of a past turn, encoded
    (the segment with the comma that follows it in an example), and the turn as its example's end.

    Spelled out (user, reply, one tool message per call) because building and encoding message
    dicts per turn was most of the export time; ``composition_holds`` proves the spelling against
    ``build_messages`` before every export.
    """
    if type(observation) is str and observation.isascii() and "\x7f" not in observation and orjson is not None:
        text = orjson.dumps(observation)  # encode_text's common case, inline: this runs once per turn
    else:
        text = encode_text(observation)
    head = b"".join((_USER, text, b"},", encode_bytes(assistant, orjson_ok)))
    calls = assistant.get("tool_calls") or []
    if not calls:
        return head + b",", head
    content = encode_text(tool_result or "") + b"}"
    return b"".join([head, *(_TOOL + encode_text(call["id"]) + _CONTENT + content for call in calls), b","]), head


def _system_message(system: str) -> str:
    return _encode_message(build_messages(system, [], "", 0)[0])


def composition_holds() -> bool:
    """Does joining per-turn pieces give exactly ``dumps(build_messages(...) + [reply])``?

    A probe with a tool call, a plain-text reply, two calls, an empty tool result, odd
    characters and windows of 0, 1, 2 and more turns than there are. False sends the export
    down the reference path (if ``build_messages`` ever changes how it shapes messages).
    """
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "interact", "arguments": '{"a": "\\u00e9"}'}}]}
    two = {"role": "assistant", "content": "x", "tool_calls": [
        {"id": "c2", "type": "function", "function": {"name": "interact", "arguments": "{}"}},
        {"id": "c3", "type": "function", "function": {"name": "terminate", "arguments": '{"reason": "r"}'}}]}
    text = {"role": "assistant", "content": "text"}
    history = [HistoryTurn('obs "1"\n\u00fc', call, "done \u2713"), HistoryTurn("obs 2", text, None),
               HistoryTurn("obs 3", two, None), HistoryTurn("obs 4", call, "")]
    system = "sys\t\x7f"
    pieces = [turn_pieces(t.observation, t.assistant, t.tool_result, True) for t in history]
    for window in (0, 1, 2, 5):
        for upto, current in enumerate(history):
            expected = dumps(build_messages(system, history[:upto], current.observation, window) + [current.assistant])
            shown = [segment for segment, _ in pieces[:upto]][-window:] if window > 0 else []
            joined = b"".join([b"[", _system_message(system).encode("ascii"), b",", *shown, pieces[upto][1], b"]"])
            if joined.decode("ascii") != expected:
                return False
    return True


@dataclass(slots=True)
class PiecedLine:
    """One example of the fast path: its JSONL line as byte pieces (``line`` joins them)."""

    run_id: str
    episode: int
    turns: tuple[int, ...]
    is_valid: bool
    pieces: tuple[bytes, ...]  # the last one ends with the line's newline

    @property
    def line(self) -> str:
        return b"".join(self.pieces)[:-1].decode("ascii")


@dataclass(slots=True)
class RunRows:
    """The kept turns of one run, as numpy columns ordered by episode and turn (one query)."""

    run_id: str
    episode: np.ndarray
    attempt: np.ndarray
    turn: np.ndarray
    key: np.ndarray
    is_valid: np.ndarray
    lines: LineRows  # where the turn lines of these episodes are (``source``)


#: The kept turns of runs ``$first``..``$last`` (numbers of ``RUN_INDEX_SQL``), in export order.
ROWS_SQL = f"""SELECT r.run, s.episode, s.attempt, s.turn, s.example_key, s.is_valid
               FROM selection s JOIN ({RUN_INDEX_SQL["selection"]}) r USING (run_id)
               WHERE r.run BETWEEN $first AND $last
               ORDER BY r.run, s.episode, s.turn"""
RUN_SIZES_SQL = "SELECT run_id, count(*) FROM selection GROUP BY run_id ORDER BY run_id"
_COLUMNS = ("episode", "attempt", "turn", "example_key", "is_valid")
#: Kept turns fetched by one query (whole runs): a few queries in all, yet DuckDB never sorts and
#: holds a million rows at once (~100 MB more at the export's peak).
FETCH_ROWS = 250_000


def run_batches(sizes: list[int], limit: int) -> list[tuple[int, int]]:
    """Consecutive runs (first, last) of at most ``limit`` rows each (a bigger run alone)."""
    batches: list[tuple[int, int]] = []
    first, total = 0, 0
    for index, size in enumerate(sizes):
        if index > first and total + size > limit:
            batches.append((first, index - 1))
            first, total = index, 0
        total += size
    if sizes:
        batches.append((first, len(sizes) - 1))
    return batches


def all_run_rows(cursor: duckdb.DuckDBPyConnection) -> list[RunRows]:
    """``RunRows`` of every run of the selection, in export order, as views into a few fetches of
    about ``FETCH_ROWS`` rows (a query per run scanned the whole selection and turn index once per
    run: ~2.4 CPU s for 100 runs)."""
    sizes = cursor.execute(RUN_SIZES_SQL).fetchall()
    result: list[RunRows] = []
    for first, last in run_batches([int(n) for _, n in sizes], FETCH_ROWS):
        columns = cursor.execute(ROWS_SQL, {"first": first, "last": last}).fetchnumpy()
        bounds = np.searchsorted(np.asarray(columns["run"]), np.arange(first, last + 2)).tolist()
        arrays = [np.asarray(columns[name]) for name in _COLUMNS]
        del columns
        lines = line_rows(cursor, first, last)
        result.extend(RunRows(sizes[first + k][0], *(array[start:stop] for array in arrays), lines[k])
                      for k, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])))
    return result


def run_plans(rows: RunRows) -> dict[int, _Episode]:
    """The selected episodes of one run: which turns end an example, and the example's turns.

    An example is the turns sharing an ``example_key``: one turn in turn mode, a run of kept
    turns in trajectory mode; ``examples._plans`` is the reference.
    """
    count = len(rows.turn)
    if count == 0:
        return {}
    episode_starts = np.flatnonzero(np.r_[True, rows.episode[1:] != rows.episode[:-1]]).tolist() + [count]
    turns = rows.turn.tolist()
    single = len(np.unique(rows.key)) == count  # every turn its own example
    keys = None if single else rows.key.tolist()
    episode_ids = rows.episode.tolist()
    attempts = rows.attempt.tolist()
    valid = rows.is_valid.tolist()
    episodes: dict[int, _Episode] = {}
    for start, end in zip(episode_starts[:-1], episode_starts[1:]):
        these = turns[start:end]
        if keys is None:
            groups = {turn: (turn,) for turn in these}
        else:
            members: dict[int, list[int]] = {}
            for turn, key in zip(these, keys[start:end], strict=True):
                members.setdefault(key, []).append(turn)
            groups = {turn_list[-1]: tuple(turn_list) for turn_list in members.values()}
        episodes[episode_ids[start]] = _Episode(attempts[start], groups, any(valid[start:end]), max(these))
    return episodes


def iter_lines(cursor: duckdb.DuckDBPyConnection, runs: dict[str, tuple[Path, RunRecord]], *,
               mode: str, text_actions: bool, drop_reasoning: bool = False, goal_reasoning: bool = False,
               rows: list[RunRows] | None = None) -> Iterator[PiecedLine]:
    """Every example line of the materialised ``selection``, in the reference path's order:
    (run_id, episode, turn), see ``source``. ``rows``: default ``all_run_rows(cursor)``.
    """
    for run in all_run_rows(cursor) if rows is None else rows:
        yield from lines_of_run(run, runs[run.run_id], mode=mode, text_actions=text_actions,
                                drop_reasoning=drop_reasoning, goal_reasoning=goal_reasoning)


def lines_of_run(rows: RunRows, run: tuple[Path, RunRecord], *, mode: str, text_actions: bool,
                 drop_reasoning: bool = False, goal_reasoning: bool = False) -> Iterator[PiecedLine]:
    """The lines of one run (needs no database: a forked helper process can run it)."""
    path, record = run
    return run_lines(rows.run_id, read_lines(path / TURNS_FILE, rows.lines), record, run_plans(rows), mode=mode,
                     text_actions=text_actions, drop_reasoning=drop_reasoning, goal_reasoning=goal_reasoning)


def run_lines(run_id: str, lines: Iterable[bytes], record: RunRecord, episodes: dict[int, _Episode], *, mode: str,
              text_actions: bool, drop_reasoning: bool = False, goal_reasoning: bool = False) -> Iterator[PiecedLine]:
    """The lines of one run, from its selected episodes' turn lines in (episode, file) order
    (``source.read_lines``; ``episodes`` from ``run_plans``, consumed).

    Mirrors ``examples._run_examples`` line for line: the same lines skipped, the same history.
    """
    system = record.system_prompt if record.system_prompt is not None else SYSTEM_PROMPT
    history_turns = record.history_turns
    prefix = ('{"messages":[' + _system_message(system) + ",").encode("ascii")
    tail = b"]}\n" if text_actions else ('],"tools":' + TOOLS_JSON + "}\n").encode("ascii")
    turn_mode = mode == "turn"
    for raw in lines:
        if not episodes:
            return
        try:
            line, orjson_ok = parse_line(raw)
            number = line["episode"]
            episode = episodes.get(number)
            turn = line["turn"]
            if episode is None or line.get("attempt", 0) != episode.attempt or turn in episode.seen:
                continue
            observation, assistant = line["observation"], line["assistant"]
        except (ValueError, KeyError, TypeError, RecursionError):
            continue  # reported when the store loaded the file
        assistant = exported_reply(assistant, drop_reasoning=drop_reasoning, text_actions=text_actions,
                                   goal=recorded_goal(line) if goal_reasoning else None)
        segment, head = turn_pieces(observation, assistant, None if text_actions else line.get("tool_result"),
                                    orjson_ok)
        group = episode.groups.get(turn)
        if group is not None:
            if turn_mode:
                shown = episode.window
            else:
                shown = [episode.by_turn[t] for t in group[:-1] if t in episode.by_turn]
            yield PiecedLine(run_id, number, group, episode.is_valid, (prefix, *shown, head, tail))
        if not turn_mode:
            episode.by_turn[turn] = segment
        elif history_turns > 0:
            episode.window.append(segment)
            if len(episode.window) > history_turns:
                del episode.window[0]
        episode.seen.add(turn)
        if turn >= episode.last_turn:
            del episodes[number]
