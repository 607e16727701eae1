"""Typed progress events of a rollout; the CLI prints them, the console draws them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from crafter_tui.traces.schema import EpisodeSummary


class RecordSink(Protocol):
    """Receives an episode's records as they happen (the trace writer, a worker's queue, a replay check)."""

    def step(self, record: dict[str, Any]) -> None: ...

    def turn(self, record: dict[str, Any]) -> None: ...

    def progress(self, episode: int, seed: int, step: int, turn: int, achievements: int) -> None: ...


class RunStarted(BaseModel):
    kind: Literal["run_started"] = "run_started"
    run_id: str
    run_dir: Path
    episodes: int  # episodes in the run
    pending: int  # episodes this invocation will play (fewer when resuming)


class EpisodeStarted(BaseModel):
    kind: Literal["episode_started"] = "episode_started"
    run_id: str
    episode: int
    seed: int
    attempt: int


class EpisodeProgress(BaseModel):
    """Throttled per-episode progress; a newer one supersedes an older one of the same episode."""

    kind: Literal["episode_progress"] = "episode_progress"
    run_id: str
    episode: int
    seed: int
    step: int
    turn: int
    achievements: int


class EpisodeFinished(BaseModel):
    kind: Literal["episode_finished"] = "episode_finished"
    run_id: str
    summary: EpisodeSummary


class RunFinished(BaseModel):
    kind: Literal["run_finished"] = "run_finished"
    run_id: str
    run_dir: Path
    status: str
    wall_s: float


RolloutEvent = RunStarted | EpisodeStarted | EpisodeProgress | EpisodeFinished | RunFinished
