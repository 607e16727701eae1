"""Golden trajectories: the world's dynamics pinned to hashes recorded before any speed work.

The other world tests check that a seed replays identically and that generation equals stock
Crafter, but not that today's trajectories equal yesterday's: a faster engine that changed one
RNG draw would still replay "identically". These hashes were recorded with the stock-object
engine (crafter's ``objects``/``engine`` driven by ``CrafterWorld``) and must never change.

Each case hashes every field of every step's outcome, the semantic map every few steps, the
objects' kinds, positions and health, rendered frames (their own RNG) at a few steps, and the
world RNG's state at the end. The cases cover all presets, long episodes (nights, deaths),
worlds reused across resets, and a stocked inventory so tables, furnaces, plants, crafting
and fighting all happen.
"""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from crafter_tui.world.env import CrafterWorld

#: Action mixes (ids as in crafter's data.yaml): everything, including sleep, placing and making;
#: and a walker (moves and ``do`` only) that survives long enough for nights and ripe plants.
MIXES = {
    "all": [0, 1, 2, 3, 4, 1, 2, 3, 4, 5, 5, 5, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
    "walk": [0, 1, 2, 3, 4, 1, 2, 3, 4, 5, 5, 5, 5],
}
STOCKED = dict(wood=9, stone=9, coal=9, iron=9, sapling=9, wood_sword=1)


def _object_summary(world: CrafterWorld) -> list:
    return [(type(o).__name__, int(o.pos[0]), int(o.pos[1]), int(o.health))
            for o in world.engine_world.objects]


def _policy(mix: str, action_seed: int):
    """Next-action function: a seeded random mix, or ``garden``: plant a sapling, wait, eat it."""
    if mix == "garden":
        script = iter([10] + [0] * 330 + [5] * 5)
        return lambda: next(script, 0)
    rng, actions = random.Random(action_seed), MIXES[mix]
    return lambda: rng.choice(actions)


def trajectory_hash(difficulty: str, seeds: list[int], steps: int, action_seed: int,
                    stocked: bool = False, render_every: int = 0, mix: str = "all",
                    seen: dict | None = None) -> str:
    """One world object playing ``seeds`` in turn (reused across resets), hashed step by step.

    ``seen`` (optional) collects what the case exercised: object kinds, achievements, deaths, nights.
    """
    world = CrafterWorld(difficulty, max_steps=steps)
    seen = {"kinds": set(), "achievements": set(), "deaths": 0, "nights": 0} if seen is None else seen
    digest = hashlib.sha256()
    for seed in seeds:
        next_action = _policy(mix, action_seed * 1000 + seed)
        state = world.reset(seed)
        if stocked:
            world.player.inventory.update(STOCKED)
        digest.update(json.dumps([_state_fields(state), _object_summary(world)]).encode())
        digest.update(world.semantic_map().tobytes())
        while not world.done:
            out = world.step(next_action())
            digest.update(json.dumps([_state_fields(out.state), out.reward, out.done, out.terminated,
                                      out.truncated, out.new_achievements]).encode())
            step = out.state.step
            if step % 25 == 0 or out.done:
                digest.update(world.semantic_map().tobytes())
                digest.update(json.dumps(_object_summary(world)).encode())
            if render_every and step % render_every == 0:
                digest.update(world.render().tobytes())
            seen["kinds"].update(type(o).__name__ for o in world.engine_world.objects)
            seen["achievements"].update(out.new_achievements)
            seen["nights"] += out.state.daylight < 0.3
        seen["deaths"] += out.terminated
        digest.update(repr(world.engine_world.random.get_state()[1].tolist()).encode())
        digest.update(str(world.engine_world.random.randint(0, 2**31 - 1)).encode())
    return digest.hexdigest()


def _state_fields(state) -> list:
    return [state.step, list(state.position), list(state.facing), state.sleeping, state.daylight,
            state.inventory, state.achievements, state.local_view, state.facing_id, state.unlocked]


#: name -> trajectory_hash arguments (difficulty, seeds, max_steps, action seed, stocked, render_every, mix)
CASES: dict[str, tuple] = {
    "normal-all": ("normal", [0, 1], 700, 0, False, 0, "all"),
    "normal-walk": ("normal", [2, 3], 1000, 1, False, 0, "walk"),
    "hard-walk": ("hard", [3], 900, 1, False, 0, "walk"),
    "easy-all": ("easy", [4, 5], 300, 2, False, 0, "all"),
    "peaceful-walk": ("peaceful", [6], 800, 3, False, 0, "walk"),
    "stocked-normal": ("normal", [7, 8], 500, 4, True, 0, "all"),
    "stocked-hard": ("hard", [9], 600, 5, True, 0, "all"),
    "rendered": ("normal", [10], 320, 6, True, 40, "all"),
    "garden": ("peaceful", [27], 400, 7, True, 0, "garden"),
    "fight": ("hard", [21, 23], 800, 8, True, 0, "walk"),
}

#: name -> hash recorded with the stock-object engine (commit f9d2d6d); never edit to make a test pass
GOLDEN: dict[str, str] = {
    "normal-all": "8d434400b2cc82e7bc67fc473706c6259c692448370889ade53619f5954c2d72",
    "normal-walk": "a2ab2b8661f94def175c44e3365f5938217fbbab0ceb93abaa52564f9631f264",
    "hard-walk": "5e4d2e9d0d61b377fd2a29fb21915ecd36204a37e4c0c98bcc2a70e6a4991819",
    "easy-all": "5b65f7f289ce22f573d7c4a68a36484f59a67ab0affe3a7c1079adbaa2315d76",
    "peaceful-walk": "0fc29ff1c18e33ee57423ca72eec2c33fcabd4e53ef2ca39f91366c4b11b15ad",
    "stocked-normal": "29e76e42da60ea7ae29ceb0ee2a9a45b1ff8ca46dbb5ca3653a8bbe1bbdf116f",
    "stocked-hard": "7204da4bb27e40ee3e45269c697b5d4c93faeb35af1c84681aad1243a2d8238a",
    "rendered": "a1350c36d5ec2777c4baf11f96b8d04cad16e0e9f377fe553c738667c2636f81",
    "garden": "4fd3afff5da4fad5fcef749d73aface9b82822a4adebf2e4ad84b6616162a9c8",
    "fight": "364d5bc139ea4501afa8e5a31968bc7a84c6e5d8d907bfee2131405802c23cd9",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_trajectories_equal_the_recorded_golden_hashes(name):
    assert trajectory_hash(*CASES[name]) == GOLDEN[name]


def test_the_golden_cases_exercise_the_whole_engine():
    """The cases must reach the rare paths, or the hashes pin little: check they do."""
    seen = {"kinds": set(), "achievements": set(), "deaths": 0, "nights": 0}
    for args in CASES.values():
        trajectory_hash(*args, seen=seen)
    assert {"Zombie", "Cow", "Skeleton", "Arrow", "Plant"} <= seen["kinds"]
    assert {"place_table", "place_furnace", "place_plant", "eat_plant", "eat_cow", "defeat_zombie",
            "make_wood_pickaxe", "collect_wood", "wake_up"} <= seen["achievements"]
    assert seen["deaths"] >= 1 and seen["nights"] >= 1
