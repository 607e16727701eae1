"""Rollouts as a service both front ends call: an async stream of typed events, or a result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from pydantic import BaseModel

from crafter_tui.config import AppConfig
from crafter_tui.rollout.events import RolloutEvent
from crafter_tui.rollout.runner import Executor, run_rollout_events
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.evaluation.run_stats import RunStats, run_stats
from crafter_tui.rollout.writer import finished_summaries, load_run_record
from crafter_tui.traces.schema import EpisodeSummary, RunRecord


class RunResult(BaseModel):
    """A finished (or resumed) run: where it is and what it achieved over all its episodes."""

    run_id: str
    run_dir: Path
    record: RunRecord
    summaries: list[EpisodeSummary]
    stats: RunStats
    wall_s: float


def run_result(run_dir: Path) -> RunResult:
    """The result of the run in ``run_dir`` as its files tell it (all finished episodes)."""
    record = load_run_record(run_dir)
    summaries = sorted(finished_summaries(run_dir).values(), key=lambda s: s.episode)
    return RunResult(run_id=record.run_id, run_dir=run_dir, record=record, summaries=summaries,
                     stats=run_stats(summaries), wall_s=record.wall_s or 0.0)


async def run_rollout(spec: RolloutSpec, config: AppConfig,
                      on_event: Callable[[RolloutEvent], None] | None = None,
                      executor: Executor | None = None) -> RunResult:
    """Play the rollout to the end and return its result."""
    spec, _ = await run_rollout_events(spec, config, on_event or (lambda event: None), executor)
    return run_result(spec.out_dir / str(spec.run_id)) if not spec.resume else run_result(_resumed_dir(spec))


def _resumed_dir(spec: RolloutSpec) -> Path:
    from crafter_tui.rollout.runner import resolve_run_dir

    return resolve_run_dir(spec.out_dir, spec.resume or "")


class RolloutService:
    """Start rollouts and follow them as event streams."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config

    async def run(self, spec: RolloutSpec) -> AsyncIterator[RolloutEvent]:
        """Run ``spec`` and yield its events as they happen (the run stops if the consumer does)."""
        queue: asyncio.Queue[RolloutEvent | None] = asyncio.Queue()

        async def produce() -> None:
            try:
                await run_rollout_events(spec, self.config, queue.put_nowait)
            finally:
                queue.put_nowait(None)

        task = asyncio.create_task(produce())
        try:
            while (event := await queue.get()) is not None:
                yield event
            await task  # re-raise a failure of the run
        finally:
            if not task.done():
                task.cancel()

    async def result(self, spec: RolloutSpec) -> RunResult:
        return await run_rollout(spec, self.config)
