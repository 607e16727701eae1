"""Small chat JSONL made from scripted Crafter play, for tests, benchmarks and smoke runs.

The rows are built exactly like exported SFT data (``prompting.build_messages`` with the
real system prompt, text observations and ``interact`` tool calls), so the trainer is
exercised on the real prompt shape without needing a rollout run first.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from crafter_tui.agents import prompting
from crafter_tui.agents.base import HistoryTurn
from crafter_tui.world.env import CrafterWorld
from crafter_tui.world.rules import ACTIONS, SEMANTIC_NAMES
from crafter_tui.world.text_obs import OBSERVATION_FORMATS

_MOVES = ["move_left", "move_right", "move_up", "move_down"]


def _scripted_choice(facing: str, rng: random.Random) -> tuple[list[str], str]:
    """A trivial expert: chop what it faces if it is a tree, otherwise wander."""
    if facing == "tree":
        return ["do"], "facing a tree, collect wood"
    move = rng.choice(_MOVES)
    return [move, move], "exploring for trees"


def scripted_conversations(turns: int, seed: int = 0, history_turns: int = 1, max_steps: int = 200,
                           system_prompt: str | None = None, observation: str = "full") -> list[dict]:
    """``turns`` chat rows (system, history, observation, interact call) from scripted episodes.

    ``observation`` picks the text format (and, unless ``system_prompt`` is given, its system
    prompt); tests pass a short ``system_prompt`` to keep sequences (and test time) small.
    """
    render = OBSERVATION_FORMATS[observation]
    system_prompt = prompting.SYSTEM_PROMPTS[observation] if system_prompt is None else system_prompt
    rng = random.Random(seed)
    rows: list[dict] = []
    episode = 0
    while len(rows) < turns:
        world = CrafterWorld("normal", max_steps=max_steps)
        state = world.reset(seed + episode)
        history: list[HistoryTurn] = []
        for turn in range(max_steps):
            if len(rows) >= turns:
                break
            text = render(state, turn=turn, max_steps=max_steps)
            actions, reasoning = _scripted_choice(SEMANTIC_NAMES[state.facing_id], rng)
            messages = prompting.build_messages(system_prompt, history, text, history_turns)
            assistant = prompting.interact_message(actions, reasoning, f"call_{episode}_{turn}")
            rows.append({"messages": [*messages, assistant], "tools": prompting.TOOLS})
            done, unlocked = False, []
            for action in actions:
                outcome = world.step(ACTIONS.index(action))
                state, done = outcome.state, outcome.done
                unlocked += outcome.new_achievements
                if done:
                    break
            history.append(HistoryTurn(text, assistant, prompting.tool_result_text(actions, unlocked, done)))
            if done:
                break
        episode += 1
    return rows


def write_jsonl(rows: list[dict], path: Path) -> Path:
    """Write rows as chat JSONL (one conversation per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path
