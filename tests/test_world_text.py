"""The text observation: legible grid, legend, nearest objects, facing, vitals, inventory, counters."""

from __future__ import annotations

from crafter_tui.world.env import CrafterWorld, WorldState
from crafter_tui.world.rules import ACHIEVEMENTS, ACTION_IDS, ACTIONS, SEMANTIC_IDS, action_id
import pytest

from crafter_tui.world.text_obs import map_grid, nearest_objects, render_text_observation


def _state(view_ids, **overrides) -> WorldState:
    base = dict(step=12, position=(32, 32), facing=(0, -1), sleeping=False, daylight=0.9,
                inventory={"health": 9, "food": 7, "drink": 6, "energy": 8, "sapling": 0, "wood": 3,
                           "stone": 0, "coal": 0, "iron": 0, "diamond": 0, "wood_pickaxe": 1,
                           "stone_pickaxe": 0, "iron_pickaxe": 0, "wood_sword": 0, "stone_sword": 0,
                           "iron_sword": 0},
                achievements={name: 0 for name in ACHIEVEMENTS} | {"collect_wood": 3, "place_table": 1},
                local_view=view_ids, facing_id=SEMANTIC_IDS["tree"])
    base.update(overrides)
    return WorldState(**base)


def _grass_view():
    view = [[SEMANTIC_IDS["grass"]] * 9 for _ in range(7)]
    view[3][4] = SEMANTIC_IDS["player"]
    return view


def test_grid_legend_nearest_and_status_are_exact():
    view = _grass_view()
    view[2][4] = SEMANTIC_IDS["tree"]  # 1 north
    view[0][1] = SEMANTIC_IDS["tree"]  # farther tree
    view[5][7] = SEMANTIC_IDS["cow"]  # 2 south, 3 east
    view[3][0] = SEMANTIC_IDS["water"]  # 4 west
    state = _state(view)
    text = render_text_observation(state, turn=5, max_steps=300)
    assert map_grid(state)[3] == "~ . . . @ . . . ."
    assert map_grid(state)[2] == ". . . . T . . . ."
    assert "Step 12/300, turn 5, day." in text
    assert "Legend: @ you, C cow, . grass, T tree, ~ water" in text
    assert nearest_objects(state)[:2] == [("grass", -1, 0), ("tree", 0, -1)]
    assert "tree 1 north" in text
    assert "cow 2 south and 3 east" in text
    assert "water 4 west" in text
    assert "You face tree (north)." in text
    assert "Status: health 9/9, food 7/9, drink 6/9, energy 8/9." in text
    assert "Inventory: wood 3, wood_pickaxe 1." in text
    assert "Achievements (2/22): collect_wood, place_table." in text


def test_text_observation_of_a_real_world_is_deterministic():
    a, b = CrafterWorld(), CrafterWorld()
    sa, sb = a.reset(9), b.reset(9)
    assert render_text_observation(sa, turn=0, max_steps=300) == render_text_observation(sb, turn=0, max_steps=300)
    lines = render_text_observation(sa, turn=0, max_steps=300).splitlines()
    grid = lines[2:9]
    assert len(grid) == 7 and all(len(row.split()) == 9 for row in grid)
    assert grid[3].split()[4] == "@"


def test_action_and_achievement_names_come_from_crafter():
    import crafter.constants as constants

    assert list(ACTIONS) == list(constants.actions) and len(ACTIONS) == 17
    assert list(ACHIEVEMENTS) == list(constants.achievements) and len(ACHIEVEMENTS) == 22
    assert ACTION_IDS["do"] == 5 and action_id("make_iron_sword") == 16
    with pytest.raises(KeyError, match="unknown action 'fly'"):
        action_id("fly")


def test_compact_observation_keeps_the_facts_in_fewer_characters():
    from crafter_tui.agents.prompting import COMPACT_SYSTEM_PROMPT, SYSTEM_PROMPTS
    from crafter_tui.world.text_obs import OBSERVATION_FORMATS, render_compact_observation

    view = _grass_view()
    view[2][4] = SEMANTIC_IDS["tree"]
    view[5][7] = SEMANTIC_IDS["cow"]
    state = _state(view)
    compact = render_compact_observation(state, turn=5, max_steps=300)
    full = render_text_observation(state, turn=5, max_steps=300)
    lines = compact.splitlines()
    assert lines[:7] == map_grid(state)
    assert lines[7] == "near tree:1n cow:2s3e"
    assert lines[8] == "face tree:n"
    assert lines[9] == "he9 fo7 dr6 en8"
    assert lines[10] == "inv wood3 wood_pickaxe1"
    assert len(compact) < len(full) / 2
    assert set(OBSERVATION_FORMATS) == set(SYSTEM_PROMPTS)
    assert "T tree" in COMPACT_SYSTEM_PROMPT and "2n1e = 2 north 1 east" in COMPACT_SYSTEM_PROMPT


def test_brief_observation_puts_vitals_first_and_ends_with_neighbours_and_the_faced_cell():
    from typing import get_args

    from crafter_tui.agents.prompting import SYSTEM_PROMPTS
    from crafter_tui.config import ObservationFormat
    from crafter_tui.world.text_obs import OBSERVATION_FORMATS, render_brief_observation

    view = _grass_view()
    view[2][4] = SEMANTIC_IDS["tree"]  # north neighbour
    view[3][5] = SEMANTIC_IDS["water"]  # east neighbour
    view[5][7] = SEMANTIC_IDS["cow"]
    state = _state(view, daylight=0.2, sleeping=True)
    lines = render_brief_observation(state, turn=5, max_steps=300).splitlines()
    assert lines == ["he9 fo7 dr6 en8 night", "inv wood3 wood_pickaxe1", "near tree:1n>n water:1e>e cow:2s3e>s",
                     "around n:tree s:grass w:grass e:water", "face tree:n sleeping"]
    assert set(OBSERVATION_FORMATS) == set(SYSTEM_PROMPTS) == set(get_args(ObservationFormat))


def test_brief_observation_lists_the_crafts_that_would_succeed_and_no_others():
    from crafter_tui.world.text_obs import possible_crafts, render_brief_observation, view_cells

    view = _grass_view()
    view[2][4] = SEMANTIC_IDS["table"]  # north neighbour, inside the 3x3 square crafting looks at
    state = _state(view, facing_id=SEMANTIC_IDS["grass"])  # wood 3, a wood pickaxe already held
    assert possible_crafts(state, view_cells(state)) == ["place_table", "make_wood_sword"]
    assert render_brief_observation(state, turn=0, max_steps=300).splitlines() == [
        "he9 fo7 dr6 en8", "inv wood3 wood_pickaxe1", "can place_table make_wood_sword", "near table:1n",
        "around n:table s:grass w:grass e:grass", "face grass:n"]
    view[2][4], view[0][4] = SEMANTIC_IDS["grass"], SEMANTIC_IDS["table"]  # the table 3 north: out of reach
    far = _state(view, facing_id=SEMANTIC_IDS["tree"])
    assert possible_crafts(far, view_cells(far)) == []
    assert not any(line.startswith("can") for line in render_brief_observation(far, turn=0, max_steps=300).split("\n"))


def test_brief_observation_names_the_first_step_toward_each_target():
    from crafter_tui.world.text_obs import render_brief_observation

    view = _grass_view()
    view[1][1] = SEMANTIC_IDS["tree"]  # 2 north 3 west: equally short walks, the expert steps north first
    view[3][6] = SEMANTIC_IDS["water"]  # 2 east, behind a rock: the walk goes round it
    view[3][5] = SEMANTIC_IDS["stone"]
    view[2][5] = SEMANTIC_IDS["stone"]
    state = _state(view, facing=(0, 1), facing_id=SEMANTIC_IDS["grass"], inventory={"health": 9, "food": 9,
                                                                                      "drink": 9, "energy": 9})
    near = render_brief_observation(state, turn=0, max_steps=300).splitlines()[2]
    assert near == "near stone:1e>e water:2e>s tree:2n3w>n"  # next to the stone: the side that faces it
    view[0][4] = SEMANTIC_IDS["lava"]
    for row in (4, 5, 6):  # water and tree walled off by rock: no step for either
        view[row] = [SEMANTIC_IDS["stone"]] * 9
    view[3] = [SEMANTIC_IDS["stone"]] * 4 + [SEMANTIC_IDS["player"]] + [SEMANTIC_IDS["stone"]] * 4
    view[2] = [SEMANTIC_IDS["stone"]] * 9
    walled = _state(view, facing=(0, 1), facing_id=SEMANTIC_IDS["stone"], inventory={"energy": 9})
    near = render_brief_observation(walled, turn=0, max_steps=300).splitlines()[2]
    assert near.startswith("near stone:1n>s ")  # the faced side
    assert "tree:2n3w" in near and "tree:2n3w>" not in near  # no way there without a pickaxe
    view[1][1], view[3][8] = SEMANTIC_IDS["tree"], SEMANTIC_IDS["water"]
    dig = _state(view, facing=(0, 1), facing_id=SEMANTIC_IDS["stone"], inventory={"energy": 9, "wood_pickaxe": 1})
    near = render_brief_observation(dig, turn=0, max_steps=300).splitlines()[2]  # a pickaxe digs through
    assert "water:4e>e" in near and "tree:2n3w>n" in near
    assert "lava:3n>" not in near


def test_the_step_is_the_experts_own_first_move():
    """In the expert's play, whenever it walks to something in view, its first move is the step
    the observation names for that kind: the student reads the move the teacher makes."""
    import re

    import numpy as np

    from crafter_tui.agents.expert.planner import Planner
    from crafter_tui.world.text_obs import render_brief_observation

    kind_of_goal = {"wood": "tree", "drink": "water", "eat": "cow", "stone": "stone", "coal": "coal",
                    "iron": "iron", "fight": "zombie", "zombie": "zombie", "eat_plant": "plant"}
    letters = {"move_up": "n", "move_down": "s", "move_left": "w", "move_right": "e"}
    agree = differ = 0
    for seed in (1, 2):
        world, planner = CrafterWorld("normal", max_steps=10_000), Planner()
        state = world.reset(seed)
        for _ in range(300):
            plan = planner.decide(state, np.asarray(world.semantic_map()))
            kind, first = kind_of_goal.get(plan.goal), plan.actions[0]
            near = render_brief_observation(state, turn=0, max_steps=300).splitlines()
            hint = re.search(rf"\b{kind}:\w+>(\w)", next(line for line in near if line.startswith("near")))
            if kind and first in letters and hint:
                agree, differ = agree + (hint.group(1) == letters[first]), differ + (hint.group(1) != letters[first])
            for action in plan.actions:
                outcome = world.step(ACTION_IDS[action])
                if outcome.done:
                    break
            state = outcome.state
            if outcome.done:
                break
    assert agree > 80 and differ <= agree // 50


def test_the_listed_crafts_are_exactly_those_the_game_lets_through():
    """Real play: the expert plays, and on every other step a random make_* or place_* action is
    tried instead; it changes the inventory exactly when the observation listed it."""
    import random

    import numpy as np

    from crafter_tui.agents.expert.planner import Planner
    from crafter_tui.world.rules import MAKE_RULES, PLACE_RULES
    from crafter_tui.world.text_obs import possible_crafts, view_cells

    crafts = [f"make_{tool}" for tool in MAKE_RULES] + [f"place_{name}" for name in PLACE_RULES]
    rng, checked, succeeded = random.Random(5), 0, 0
    for seed in (1, 2):
        world, planner = CrafterWorld("normal", max_steps=10_000), Planner()
        state, queue = world.reset(seed), []
        for _ in range(260):
            if not queue:
                queue = list(planner.decide(state, np.asarray(world.semantic_map())).actions)
            action = rng.choice(crafts) if rng.random() < 0.5 else queue.pop(0)
            listed = possible_crafts(state, view_cells(state))
            before = dict(state.inventory)
            outcome = world.step(ACTION_IDS[action])
            kind, _, name = action.partition("_")
            # a second copy of a tool is not listed, as it brings nothing
            if action in crafts and not (kind == "make" and before.get(name, 0) > 0):
                uses = (MAKE_RULES[name] if kind == "make" else PLACE_RULES[name])["uses"]
                changed = any(outcome.state.inventory[item] < before[item] for item in uses)
                assert changed == (action in listed), (action, listed, before)
                checked, succeeded = checked + 1, succeeded + changed
            state = outcome.state
            if outcome.done:
                break
    assert checked > 100 and succeeded >= 5
