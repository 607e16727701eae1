"""Reading the semantic map and finding paths on it.

Path finding is a breadth-first wavefront over the 64x64 grid done with numpy slices: one
iteration per distance step, stopping at the first distance that reaches a goal cell. A
target a few cells away costs a few dozen microseconds, which keeps the expert near the
env's own speed. Ties are broken by a fixed cell order, so decisions are deterministic.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from crafter_tui.world.rules import SEMANTIC_IDS, SEMANTIC_NAMES, TUNNEL_RULES, WALKABLE

#: Directions in a fixed order (north, east, south, west): every tie is broken the same way.
DIRECTIONS: tuple[tuple[int, int], ...] = ((0, -1), (1, 0), (0, 1), (-1, 0))
MOVE_ACTIONS: dict[tuple[int, int], str] = {
    (0, -1): "move_up", (1, 0): "move_right", (0, 1): "move_down", (-1, 0): "move_left"}
#: Crafter's ``World.nearby(pos, 1)``: crafting looks at the 3x3 square around the player.
#: It is engine code, not part of the data file, hence a constant here.
CRAFT_REACH = 1

ID = SEMANTIC_IDS
WALKABLE_NAMES: tuple[str, ...] = tuple(WALKABLE)
CREATURE_NAMES = ("cow", "zombie", "skeleton", "arrow")
#: Cells zombies cannot enter and we do not mind sleeping next to (lava excluded on purpose).
SOLID_NAMES = ("unknown", "water", "stone", "tree", "coal", "iron", "diamond", "table", "furnace", "plant")


def ids_of(*names: str) -> frozenset[int]:
    return frozenset(ID[name] for name in names)


@functools.cache
def _lookup(names: frozenset[str]) -> np.ndarray:
    table = np.zeros(len(SEMANTIC_NAMES), bool)
    table[[ID[name] for name in names]] = True
    return table


def mask_of(sem: np.ndarray, names: Iterable[str]) -> np.ndarray:
    """Boolean map of the cells whose semantic kind is one of ``names`` (a table lookup)."""
    return _lookup(frozenset(names))[sem]


def diggable_names(inventory: dict[str, int]) -> tuple[str, ...]:
    """Materials we can mine right now and that leave a walkable cell (so we can tunnel)."""
    return tuple(name for name, needs in TUNNEL_RULES.items()
                 if name in ID and all(inventory.get(item, 0) >= amount for item, amount in needs.items()))


def neighbours(mask: np.ndarray) -> np.ndarray:
    """Cells with a 4-neighbour in ``mask``."""
    out = np.zeros_like(mask)
    out[1:, :] |= mask[:-1, :]
    out[:-1, :] |= mask[1:, :]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def square_neighbours(mask: np.ndarray) -> np.ndarray:
    """Cells within Chebyshev distance 1 of a cell in ``mask`` (the crafting square)."""
    rows = mask.copy()
    rows[1:, :] |= mask[:-1, :]
    rows[:-1, :] |= mask[1:, :]
    out = rows.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def in_bounds(sem: np.ndarray, cell: tuple[int, int]) -> bool:
    return 0 <= cell[0] < sem.shape[0] and 0 <= cell[1] < sem.shape[1]


def at(sem: np.ndarray, cell: tuple[int, int]) -> int:
    """Semantic id at ``cell``; 0 ("unknown") off the map."""
    return int(sem[cell]) if in_bounds(sem, cell) else 0


def shortest_path(passable: np.ndarray, start: tuple[int, int], goals: np.ndarray,
                  limit: int = 160) -> list[tuple[int, int]] | None:
    """Cells from ``start`` (excluded) to the nearest goal cell over ``passable`` cells.

    ``[]`` when ``start`` is a goal, ``None`` when no goal is reachable within ``limit`` steps.
    """
    if goals[start]:
        return []
    dist = np.full(passable.shape, -1, np.int16)
    dist[start] = 0
    frontier = np.zeros_like(passable)
    frontier[start] = True
    visited = frontier.copy()
    allowed = passable & ~visited
    for step in range(1, limit + 1):
        frontier = neighbours(frontier) & allowed
        if not frontier.any():
            return None
        dist[frontier] = step
        allowed &= ~frontier
        hit = frontier & goals
        if hit.any():
            xs, ys = np.nonzero(hit)
            return _walk_back(dist, (int(xs[0]), int(ys[0])), step)
    return None


def _walk_back(dist: np.ndarray, goal: tuple[int, int], step: int) -> list[tuple[int, int]]:
    path = [goal]
    cell = goal
    for d in range(step - 1, 0, -1):
        for dx, dy in DIRECTIONS:
            prev = (cell[0] + dx, cell[1] + dy)
            if in_bounds(dist, prev) and dist[prev] == d:
                cell = prev
                break
        path.append(cell)
    path.reverse()
    return path
