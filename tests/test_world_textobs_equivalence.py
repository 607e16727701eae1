"""The fast text observation equals the original implementation, byte for byte.

``_Reference`` below is the implementation the fast one replaced, kept verbatim so any
divergence (symbol, ordering of ties, legend, vitals, night, sleeping, inventory, offsets)
fails here. States come from real episodes (several seeds and every difficulty preset,
random actions so the player wanders, sleeps and meets creatures) plus synthetic edits that
real play reaches rarely: full and empty inventories, night, sleeping, every semantic id in
the view, an unknown facing, missing inventory keys.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from crafter_tui.world import text_obs
from crafter_tui.world.env import CrafterWorld, WorldState
from crafter_tui.world.rules import (
    ACHIEVEMENTS, DIRECTIONS, ITEMS, LOCAL_VIEW, MAKE_RULES, MAX_ITEM, PLACE_RULES, SEMANTIC_NAMES, VITALS,
)

_CENTER = (LOCAL_VIEW[0] // 2, LOCAL_VIEW[1] // 2)
SYMBOLS = dict(text_obs.SYMBOLS)


class _Reference:
    """The original (slow, obviously correct) text observation code."""

    @staticmethod
    def offset_text(dx: int, dy: int) -> str:
        parts = []
        if dy:
            parts.append(f"{abs(dy)} {'north' if dy < 0 else 'south'}")
        if dx:
            parts.append(f"{abs(dx)} {'west' if dx < 0 else 'east'}")
        return " and ".join(parts) if parts else "here"

    @staticmethod
    def map_grid(state: WorldState) -> list[str]:
        rows = []
        for y, row in enumerate(state.local_view):
            cells = []
            for x, sid in enumerate(row):
                cells.append("@" if (x, y) == _CENTER else SYMBOLS[SEMANTIC_NAMES[sid]])
            rows.append(" ".join(cells))
        return rows

    @staticmethod
    def nearest_objects(state: WorldState) -> list[tuple[str, int, int]]:
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

    @staticmethod
    def _short_offset(dx: int, dy: int) -> str:
        parts = []
        if dy:
            parts.append(f"{abs(dy)}{'n' if dy < 0 else 's'}")
        if dx:
            parts.append(f"{abs(dx)}{'w' if dx < 0 else 'e'}")
        return "".join(parts) or "0"

    @classmethod
    def _short_lines(cls, state: WorldState) -> dict[str, str]:
        near = " ".join(f"{name}:{cls._short_offset(dx, dy)}"
                        for name, dx, dy in cls.nearest_objects(state) if name != "grass")
        facing = f"{SEMANTIC_NAMES[state.facing_id]}:{DIRECTIONS.get(state.facing, '?')[0]}"
        vitals = " ".join(f"{name[:2]}{state.inventory.get(name, 0)}" for name in VITALS)
        items = " ".join(f"{name}{state.inventory[name]}" for name in ITEMS
                         if name not in VITALS and state.inventory.get(name, 0) > 0)
        night = "" if state.daylight > 0.5 else " night"
        return {"near": f"near {near or '-'}", "face": f"face {facing}{' sleeping' if state.sleeping else ''}",
                "vitals": f"{vitals}{night}", "inv": f"inv {items or '-'}"}

    @classmethod
    def compact(cls, state: WorldState, *, turn: int, max_steps: int) -> str:
        short = cls._short_lines(state)
        return "\n".join([*cls.map_grid(state), short["near"], short["face"], short["vitals"], short["inv"]])

    @staticmethod
    def neighbour_names(state: WorldState) -> list[tuple[str, str]]:
        x, y = _CENTER
        view = state.local_view
        cells = (("n", view[y - 1][x]), ("s", view[y + 1][x]), ("w", view[y][x - 1]), ("e", view[y][x + 1]))
        return [(letter, SEMANTIC_NAMES[sid]) for letter, sid in cells]

    @staticmethod
    def possible_crafts(state: WorldState) -> list[str]:
        if state.sleeping and state.inventory.get("energy", 0) < MAX_ITEM["energy"]:
            return []
        x, y = _CENTER
        square = {SEMANTIC_NAMES[state.local_view[y + dy][x + dx]] for dy in (-1, 0, 1) for dx in (-1, 0, 1)}

        def affordable(uses: dict[str, int]) -> bool:
            return all(state.inventory.get(item, 0) >= amount for item, amount in uses.items())

        faced = SEMANTIC_NAMES[state.facing_id]
        can = [f"place_{name}" for name, rule in PLACE_RULES.items()
               if faced in rule["where"] and affordable(rule["uses"])]
        can += [f"make_{tool}" for tool, rule in MAKE_RULES.items()
                if state.inventory.get(tool, 0) == 0 and set(rule["nearby"]) <= square and affordable(rule["uses"])]
        return can

    @staticmethod
    def step_hints(state: WorldState) -> dict[str, str]:
        """The scripted expert's own path search (numpy maps indexed [x, y]) run on the view."""
        from crafter_tui.agents.expert.navigation import (
            diggable_names, mask_of, neighbours, shortest_path, square_neighbours,
        )

        sem = np.asarray(state.local_view).T
        walk = mask_of(sem, ("grass", "sand", "path"))
        walk[_CENTER] = True
        passable = walk | mask_of(sem, diggable_names(state.inventory))
        hints = {}
        for kind in ("tree", "water", "cow", "stone", "coal", "iron", "diamond", "zombie", "plant", "table",
                     "furnace"):
            targets = mask_of(sem, (kind,))
            station = kind in ("table", "furnace")
            if not targets.any():
                continue
            goals = walk & square_neighbours(targets) if station else neighbours(targets) & passable
            path = shortest_path(passable, _CENTER, goals, 100)
            if path:
                hints[kind] = DIRECTIONS[(path[0][0] - _CENTER[0], path[0][1] - _CENTER[1])][0]
            elif path == [] and not station:
                sides = [state.facing] + [(0, -1), (1, 0), (0, 1), (-1, 0)]
                hints[kind] = next(DIRECTIONS[d][0] for d in sides
                                   if d in DIRECTIONS and targets[_CENTER[0] + d[0], _CENTER[1] + d[1]])
        return hints

    @classmethod
    def brief(cls, state: WorldState, *, turn: int, max_steps: int) -> str:
        short = cls._short_lines(state)
        hints = cls.step_hints(state)
        short["near"] = " ".join(f"{entry}>{hints[entry.split(':')[0]]}" if entry.split(":")[0] in hints else entry
                                 for entry in short["near"].split(" "))
        around = "around " + " ".join(f"{letter}:{name}" for letter, name in cls.neighbour_names(state))
        can = cls.possible_crafts(state)
        lines = [short["vitals"], short["inv"]]
        if can:
            lines.append("can " + " ".join(can))
        return "\n".join([*lines, short["near"], around, short["face"]])

    @classmethod
    def full(cls, state: WorldState, *, turn: int, max_steps: int) -> str:
        grid = cls.map_grid(state)
        present = sorted({SEMANTIC_NAMES[sid] for row in state.local_view for sid in row} - {"player"})
        legend = ", ".join(f"{SYMBOLS[name]} {name}" for name in present)
        seen = "; ".join(f"{name} {cls.offset_text(dx, dy)}" for name, dx, dy in cls.nearest_objects(state))
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


REFERENCE = {"full": _Reference.full, "compact": _Reference.compact, "brief": _Reference.brief}


def _played_states(seed: int, difficulty: str, steps: int) -> list[WorldState]:
    """States of a random-action episode (sleep is favoured so sleeping states occur)."""
    world = CrafterWorld(difficulty=difficulty, max_steps=10_000)
    rng = random.Random(seed * 7919 + len(difficulty))
    states = [world.reset(seed)]
    for _ in range(steps):
        action = 6 if rng.random() < 0.08 else rng.randrange(17)  # 6 = sleep
        outcome = world.step(action)
        states.append(outcome.state)
        if outcome.done:
            break
    return states


def _synthetic(state: WorldState, rng: random.Random) -> WorldState:
    """A random edit of a real state covering what play reaches rarely."""
    w, h = LOCAL_VIEW
    choice = rng.randrange(8)
    if choice == 0:  # every item at its maximum, every achievement unlocked
        return dataclasses.replace(state, inventory={name: MAX_ITEM.get(name, 9) for name in ITEMS},
                                   achievements={name: rng.randrange(1, 4) for name in ACHIEVEMENTS})
    if choice == 1:  # empty inventory, night, asleep
        return dataclasses.replace(state, inventory={name: 0 for name in ITEMS}, daylight=rng.random() * 0.5,
                                   sleeping=True)
    if choice == 2:  # any semantic id anywhere (player symbols off-centre, unknown cells, arrows)
        view = [[rng.randrange(len(SEMANTIC_NAMES)) for _ in range(w)] for _ in range(h)]
        return dataclasses.replace(state, local_view=view, facing_id=rng.randrange(len(SEMANTIC_NAMES)))
    if choice == 3:  # a facing that is not one of the four directions, missing inventory keys
        inventory = {name: count for name, count in state.inventory.items() if rng.random() < 0.5}
        return dataclasses.replace(state, facing=(0, 0), inventory=inventory, achievements={})
    if choice == 4:  # daylight exactly at the day/night boundary
        return dataclasses.replace(state, daylight=0.5 if rng.random() < 0.5 else 0.5000001)
    if choice == 5:  # a view of few kinds (many ties between equally near cells)
        kinds = rng.sample(range(len(SEMANTIC_NAMES)), 3)
        view = [[rng.choice(kinds) for _ in range(w)] for _ in range(h)]
        return dataclasses.replace(state, local_view=view)
    if choice == 6:  # random counts, including above nine
        return dataclasses.replace(state, inventory={name: rng.randrange(0, 12) for name in ITEMS})
    return dataclasses.replace(state, step=rng.randrange(0, 100_000), sleeping=not state.sleeping)


def _states() -> list[WorldState]:
    states: list[WorldState] = []
    for seed, difficulty in ((0, "normal"), (1, "peaceful"), (2, "easy"), (3, "hard"), (11, "normal")):
        states.extend(_played_states(seed, difficulty, 400))
    rng = random.Random(1234)
    states.extend(_synthetic(rng.choice(states), rng) for _ in range(1500))
    return states


STATES = _states()


def test_the_states_cover_night_sleep_and_full_inventories() -> None:
    assert any(s.daylight <= 0.5 for s in STATES) and any(s.daylight > 0.5 for s in STATES)
    assert any(s.sleeping for s in STATES)
    assert any(all(s.inventory.get(name, 0) == 9 for name in ITEMS) for s in STATES)
    assert len({tuple(map(tuple, s.local_view)) for s in STATES}) > 500
    crafts = [_Reference.possible_crafts(s) for s in STATES]
    assert any(any(name.startswith("make_") for name in can) for can in crafts)
    assert any(any(name.startswith("place_") for name in can) for can in crafts)
    assert any(not can for can in crafts)
    steps = [_Reference.step_hints(s) for s in STATES]
    assert sum(len(h) > 1 for h in steps) > 300 and sum(not h for h in steps) > 50


@pytest.mark.parametrize("name", ["full", "compact", "brief"])
def test_every_format_is_byte_identical_to_the_reference(name: str) -> None:
    fast, reference = text_obs.OBSERVATION_FORMATS[name], REFERENCE[name]
    for index, state in enumerate(STATES):
        for turn, max_steps in ((index % 50, 300), (index, 10_000)):
            assert fast(state, turn=turn, max_steps=max_steps) == reference(state, turn=turn, max_steps=max_steps), \
                f"{name} differs at state {index}"
        # The rollout loop hands over the view's ids it converted for the step record.
        cells = text_obs.view_cells(state)
        assert fast(state, turn=7, max_steps=300, cells=cells) == reference(state, turn=7, max_steps=300), \
            f"{name} differs at state {index} given its cells"


def test_the_pieces_equal_the_reference() -> None:
    for state in STATES:
        assert text_obs.map_grid(state) == _Reference.map_grid(state)
        assert text_obs.nearest_objects(state) == _Reference.nearest_objects(state)
        assert text_obs.neighbour_names(state) == _Reference.neighbour_names(state)
    for dx in range(-5, 6):
        for dy in range(-5, 6):
            assert text_obs.offset_text(dx, dy) == _Reference.offset_text(dx, dy)


def test_the_view_ids_and_symbols_are_converted_together() -> None:
    for state in STATES:
        cells, symbols = text_obs.view_cells_and_symbols(state)
        assert list(cells) == [sid for row in state.local_view for sid in row]
        assert symbols == "".join(SYMBOLS[SEMANTIC_NAMES[sid]] for sid in cells)
        assert (text_obs.view_cells(state), text_obs.view_symbols(state)) == (cells, symbols)


def test_the_symbols_are_unchanged() -> None:
    assert text_obs.SYMBOLS == {
        "unknown": "?", "water": "~", "grass": ".", "stone": "#", "path": "_", "sand": ":",
        "tree": "T", "lava": "%", "coal": "c", "iron": "i", "diamond": "d", "table": "t",
        "furnace": "f", "player": "@", "cow": "C", "zombie": "Z", "skeleton": "S", "arrow": "*",
        "plant": "p",
    }


@pytest.mark.parametrize("name", ["full", "compact", "brief"])
def test_a_view_with_an_id_that_is_no_kind_is_refused(name: str) -> None:
    state = STATES[0]
    for bad_view in ([[*row] for row in state.local_view[:-1]],  # 9x6
                     [[*row[:-1], len(SEMANTIC_NAMES)] for row in state.local_view]):  # an id past the kinds
        with pytest.raises(ValueError):
            text_obs.OBSERVATION_FORMATS[name](dataclasses.replace(state, local_view=bad_view), turn=0, max_steps=9)
        with pytest.raises(ValueError):
            text_obs.view_symbols(dataclasses.replace(state, local_view=bad_view))
        with pytest.raises(ValueError):
            text_obs.view_cells_and_symbols(dataclasses.replace(state, local_view=bad_view))


def test_inventory_texts_kept_by_counts_follow_every_count() -> None:
    """The full form keeps its vitals and inventory texts by the counts: a key that missed one
    item, or took ``True``/``1.0`` for ``1``, would hand a state the text of another."""
    state = STATES[3]
    base = {name: 1 for name in ITEMS}
    for name in ITEMS:
        for count in (0, 2, 1, True, 1.0, 0):
            changed = dataclasses.replace(state, inventory={**base, name: count})
            for _ in range(2):  # the second render is served from what the first one kept
                assert text_obs.render_text_observation(changed, turn=1, max_steps=300) == \
                    _Reference.full(changed, turn=1, max_steps=300), (name, count)
