"""Filter statistics, export and validation as async service calls (for the filter screen and the CLI).

``stats(spec)`` is meant to be called on every keystroke of a threshold: each call uses a
fresh DuckDB cursor, and a newer call interrupts the older one's query
(``connection.interrupt()``), whose awaiter then gets ``StatsSuperseded``. Cancelling the
awaiting task interrupts its query too. ``export`` is an async iterator of progress events.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import duckdb
from pydantic import BaseModel

from crafter_tui.dataset.export import ExportFormat, ExportResult, export_selection, selection_stats
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.dataset.stats import SelectionStats
from crafter_tui.dataset.validate import DEFAULT_MODEL, ValidationReport, validate_file
from crafter_tui.services.traces import TraceService


class StatsSuperseded(Exception):
    """A newer ``stats`` call replaced this one before it finished."""


class ExportProgress(BaseModel):
    kind: Literal["progress"] = "progress"
    written: int
    total: int


class ExportDone(BaseModel):
    kind: Literal["done"] = "done"
    result: ExportResult


ExportEvent = ExportProgress | ExportDone


def _stop(cursor: duckdb.DuckDBPyConnection, done: threading.Event) -> None:
    """Interrupt ``cursor`` until its call has returned.

    ``interrupt()`` only stops a query that is running at that moment; a superseded call
    between two queries would start the next one unharmed. A short-lived helper thread
    repeats the interrupt until the call is done, so a superseded call never runs long.
    """

    def repeat() -> None:
        while not done.wait(0.02):
            try:
                cursor.interrupt()
            except duckdb.Error:  # closed meanwhile: the call has finished
                return

    if not done.is_set():
        cursor.interrupt()
        threading.Thread(target=repeat, name="stats-interrupt", daemon=True).start()


class DatasetService:
    """Selections over the store of a ``TraceService``."""

    def __init__(self, traces: TraceService) -> None:
        self.traces = traces
        self._active: tuple[duckdb.DuckDBPyConnection, threading.Event] | None = None
        self._generation = 0
        self._guard = threading.Lock()

    async def stats(self, spec: FilterSpec, *, turn_level: bool = False, tokens: bool = False) -> SelectionStats:
        """Statistics of ``spec``; a later call supersedes this one (raises ``StatsSuperseded``)."""
        store = self.traces.store
        cursor, done = store.cursor(), threading.Event()
        with self._guard:
            self._generation += 1
            generation = self._generation
            previous, self._active = self._active, (cursor, done)
        if previous is not None:
            _stop(*previous)
        try:
            return await asyncio.to_thread(self._run_stats, cursor, done, spec, turn_level, tokens, generation)
        except asyncio.CancelledError:
            _stop(cursor, done)
            raise
        finally:
            with self._guard:
                if self._active is not None and self._active[0] is cursor:
                    self._active = None

    def _run_stats(self, cursor: duckdb.DuckDBPyConnection, done: threading.Event, spec: FilterSpec,
                   turn_level: bool, tokens: bool, generation: int) -> SelectionStats:
        try:
            if generation != self._generation:  # superseded before this thread even started
                raise StatsSuperseded("a newer statistics request replaced this one")
            result = selection_stats(self.traces.store, spec, turn_level=turn_level, tokens=tokens, cursor=cursor)
        except duckdb.InterruptException:
            raise StatsSuperseded("a newer statistics request replaced this one") from None
        finally:
            done.set()
            cursor.close()
        if generation != self._generation:
            raise StatsSuperseded("a newer statistics request replaced this one")
        return result

    async def export(self, spec: FilterSpec, path: Path, *, fmt: ExportFormat = "jsonl") -> AsyncIterator[ExportEvent]:
        """Export the selection to ``path``, yielding progress and finally ``ExportDone``."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ExportEvent | BaseException] = asyncio.Queue()
        cancel = threading.Event()

        def progress(written: int, total: int) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ExportProgress(written=written, total=total))

        def work() -> None:
            try:
                result = export_selection(self.traces.store, spec, path, fmt=fmt, progress=progress, cancel=cancel)
                loop.call_soon_threadsafe(queue.put_nowait, ExportDone(result=result))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting side
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        worker = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            while True:
                event = await queue.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, ExportDone):
                    return
        finally:
            cancel.set()
            await asyncio.shield(worker)

    async def validate(self, path: Path, model: str = DEFAULT_MODEL, *, epochs: int | None = None) -> ValidationReport:
        return await asyncio.to_thread(validate_file, path, model, epochs=epochs)
