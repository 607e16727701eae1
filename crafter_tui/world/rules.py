"""Crafter's vocabulary, read from Crafter's own data (``crafter/data.yaml``), never retyped.

Action names and ids, the 22 achievements, materials, items and the place/make/collect
rules all come from ``crafter.constants`` so that a Crafter upgrade cannot silently
desynchronise our agents, prompts and statistics from the game.
"""

from __future__ import annotations

from typing import Any

import crafter.constants as _constants

ACTIONS: tuple[str, ...] = tuple(_constants.actions)
ACTION_IDS: dict[str, int] = {name: index for index, name in enumerate(ACTIONS)}
ACHIEVEMENTS: tuple[str, ...] = tuple(_constants.achievements)
MATERIALS: tuple[str, ...] = tuple(_constants.materials)
WALKABLE: tuple[str, ...] = tuple(_constants.walkable)
ITEMS: tuple[str, ...] = tuple(_constants.items)
VITALS: tuple[str, ...] = ("health", "food", "drink", "energy")
MAX_ITEM: dict[str, int] = {name: info["max"] for name, info in _constants.items.items()}
PLACE_RULES: dict[str, dict[str, Any]] = dict(_constants.place)
MAKE_RULES: dict[str, dict[str, Any]] = dict(_constants.make)
COLLECT_RULES: dict[str, dict[str, Any]] = dict(_constants.collect)

#: Semantic ids as ``crafter.Env`` numbers them: materials 1..12, then object kinds.
OBJECT_KINDS: tuple[str, ...] = ("player", "cow", "zombie", "skeleton", "arrow", "plant")
SEMANTIC_NAMES: tuple[str, ...] = ("unknown",) + MATERIALS + OBJECT_KINDS
SEMANTIC_IDS: dict[str, int] = {name: index for index, name in enumerate(SEMANTIC_NAMES)}

DIRECTIONS: dict[tuple[int, int], str] = {
    (-1, 0): "west",
    (1, 0): "east",
    (0, -1): "north",
    (0, 1): "south",
}


def action_id(name: str) -> int:
    """The integer id of an action name; raises ``KeyError`` naming the unknown action."""
    try:
        return ACTION_IDS[name]
    except KeyError:
        raise KeyError(f"unknown action {name!r}; known: {', '.join(ACTIONS)}") from None
