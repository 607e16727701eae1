"""Write the selected examples as OpenAI chat JSONL (or Parquet), and count their tokens.

Output files appear only when complete (written to a temporary name, then renamed), so a
cancelled or failed export never leaves a half file that looks like a dataset. With a
validation split the held-out episodes go to ``<name>.valid<suffix>`` next to the output.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from crafter_tui.dataset.card import ModelCard, card_path, export_card, reply_shape, write_card
from crafter_tui.dataset.examples import ExampleLine, iter_examples
from crafter_tui.dataset.helper import PARALLEL_MIN_EXAMPLES, Helper, can_fork
from crafter_tui.dataset.lines import PiecedLine, all_run_rows, composition_holds, iter_lines
from crafter_tui.dataset.select import build_selection
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.dataset.stats import CostEstimate, SelectionStats, TokenStats, episode_stats, turn_stats
from crafter_tui.dataset.writer import PieceWriter
from crafter_tui.dataset.tokens import (
    PRICE_TABLE_DATE, counter_for, default_epochs, example_tokens, token_limit, training_price,
    training_cost,
)
from crafter_tui.agents.prompting import TOOLS
from crafter_tui.errors import UserError
from crafter_tui.traces.jsonl import remove_stale_temps, temp_sibling
from crafter_tui.traces.memory import release_freed_memory
from crafter_tui.traces.store import TraceStore

ExportFormat = Literal["jsonl", "parquet"]
PROGRESS_EVERY = 5_000
TOKEN_SAMPLE = 2_000


class ExportResult(BaseModel):
    path: Path
    valid_path: Path | None = None
    card_path: Path | None = None
    card: ModelCard | None = None
    format: ExportFormat
    examples: int
    train: int
    valid: int
    bytes: int
    seconds: float


class Cancelled(Exception):
    """The export was cancelled; nothing was written."""


def validation_path(path: Path) -> Path:
    """``data.jsonl`` -> ``data.valid.jsonl``."""
    return path.with_name(f"{path.stem}.valid{path.suffix}")


def _runs(store: TraceStore) -> dict[str, Any]:
    return {run_id: (state.path, state.record) for run_id, state in store.runs.items()}


def export_selection(store: TraceStore, spec: FilterSpec, output: Path, *, fmt: ExportFormat = "jsonl",
                     progress: Callable[[int, int], None] | None = None,
                     cancel: threading.Event | None = None, parallel: bool | None = None) -> ExportResult:
    """Materialise the selection and stream its examples to ``output`` (and the validation file).

    Examples come in (run_id, episode, turn) order (``source``). ``parallel``: a forked helper
    writes every second chunk of episodes into the same file (``helper.py``); default for JSONL
    exports of at least ``PARALLEL_MIN_EXAMPLES`` examples on a machine with 2+ cores.
    """
    started = time.perf_counter()
    valid_path = validation_path(output) if spec.validation_split > 0 else None
    for path in (output, valid_path):
        if path is not None and path.is_dir():  # checked before any work: os.replace would fail at the very end
            raise UserError("is a directory; name the file to write", where=str(path))
    store.ensure_turns()
    cursor = store.cursor()
    build_selection(cursor, spec)
    total = cursor.execute("SELECT count(DISTINCT example_key) FROM selection").fetchone()[0]
    release_freed_memory()  # the selection's window queries left freed pages mapped
    output.parent.mkdir(parents=True, exist_ok=True)
    runs = _runs(store)
    options = {"mode": spec.mode, "text_actions": spec.text_actions, "drop_reasoning": spec.drop_reasoning,
               "goal_reasoning": spec.goal_reasoning}
    fast = composition_holds()
    if parallel is None:
        parallel = fmt == "jsonl" and total >= PARALLEL_MIN_EXAMPLES and can_fork()
    helper: Helper | None = None
    sinks = {False: _sink(output, fmt), True: _sink(valid_path, fmt) if valid_path else None}
    counts = {False: 0, True: 0}
    try:
        def report() -> None:
            if cancel is not None and cancel.is_set():
                raise Cancelled("export cancelled")
            if progress is not None:
                done = helper.own_written + helper.written.value if helper is not None else counts[False] + counts[True]
                progress(done, total)

        if fast and parallel and fmt == "jsonl":
            # every run's rows are fetched here, before the fork: the helper never touches DuckDB
            rows = all_run_rows(cursor)
            fds = {key: sink.fd if isinstance(sink, _JsonlSink) else None for key, sink in sinks.items()}
            helper = Helper(rows, runs, options, fds)
            del rows
            for part in (helper.write_own(report), helper.result(report)):
                for key, n in part.items():
                    counts[key] += n
        else:
            examples = (iter_lines(cursor, runs, **options) if fast
                        else iter_examples(cursor, runs, **options))
            for example in examples:
                valid = example.is_valid and valid_path is not None
                sinks[valid].write(example)  # type: ignore[union-attr]
                counts[valid] += 1
                if (counts[False] + counts[True]) % PROGRESS_EVERY == 0:
                    report()
        for sink in sinks.values():
            if sink is not None:
                sink.commit()
    except BaseException:
        if helper is not None:
            helper.close()  # first: nothing writes to the files once they are removed
        for sink in sinks.values():
            if sink is not None:
                sink.abort()
        raise
    finally:
        if helper is not None:
            helper.close()
    if progress is not None:
        progress(counts[False] + counts[True], total)
    size = sum(p.stat().st_size for p in (output, valid_path) if p is not None)
    card = _write_card(cursor, store, spec, output, counts[False] + counts[True])
    return ExportResult(path=output, valid_path=valid_path, card_path=card_path(output), card=card, format=fmt,
                        examples=counts[False] + counts[True], train=counts[False], valid=counts[True], bytes=size,
                        seconds=round(time.perf_counter() - started, 3))


def _write_card(cursor: duckdb.DuckDBPyConnection, store: TraceStore, spec: FilterSpec, output: Path,
                examples: int) -> ModelCard:
    """Write the export's model card beside it: the play format of the runs its examples came from."""
    selected = [row[0] for row in cursor.execute("SELECT DISTINCT run_id FROM selection ORDER BY run_id").fetchall()]
    records = [store.runs[run_id].record for run_id in selected if run_id in store.runs]
    actions, reasoning = reply_shape(text_actions=spec.text_actions, drop_reasoning=spec.drop_reasoning,
                                     goal_reasoning=spec.goal_reasoning)
    card = export_card([r for r in records if r is not None], mode=spec.mode, examples=examples, data=output,
                       actions=actions, reasoning=reasoning)
    write_card(card, output)
    return card


AnyLine = ExampleLine | PiecedLine


class _JsonlSink:
    """Lines go out as their pieces in batches (``PieceWriter``); the file appears whole on commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = temp_sibling(path)
        self.fd: int | None = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self.writer = PieceWriter(self.fd)

    def write(self, example: AnyLine) -> None:
        self.writer.add(example.pieces)

    def _close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def commit(self) -> None:
        """Close and move into place (a forked helper may have written ranges of the file through ``fd``)."""
        try:
            self.writer.flush()
        finally:
            self._close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._close()
        self.tmp.unlink(missing_ok=True)


_CALL = pa.struct([("id", pa.string()), ("type", pa.string()),
                   ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())]))])
MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string()),
                          ("tool_calls", pa.list_(_CALL)), ("tool_call_id", pa.string())])
PARQUET_SCHEMA = pa.schema([("messages", pa.list_(MESSAGE_TYPE)), ("tools", pa.string()),
                            ("run_id", pa.string()), ("episode", pa.int64()), ("turns", pa.list_(pa.int64()))])


class _ParquetSink:
    """Parquet rows: messages as nested structs, tools as a JSON string (one schema for all)."""

    BATCH = 10_000

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = temp_sibling(path)
        self.writer = pq.ParquetWriter(self.tmp, PARQUET_SCHEMA)
        self.rows: list[dict[str, Any]] = []

    def write(self, example: AnyLine) -> None:
        data = json.loads(example.line)
        self.rows.append({"messages": data["messages"], "tools": json.dumps(data["tools"]) if "tools" in data else None,
                          "run_id": example.run_id, "episode": example.episode, "turns": list(example.turns)})
        if len(self.rows) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=PARQUET_SCHEMA))
            self.rows = []

    def commit(self) -> None:
        self._flush()
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


def _sink(path: Path, fmt: ExportFormat) -> _JsonlSink | _ParquetSink:
    remove_stale_temps(path)  # an export killed before its commit left its temporary file
    if fmt == "jsonl":
        return _JsonlSink(path)
    if fmt == "parquet":
        return _ParquetSink(path)
    raise UserError(f"unknown format {fmt!r}; use jsonl or parquet", where="--format")


def selection_tokens(store: TraceStore, cursor: duckdb.DuckDBPyConnection, spec: FilterSpec,
                     examples_selected: int, *, sample: int = TOKEN_SAMPLE) -> TokenStats:
    """Tokens of the materialised selection: exact up to ``sample`` examples, else a seeded sample."""
    cursor.execute("""CREATE OR REPLACE TEMP TABLE token_sample AS
        SELECT example_key FROM (SELECT DISTINCT example_key FROM selection)
        ORDER BY hash(example_key, CAST($seed AS BIGINT), 'tokens'), example_key LIMIT CAST($n AS BIGINT)""",
                   {"seed": spec.seed, "n": sample})
    counter = counter_for(spec.cost_model)
    limit = token_limit(spec.cost_model)
    counted = total = assistant = largest = over = 0
    tools = None if spec.text_actions else TOOLS
    for example in iter_examples(cursor, _runs(store), mode=spec.mode, text_actions=spec.text_actions,
                                 drop_reasoning=spec.drop_reasoning, goal_reasoning=spec.goal_reasoning,
                                 source="token_sample"):
        n, a = example_tokens(counter, example.messages, tools)
        counted += 1
        total += n
        assistant += a
        largest = max(largest, n)
        over += n > limit
    exact = counted >= examples_selected
    scale = (examples_selected / counted) if counted else 0.0
    return TokenStats(encoding=counter.name, method="exact" if exact else "sampled", examples_counted=counted,
                      total=round(total * scale), per_example_mean=(total / counted if counted else 0.0),
                      per_example_max=largest, assistant_total=round(assistant * scale),
                      over_limit=round(over * scale))


def cost_estimate(spec: FilterSpec, tokens: TokenStats, examples: int, epochs: int | None = None) -> CostEstimate | None:
    """Training cost of the selection on ``spec.cost_model`` (None when it has no listed price)."""
    price = training_price(spec.cost_model)
    if price is None:
        return None
    n_epochs = epochs or default_epochs(examples)
    # billed tokens: the training file only (held-out validation examples are not trained on)
    billed = round(tokens.per_example_mean * examples)
    usd = training_cost(spec.cost_model, billed, n_epochs) or 0.0
    return CostEstimate(model=spec.cost_model, epochs=n_epochs, price_per_million=price, price_date=PRICE_TABLE_DATE,
                        billed_tokens=billed, usd=usd)


def selection_stats(store: TraceStore, spec: FilterSpec, *, turn_level: bool = True, tokens: bool = True,
                    cursor: duckdb.DuckDBPyConnection | None = None) -> SelectionStats:
    """Statistics of ``spec`` over ``store``; turn level and tokens load the turn index if needed."""
    cursor = cursor or store.cursor()
    if not (turn_level or tokens):
        return episode_stats(cursor, spec)
    store.ensure_turns()
    stats = turn_stats(cursor, spec)
    if tokens:
        stats.tokens = selection_tokens(store, cursor, spec, stats.examples_selected)
        train = stats.examples_train if stats.examples_train is not None else stats.examples_selected
        stats.cost = cost_estimate(spec, stats.tokens, train)
    return stats
