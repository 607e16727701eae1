"""Tolerant JSONL reading and crash-safe appending.

Writers flush every line as it is written; a process killed mid-write leaves at most one
torn last line. Readers skip a torn or corrupt line with a warning that names the file and
line number and go on with the rest: nothing already collected is ever lost to one bad line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

log = logging.getLogger(__name__)

#: How deep an untrusted JSON value may nest. Real records nest under 10 levels (a turn's
#: ``assistant.tool_calls[].function``, a dataset line's ``messages[].tool_calls[].function``);
#: the limit keeps every reader far from its stack's end: ``json``'s decoder raises
#: RecursionError near 1000 levels, Arrow's reader crashes the process on a 100k-deep line.
MAX_JSON_DEPTH = 64
#: The longest line a reader parses: a longer one is reported and skipped. Model replies are
#: capped when written (``[openai] max_reply_bytes``), so a real line is far shorter.
MAX_LINE_BYTES = 64 * 1024 * 1024

#: A JSON string (the unrolled-loop form: linear, no backtracking), to strip before counting brackets.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(c for c in range(256) if c not in _BRACKETS)
_NOT_BRACKETS_OR_NEWLINE = bytes(c for c in range(256) if c not in _BRACKETS + b"\n")
#: Byte -> nesting change: +1 for ``[``/``{``, -1 for ``]``/``}``, 0 else.
_DELTA = np.zeros(256, dtype=np.int8)
_DELTA[[ord("["), ord("{")]] = 1
_DELTA[[ord("]"), ord("}")]] = -1


class JsonLimitError(ValueError):
    """Untrusted JSON over a limit (depth or size): reported like any other bad line."""


def _max_depth(brackets: bytes) -> int:
    if not brackets:
        return 0
    return int(np.cumsum(_DELTA[np.frombuffer(brackets, dtype=np.uint8)], dtype=np.int32).max())


def json_depth(raw: bytes | str) -> int:
    """How deep the JSON text ``raw`` nests (exact for valid JSON: brackets inside strings are not counted)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    return _max_depth(_STRING.sub(b"", data).translate(None, _NOT_BRACKETS))


def lines_may_nest_deeper(block: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether some line of ``block`` may nest deeper than ``limit`` (never False when one does).

    Strings are not stripped (a fast pass over the whole block), so brackets in text can only make
    a line look deeper than it is: such a block goes the careful way. First the whole block's range
    of depth bounds every line's; only when that is over the limit is each line measured.
    """
    brackets = block.translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return False
    running = np.cumsum(_DELTA[np.frombuffer(brackets, dtype=np.uint8)], dtype=np.int32)
    if int(running.max()) - min(int(running.min()), 0) <= limit:
        return False  # no line can nest deeper than the whole block's range (the common case: one pass)
    kept = np.frombuffer(block.translate(None, _NOT_BRACKETS_OR_NEWLINE), dtype=np.uint8)
    depth = np.cumsum(_DELTA[kept], dtype=np.int32)
    newline = kept == 10
    bases = np.concatenate(([0], depth[newline]))  # the depth where each line starts
    return bool((depth - bases[np.cumsum(newline) - newline]).max() > limit)


def loads_bounded(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH, max_bytes: int = MAX_LINE_BYTES) -> Any:
    """``json.loads(raw)`` for untrusted text, depth- and size-bounded.

    Every reader of files or bodies it did not write itself parses through here, so a line of
    3 KB of brackets is one reported bad line, not a RecursionError (or a crash) of the command.
    Raises ``ValueError`` (``json.JSONDecodeError``, ``UnicodeDecodeError`` or ``JsonLimitError``).
    """
    if len(raw) > max_bytes:
        raise JsonLimitError(f"{len(raw)} bytes, over the limit of {max_bytes}")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonLimitError(f"nested deeper than {max_depth} levels") from None
    opening = raw.count(b"[" if isinstance(raw, bytes) else "[") + raw.count(b"{" if isinstance(raw, bytes) else "{")
    if opening > max_depth and json_depth(raw) > max_depth:
        raise JsonLimitError(f"nested deeper than {max_depth} levels")
    return value


@dataclass(slots=True)
class LineProblem:
    """A line that could not be read: where and why."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def iter_jsonl(path: Path, *, problems: list[LineProblem] | None = None,
               max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[dict[str, Any]]:
    """Yield each JSON object of a whole file, streamed a line at a time; bad lines are skipped and
    reported. (Following a file as it grows is ``tail_jsonl``'s job: it remembers where it stopped.)

    A last line without a newline is a write in progress (or a torn write): it is reported as
    torn and skipped. A line longer than ``max_line_bytes`` is reported and skipped without
    being held in memory whole.
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for number, raw in enumerate(iter(lambda: handle.readline(max_line_bytes + 1), b""), start=1):
            if len(raw) > max_line_bytes:
                while raw and not raw.endswith(b"\n"):  # the rest of the line, a bounded piece at a time
                    raw = handle.readline(1 << 20)
                _report(problems, LineProblem(path, number, f"line longer than {max_line_bytes} bytes, skipped"))
                continue
            if not raw.endswith(b"\n"):
                _report(problems, LineProblem(path, number, "torn last line (incomplete write), skipped"))
                return
            if not raw.strip():
                continue
            value = _record(raw, path, number, problems)
            if value is not None:
                yield value


# -- following a file as it grows: the one tail reader ---------------------------------------------
#: Bytes read at once while following a file: bounds memory while a big file is caught up on.
TAIL_BLOCK_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class FileCursor:
    """How far a file has been read: byte offset of the first unread line and lines consumed."""

    offset: int = 0
    lines: int = 0


@dataclass(slots=True)
class Appended:
    """A piece of what was appended to a file since its cursor: complete lines, or news about the file."""

    block: bytes = b""  # complete lines, each ending in a newline (empty when only ``problem`` is news)
    first_line: int = 0  # the 1-based number of the block's first line in the file
    first_offset: int = 0  # the byte offset of the block's first line
    problem: LineProblem | None = None
    reset: bool = False  # the file shrank: the cursor is back at 0, drop what was read from it


def read_appended(path: Path, cursor: FileCursor, *, block_bytes: int | None = None,
                  max_line_bytes: int | None = None) -> Iterator[Appended]:
    """The complete lines appended to ``path`` since ``cursor``, in blocks; the cursor advances past each.

    Every follower of a trace file reads through here (the store's Arrow loader, ``tail_jsonl``):
    a last line without its newline is a write in progress and is left for the next call; a line
    longer than ``max_line_bytes`` is reported and skipped without being held whole; a file that
    shrank is read again from the start, with ``reset`` set.
    """
    block_bytes = block_bytes or TAIL_BLOCK_BYTES
    max_line_bytes = max_line_bytes or MAX_LINE_BYTES
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size < cursor.offset:
        problem = LineProblem(path, cursor.lines, f"file shrank from {cursor.offset} to {size} bytes; re-reading it")
        cursor.offset, cursor.lines = 0, 0
        yield Appended(problem=problem, reset=True)
    if size == cursor.offset:
        return
    with path.open("rb") as handle:
        handle.seek(cursor.offset)
        carry = b""
        skipping = 0  # bytes read so far of a line longer than max_line_bytes (it starts at cursor.offset)
        while True:
            data = handle.read(block_bytes)
            if not data:
                break
            if skipping:
                newline = data.find(b"\n")
                if newline < 0:
                    skipping += len(data)
                    continue
                problem = LineProblem(path, cursor.lines + 1, f"line longer than {max_line_bytes} bytes, skipped")
                cursor.offset += skipping + newline + 1
                cursor.lines += 1
                skipping = 0
                yield Appended(problem=problem)
                data = data[newline + 1:]
            block = carry + data
            end = block.rfind(b"\n")
            if end < 0:
                carry = block
            else:
                complete, carry = block[: end + 1], block[end + 1:]
                first_line, first_offset = cursor.lines + 1, cursor.offset
                cursor.offset += len(complete)
                cursor.lines += complete.count(b"\n")
                yield Appended(complete, first_line, first_offset)
            if len(carry) > max_line_bytes:  # a line still without its end: never held whole in memory
                skipping, carry = len(carry), b""


@dataclass(slots=True)
class Tail:
    """What ``tail_jsonl`` found: the new JSON objects, and whether the file was started over."""

    records: list[dict[str, Any]]
    reset: bool = False  # the file shrank and was read from its start: ``records`` replace what came before


def tail_jsonl(path: Path, cursor: FileCursor, *, problems: list[LineProblem] | None = None) -> Tail:
    """The JSON objects of the complete lines appended to ``path`` since ``cursor`` (which advances).

    A poll of a live file costs what was appended since the last one. Bad lines are skipped and
    reported as ``iter_jsonl`` reports them; a torn last line is left for the next call.
    """
    tail = Tail([])
    for piece in read_appended(path, cursor):
        if piece.problem is not None:
            _report(problems, piece.problem)
        if piece.reset:
            tail = Tail([], reset=True)
        for number, raw in enumerate(piece.block.split(b"\n")[:-1], start=piece.first_line):
            if not raw.strip():
                continue
            value = _record(raw, path, number, problems)
            if value is not None:
                tail.records.append(value)
    return tail


def _report(problems: list[LineProblem] | None, problem: LineProblem) -> None:
    log.warning("%s", problem)
    if problems is not None:
        problems.append(problem)


#: orjson options under which every value it accepts without ``default`` is a plain JSON type
#: (str/int/float/bool/None, dict, list, tuple): subclasses, dates and dataclasses are refused.
_ORJSON_PLAIN = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
#: For a ``PlainRecord`` (itself a dict subclass, which the options above would refuse).
_ORJSON_VOUCHED = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _refuse(value: Any) -> Any:
    raise TypeError(f"not a plain JSON value: {type(value).__name__}")


def fast_float(value: Any) -> bool:
    """Whether ``value`` is a float that orjson and ``json`` both write as ``repr(value)``.

    Floats only in [1e-4, 1e16) or zero: there both write ``repr(x)`` (checked over millions of
    values in tests); ``json`` writes NaN/Infinity and ``1e-05`` where orjson writes ``null`` and
    ``0.00001``.
    """
    return type(value) is float and (value == 0.0 or 1e-4 <= abs(value) < 1e16)


def plain_values(values: Any) -> bool:
    """Whether ``values`` (and everything inside) are types orjson writes exactly as ``json`` does.

    Floats as ``fast_float`` says. Enums are the one other type orjson accepts natively: they
    are refused here.
    """
    for value in values:
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            continue
        if kind is float:
            if value == 0.0 or 1e-4 <= abs(value) < 1e16:
                continue
            return False
        if kind is dict:
            if not plain_values(value.values()):
                return False
        elif kind is list or kind is tuple:
            if not plain_values(value):
                return False
        else:
            return False
    return True


class PlainRecord(dict):
    """A record whose builder vouches that every value inside is plain, so encoding skips the walk.

    Plain: str, int, bool, None, floats for which ``fast_float`` holds, and lists, tuples and
    string-keyed dicts of these (no enums, subclasses or other types). Walking a step record's
    values to prove that cost more than encoding it; the builder knows its values' types (the
    rollout loop's step records from the embedded world: ``rollout.episode.step_record``).
    Anything orjson refuses, and output that is not printable ASCII, still goes through ``json``,
    and a ``PlainRecord`` is a dict to everything else (it pickles to worker processes as one).
    """

    __slots__ = ()


class AsciiPlainRecord(PlainRecord):
    """A ``PlainRecord`` whose builder also vouches that every string in it is printable ASCII.

    Such a record's orjson line is written as it is: the check of the encoded line for non-ASCII
    bytes and DEL (which ``json`` escapes and orjson does not) is skipped. The rollout loop's
    step records from the embedded world qualify: their strings are action and achievement names
    and map symbols (``tests/test_rollout_trace_encoding.py`` pins all three).
    """

    __slots__ = ()


def encode_json_line(record: dict[str, Any]) -> bytes:
    """``record`` as one JSONL line: exactly ``json.dumps(record, separators=(",", ":"), default=str)``.

    Encoding was most of the trace writer's per-step cost (~10 us a step record with ``json``,
    under 1 us with orjson). orjson is used where its bytes provably equal ``json``'s: plain
    types (see ``plain_values``; a ``PlainRecord``'s builder vouches for them instead), string keys,
    64-bit ints, output in printable ASCII (``json`` escapes non-ASCII and DEL as ``\\uXXXX``;
    its escapes of control characters are orjson's). Anything else goes through ``json``.
    """
    kind = type(record)
    vouched = kind is PlainRecord or kind is AsciiPlainRecord
    if vouched or (kind is dict and plain_values(record.values())):
        try:
            line = orjson.dumps(record, default=_refuse,
                                option=(_ORJSON_VOUCHED if vouched else _ORJSON_PLAIN) | orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # non-string keys, ints beyond 64 bits, anything refused
            pass
        else:
            # json escapes non-ASCII and DEL; orjson does not (an AsciiPlainRecord's builder vouches for it)
            if kind is AsciiPlainRecord or (line.isascii() and b"\x7f" not in line):
                return line
    return _json_line(record)


def _json_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode("utf-8")


class JsonlAppender:
    """Append-only JSONL file, one line per record, each written with one ``write`` system call.

    Unbuffered: a line is in the file (the page cache, visible to readers in other processes)
    when ``write`` returns, so a killed process loses at most the line being written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab", buffering=0)  # raw FileIO: each write() is one system call
        self._repair_torn_tail()

    def _repair_torn_tail(self) -> None:
        """After a crash the file may end mid-line: start ours on a fresh line."""
        size = os.fstat(self._file.fileno()).st_size
        if size == 0:
            return
        with self.path.open("rb") as reader:
            reader.seek(size - 1)
            if reader.read(1) != b"\n":
                self._write(b"\n")

    def _write(self, data: bytes) -> None:
        written = self._file.write(data)
        if written != len(data):  # a regular file takes the whole line at once; finish a short write if not
            view = memoryview(data)[written:]
            while view:
                view = view[self._file.write(view):]

    def write(self, record: dict[str, Any]) -> None:
        data = encode_json_line(record)
        written = self._file.write(data)  # the common case, inline: one call per line less
        if written != len(data):
            self._write(data[written:])

    def close(self) -> None:
        self._file.close()


def temp_sibling(path: Path) -> Path:
    """A fresh name next to ``path`` to write before ``os.replace``: unique per call, so two writers of
    one file (two threads of a process included) never write into the same temporary file — with a
    shared name, one writer's rename could publish the other's half-written bytes."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temporary siblings of ``path`` (``temp_sibling``) whose writer process is gone.

    A writer killed before its ``os.replace`` (kill -9, a power cut) leaves its hidden temporary file
    behind; the next writer of the same file clears them. A file whose pid still lives is someone's
    write in progress and is kept. Returns what was removed.
    """
    removed: list[Path] = []
    for candidate in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        pid_text = candidate.name[len(path.name) + 2:].split(".", 1)[0]
        if pid_text.isdigit() and not pid_alive(int(pid_text)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters made literal."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one owned by another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A fresh temporary path to write; when the block ends without error it replaces ``path`` whole
    (readers never see a half-written file, the last writer wins), otherwise it is removed."""
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (see ``replacing``)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: Path, value: Any) -> None:
    """Replace ``path`` with ``value`` as JSON so readers never see a half-written file."""
    write_bytes_atomic(path, (json.dumps(value, indent=2, default=str) + "\n").encode("utf-8"))


def _record(raw: bytes, path: Path, number: int, problems: list[LineProblem] | None) -> dict[str, Any] | None:
    """One line as a JSON object, or None after reporting why it is not one (both readers' rule)."""
    try:
        value = loads_bounded(raw)
    except ValueError as exc:
        _report(problems, LineProblem(path, number, f"not valid JSON ({exc.__class__.__name__}: {exc})"))
        return None
    if not isinstance(value, dict):
        _report(problems, LineProblem(path, number, "not a JSON object"))
        return None
    return value
