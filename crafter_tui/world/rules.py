"""Crafter's vocabulary, read from Crafter's own data (``crafter/data.yaml``), never retyped.

Action names and ids, the 22 achievements, materials, items and the place/make/collect
rules all come from Crafter's ``data.yaml`` so that a Crafter upgrade cannot silently
desynchronise our agents, prompts and statistics from the game. The file is read the way
``crafter.constants`` reads it (ruamel's pure safe loader: the same values) but without
importing the ``crafter`` package, whose engine pulls in numba (~65 MB, ~1 s): the trace
store and the SFT export need these names, not the game.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ruamel.yaml


def _crafter_data() -> SimpleNamespace:
    """``crafter/data.yaml`` as ``crafter.constants`` exposes it, located without importing ``crafter``."""
    spec = importlib.util.find_spec("crafter")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the crafter package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data.yaml"
    return SimpleNamespace(**ruamel.yaml.YAML(typ="safe", pure=True).load(path.read_text()))


_constants = _crafter_data()

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
#: What the player can tunnel through, with the tools it takes: collecting it always succeeds and
#: leaves walkable ground (stone and ores leave a path). Shared by the expert's path search and the
#: observation's first steps, which must agree on where a walk can go.
TUNNEL_RULES: dict[str, dict[str, int]] = {
    name: dict(rule["require"]) for name, rule in COLLECT_RULES.items()
    if rule["leaves"] in WALKABLE and name not in WALKABLE and rule.get("probability", 1) >= 1}

#: Semantic ids as ``crafter.Env`` numbers them: materials 1..12, then object kinds.
OBJECT_KINDS: tuple[str, ...] = ("player", "cow", "zombie", "skeleton", "arrow", "plant")
SEMANTIC_NAMES: tuple[str, ...] = ("unknown",) + MATERIALS + OBJECT_KINDS
SEMANTIC_IDS: dict[str, int] = {name: index for index, name in enumerate(SEMANTIC_NAMES)}

#: The world window of the observation image (the other two rows show the inventory). Here, not
#: only in ``world.env``, so text observations and prompts need not import the game engine;
#: ``tests/test_dataset_imports.py`` checks that the two agree.
LOCAL_VIEW: tuple[int, int] = (9, 7)

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
