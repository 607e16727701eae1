"""The Crafter world wrapper every part of the tool plays through.

Why not ``crafter.Env`` as is:
- stock trajectories are not reproducible across processes: despawning picks a creature
  from a Python ``set`` whose order depends on memory addresses. We balance creatures in
  position order, so a seed replays bit-identically in any process;
- stock rendering draws night noise from the world RNG, so watching a run would change it.
  Frames here use their own RNG, so render on/off gives the same trajectory;
- stock renders the 64x64 frame and the semantic map on every step (most of a step's
  cost); here frames are drawn only when asked for;
- difficulty presets change world parameters (see ``difficulty.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from crafter import constants, engine, objects

from crafter_tui.world import worldgen
from crafter_tui.world.difficulty import Difficulty, get_difficulty
from crafter_tui.world.rules import ACHIEVEMENTS, ACTIONS, SEMANTIC_IDS

AREA = (64, 64)
VIEW = (9, 9)
LOCAL_VIEW = (9, 7)  # the world window of the image; the other two rows show the inventory
FRAME_SIZE = (64, 64)
CHUNK = (12, 12)


@functools.cache
def _textures() -> engine.Textures:
    """Crafter's textures, loaded once per process (stock loads them per Env)."""
    return engine.Textures(constants.root / "assets")


@dataclass(slots=True)
class WorldState:
    """What an observer (agent, trace, screen) may know after a step. Plain data, cheap to copy."""

    step: int
    position: tuple[int, int]
    facing: tuple[int, int]
    sleeping: bool
    daylight: float
    inventory: dict[str, int]
    achievements: dict[str, int]
    local_view: list[list[int]]  # LOCAL_VIEW[1] rows (north to south) of LOCAL_VIEW[0] semantic ids
    facing_id: int  # semantic id of the faced cell

    @property
    def unlocked(self) -> list[str]:
        """Achievements unlocked at least once this episode, in Crafter's order."""
        return [name for name in ACHIEVEMENTS if self.achievements.get(name, 0) > 0]


@dataclass(slots=True)
class StepOutcome:
    """The result of one env step."""

    state: WorldState
    reward: float
    done: bool
    terminated: bool  # the player died
    truncated: bool  # the step limit was reached
    new_achievements: list[str] = field(default_factory=list)


class _Balancer:
    """Stock ``Env._balance_chunk`` with creatures taken in position order and scaled spawn targets."""

    def __init__(self, world: engine.World, player: objects.Player, difficulty: Difficulty) -> None:
        self._world = world
        self._player = player
        self._difficulty = difficulty

    def balance(self, chunk: tuple[int, int, int, int], objs: set) -> None:
        light = self._world.daylight
        d = self._difficulty
        world, player = self._world, self._player
        self._balance_object(
            chunk, objs, objects.Zombie, "grass", 6, 0, 0.3, 0.4,
            lambda pos: objects.Zombie(world, pos, player),
            lambda num, space: (
                d.zombies * (0 if space < 50 else 3.5 - 3 * light), d.zombies * (3.5 - 3 * light)))
        self._balance_object(
            chunk, objs, objects.Skeleton, "path", 7, 7, 0.1, 0.1,
            lambda pos: objects.Skeleton(world, pos, player),
            lambda num, space: (d.skeletons * (0 if space < 6 else 1), d.skeletons * 2))
        self._balance_object(
            chunk, objs, objects.Cow, "grass", 5, 5, 0.01, 0.1,
            lambda pos: objects.Cow(world, pos),
            lambda num, space: (d.cows * (0 if space < 30 else 1), d.cows * (1.5 + light)))

    def _balance_object(self, chunk, objs, cls, material, span_dist, despan_dist,
                        spawn_prob, despawn_prob, ctor, target_fn) -> None:
        xmin, xmax, ymin, ymax = chunk
        random = self._world.random
        creatures = sorted(
            (obj for obj in objs if isinstance(obj, cls)), key=lambda o: (int(o.pos[0]), int(o.pos[1])))
        mask = self._world.mask(*chunk, material)
        target_min, target_max = target_fn(len(creatures), mask.sum())
        if len(creatures) < int(target_min) and random.uniform() < spawn_prob:
            xs = np.tile(np.arange(xmin, xmax)[:, None], [1, ymax - ymin])
            ys = np.tile(np.arange(ymin, ymax)[None, :], [xmax - xmin, 1])
            xs, ys = xs[mask], ys[mask]
            i = random.randint(0, len(xs))
            pos = np.array((xs[i], ys[i]))
            empty = self._world[pos][1] is None
            away = self._player.distance(pos) >= span_dist
            if empty and away:
                self._world.add(ctor(pos))
        elif len(creatures) > int(target_max) and random.uniform() < despawn_prob:
            obj = creatures[random.randint(0, len(creatures))]
            away = self._player.distance(obj.pos) >= despan_dist
            if away:
                self._world.remove(obj)


class CrafterWorld:
    """One Crafter episode at a time, seeded, deterministic, rendering only on request."""

    def __init__(self, difficulty: str | Difficulty = "normal", max_steps: int = 10_000) -> None:
        self.difficulty = difficulty if isinstance(difficulty, Difficulty) else get_difficulty(difficulty)
        self.max_steps = max_steps
        self.seed: int | None = None
        self._world = engine.World(AREA, constants.materials, CHUNK)
        self._local_view = engine.LocalView(self._world, _textures(), list(LOCAL_VIEW))
        self._item_view = engine.ItemView(_textures(), [VIEW[0], VIEW[1] - LOCAL_VIEW[1]])
        self._render_rng = np.random.RandomState(0)
        self._local_view._noise = self._frame_noise  # noqa: SLF001 - keep frames off the world RNG
        self._obj_ids = {cls: SEMANTIC_IDS[name] for cls, name in (
            (objects.Player, "player"), (objects.Cow, "cow"), (objects.Zombie, "zombie"),
            (objects.Skeleton, "skeleton"), (objects.Arrow, "arrow"), (objects.Plant, "plant"))}
        self._player: objects.Player | None = None
        self._balancer: _Balancer | None = None
        self._step = 0
        self._last_health = 0
        self._unlocked: set[str] = set()
        self.done = True

    # -- lifecycle -----------------------------------------------------------------
    def reset(self, seed: int) -> WorldState:
        """Start a new episode whose world and dynamics depend only on ``seed`` and the difficulty."""
        self.seed = int(seed)
        self._step = 0
        self._world.reset(seed=self.seed)
        self._render_rng = np.random.RandomState(self.seed)
        self._update_daylight()
        center = (self._world.area[0] // 2, self._world.area[1] // 2)
        self._player = objects.Player(self._world, center)
        self._last_health = self._player.health
        self._world.add(self._player)
        self._unlocked = set()
        worldgen.generate_world(self._world, self._player, self.difficulty)
        self._balancer = _Balancer(self._world, self._player, self.difficulty)
        self.done = False
        return self.state()

    def step(self, action: int) -> StepOutcome:
        """Advance one step with action id ``action`` (0..16). Raises after the episode ended."""
        if self._player is None or self.done:
            raise RuntimeError("step() called before reset() or after the episode ended")
        if not 0 <= int(action) < len(ACTIONS):
            raise ValueError(f"action id {action} out of range 0..{len(ACTIONS) - 1}")
        player = self._player
        self._step += 1
        self._update_daylight()
        player.action = ACTIONS[int(action)]
        self._update_objects(player)
        if self._step % 10 == 0:
            for chunk, objs in self._world.chunks.items():
                self._balancer.balance(chunk, objs)
        reward = (player.health - self._last_health) / 10
        self._last_health = player.health
        new = [name for name in ACHIEVEMENTS
               if player.achievements[name] > 0 and name not in self._unlocked]
        if new:
            self._unlocked.update(new)
            reward += 1.0
        terminated = player.health <= 0
        truncated = not terminated and self._step >= self.max_steps
        self.done = terminated or truncated
        return StepOutcome(self.state(), float(reward), self.done, terminated, truncated, new)

    # -- views -----------------------------------------------------------------------
    def state(self) -> WorldState:
        """A snapshot of what an observer may know now."""
        player = self._require_player()
        x, y = int(player.pos[0]), int(player.pos[1])
        facing = (int(player.facing[0]), int(player.facing[1]))
        return WorldState(
            step=self._step,
            position=(x, y),
            facing=facing,
            sleeping=bool(player.sleeping),
            daylight=float(self._world.daylight),
            inventory=dict(player.inventory),
            achievements=dict(player.achievements),
            local_view=self.local_view(),
            facing_id=self.semantic_at(x + facing[0], y + facing[1]),
        )

    def semantic_at(self, x: int, y: int) -> int:
        """Semantic id at a world cell (0 outside the map); creatures win over the ground."""
        material, obj = self._world[(x, y)]
        if obj is not None:
            return self._obj_ids[type(obj)]
        if material is None:
            return 0
        return SEMANTIC_IDS[material]

    def local_view(self) -> list[list[int]]:
        """The 9x7 window the image shows, as rows north to south of semantic ids (0 off the map)."""
        player = self._require_player()
        w, h = LOCAL_VIEW
        x0, y0 = int(player.pos[0]) - w // 2, int(player.pos[1]) - h // 2
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + w, AREA[0]), min(y0 + h, AREA[1])
        view = np.zeros((w, h), np.int64)  # indexed [x, y] like the engine's maps
        # Material ids of crafter's World are the semantic ids 1..12 (same order as MATERIALS).
        view[xa - x0: xb - x0, ya - y0: yb - y0] = self._world._mat_map[xa:xb, ya:yb]  # noqa: SLF001
        cells = self._world._obj_map[xa:xb, ya:yb]  # noqa: SLF001
        objs = self._world._objects  # noqa: SLF001
        for cx, cy in zip(*np.nonzero(cells)):
            obj = objs[cells[cx, cy]]
            view[xa - x0 + cx, ya - y0 + cy] = self._obj_ids[type(obj)]
        return view.T.tolist()

    def semantic_map(self) -> np.ndarray:
        """The whole 64x64 map of semantic ids, indexed [x, y] (privileged information)."""
        canvas = self._world._mat_map.copy()  # noqa: SLF001
        for obj in self._world.objects:
            canvas[tuple(obj.pos)] = self._obj_ids[type(obj)]
        return canvas

    def render(self, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
        """The RGB frame (H, W, 3) stock Crafter would show. Costs ~1 ms, so only on request."""
        player = self._require_player()
        size_arr = np.array(size)
        unit = size_arr // np.array(VIEW)
        canvas = np.zeros(tuple(size_arr) + (3,), np.uint8)
        local = self._local_view(player, unit)
        items = self._item_view(player.inventory, unit)
        view = np.concatenate([local, items], 1)
        border = (size_arr - unit * np.array(VIEW)) // 2
        (x, y), (w, h) = border, view.shape[:2]
        canvas[x: x + w, y: y + h] = view
        return canvas.transpose((1, 0, 2))

    # -- privileged access (documented: only the scripted expert uses it) ---------------
    @property
    def player(self) -> objects.Player:
        return self._require_player()

    @property
    def engine_world(self) -> engine.World:
        return self._world

    # -- internals -------------------------------------------------------------------
    def _require_player(self) -> objects.Player:
        if self._player is None:
            raise RuntimeError("the world has not been reset yet")
        return self._player

    def _update_objects(self, player: objects.Player) -> None:
        """Stock's update loop (objects within L1 distance 18 of the player, in index order),
        found through the object map instead of a numpy distance per object in the world.

        Equivalent to stock: the player (index 1) moves first; every other object can only
        move or remove itself in its own update, so positions read right after the player's
        update are the positions stock checks; objects created during the loop are skipped.
        """
        objs = self._world._objects  # noqa: SLF001
        snapshot = len(objs)
        player.update()
        radius = 2 * max(VIEW)
        px, py = int(player.pos[0]), int(player.pos[1])
        xa, ya = max(px - radius + 1, 0), max(py - radius + 1, 0)
        window = self._world._obj_map[xa: px + radius, ya: py + radius]  # noqa: SLF001
        xs, ys = np.nonzero(window)
        near = np.abs(xs + xa - px) + np.abs(ys + ya - py) < radius
        for index in np.sort(window[xs[near], ys[near]]).tolist():
            if index < snapshot and objs[index] is not player:
                objs[index].update()

    def _update_daylight(self) -> None:
        progress = (self._step / 300) % 1 + 0.3
        self._world.daylight = 1 - np.abs(np.cos(np.pi * progress)) ** 3

    def _frame_noise(self, canvas: np.ndarray, amount: float, stddev: float) -> np.ndarray:
        noise = self._render_rng.uniform(32, 127, canvas.shape[:2])[..., None]
        mask = amount * self._local_view._vignette(canvas.shape, stddev)[..., None]  # noqa: SLF001
        return (1 - mask) * canvas + mask * noise
