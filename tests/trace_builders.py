"""Small hand-made trace stores for the store/dataset tests (written in the real file format).

Each episode is described by the actions of each turn and the achievements each turn
unlocks, so every count a test expects can be worked out by hand from the description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from crafter_tui.agents.prompting import SYSTEM_PROMPT, TOOLS, interact_message, stable_hash, tool_result_text
from crafter_tui.traces.jsonl import JsonlAppender, write_json_atomic
from crafter_tui.traces.schema import (
    EPISODES_FILE, RUN_FILE, STEPS_FILE, TURNS_FILE, EpisodeSummary, RunRecord, StepRecord, TurnRecord, Versions,
)
from crafter_tui.world.rules import ACHIEVEMENTS, ACTION_IDS

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass
class Turn:
    actions: list[str]
    unlocks: list[str] = field(default_factory=list)
    valid: bool = True
    observation: str | None = None
    extra: dict[str, Any] | None = None  # what the agent recorded beside its reply (a goal, a DAgger label's goal)


@dataclass
class Episode:
    turns: list[Turn]
    termination: str = "death"
    reward: float | None = None  # default: number of unlocks
    seed: int | None = None
    attempt: int = 0


def run_record(run_id: str, *, model: str = "scripted-expert", history_turns: int = 2,
               episodes: int = 0, status: str = "finished") -> RunRecord:
    return RunRecord(run_id=run_id, created_at=NOW, agent="scripted", model=model, system_prompt=SYSTEM_PROMPT,
                     prompt_hash=stable_hash(SYSTEM_PROMPT), tools_hash=stable_hash(TOOLS),
                     history_turns=history_turns, episodes=episodes, status=status,  # type: ignore[arg-type]
                     versions=Versions(crafter="1.8.3", crafter_tui="0.1.0", python="3.11"))


def turn_lines(index: int, episode: Episode, seed: int, run_id: str = "run") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The turn and step records of one episode."""
    turns, steps, step = [], [], 0
    for number, turn in enumerate(episode.turns):
        observation = turn.observation or f"{run_id} episode {index} turn {number}: you see grass and a tree."
        call_id = f"call_{index}_{number}"
        if turn.valid:
            assistant = interact_message(turn.actions, f"reason {number}", call_id)
            result = tool_result_text(turn.actions, turn.unlocks, False)
        else:
            assistant = {"role": "assistant", "content": "I will walk."}
            result = None
        record = TurnRecord(
            episode=index, seed=seed, attempt=episode.attempt, turn=number, step=step, observation=observation,
            assistant=assistant, tool_result=result, actions=turn.actions if turn.valid else [],
            reasoning=f"reason {number}", valid=turn.valid, new_achievements=turn.unlocks,
            reward=float(len(turn.unlocks)),
        ).model_dump(mode="json")
        turns.append(record if turn.extra is None else {**record, "extra": turn.extra})
        for k, action in enumerate(turn.actions if turn.valid else []):
            step += 1
            steps.append(StepRecord(
                episode=index, seed=seed, attempt=episode.attempt, step=step, turn=number,
                action=ACTION_IDS[action], action_name=action, reward=1.0 if k == 0 and turn.unlocks else 0.0,
                pos=(32, 32), facing=(0, 1), inventory=[9, 9, 9, 9] + [0] * 12, view="." * 63,
                new_achievements=turn.unlocks if k == 0 else [],
            ).model_dump(mode="json"))
    return turns, steps


def summary(run_id: str, index: int, episode: Episode, seed: int, model: str) -> EpisodeSummary:
    unlocked = [name for name in ACHIEVEMENTS if any(name in t.unlocks for t in episode.turns)]
    steps = sum(len(t.actions) for t in episode.turns if t.valid)
    return EpisodeSummary(
        episode=index, seed=seed, attempt=episode.attempt, run_id=run_id, agent="scripted", model=model,
        steps=steps, turns=len(episode.turns),
        reward=float(len(unlocked)) if episode.reward is None else episode.reward,
        achievements=unlocked, num_achievements=len(unlocked), termination=episode.termination,  # type: ignore[arg-type]
        invalid_actions=sum(1 for t in episode.turns if not t.valid), started_at=NOW, finished_at=NOW, wall_s=1.0,
    )


def write_run(root: Path, run_id: str, episodes: list[Episode], *, model: str = "scripted-expert",
              history_turns: int = 2, finished: bool = True) -> Path:
    """Write a complete run folder; returns its path."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    record = run_record(run_id, model=model, history_turns=history_turns, episodes=len(episodes))
    write_json_atomic(run_dir / RUN_FILE, record.model_dump(mode="json"))
    turns_out, steps_out, eps_out = (JsonlAppender(run_dir / name) for name in (TURNS_FILE, STEPS_FILE, EPISODES_FILE))
    for index, episode in enumerate(episodes):
        seed = episode.seed if episode.seed is not None else 100 + index
        turns, steps = turn_lines(index, episode, seed, run_id)
        for line in turns:
            turns_out.write(line)
        for line in steps:
            steps_out.write(line)
        if finished:
            eps_out.write(summary(run_id, index, episode, seed, model).model_dump(mode="json"))
    for appender in (turns_out, steps_out, eps_out):
        appender.close()
    return run_dir


def small_store(root: Path) -> Path:
    """Two runs, six episodes; see the table in tests/test_dataset_filter.py."""
    write_run(root, "run-a", [
        # ep0: 3 turns, unlocks collect_wood at turn 1, place_table at turn 2 -> 2 achievements
        Episode([Turn(["move_left"]), Turn(["do"], ["collect_wood"]), Turn(["place_table", "noop"], ["place_table"])]),
        # ep1: 2 turns, nothing, max_steps
        Episode([Turn(["move_left"]), Turn(["move_right"])], termination="max_steps"),
        # ep2: 4 turns, one invalid, unlocks collect_wood at turn 3 -> 1 achievement, timeout
        Episode([Turn(["noop"]), Turn([], valid=False), Turn(["move_up"]), Turn(["do"], ["collect_wood"])],
                termination="timeout"),
    ], model="model-a")
    write_run(root, "run-b", [
        # ep0: 1 turn, unlocks collect_wood + collect_sapling -> 2, agent_terminated
        Episode([Turn(["do", "do"], ["collect_wood", "collect_sapling"])], termination="agent_terminated"),
        # ep1: 5 turns, unlocks wake_up at turn 4 -> 1, reward 0.5
        Episode([Turn(["sleep"]), Turn(["sleep"]), Turn(["sleep"]), Turn(["sleep"]), Turn(["noop"], ["wake_up"])],
                reward=0.5),
        # ep2: 2 turns, nothing, agent_error
        Episode([Turn(["move_left"]), Turn(["move_left"])], termination="agent_error"),
    ], model="model-b", history_turns=1)
    return root
