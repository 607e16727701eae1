"""Helpers shared by the console tests (``tests/test_tui_*.py``): real runs and waiting on the UI."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot

from crafter_tui.config import AppConfig
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.services.rollouts import run_rollout

FIXTURE_RUN_ID = "tui-fixture-run"


async def play_run(trace_dir: Path, *, run_id: str = FIXTURE_RUN_ID, episodes: int = 2, max_steps: int = 60,
                   agent: str = "scripted", seed: int = 0) -> Path:
    """Play a real rollout through the rollout service into ``trace_dir``; returns the run folder."""
    spec = RolloutSpec(agent=agent, model="scripted-expert" if agent == "scripted" else agent, episodes=episodes,
                       max_steps=max_steps, concurrency=2, run_id=run_id, out_dir=trace_dir, seed=seed)
    result = await run_rollout(spec, AppConfig())
    return result.run_dir


def make_run(trace_dir: Path, **options: object) -> Path:
    """``play_run`` from synchronous code (fixtures)."""
    return asyncio.run(play_run(trace_dir, **options))  # type: ignore[arg-type]


def copy_run(run_dir: Path, trace_dir: Path) -> Path:
    target = trace_dir / run_dir.name
    shutil.copytree(run_dir, target)
    return target


def console_config(trace_dir: Path, data_dir: Path | None = None, **tui: object) -> AppConfig:
    values: dict[str, object] = {"output": {"trace_dir": str(trace_dir)}, "tui": tui}
    if data_dir is not None:
        values["storage"] = {"data_dir": str(data_dir)}
    return AppConfig.model_validate(values)


async def wait_for(pilot: Pilot, condition: Callable[[], object], *, timeout: float = 10.0,
                   what: str = "condition") -> None:
    """Let the app run until ``condition()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            notes = [str(note.message) for note in pilot.app._notifications]
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; notifications: {notes}; "
                                 f"screen: {type(pilot.app.screen).__name__}; workers: {list(pilot.app.workers)}")
        await pilot.pause(0.05)


def plain(widget: object, width: int = 200) -> str:
    """The text a Static shows (its rich content rendered without styles), for assertions."""
    from rich.console import Console

    console = Console(width=width, record=True, file=open(os.devnull, "w"), color_system=None)  # noqa: SIM115
    console.print(widget.content)  # type: ignore[attr-defined]
    return console.export_text()
