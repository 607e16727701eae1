"""Run folders for the evaluation tests, written in the real trace format.

Episodes are described by what a test needs to count by hand: the seed, the achievements,
and optionally the exact steps (action, position, facing, materials) and turns (valid or an
error text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from crafter_tui.traces.jsonl import JsonlAppender, write_json_atomic
from crafter_tui.traces.schema import (
    EPISODES_FILE, RUN_FILE, STEPS_FILE, TURNS_FILE, EpisodeSummary, RunRecord, StepRecord, TurnRecord, Versions,
)
from crafter_tui.world.rules import ACHIEVEMENTS, ACTION_IDS, ITEMS

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass
class Step:
    action: str
    pos: tuple[int, int] = (10, 10)
    facing: tuple[int, int] = (0, 1)
    wood: int = 0  # the one material the tests vary
    unlocks: list[str] = field(default_factory=list)


@dataclass
class Ep:
    seed: int
    achievements: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)  # one turn per entry: None = valid
    termination: str = "death"
    difficulty: str = "normal"
    reward: float | None = None
    attempt: int = 0
    n_steps: int | None = None


def inventory(wood: int) -> list[int]:
    values = [0] * len(ITEMS)
    for name in ("health", "food", "drink", "energy"):
        values[ITEMS.index(name)] = 9
    values[ITEMS.index("wood")] = wood
    return values


def write_run(root: Path, run_id: str, episodes: list[Ep], *, model: str = "model-a", agent: str = "scripted",
              max_steps: int = 300, settings: dict[str, Any] | None = None,
              extra_lines: dict[str, list[str]] | None = None) -> Path:
    """Write a run folder and return it. ``extra_lines`` appends raw text lines to a file (bad lines)."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    record = RunRecord(run_id=run_id, status="finished", created_at=NOW, agent=agent, model=model,
                       difficulty=episodes[0].difficulty if episodes else "normal", episodes=len(episodes),
                       seeds=[e.seed for e in episodes], max_steps=max_steps, settings=settings or {},
                       versions=Versions(crafter="1.8.3", crafter_tui="0.1.0", python="3.11", git_commit="abc123"))
    write_json_atomic(run_dir / RUN_FILE, record.model_dump(mode="json"))
    steps_file, turns_file = JsonlAppender(run_dir / STEPS_FILE), JsonlAppender(run_dir / TURNS_FILE)
    episodes_file = JsonlAppender(run_dir / EPISODES_FILE)
    for index, ep in enumerate(episodes):
        for number, step in enumerate(ep.steps, start=1):
            steps_file.write(StepRecord(
                episode=index, seed=ep.seed, attempt=ep.attempt, step=number, turn=number - 1,
                action=ACTION_IDS[step.action], action_name=step.action, reward=0.0, pos=step.pos,
                facing=step.facing, inventory=inventory(step.wood), view="." * 63,
                new_achievements=step.unlocks).model_dump(mode="json"))
        for number, error in enumerate(ep.errors):
            valid = error is None
            assistant = ({"role": "assistant", "content": None, "tool_calls": [
                {"id": f"c{number}", "type": "function",
                 "function": {"name": "interact", "arguments": "{\"actions\": [\"noop\"], \"reasoning\": \"r\"}"}}]}
                if valid else {"role": "assistant", "content": "hmm"})
            turns_file.write(TurnRecord(
                episode=index, seed=ep.seed, attempt=ep.attempt, turn=number, step=number, observation="obs",
                assistant=assistant, actions=["noop"] if valid else [], valid=valid, error=error,
            ).model_dump(mode="json"))
        unlocked = [name for name in ACHIEVEMENTS if name in ep.achievements]
        n_steps = ep.n_steps if ep.n_steps is not None else len(ep.steps)
        episodes_file.write(EpisodeSummary(
            episode=index, seed=ep.seed, attempt=ep.attempt, run_id=run_id, agent=agent, model=model,
            difficulty=ep.difficulty, steps=n_steps, turns=max(len(ep.errors), 1),
            reward=ep.reward if ep.reward is not None else float(len(unlocked)), achievements=unlocked,
            num_achievements=len(unlocked), termination=ep.termination,  # type: ignore[arg-type]
            invalid_actions=sum(e is not None for e in ep.errors), started_at=NOW, finished_at=NOW, wall_s=1.5,
        ).model_dump(mode="json"))
    for appender in (steps_file, turns_file, episodes_file):
        appender.close()
    for name, lines in (extra_lines or {}).items():
        with (run_dir / name).open("a", encoding="utf-8") as handle:
            handle.writelines(line + "\n" for line in lines)
    return run_dir


def simple_episodes(counts: list[int], *, seed0: int = 0, difficulty: str = "normal") -> list[Ep]:
    """Episodes with the first k achievements (Crafter's order) unlocked, seeds seed0, seed0+1, ..."""
    return [Ep(seed=seed0 + i, achievements=list(ACHIEVEMENTS[:k]), difficulty=difficulty, n_steps=100 + 10 * k)
            for i, k in enumerate(counts)]
