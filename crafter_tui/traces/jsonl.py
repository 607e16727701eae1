"""Tolerant JSONL reading and crash-safe appending.

Writers flush every line as it is written; a process killed mid-write leaves at most one
torn last line. Readers skip a torn or corrupt line with a warning that names the file and
line number and go on with the rest: nothing already collected is ever lost to one bad line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LineProblem:
    """A line that could not be read: where and why."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def iter_jsonl(path: Path, *, problems: list[LineProblem] | None = None,
               start_offset: int = 0) -> Iterator[dict[str, Any]]:
    """Yield each JSON object of ``path``; bad lines are skipped and reported.

    A last line without a newline is a write in progress (or a torn write) and is skipped
    silently unless it is also not valid JSON at the end of a finished file.
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        if start_offset:
            handle.seek(start_offset)
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                _report(problems, LineProblem(path, number, "torn last line (incomplete write), skipped"))
                return
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                _report(problems, LineProblem(path, number, f"not valid JSON ({exc.__class__.__name__}: {exc})"))
                continue
            if not isinstance(value, dict):
                _report(problems, LineProblem(path, number, "not a JSON object"))
                continue
            yield value


def _report(problems: list[LineProblem] | None, problem: LineProblem) -> None:
    log.warning("%s", problem)
    if problems is not None:
        problems.append(problem)


class JsonlAppender:
    """Append-only JSONL file, one flushed line per record (crash safe, tail-able)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] = path.open("a", encoding="utf-8")
        self._repair_torn_tail()

    def _repair_torn_tail(self) -> None:
        """After a crash the file may end mid-line: start ours on a fresh line."""
        size = self.path.stat().st_size
        if size == 0:
            return
        with self.path.open("rb") as reader:
            reader.seek(size - 1)
            if reader.read(1) != b"\n":
                self._handle.write("\n")
                self._handle.flush()

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def write_json_atomic(path: Path, value: Any) -> None:
    """Replace ``path`` with ``value`` as JSON so readers never see a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
