"""The one trace writer of a run: run record, turns, steps and episode summaries.

Every line is flushed as it is written (crash safety, live tailing by the console or a
store in another process). The run record is replaced atomically.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from crafter_tui.errors import first_validation_error
from crafter_tui.rollout.lock import acquire_unchanged
from crafter_tui.traces.jsonl import JsonlAppender, iter_jsonl, write_json_atomic
from crafter_tui.traces.schema import (
    EPISODES_FILE, RUN_FILE, STEPS_FILE, TURNS_FILE, EpisodeSummary, RunRecord, RunStatus,
)


log = logging.getLogger(__name__)


class TraceWriter:
    """Appends a run's records; owns the run folder while the run is live."""

    def __init__(self, run_dir: Path, record: RunRecord) -> None:
        self.run_dir = run_dir
        self.record = record
        self._lock = acquire_unchanged(run_dir, record)  # one writer per run (rollout.lock)
        self._steps = JsonlAppender(run_dir / STEPS_FILE)
        self._turns = JsonlAppender(run_dir / TURNS_FILE)
        self._episodes = JsonlAppender(run_dir / EPISODES_FILE)
        # One call per record on the hottest path (a step line per env step): ``step(record)``
        # and ``turn(record)`` are the appenders' own ``write``.
        self.step: Callable[[dict[str, Any]], None] = self._steps.write
        self.turn: Callable[[dict[str, Any]], None] = self._turns.write
        self.record.pid = os.getpid()
        self.record.host = socket.gethostname()
        self.save_record()

    def save_record(self) -> None:
        write_json_atomic(self.run_dir / RUN_FILE, self.record.model_dump(mode="json"))

    def episode(self, summary: EpisodeSummary) -> None:
        self._episodes.write(summary.model_dump(mode="json"))
        self.record.episodes_finished += 1
        self.record.prompt_tokens += summary.prompt_tokens
        self.record.completion_tokens += summary.completion_tokens

    def finish(self, status: RunStatus, wall_s: float) -> None:
        self.record.status = status
        self.record.finished_at = datetime.now(timezone.utc)
        self.record.wall_s = round((self.record.wall_s or 0.0) + wall_s, 3)
        self.save_record()
        for appender in (self._steps, self._turns, self._episodes):
            appender.close()
        self._lock.release()


def load_run_record(run_dir: Path) -> RunRecord:
    """The run record of ``run_dir`` (raises FileNotFoundError / ValidationError)."""
    return RunRecord.model_validate_json((run_dir / RUN_FILE).read_text(encoding="utf-8"))


def finished_summaries(run_dir: Path) -> dict[int, EpisodeSummary]:
    """Episode index -> summary for every finished episode (last one wins, bad lines skipped)."""
    done: dict[int, EpisodeSummary] = {}
    for raw in iter_jsonl(run_dir / EPISODES_FILE):
        try:
            summary = EpisodeSummary.model_validate(raw)
        except ValidationError as exc:  # the episode counts as unfinished: --resume replays it
            field, message = first_validation_error(exc)
            log.warning("%s: skipped a summary of episode %s (%s: %s)", run_dir / EPISODES_FILE,
                        raw.get("episode", "?"), field, message)
            continue
        done[summary.episode] = summary
    return done


def attempts_started(run_dir: Path) -> dict[int, int]:
    """Episode index -> highest attempt number that wrote any turn or step."""
    seen: dict[int, int] = {}
    for name in (TURNS_FILE, STEPS_FILE):
        for raw in iter_jsonl(run_dir / name):
            episode, attempt = raw.get("episode"), raw.get("attempt", 0)
            if isinstance(episode, int) and isinstance(attempt, int):
                seen[episode] = max(seen.get(episode, -1), attempt)
    return seen
