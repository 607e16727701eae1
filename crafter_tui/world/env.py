"""The Crafter world wrapper every part of the tool plays through.

Why not ``crafter.Env`` as is:
- stock trajectories are not reproducible across processes: despawning picks a creature
  from a Python ``set`` whose order depends on memory addresses. We balance creatures in
  position order, so a seed replays bit-identically in any process;
- stock rendering draws night noise from the world RNG, so watching a run would change it.
  Frames here use their own RNG, so render on/off gives the same trajectory;
- stock renders the 64x64 frame and the semantic map on every step (most of a step's
  cost); here frames are drawn only when asked for;
- stock's objects do numpy arithmetic on 2-element positions (most of what was left);
  ``engine.py`` runs the same rules on int tuples, and the balancing below counts each
  chunk's grass and paths in one pass instead of a numpy mask per chunk and creature kind;
- difficulty presets change world parameters (see ``difficulty.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from crafter import constants
from crafter import engine as stock_engine

from crafter_tui.world import engine, worldgen
from crafter_tui.world.difficulty import Difficulty, get_difficulty
from crafter_tui.world.rules import ACHIEVEMENTS, ACTIONS, LOCAL_VIEW, SEMANTIC_IDS

AREA = (64, 64)
VIEW = (9, 9)
FRAME_SIZE = (64, 64)
CHUNK = (12, 12)


@functools.cache
def _textures() -> stock_engine.Textures:
    """Crafter's textures, loaded once per process (stock loads them per Env)."""
    return stock_engine.Textures(constants.root / "assets")


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


def _creation_index(obj) -> int:
    return obj.index


@functools.lru_cache(maxsize=16_384)
def _daylight(step: int) -> np.float64:
    """Stock's daylight at ``step`` (numpy scalar maths, cached: it depends on the step alone)."""
    progress = (step / 300) % 1 + 0.3
    return 1 - np.abs(np.cos(np.pi * progress)) ** 3


class _Balancer:
    """Stock ``Env._balance_chunk`` with creatures taken in position order and scaled spawn targets.

    Stock counts a chunk's grass (or path) cells with a numpy mask per chunk and creature kind;
    here one pass per balancing round counts them for every chunk (spawning never changes
    materials, so the counts hold for the whole round), and a chunk's creatures are split by
    kind once instead of filtered three times.
    """

    def __init__(self, world: engine.World, player: engine.Player, difficulty: Difficulty) -> None:
        self._world = world
        self._player = player
        self._difficulty = difficulty
        width, height = world.area
        csx, csy = CHUNK
        self._starts = (np.arange(0, width, csx), np.arange(0, height, csy))
        self._chunk_size = CHUNK

    def balance_all(self) -> None:
        """One balancing round over every chunk that ever held an object, in stock's order."""
        world = self._world
        grass = self._counts("grass").tolist()
        path = self._counts("path").tolist()
        light = world.daylight
        d = self._difficulty
        csx, csy = self._chunk_size
        for chunk, objs in world.chunks.items():
            xmin, _, ymin, _ = chunk
            cx, cy = xmin // csx, ymin // csy
            # Each kind's balancing adds or removes only its own kind, in this chunk: one split suffices.
            zombies, skeletons, cows = _by_kind(objs)
            self._balance_object(chunk, zombies, engine.Zombie, "grass", 6, 0, 0.3, 0.4,
                                 d.zombies * (0 if grass[cx][cy] < 50 else 3.5 - 3 * light),
                                 d.zombies * (3.5 - 3 * light))
            self._balance_object(chunk, skeletons, engine.Skeleton, "path", 7, 7, 0.1, 0.1,
                                 d.skeletons * (0 if path[cx][cy] < 6 else 1), d.skeletons * 2)
            self._balance_object(chunk, cows, engine.Cow, "grass", 5, 5, 0.01, 0.1,
                                 d.cows * (0 if grass[cx][cy] < 30 else 1), d.cows * (1.5 + light))

    def _counts(self, material: str) -> np.ndarray:
        """Cells of ``material`` in every chunk, indexed [chunk x, chunk y]."""
        mask = self._world._mat_map == self._world._mat_ids[material]  # noqa: SLF001
        rows = np.add.reduceat(mask, self._starts[0], axis=0, dtype=np.int64)
        return np.add.reduceat(rows, self._starts[1], axis=1)

    def _balance_object(self, chunk, creatures: list, cls, material, span_dist, despan_dist,
                        spawn_prob, despawn_prob, target_min, target_max) -> None:
        xmin, xmax, ymin, ymax = chunk
        world = self._world
        random = world.random
        if len(creatures) < int(target_min) and random.uniform() < spawn_prob:
            xs, ys = np.nonzero(world.mask(*chunk, material))  # x-major, as stock's boolean indexing
            i = random.randint(0, len(xs))
            pos = (int(xs[i]) + xmin, int(ys[i]) + ymin)
            empty = world[pos][1] is None
            away = self._player.distance(pos) >= span_dist
            if empty and away:
                player = self._player
                world.add(cls(world, pos, player) if cls is not engine.Cow else cls(world, pos))
        elif len(creatures) > int(target_max) and random.uniform() < despawn_prob:
            ordered = sorted(creatures, key=lambda o: o.pos)
            obj = ordered[random.randint(0, len(ordered))]
            away = self._player.distance(obj.pos) >= despan_dist
            if away:
                world.remove(obj)


def _by_kind(objs: set) -> tuple[list, list, list]:
    """(zombies, skeletons, cows) of a chunk's objects."""
    zombies, skeletons, cows = [], [], []
    for obj in objs:
        kind = type(obj)
        if kind is engine.Zombie:
            zombies.append(obj)
        elif kind is engine.Skeleton:
            skeletons.append(obj)
        elif kind is engine.Cow:
            cows.append(obj)
    return zombies, skeletons, cows


class CrafterWorld:
    """One Crafter episode at a time, seeded, deterministic, rendering only on request."""

    def __init__(self, difficulty: str | Difficulty = "normal", max_steps: int = 10_000) -> None:
        self.difficulty = difficulty if isinstance(difficulty, Difficulty) else get_difficulty(difficulty)
        self.max_steps = max_steps
        self.seed: int | None = None
        self._world = engine.World(AREA, constants.materials, CHUNK)
        self._local_view = stock_engine.LocalView(self._world, _textures(), list(LOCAL_VIEW))
        self._item_view = stock_engine.ItemView(_textures(), [VIEW[0], VIEW[1] - LOCAL_VIEW[1]])
        self._render_rng = np.random.RandomState(0)
        self._local_view._noise = self._frame_noise  # noqa: SLF001 - keep frames off the world RNG
        self._obj_ids = {cls: SEMANTIC_IDS[name] for cls, name in (
            (engine.Player, "player"), (engine.Cow, "cow"), (engine.Zombie, "zombie"),
            (engine.Skeleton, "skeleton"), (engine.Arrow, "arrow"), (engine.Plant, "plant"))}
        self._player: engine.Player | None = None
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
        self._player = engine.Player(self._world, center)
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
            self._balancer.balance_all()
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
        x0, y0 = player.pos[0] - w // 2, player.pos[1] - h // 2
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + w, AREA[0]), min(y0 + h, AREA[1])
        # Material ids of crafter's World are the semantic ids 1..12 (same order as MATERIALS).
        if xa == x0 and ya == y0 and xb == x0 + w and yb == y0 + h:
            rows = self._world._mat_map[xa:xb, ya:yb].T.tolist()  # noqa: SLF001
        else:
            view = np.zeros((w, h), np.int64)  # indexed [x, y] like the engine's maps
            view[xa - x0: xb - x0, ya - y0: yb - y0] = self._world._mat_map[xa:xb, ya:yb]  # noqa: SLF001
            rows = view.T.tolist()
        obj_ids = self._obj_ids
        for obj in self._world.chunk_objects(xa, xb, ya, yb):
            x, y = obj.pos
            if xa <= x < xb and ya <= y < yb:
                rows[y - y0][x - x0] = obj_ids[type(obj)]
        return rows

    def semantic_map(self) -> np.ndarray:
        """The whole 64x64 map of semantic ids, indexed [x, y] (privileged information)."""
        canvas = self._world._mat_map.copy()  # noqa: SLF001
        for obj in self._world.objects:
            canvas[obj.pos] = self._obj_ids[type(obj)]
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
    def player(self) -> engine.Player:
        return self._require_player()

    @property
    def engine_world(self) -> engine.World:
        return self._world

    # -- internals -------------------------------------------------------------------
    def _require_player(self) -> engine.Player:
        if self._player is None:
            raise RuntimeError("the world has not been reset yet")
        return self._player

    def _update_objects(self, player: engine.Player) -> None:
        """Stock's update loop: objects within L1 distance 18 of the player, in creation order.

        Equivalent to stock: the player (created first) moves first; every other object can only
        move or remove itself in its own update, so each position read here is the one stock
        checks; objects created during the loop (index >= ``first_new``) are skipped, as stock's
        snapshot skips them. Candidates come from the chunks near the player, not the whole world.
        """
        world = self._world
        first_new = world._next_index  # noqa: SLF001
        player.update()
        radius = 2 * max(VIEW)
        px, py = player.pos
        near = [obj for obj in world.chunk_objects(px - radius + 1, px + radius, py - radius + 1, py + radius)
                if abs(obj.pos[0] - px) + abs(obj.pos[1] - py) < radius and obj.index < first_new
                and obj is not player]
        near.sort(key=_creation_index)
        for obj in near:
            obj.update()

    def _update_daylight(self) -> None:
        self._world.daylight = _daylight(self._step)

    def _frame_noise(self, canvas: np.ndarray, amount: float, stddev: float) -> np.ndarray:
        noise = self._render_rng.uniform(32, 127, canvas.shape[:2])[..., None]
        mask = amount * self._local_view._vignette(canvas.shape, stddev)[..., None]  # noqa: SLF001
        return (1 - mask) * canvas + mask * noise
