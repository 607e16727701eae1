"""A second core for big JSONL exports: two processes write one file, each its own byte ranges.

Turning a million turns into example lines is Python work that one core does in ~15 s. The
selection is cut into *chunks* (consecutive episodes of a run, about ``CHUNK_ROWS`` kept turns
each, in export order); the exporting process takes the even chunks, one forked helper the odd
ones. Each encodes its chunk into byte pieces, then writes them straight into the output with
``pwritev`` at the chunk's offset. A chunk starts where the previous one ends: the process that
encoded the previous chunk sends that end (per output file: train, validation) over a pipe as
soon as it knows the size, before writing, so the two rarely wait for each other. The file holds
the same bytes in the same order as one process would write.

Why not one part file per process, appended at the end (the design before): on this VM's tmpfs
the kernel copy of the second writer's 2 GB part (``copy_file_range``) and freeing the part's
pages cost 2-9 s of system time, more than writing the part had.

Fork, not spawn: the helper starts at once and inherits the plan rows (fetched from DuckDB by the
parent before the fork; the helper never touches DuckDB, whose threads do not survive a fork)
and the output file descriptors, and imports nothing. It freezes the inherited objects so its
garbage collector never runs another library's finaliser, and multiprocessing ends it with
``os._exit``.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crafter_tui.dataset.lines import RunRows, lines_of_run
from crafter_tui.dataset.writer import pwrite_pieces
from crafter_tui.traces.schema import RunRecord

#: Below this many examples a second process is not worth starting.
PARALLEL_MIN_EXAMPLES = 20_000
#: Kept turns per chunk: ~8 MB of output held as pieces until written; small enough that the
#: two processes finish close together.
CHUNK_ROWS = 2_000
WORKERS = 2

Ends = tuple[int, int]  # where a chunk ends in the train and in the validation file


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods() and (os.cpu_count() or 1) >= 2


@dataclass(frozen=True, slots=True)
class Chunk:
    """Consecutive episodes of one run: rows ``start:stop`` of its ``RunRows`` and lines ``lines``."""

    run: int  # index into the list of RunRows
    start: int
    stop: int
    lines: slice


def plan_chunks(rows: list[RunRows], size: int | None = None) -> list[Chunk]:
    """Cut every run at episode boundaries into chunks of about ``size`` (default ``CHUNK_ROWS``) kept turns."""
    size = CHUNK_ROWS if size is None else size
    chunks: list[Chunk] = []
    for index, run in enumerate(rows):
        count = len(run.turn)
        if count == 0:
            continue
        episode_starts = np.flatnonzero(np.r_[True, run.episode[1:] != run.episode[:-1]])
        cuts = np.unique(episode_starts[np.minimum(np.searchsorted(episode_starts, np.arange(0, count, size)),
                                                   len(episode_starts) - 1)])
        bounds = [*cuts.tolist(), count]
        line_bounds = [*np.searchsorted(run.lines.episode, run.episode[cuts]).tolist(), len(run.lines)]
        for k in range(len(bounds) - 1):
            chunks.append(Chunk(index, bounds[k], bounds[k + 1], slice(line_bounds[k], line_bounds[k + 1])))
    return chunks


def _chunk_rows(run: RunRows, chunk: Chunk) -> RunRows:
    part = slice(chunk.start, chunk.stop)
    return RunRows(run.run_id, run.episode[part], run.attempt[part], run.turn[part], run.key[part],
                   run.is_valid[part], run.lines.take(chunk.lines.start, chunk.lines.stop))


@dataclass(slots=True)
class _Worker:
    """What one process needs to write its chunks (built before the fork; nothing in it needs DuckDB)."""

    number: int
    rows: list[RunRows]
    chunks: list[Chunk]
    runs: dict[str, tuple[Path, RunRecord]]
    options: dict[str, Any]
    fds: dict[bool, int | None]

    def write(self, previous_end: Callable[[], Ends], send_end: Callable[[Ends], None],
              written: Callable[[int], None]) -> dict[bool, int]:
        """Encode and write chunks ``number``, ``number + WORKERS``, ...; examples written (train, valid)."""
        counts = {False: 0, True: 0}
        has_valid = self.fds[True] is not None
        for index in range(self.number, len(self.chunks), WORKERS):
            chunk = self.chunks[index]
            run = self.rows[chunk.run]
            pieces: dict[bool, list[bytes]] = {False: [], True: []}
            for example in lines_of_run(_chunk_rows(run, chunk), self.runs[run.run_id], **self.options):
                valid = example.is_valid and has_valid
                pieces[valid].extend(example.pieces)
                counts[valid] += 1
            start = previous_end() if index > 0 else (0, 0)
            end = (start[0] + sum(map(len, pieces[False])), start[1] + sum(map(len, pieces[True])))
            if index + 1 < len(self.chunks):
                send_end(end)  # the next chunk's writer may start now
            for key, offset in ((False, start[0]), (True, start[1])):
                if pieces[key]:
                    pwrite_pieces(self.fds[key], pieces[key], offset)  # type: ignore[arg-type]
            written(counts[False] + counts[True])
        return counts


class Helper:
    """The forked process writing every second chunk; this process writes the others (``write_own``)."""

    def __init__(self, rows: list[RunRows], runs: dict[str, tuple[Path, RunRecord]], options: dict[str, Any],
                 fds: dict[bool, int | None]) -> None:
        context = multiprocessing.get_context("fork")
        chunks = plan_chunks(rows)
        self._own = _Worker(0, rows, chunks, runs, options, fds)
        helper = _Worker(1, rows, chunks, runs, options, fds)
        self.written = context.Value("q", 0, lock=False)  # read by the parent for progress
        self.own_written = 0
        self._from_helper, helper_send = context.Pipe(duplex=False)
        helper_receive, self._to_helper = context.Pipe(duplex=False)
        self._receive, result_send = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_main, args=(helper, helper_receive, helper_send, self.written, result_send),
            name="export-helper", daemon=True)
        # Frozen before the fork, everything the child inherits is in the permanent generation from its first
        # instruction: no collection there runs a finalizer of this process's native objects (not fork-safe; a
        # collection in multiprocessing's after-fork hooks, before the child's own code ran, segfaulted it).
        gc.freeze()
        try:
            self.process.start()
        finally:
            gc.unfreeze()
        for end in (helper_receive, helper_send, result_send):
            end.close()

    def write_own(self, waiting: Callable[[], None]) -> dict[bool, int]:
        """Write this process's chunks; ``waiting`` runs after each chunk and while waiting for the helper."""

        def previous_end() -> Ends:
            while not self._from_helper.poll(0.05):
                waiting()
                self._check_alive()
            try:
                return self._from_helper.recv()
            except EOFError:  # the helper is gone (its end of the pipe closed): say why
                self.process.join(5)
                self._raise_failure()
                raise

        def send_end(end: Ends) -> None:
            try:
                self._to_helper.send(end)
            except (BrokenPipeError, ConnectionResetError):  # the helper is gone: say why
                self.process.join(5)
                self._raise_failure()

        def written(count: int) -> None:
            self.own_written = count
            waiting()

        return self._own.write(previous_end, send_end, written)

    def _check_alive(self) -> None:
        if not self.process.is_alive() and not self._from_helper.poll(0):
            self._raise_failure()

    def _raise_failure(self) -> None:
        if self._receive.poll(0):
            status, value = self._receive.recv()
            if status != "ok":
                raise RuntimeError(f"export helper process failed:\n{value}")
        raise RuntimeError(f"export helper process died (exit code {self.process.exitcode})")

    def result(self, waiting: Callable[[], None]) -> dict[bool, int]:
        """Examples written by the helper (train, valid), once it is done; ``waiting`` runs while it works."""
        while not self._receive.poll(0.1):
            waiting()
            if not self.process.is_alive() and not self._receive.poll(0):
                raise RuntimeError(f"export helper process died (exit code {self.process.exitcode})")
        status, value = self._receive.recv()
        self.process.join()
        if status != "ok":
            raise RuntimeError(f"export helper process failed:\n{value}")
        return value

    def close(self) -> None:
        """Stop the helper (if running) and close the pipes."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        for end in (self._receive, self._from_helper, self._to_helper):
            end.close()


def _main(worker: _Worker, receive: Any, send: Any, written: Any, result: Any) -> None:
    try:  # what it inherited is frozen (``Helper.__init__``): never finalised here, DuckDB's objects among them
        counts = worker.write(receive.recv, send.send, lambda count: setattr(written, "value", count))
        result.send(("ok", counts))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        result.send(("error", traceback.format_exc()))
