"""The text observation an LLM agent reads instead of the 64x64 image.

It carries what the image shows, in a form a language model can use: the 9x7 local view
as a grid of one-character symbols with a legend of the symbols present, the nearest
instance of each visible kind with offsets (as BALROG/SmartPlay do), the faced cell,
vitals, inventory, achievements so far, and step/turn counters. The output is a pure
function of the world state, so the same seed always yields the same prompt text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crafter_tui.world.rules import ACHIEVEMENTS, DIRECTIONS, ITEMS, LOCAL_VIEW, MAX_ITEM, SEMANTIC_NAMES, VITALS

if TYPE_CHECKING:  # annotations only: prompts and the SFT export must not import the game engine
    from crafter_tui.world.env import WorldState

#: One symbol per semantic kind, chosen to be distinct and mnemonic.
SYMBOLS: dict[str, str] = {
    "unknown": "?", "water": "~", "grass": ".", "stone": "#", "path": "_", "sand": ":",
    "tree": "T", "lava": "%", "coal": "c", "iron": "i", "diamond": "d", "table": "t",
    "furnace": "f", "player": "@", "cow": "C", "zombie": "Z", "skeleton": "S", "arrow": "*",
    "plant": "p",
}
_CENTER = (LOCAL_VIEW[0] // 2, LOCAL_VIEW[1] // 2)


def offset_text(dx: int, dy: int) -> str:
    """'2 north and 1 east': how observations (and the expert's reasoning) word an offset."""
    parts = []
    if dy:
        parts.append(f"{abs(dy)} {'north' if dy < 0 else 'south'}")
    if dx:
        parts.append(f"{abs(dx)} {'west' if dx < 0 else 'east'}")
    return " and ".join(parts) if parts else "here"


def map_grid(state: WorldState) -> list[str]:
    """The local view as text rows, north at the top, '@' at the player's cell."""
    rows = []
    for y, row in enumerate(state.local_view):
        cells = []
        for x, sid in enumerate(row):
            cells.append("@" if (x, y) == _CENTER else SYMBOLS[SEMANTIC_NAMES[sid]])
        rows.append(" ".join(cells))
    return rows


def nearest_objects(state: WorldState) -> list[tuple[str, int, int]]:
    """(kind, dx, dy) of the nearest visible cell of each kind, nearest first."""
    best: dict[str, tuple[int, int, int]] = {}
    for y, row in enumerate(state.local_view):
        for x, sid in enumerate(row):
            if (x, y) == _CENTER:
                continue
            name = SEMANTIC_NAMES[sid]
            if name in ("unknown", "player"):
                continue
            dx, dy = x - _CENTER[0], y - _CENTER[1]
            dist = abs(dx) + abs(dy)
            if name not in best or dist < best[name][0]:
                best[name] = (dist, dx, dy)
    ordered = sorted(best.items(), key=lambda item: (item[1][0], item[0]))
    return [(name, dx, dy) for name, (_, dx, dy) in ordered]


def _short_offset(dx: int, dy: int) -> str:
    parts = []
    if dy:
        parts.append(f"{abs(dy)}{'n' if dy < 0 else 's'}")
    if dx:
        parts.append(f"{abs(dx)}{'w' if dx < 0 else 'e'}")
    return "".join(parts) or "0"


def _short_lines(state: WorldState) -> dict[str, str]:
    """The ``near``, ``face``, vitals and ``inv`` lines shared by the compact and brief formats."""
    near = " ".join(f"{name}:{_short_offset(dx, dy)}" for name, dx, dy in nearest_objects(state) if name != "grass")
    facing = f"{SEMANTIC_NAMES[state.facing_id]}:{DIRECTIONS.get(state.facing, '?')[0]}"
    vitals = " ".join(f"{name[:2]}{state.inventory.get(name, 0)}" for name in VITALS)
    items = " ".join(f"{name}{state.inventory[name]}" for name in ITEMS
                     if name not in VITALS and state.inventory.get(name, 0) > 0)
    night = "" if state.daylight > 0.5 else " night"
    return {"near": f"near {near or '-'}", "face": f"face {facing}{' sleeping' if state.sleeping else ''}",
            "vitals": f"{vitals}{night}", "inv": f"inv {items or '-'}"}


def render_compact_observation(state: WorldState, *, turn: int, max_steps: int) -> str:
    """A short form of the same facts for small models (~3x fewer tokens than ``full``).

    Same grid and symbols; the legend is left to the system prompt, offsets are written as
    ``2n1e`` (2 north, 1 east), vitals and inventory as ``name count`` pairs.
    """
    short = _short_lines(state)
    return "\n".join([*map_grid(state), short["near"], short["face"], short["vitals"], short["inv"]])


def neighbour_names(state: WorldState) -> list[tuple[str, str]]:
    """(direction letter, kind) of the four cells next to the player: what a move would run into."""
    x, y = _CENTER
    view = state.local_view
    cells = (("n", view[y - 1][x]), ("s", view[y + 1][x]), ("w", view[y][x - 1]), ("e", view[y][x + 1]))
    return [(letter, SEMANTIC_NAMES[sid]) for letter, sid in cells]


def render_brief_observation(state: WorldState, *, turn: int, max_steps: int) -> str:
    """The facts a tiny model can learn a policy from in minutes of CPU training (~45 tokens).

    No grid: the four neighbouring cells say what blocks a move, the nearest-of-each-kind
    offsets say where to go, and the faced cell comes last, next to the reply, because it
    decides the most frequent action (``do``) and short-range dependencies are what a small
    transformer learns first.
    """
    short = _short_lines(state)
    around = "around " + " ".join(f"{letter}:{name}" for letter, name in neighbour_names(state))
    return "\n".join([short["near"], around, short["vitals"], short["inv"], short["face"]])


def render_text_observation(state: WorldState, *, turn: int, max_steps: int) -> str:
    """The full text observation for one agent turn."""
    grid = map_grid(state)
    present = sorted({SEMANTIC_NAMES[sid] for row in state.local_view for sid in row} - {"player"})
    legend = ", ".join(f"{SYMBOLS[name]} {name}" for name in present)
    seen = "; ".join(f"{name} {offset_text(dx, dy)}" for name, dx, dy in nearest_objects(state))
    facing_dir = DIRECTIONS.get(state.facing, "?")
    vitals = ", ".join(f"{name} {state.inventory.get(name, 0)}/{MAX_ITEM[name]}" for name in VITALS)
    items = [f"{name} {state.inventory[name]}" for name in ITEMS
             if name not in VITALS and state.inventory.get(name, 0) > 0]
    unlocked = [name for name in ACHIEVEMENTS if state.achievements.get(name, 0) > 0]
    time_of_day = "day" if state.daylight > 0.5 else "night"
    lines = [
        f"Step {state.step}/{max_steps}, turn {turn}, {time_of_day}.",
        "Map (north is up; @ is you):",
        *grid,
        f"Legend: @ you, {legend}",
        f"You see: {seen or 'nothing'}.",
        f"You face {SEMANTIC_NAMES[state.facing_id]} ({facing_dir})"
        + (", asleep." if state.sleeping else "."),
        f"Status: {vitals}.",
        f"Inventory: {', '.join(items) if items else 'empty'}.",
        f"Achievements ({len(unlocked)}/{len(ACHIEVEMENTS)}): {', '.join(unlocked) if unlocked else 'none'}.",
    ]
    return "\n".join(lines)


#: Observation formats by name (recorded in run records; the agent's system prompt matches).
OBSERVATION_FORMATS = {"full": render_text_observation, "compact": render_compact_observation,
                       "brief": render_brief_observation}
