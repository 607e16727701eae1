"""How the expert words its reasoning: in terms a model reading only the text observation
could produce (offsets like "2 north and 1 east", what it faces, its vitals), never map
coordinates or anything outside the 9x7 view."""

from __future__ import annotations

from crafter_tui.world.env import LOCAL_VIEW
from crafter_tui.world.text_obs import offset_text

_HALF_W, _HALF_H = LOCAL_VIEW[0] // 2, LOCAL_VIEW[1] // 2


def visible(dx: int, dy: int) -> bool:
    """Whether an offset from the player lies inside the 9x7 local view."""
    return abs(dx) <= _HALF_W and abs(dy) <= _HALF_H


offset = offset_text  # the expert words offsets exactly as the observation does


def heading(dx: int, dy: int) -> str:
    """The main compass direction of an offset ('north', 'east', ...)."""
    if abs(dx) > abs(dy):
        return "east" if dx > 0 else "west"
    return "south" if dy > 0 else "north"


#: Kinds spoken of without an article ("water is 2 south", "find some stone").
MASS_NOUNS = frozenset({"water", "grass", "stone", "path", "sand", "lava", "coal", "iron", "diamond"})


def where(kind: str, dx: int, dy: int) -> str:
    """'A tree is 2 north' when visible, otherwise 'No tree in view, so I explore west ...'."""
    mass = kind in MASS_NOUNS
    subject = kind.capitalize() if mass else f"A {kind}"
    if abs(dx) + abs(dy) == 1:
        return f"{subject} is right next to me ({offset(dx, dy)})"
    if visible(dx, dy):
        return f"{subject} is {offset(dx, dy)}"
    return f"No {kind} in view, so I explore {heading(dx, dy)} to find {'some' if mass else 'one'}"
