"""The rollout runner: plays a run's pending episodes with bounded concurrency.

A run is created (or reopened with ``resume``), its pending episodes are handed to an
executor, and every record the executor produces goes through the run's single
``TraceWriter``. Progress is published as typed events (``rollout.events``).
"""

from __future__ import annotations

import asyncio
import functools
import platform
import re
import secrets
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

from crafter_tui.version import __version__
from crafter_tui.agents.prompting import TOOLS, stable_hash
from crafter_tui.config import AppConfig
from crafter_tui.errors import UserError
from crafter_tui.rollout.episode import EpisodeJob, build_agent, play_jobs
from crafter_tui.rollout.events import (
    EpisodeFinished, EpisodeProgress, EpisodeStarted, RolloutEvent, RunFinished, RunStarted,
)
from crafter_tui.rollout.resume import check_wording, resume_jobs, spec_for_resume
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.rollout.writer import TraceWriter, load_run_record
from crafter_tui.traces.schema import EpisodeSummary, RunRecord, Versions
from crafter_tui.world.text_obs import OBSERVATION_REVISIONS

Emit = Callable[[RolloutEvent], None]


class Executor(Protocol):
    """Plays episode jobs and reports their records; the writer stays in this process."""

    async def run(self, spec: RolloutSpec, config: AppConfig, jobs: list[EpisodeJob],
                  run_id: str, sink: "RunSink") -> None: ...


class RunSink:
    """Receives records from an executor: writes them and turns them into events."""

    def __init__(self, writer: TraceWriter, emit: Emit) -> None:
        self.writer = writer
        self._emit = emit
        self.summaries: list[EpisodeSummary] = []
        # Step and turn records go straight to the writer (no event): its own methods, one call each.
        self.step: Callable[[dict[str, Any]], None] = writer.step
        self.turn: Callable[[dict[str, Any]], None] = writer.turn

    @property
    def run_id(self) -> str:
        return self.writer.record.run_id

    def started(self, job: EpisodeJob) -> None:
        self._emit(EpisodeStarted(run_id=self.run_id, episode=job.episode, seed=job.seed, attempt=job.attempt))

    def progress(self, episode: int, seed: int, step: int, turn: int, achievements: int) -> None:
        self._emit(EpisodeProgress(run_id=self.run_id, episode=episode, seed=seed, step=step,
                                   turn=turn, achievements=achievements))

    def episode(self, summary: EpisodeSummary) -> None:
        self.writer.episode(summary)
        self.summaries.append(summary)
        self._emit(EpisodeFinished(run_id=self.run_id, summary=summary))


class InProcessExecutor:
    """Episodes as asyncio tasks in this process, at most ``spec.concurrency`` at a time."""

    async def run(self, spec: RolloutSpec, config: AppConfig, jobs: list[EpisodeJob],
                  run_id: str, sink: RunSink) -> None:
        await play_jobs(spec, config, jobs, run_id, sink, spec.concurrency)


@functools.cache
def _git_commit() -> str | None:
    """The checkout's commit, looked up once per process: the code a process runs is what it
    loaded, and a ``git`` subprocess per run was ~1% of a short run's wall time."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> Versions:
    return Versions(crafter=_crafter_version(), crafter_tui=__version__,
                    python=platform.python_version(), git_commit=_git_commit())


@functools.cache
def _crafter_version() -> str:
    return version("crafter")


def new_run_id(spec: RolloutSpec) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    model = re.sub(r"[^A-Za-z0-9.-]+", "-", spec.model.split("/")[-1])[:40].strip("-") or "model"
    return f"{stamp}-{spec.agent}-{model}-{secrets.token_hex(2)}"


def _endpoint(spec: RolloutSpec, config: AppConfig) -> str | None:
    """The model endpoint as it may be recorded: no user info, query or fragment (agents that play a model)."""
    if spec.agent not in ("openai", "dagger"):
        return None
    from crafter_tui.agents.openai_agent import redact_url

    return redact_url(config.openai.base_url)


def new_run_record(spec: RolloutSpec, config: AppConfig, run_id: str) -> RunRecord:
    probe = build_agent(spec, config)
    system = probe.system_prompt
    env = spec.env_url if spec.env == "remote" else ("modal" if spec.on == "modal" else "local")
    return RunRecord(
        run_id=run_id, created_at=datetime.now(timezone.utc), agent=spec.agent, model=spec.model,
        endpoint=_endpoint(spec, config), env=env or "local", system_prompt=system,
        prompt_hash=stable_hash(system) if system else None, history_turns=spec.history_turns,
        tools_hash=stable_hash(TOOLS), difficulty=spec.difficulty, seed=spec.seed,
        episodes=spec.episodes, seeds=spec.seeds, max_steps=spec.max_steps, max_turns=spec.max_turns,
        settings={"temperature": config.eval.temperature, "max_tokens": config.eval.max_tokens,
                  "turn_seeds": config.eval.temperature > 0,  # sampled turns send seed(episode seed, turn)
                  "concurrency": spec.concurrency, "episode_timeout": spec.episode_timeout,
                  "workers": spec.workers, "on": spec.on, "observation": spec.observation,
                  "observation_revision": OBSERVATION_REVISIONS[spec.observation],
                  "reply_actions": spec.actions,
                  **({"expert_beta": config.eval.expert_beta} if spec.agent == "dagger" else {})},
        model_card=spec.model_card, mismatches=list(spec.mismatches),
        versions=versions(), experiment=spec.experiment,
    )


def resolve_run_dir(out_dir: Path, run: str) -> Path:
    """``run`` may be a run id under ``out_dir`` or a path to a run folder."""
    candidate = Path(run)
    for path in (candidate, out_dir / run):
        if (path / "run.json").is_file():
            return path
    raise UserError(f"no run folder with a run.json found for {run!r} (looked in {out_dir})", where="--resume")


def prepare_run(spec: RolloutSpec, config: AppConfig) -> tuple[RolloutSpec, AppConfig, TraceWriter, list[EpisodeJob]]:
    """Create the run folder (or reopen it for ``resume``: its recorded settings) and list the episodes left to play."""
    if spec.resume:
        run_dir = resolve_run_dir(spec.out_dir, spec.resume)
        record = load_run_record(run_dir)
        check_wording(record, run_dir)
        spec, config = spec_for_resume(spec, config, record)
        jobs = resume_jobs(run_dir, record)
        record.status = "running"
        return spec, config, TraceWriter(run_dir, record), jobs
    run_id = spec.run_id or new_run_id(spec)
    run_dir = spec.out_dir / run_id
    if (run_dir / "run.json").exists():
        raise UserError(f"run {run_id!r} already exists in {spec.out_dir}; use --resume {run_id}", where="--run-id")
    spec = spec.model_copy(update={"run_id": run_id})
    record = new_run_record(spec, config, run_id)
    jobs = [EpisodeJob(i, seed, 0) for i, seed in enumerate(spec.seeds)]
    return spec, config, TraceWriter(run_dir, record), jobs


def pick_executor(spec: RolloutSpec) -> Executor:
    """In-process unless the spec asks for worker processes or Modal."""
    if spec.on == "modal" or spec.workers > 1:
        from crafter_tui.rollout.executors import executor_for

        return executor_for(spec)
    return InProcessExecutor()


async def run_rollout_events(spec: RolloutSpec, config: AppConfig, emit: Emit,
                             executor: Executor | None = None) -> tuple[RolloutSpec, list[EpisodeSummary]]:
    """Run (or resume) a rollout, emitting events; returns the final spec and this call's summaries."""
    spec, config, writer, jobs = prepare_run(spec, config)
    emit(RunStarted(run_id=writer.record.run_id, run_dir=writer.run_dir, episodes=len(writer.record.seeds),
                    pending=len(jobs)))
    sink = RunSink(writer, emit)
    clock = time.perf_counter()
    status = "failed"
    try:
        await (executor or pick_executor(spec)).run(spec, config, jobs, writer.record.run_id, sink)
        status = "finished"
    except asyncio.CancelledError:
        status = "interrupted"
        raise
    finally:
        wall = time.perf_counter() - clock
        writer.finish(status, wall)
        emit(RunFinished(run_id=writer.record.run_id, run_dir=writer.run_dir, status=status, wall_s=wall))
    return spec, sink.summaries
