"""Runs as the console sees them: listing run folders and tailing episodes live.

Everything here reads the trace files (the truth) incrementally, so it follows runs written
by this process or by any other one (a ``crafter-tui rollout`` in another terminal). Readers
remember byte offsets and only ever read new complete lines: a poll of a live run costs what
was appended since the last poll, not the size of the run. The functions are synchronous
and cheap per call; the async wrappers run them in a thread so a front end's event loop
never waits on the disk.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from crafter_tui.config import AppConfig
from crafter_tui.traces.jsonl import FileCursor, LineProblem, Tail, pid_alive, tail_jsonl
from crafter_tui.traces.schema import (
    EPISODES_FILE, FAILED_TERMINATIONS, RUN_FILE, STEPS_FILE, TURNS_FILE, EpisodeSummary, RunRecord, StepRecord,
    TurnRecord,
)

log = logging.getLogger(__name__)


def read_new_lines(path: Path, cursor: FileCursor) -> Tail:
    """The JSON objects appended to ``path`` since ``cursor`` (``traces.jsonl.tail_jsonl``, the one tail
    reader); bad lines are logged with the file and line, as every trace reader does."""
    problems: list[LineProblem] = []
    tail = tail_jsonl(path, cursor, problems=problems)
    for problem in problems:
        log.warning("%s", problem)
    return tail


def _pid_alive(pid: int | None, host: str | None) -> bool | None:
    """Whether the writer process still lives (None when it cannot be known from here)."""
    if pid is None or (host is not None and host != socket.gethostname()):
        return None
    return pid_alive(pid)


class RunInfo(BaseModel):
    """One line of the runs list: what the run is and how far it got."""

    run_id: str
    run_dir: Path
    status: str  # the record's status, or "stale" when its writer died without finishing
    agent: str
    model: str
    difficulty: str
    episodes: int
    episodes_finished: int
    mean_achievements: float | None
    created_at: datetime
    max_steps: int
    experiment: str | None = None


class EpisodeRow(BaseModel):
    """One episode of a run: finished (with its summary) or in progress (with its last step)."""

    episode: int
    seed: int
    attempt: int
    finished: bool
    steps: int
    achievements: int
    reward: float
    termination: str | None = None
    error: str | None = None  # why a failed episode (agent_error, env_error, timeout) ended
    invalid_actions: int = 0

    @property
    def failed(self) -> bool:
        """Ended by a failure, not by the game: never a score (``FAILED_TERMINATIONS``)."""
        return self.termination in FAILED_TERMINATIONS


@dataclass
class _RunCache:
    """What has been read of one run so far (offsets and the facts derived from them)."""

    episodes: FileCursor = field(default_factory=FileCursor)
    steps: FileCursor = field(default_factory=FileCursor)
    summaries: dict[int, EpisodeSummary] = field(default_factory=dict)
    live: dict[int, EpisodeRow] = field(default_factory=dict)


class RunsIndex:
    """Lists the runs under a trace folder, reading each file only from where it left off."""

    def __init__(self, trace_dir: Path) -> None:
        self.trace_dir = trace_dir
        self._cache: dict[Path, _RunCache] = {}

    def scan(self) -> list[RunInfo]:
        """All readable runs, newest first; unreadable folders are skipped (and logged)."""
        if not self.trace_dir.is_dir():
            return []
        runs: list[RunInfo] = []
        for run_dir in self.trace_dir.iterdir():
            if not (run_dir / RUN_FILE).is_file():
                continue
            info = self._run_info(run_dir)
            if info is not None:
                runs.append(info)
        runs.sort(key=lambda info: info.created_at, reverse=True)
        return runs

    def _run_info(self, run_dir: Path) -> RunInfo | None:
        try:
            record = RunRecord.model_validate_json((run_dir / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValidationError, ValueError) as exc:
            log.warning("%s: unreadable run record (%s)", run_dir / RUN_FILE, exc)
            return None
        cache = self._refresh(run_dir, live=record.status == "running")
        status = record.status
        if status == "running" and _pid_alive(record.pid, record.host) is False:
            status = "stale"
        done = list(cache.summaries.values())
        mean = sum(s.num_achievements for s in done) / len(done) if done else None
        return RunInfo(run_id=record.run_id, run_dir=run_dir, status=status, agent=record.agent,
                       model=record.model, difficulty=record.difficulty, episodes=record.episodes,
                       episodes_finished=len(done), mean_achievements=mean, created_at=record.created_at,
                       max_steps=record.max_steps, experiment=record.experiment)

    def _refresh(self, run_dir: Path, *, live: bool) -> _RunCache:
        cache = self._cache.setdefault(run_dir, _RunCache())
        ends = read_new_lines(run_dir / EPISODES_FILE, cache.episodes)
        if ends.reset:  # the file was rewritten: what it said before no longer holds
            cache.summaries.clear()
        for raw in ends.records:
            try:
                summary = EpisodeSummary.model_validate(raw)
            except ValidationError:
                continue
            cache.summaries[summary.episode] = summary
            cache.live.pop(summary.episode, None)
        if live:  # only a live run needs its in-progress episodes from the steps file
            steps = read_new_lines(run_dir / STEPS_FILE, cache.steps)
            if steps.reset:
                cache.live.clear()
            for raw in steps.records:
                self._note_step(cache, raw)
        return cache

    @staticmethod
    def _note_step(cache: _RunCache, raw: dict[str, Any]) -> None:
        episode = raw.get("episode")
        if not isinstance(episode, int) or episode in cache.summaries:
            return
        row = cache.live.get(episode)
        attempt = int(raw.get("attempt", 0))
        if row is None or attempt > row.attempt:
            row = EpisodeRow(episode=episode, seed=int(raw.get("seed", 0)), attempt=attempt, finished=False,
                             steps=0, achievements=0, reward=0.0)
            cache.live[episode] = row
        elif attempt < row.attempt:
            return
        row.steps = int(raw.get("step", row.steps))
        row.achievements += len(raw.get("new_achievements") or [])
        row.reward += float(raw.get("reward", 0.0))

    def episodes(self, run_dir: Path) -> list[EpisodeRow]:
        """Finished and in-progress episodes of a run, by index."""
        try:
            record = RunRecord.model_validate_json((run_dir / RUN_FILE).read_text(encoding="utf-8"))
            live = record.status == "running"
        except (OSError, ValidationError, ValueError):
            live = True
        cache = self._refresh(run_dir, live=live)
        rows = [EpisodeRow(episode=s.episode, seed=s.seed, attempt=s.attempt, finished=True, steps=s.steps,
                           achievements=s.num_achievements, reward=s.reward, termination=s.termination,
                           error=s.error, invalid_actions=s.invalid_actions)
                for s in cache.summaries.values()]
        rows.extend(row.model_copy() for row in cache.live.values())
        return sorted(rows, key=lambda row: row.episode)


class EpisodeFrames(BaseModel):
    """New steps and turns of one episode since the last read, and whether it has ended."""

    steps: list[StepRecord]
    turns: list[TurnRecord]
    finished: bool
    restarted: bool = False  # a newer attempt began: drop what was shown before
    summary: EpisodeSummary | None = None  # the episode's end record (termination, error), once it ended


class EpisodeTail:
    """Follows one episode of a run: every call returns only what was appended since the last.

    Lines of older attempts are dropped; when a newer attempt appears, ``restarted`` tells the
    viewer to start over (a resumed episode replays from its seed).
    """

    def __init__(self, run_dir: Path, episode: int) -> None:
        self.run_dir = run_dir
        self.episode = episode
        self._start()

    def _start(self) -> None:
        self.attempt = -1
        # the end records first: an episode seen ended has all its steps in the files read after
        self._cursors = {EPISODES_FILE: FileCursor(), STEPS_FILE: FileCursor(), TURNS_FILE: FileCursor()}
        self.finished = False
        self.summary: EpisodeSummary | None = None

    def poll(self) -> EpisodeFrames:
        restarted = False
        steps: list[StepRecord] = []
        turns: list[TurnRecord] = []
        tails = {name: read_new_lines(self.run_dir / name, cursor) for name, cursor in self._cursors.items()}
        if any(tail.reset for tail in tails.values()):  # a file was rewritten: follow the episode afresh
            self._start()
            return self.poll().model_copy(update={"restarted": True})
        ends = tails[EPISODES_FILE].records
        final = next((e for e in reversed(ends) if e.get("episode") == self.episode), None)
        final_attempt = None if final is None else int(final.get("attempt", 0))
        for name, sink, model in ((STEPS_FILE, steps, StepRecord), (TURNS_FILE, turns, TurnRecord)):
            for raw in tails[name].records:
                if raw.get("episode") != self.episode:
                    continue
                attempt = int(raw.get("attempt", 0))
                if attempt > self.attempt:
                    restarted = restarted or self.attempt >= 0
                    self.attempt = attempt
                    steps.clear()
                    turns.clear()
                if attempt < self.attempt:
                    continue
                try:
                    sink.append(model.model_validate(raw))  # type: ignore[arg-type]
                except ValidationError:
                    continue
        if final_attempt is not None and final_attempt >= self.attempt:
            self.finished = True
            try:
                self.summary = EpisodeSummary.model_validate(final)
            except ValidationError:
                self.summary = None
        return EpisodeFrames(steps=steps, turns=turns, finished=self.finished, restarted=restarted,
                             summary=self.summary)


class RunsService:
    """The runs listing and live tailing, as async calls (the work runs in a thread)."""

    def __init__(self, config: AppConfig, trace_dir: Path | None = None) -> None:
        self.config = config
        self.index = RunsIndex(trace_dir or config.output.trace_dir)

    @property
    def trace_dir(self) -> Path:
        return self.index.trace_dir

    async def list_runs(self) -> list[RunInfo]:
        return await asyncio.to_thread(self.index.scan)

    async def episodes(self, run_dir: Path) -> list[EpisodeRow]:
        return await asyncio.to_thread(self.index.episodes, run_dir)

    def tail(self, run_dir: Path, episode: int) -> EpisodeTail:
        return EpisodeTail(run_dir, episode)
