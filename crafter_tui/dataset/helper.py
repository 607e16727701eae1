"""A second core for big JSONL exports: a forked helper writes the later runs to part files.

Turning a million turns into example lines is Python work that one core does in ~15 s. The
runs of a selection are exported in order, so the export is cut at a run boundary into two
halves of about equal examples: the calling process writes the first half to the output as
usual, a forked process the second half to hidden part files next to it, and the parts are
appended (a kernel copy) before the output is renamed into place. Same bytes, same order.

Fork, not spawn: the helper starts at once and inherits the plan rows (fetched from DuckDB
by the parent before the fork; the helper never touches DuckDB, whose threads do not survive
a fork) and imports nothing. It freezes the inherited objects so its garbage collector never
runs another library's finaliser, and multiprocessing ends it with ``os._exit``.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from crafter_tui.dataset.lines import RunRows, lines_of_run
from crafter_tui.dataset.writer import PieceWriter
from crafter_tui.traces.schema import RunRecord

#: Below this many examples a second process is not worth starting.
PARALLEL_MIN_EXAMPLES = 20_000
COUNT_EVERY = 1_000


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods() and (os.cpu_count() or 1) >= 2


def split_runs(counts: list[tuple[str, int]]) -> tuple[list[str], list[str]]:
    """Cut the runs (in export order, with their example counts) into two halves of about equal examples."""
    if len(counts) < 2:
        return [run_id for run_id, _ in counts], []
    total = sum(n for _, n in counts)
    prefix, best = 0, (total + 1, 1)
    for cut in range(1, len(counts)):
        prefix += counts[cut - 1][1]
        best = min(best, (abs(2 * prefix - total), cut))
    cut = best[1]
    return [run_id for run_id, _ in counts[:cut]], [run_id for run_id, _ in counts[cut:]]


def part_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.part")


class Helper:
    """The forked process writing the lines of ``rows`` (runs in order) to part files."""

    def __init__(self, rows: list[RunRows], runs: dict[str, tuple[Path, RunRecord]], options: dict[str, Any],
                 outputs: dict[bool, Path | None]) -> None:
        context = multiprocessing.get_context("fork")
        self.parts = {key: part_path(path) if path is not None else None for key, path in outputs.items()}
        self.written = context.Value("q", 0, lock=False)  # read by the parent for progress
        self._receive, send = context.Pipe(duplex=False)
        self.process = context.Process(target=_main, args=(rows, runs, options, self.parts, self.written, send),
                                       name="export-helper", daemon=True)
        self.process.start()
        send.close()

    def result(self, waiting: Callable[[], None]) -> dict[bool, int]:
        """Examples written (train, valid), once the helper is done; ``waiting`` runs while it works."""
        while not self._receive.poll(0.1):
            waiting()
            if not self.process.is_alive() and not self._receive.poll(0):
                raise RuntimeError(f"export helper process died (exit code {self.process.exitcode})")
        status, value = self._receive.recv()
        self.process.join()
        if status != "ok":
            raise RuntimeError(f"export helper process failed:\n{value}")
        return value

    def abort(self) -> None:
        """Stop the helper (if running) and remove its part files."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self._receive.close()
        for path in self.parts.values():
            if path is not None:
                path.unlink(missing_ok=True)


def _main(rows: list[RunRows], runs: dict[str, tuple[Path, RunRecord]], options: dict[str, Any],
          parts: dict[bool, Path | None], written: Any, send: Any) -> None:
    gc.freeze()  # never finalise objects inherited from the parent (DuckDB's among them)
    try:
        counts = {False: 0, True: 0}
        with ExitStack() as stack:
            writers: dict[bool, PieceWriter | None] = {key: None for key in parts}
            for key, path in parts.items():
                if path is not None:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                    stack.callback(os.close, fd)
                    writers[key] = writer = PieceWriter(fd)
                    stack.callback(writer.flush)  # runs before the close (last in, first out)
            for run_rows in rows:
                for example in lines_of_run(run_rows, runs[run_rows.run_id], **options):
                    valid = example.is_valid and writers[True] is not None
                    writers[valid].add(example.pieces)  # type: ignore[union-attr]
                    counts[valid] += 1
                    if (counts[False] + counts[True]) % COUNT_EVERY == 0:
                        written.value = counts[False] + counts[True]
        written.value = counts[False] + counts[True]
        send.send(("ok", counts))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        send.send(("error", traceback.format_exc()))


def append_file(source: Path, target: Path) -> None:
    """Append ``source`` to ``target`` in the kernel (no copy through Python)."""
    with source.open("rb") as src, target.open("r+b") as dst:  # not "ab": copy_file_range refuses O_APPEND
        dst.seek(0, os.SEEK_END)
        remaining = os.fstat(src.fileno()).st_size
        copy = getattr(os, "copy_file_range", None)
        while remaining > 0:
            if copy is not None:
                sent = copy(src.fileno(), dst.fileno(), remaining)
            else:  # pragma: no cover - non-Linux
                sent = os.sendfile(dst.fileno(), src.fileno(), None, remaining)
            if sent <= 0:
                break
            remaining -= sent
