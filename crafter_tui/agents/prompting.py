"""Prompts, tools and message building shared by the agent, the exporter and the server.

There is exactly one way to turn a turn history into chat messages (``build_messages``):
the OpenAI agent uses it to call the model, the SFT exporter uses it to write training
examples, so the exported prompt is byte for byte the one the model saw.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from crafter_tui.agents.base import HistoryTurn
from crafter_tui.world.rules import ACHIEVEMENTS, ACTIONS
from crafter_tui.world.text_obs import SYMBOLS

MAX_ACTIONS_PER_TURN = 5

SYSTEM_PROMPT = (
    "You are playing Crafter, a 2D open-world survival game. Unlock as many of the 22 achievements "
    "as you can before you die: " + ", ".join(ACHIEVEMENTS) + ".\n"
    "Each turn you get a text observation: a 9x7 map around you (north is up, you are @), the "
    "nearest thing of each kind you can see, what you face, your vitals and inventory.\n"
    "Actions: " + ", ".join(ACTIONS) + ". Moving into a blocked cell only turns you to face it; "
    "do, place_* and attacks act on the faced cell. Collect wood from trees, place a table "
    "(needs wood) to craft pickaxes and swords, mine stone with a wood pickaxe, coal too, iron "
    "with a stone pickaxe and a furnace nearby, diamond with an iron pickaxe. Drink water, eat "
    "cows, sleep when energy is low, and avoid zombies, skeletons and lava.\n"
    "Call the interact tool with 1-" + str(MAX_ACTIONS_PER_TURN) + " actions and a short reasoning."
)

COMPACT_SYSTEM_PROMPT = (
    "Crafter. Unlock achievements. Map: 9x7, north up, @ you; " + ", ".join(
        f"{symbol} {name}" for name, symbol in SYMBOLS.items() if name not in ("player", "unknown"))
    + ". near: nearest things, 2n1e = 2 north 1 east. Call interact with 1-" + str(MAX_ACTIONS_PER_TURN)
    + " actions."
)

BRIEF_SYSTEM_PROMPT = (
    "Crafter. Unlock achievements. near: nearest things, 2n1e = 2 north 1 east; around: the cells next to you; "
    "can: the crafts that would work now. "
    "Call interact with 1-" + str(MAX_ACTIONS_PER_TURN) + " actions."
)

#: System prompt for each observation format (``world.text_obs.OBSERVATION_FORMATS``).
SYSTEM_PROMPTS: dict[str, str] = {"full": SYSTEM_PROMPT, "compact": COMPACT_SYSTEM_PROMPT,
                                  "brief": BRIEF_SYSTEM_PROMPT}

INTERACT_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "interact",
        "description": "Perform 1-5 Crafter actions in order.",
        "parameters": {
            "type": "object",
            "properties": {
                "actions": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(ACTIONS)},
                    "minItems": 1,
                    "maxItems": MAX_ACTIONS_PER_TURN,
                },
                "reasoning": {"type": "string", "description": "why these actions, briefly"},
            },
            "required": ["actions", "reasoning"],
        },
    },
}

TERMINATE_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "terminate",
        "description": "End the episode early.",
        "parameters": {
            "type": "object",
            "properties": {"reason": {"type": "string"}},
            "required": ["reason"],
        },
    },
}

TOOLS: list[dict[str, Any]] = [INTERACT_TOOL, TERMINATE_TOOL]


def stable_hash(value: Any) -> str:
    """A short content hash (prompt, tools) recorded in run records."""
    data = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]


def interact_message(actions: Sequence[str], reasoning: str, call_id: str) -> dict[str, Any]:
    """The assistant message of an ``interact`` call, as the OpenAI API returns it."""
    arguments = json.dumps({"actions": list(actions), "reasoning": reasoning})
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function",
                        "function": {"name": "interact", "arguments": arguments}}],
    }


def tool_result_text(actions: Sequence[str], new_achievements: Sequence[str], done: bool) -> str:
    """What the tool returns to the model after executing its actions."""
    text = f"Executed {len(actions)} action(s): {', '.join(actions) if actions else 'none'}."
    if new_achievements:
        text += f" Unlocked: {', '.join(new_achievements)}."
    if done:
        text += " The episode is over."
    return text


def build_messages(
    system_prompt: str,
    history: Sequence[HistoryTurn],
    observation: str,
    history_turns: int,
) -> list[dict[str, Any]]:
    """The chat messages for one turn: system, the last ``history_turns`` turns, this observation.

    A past turn contributes its user observation, the assistant message and, when the
    assistant called a tool, the tool result with the matching ``tool_call_id``.
    """
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}]
    # by index, not list(history)[-n:]: copying the whole history every turn is quadratic over a long episode
    first = max(0, len(history) - history_turns) if history_turns > 0 else len(history)
    window = [history[i] for i in range(first, len(history))]
    for past in window:
        messages.append({"role": "user", "content": past.observation})
        messages.append(past.assistant)
        for call in past.assistant.get("tool_calls") or []:
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": past.tool_result or ""})
    messages.append({"role": "user", "content": observation})
    return messages
