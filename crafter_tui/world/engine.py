"""Crafter's world and creatures, stock rules on Python-int positions.

Why: in ``crafter.engine``/``crafter.objects`` every position is a 2-element numpy array and
every move, distance and map lookup goes through numpy (array creation, ``np.abs(..).sum()``,
``_obj_map[tuple(pos)]``, ``_chunk_key`` on numpy ints). On positions that small numpy costs
~1 us an operation, which was most of a step's ~500 us. Here positions are ``(int, int)`` tuples,
objects are found through a dict keyed by cell, and live objects through a dict keyed by their
creation index (insertion order = index order, the order stock updates them in).

The rules are stock's, draw for draw: the classes subclass crafter's own and override only
what touched numpy (moves, distances, directions, map access) plus the few methods that did
arithmetic on positions (``Skeleton.update``/``_shoot``, ``Arrow.update``, ``Plant.update``,
``Player._place``). Every other method (the player's actions, life stats, cows and zombies)
is crafter's code running on these overrides. The world RNG is consumed in exactly the same
order, so trajectories are bit-identical (``tests/test_world_golden.py`` pins them); it is a
``StreamRandom``, numpy's generator with cheap scalar draws (see ``stream_random.py``).

The material map stays crafter's ``_mat_map`` (numpy, indexed [x, y]); ``_obj_map`` is not
kept (objects live in ``_cells``), so it is ``None`` to fail loudly rather than read stale.
"""

from __future__ import annotations

import collections
import functools

import numpy as np
from crafter import constants
from crafter import engine as stock_engine
from crafter import objects as stock

from crafter_tui.world.stream_random import StreamRandom

ALL_DIRS = ((-1, 0), (+1, 0), (0, -1), (0, +1))
WALKABLE = tuple(constants.walkable)
ITEM_MAX = {name: info["max"] for name, info in constants.items.items()}
ENERGY_MAX = ITEM_MAX["energy"]


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


@functools.cache
def _chunk_keys(area: tuple[int, int], chunk_size: tuple[int, int]) -> list[list[tuple[int, int, int, int]]]:
    """Stock ``chunk_key`` of every cell, [x][y]; one shared table per shape (never mutated)."""
    (width, height), (csx, csy) = area, chunk_size
    return [[((x // csx) * csx, min((x // csx) * csx + csx, width),
              (y // csy) * csy, min((y // csy) * csy + csy, height))
             for y in range(height)] for x in range(width)]


class World(stock_engine.World):
    """``crafter.engine.World`` with int-tuple positions and dict-backed object lookup."""

    def __init__(self, area, materials, chunk_size) -> None:
        self._chunk_keys = _chunk_keys(tuple(area), tuple(chunk_size))
        super().__init__(area, materials, chunk_size)

    def reset(self, seed=None) -> None:
        self.random = StreamRandom(np.random.RandomState(seed))
        self.daylight = 0.0
        self._chunks = collections.defaultdict(set)
        self._mat_map = np.zeros(self.area, np.uint8)
        self._obj_map = None  # not kept, see the module docstring
        self._cells: dict[tuple[int, int], stock.Object] = {}
        self._live: dict[int, stock.Object] = {}
        self._next_index = 1  # stock's index 0 means "no object"

    @property
    def objects(self) -> list:
        """Live objects in creation order (a new list, so it cannot change while iterated)."""
        return list(self._live.values())

    def add(self, obj) -> None:
        pos = (int(obj.pos[0]), int(obj.pos[1]))
        obj.pos = pos
        assert pos not in self._cells
        obj.index = self._next_index
        self._next_index += 1
        self._live[obj.index] = obj
        self._cells[pos] = obj
        self._chunks[self._chunk_keys[pos[0]][pos[1]]].add(obj)

    def remove(self, obj) -> None:
        if obj.removed:
            return
        del self._live[obj.index]
        del self._cells[obj.pos]
        self._chunks[self._chunk_keys[obj.pos[0]][obj.pos[1]]].remove(obj)
        obj.removed = True

    def move(self, obj, pos) -> None:
        if obj.removed:
            return
        pos = (int(pos[0]), int(pos[1]))
        assert pos not in self._cells
        old = obj.pos
        del self._cells[old]
        self._cells[pos] = obj
        old_chunk = self._chunk_keys[old[0]][old[1]]
        new_chunk = self._chunk_keys[pos[0]][pos[1]]
        if old_chunk != new_chunk:
            self._chunks[old_chunk].remove(obj)
            self._chunks[new_chunk].add(obj)
        obj.pos = pos

    def __setitem__(self, pos, material) -> None:
        if material not in self._mat_ids:
            self._mat_ids[material] = len(self._mat_ids)
        self._mat_map[pos[0], pos[1]] = self._mat_ids[material]

    def __getitem__(self, pos):
        x, y = pos
        if 0 <= x < self.area[0] and 0 <= y < self.area[1]:
            return self._mat_names[self._mat_map.item(x, y)], self._cells.get((x, y))
        return None, None

    def nearby(self, pos, distance):
        """Stock's result, including numpy's slicing of windows that start off the map."""
        (x, y), d = pos, distance
        ids = set(self._mat_map[x - d: x + d + 1, y - d: y + d + 1].flatten().tolist())
        materials = tuple(self._mat_names[i] for i in ids)
        xs = range(*slice(x - d, x + d + 1).indices(self.area[0]))
        ys = range(*slice(y - d, y + d + 1).indices(self.area[1]))
        cells = self._cells
        objs = {cells[(cx, cy)] for cx in xs for cy in ys if (cx, cy) in cells}
        return materials, objs

    def chunk_key(self, pos):
        return self._chunk_keys[pos[0]][pos[1]]

    def chunk_objects(self, xa: int, xb: int, ya: int, yb: int) -> list:
        """Objects of every chunk that meets the cells [xa, xb) x [ya, yb) (clipped to the map).

        A superset of the objects in the box, unordered: callers filter by position. Reads
        ``_chunks`` with ``get`` so no chunk is created (the balancing visits chunks in the
        order they were first used).
        """
        csx, csy = self._chunk_size
        xa, ya = max(xa, 0), max(ya, 0)
        xb, yb = min(xb, self.area[0]), min(yb, self.area[1])
        found: list = []
        keys, chunks = self._chunk_keys, self._chunks
        for cx in range(xa - xa % csx, xb, csx):
            column = keys[cx]
            for cy in range(ya - ya % csy, yb, csy):
                objs = chunks.get(column[cy])
                if objs:
                    found.extend(objs)
        return found


class _IntPositions:
    """The numpy-free movement and geometry every object uses (mixed in before crafter's class)."""

    walkable = WALKABLE

    def _int_pos(self, pos) -> None:
        self.pos = (int(pos[0]), int(pos[1]))

    def move(self, direction) -> bool:
        """Stock ``move``: step if ``is_free`` (no object, walkable material, on the map)."""
        x, y = self.pos[0] + direction[0], self.pos[1] + direction[1]
        world = self.world
        width, height = world.area
        if (0 <= x < width and 0 <= y < height and (x, y) not in world._cells
                and world._mat_names[world._mat_map.item(x, y)] in self.walkable):
            world.move(self, (x, y))
            return True
        return False

    def is_free(self, target, materials=None) -> bool:
        materials = self.walkable if materials is None else materials
        material, obj = self.world[target]
        return obj is None and material in materials

    def distance(self, target) -> int:
        if hasattr(target, "pos"):
            target = target.pos
        return abs(target[0] - self.pos[0]) + abs(target[1] - self.pos[1])

    def toward(self, target, long_axis=True) -> tuple[int, int]:
        if hasattr(target, "pos"):
            target = target.pos
        dx, dy = target[0] - self.pos[0], target[1] - self.pos[1]
        if (abs(dx) > abs(dy) if long_axis else abs(dx) <= abs(dy)):
            return (_sign(dx), 0)
        return (0, _sign(dy))

    def random_dir(self) -> tuple[int, int]:
        return ALL_DIRS[self.random.randint(0, 4)]


class Player(_IntPositions, stock.Player):
    walkable = WALKABLE + ("lava",)

    def __init__(self, world, pos) -> None:
        super().__init__(world, pos)
        self._int_pos(pos)

    def update(self) -> None:
        """Stock ``Player.update``, statement for statement; the clamp skips values in range."""
        target = (self.pos[0] + self.facing[0], self.pos[1] + self.facing[1])
        material, obj = self.world[target]
        action = self.action
        inventory = self.inventory
        if self.sleeping:
            if inventory["energy"] < ENERGY_MAX:
                action = "sleep"
            else:
                self.sleeping = False
                self.achievements["wake_up"] += 1
        if action == "noop":
            pass
        elif action.startswith("move_"):
            self._move(action[len("move_"):])
        elif action == "do" and obj:
            self._do_object(obj)
        elif action == "do":
            self._do_material(target, material)
        elif action == "sleep":
            if inventory["energy"] < ENERGY_MAX:
                self.sleeping = True
        elif action.startswith("place_"):
            self._place(action[len("place_"):], target, material)
        elif action.startswith("make_"):
            self._make(action[len("make_"):])
        self._update_life_stats()
        self._degen_or_regen_health()
        for name, amount in inventory.items():
            most = ITEM_MAX[name]
            if not 0 <= amount <= most:  # stock writes max(0, min(amount, most)) to every item
                inventory[name] = max(0, min(amount, most))
        self._wake_up_when_hurt()

    def _place(self, name, target, material) -> None:
        if self.world[target][1]:
            return
        info = constants.place[name]
        if material not in info["where"]:
            return
        if any(self.inventory[k] < v for k, v in info["uses"].items()):
            return
        for item, amount in info["uses"].items():
            self.inventory[item] -= amount
        if info["type"] == "material":
            self.world[target] = name
        elif info["type"] == "object":
            cls = {"fence": Fence, "plant": Plant}[name]
            self.world.add(cls(self.world, target))
        self.achievements[f"place_{name}"] += 1


class Cow(_IntPositions, stock.Cow):
    def __init__(self, world, pos) -> None:
        super().__init__(world, pos)
        self._int_pos(pos)

    def update(self) -> None:
        """Stock ``Cow.update`` inlined (the most frequent update of all)."""
        if self.inventory["health"] <= 0:
            self.world.remove(self)
        random = self.random
        if random.uniform() < 0.5:
            self.move(ALL_DIRS[random.randint(0, 4)])


class Zombie(_IntPositions, stock.Zombie):
    def __init__(self, world, pos, player) -> None:
        super().__init__(world, pos, player)
        self._int_pos(pos)

    def update(self) -> None:
        """Stock ``Zombie.update`` with the distances in ints."""
        if self.inventory["health"] <= 0:
            self.world.remove(self)
        player, random = self.player, self.random
        dist = self.distance(player)
        if dist <= 8 and random.uniform() < 0.9:
            self.move(self.toward(player, random.uniform() < 0.8))
        else:
            self.move(ALL_DIRS[random.randint(0, 4)])
        dist = self.distance(player)
        if dist <= 1:
            if self.cooldown:
                self.cooldown -= 1
            else:
                if player.sleeping:
                    damage = 7
                else:
                    damage = 2
                player.health -= damage
                self.cooldown = 5


class Skeleton(_IntPositions, stock.Skeleton):
    def __init__(self, world, pos, player) -> None:
        super().__init__(world, pos, player)
        self._int_pos(pos)

    def update(self) -> None:
        if self.health <= 0:
            self.world.remove(self)
        self.reload = max(0, self.reload - 1)
        dist = self.distance(self.player.pos)
        if dist <= 3:
            dx, dy = self.toward(self.player, self.random.uniform() < 0.6)
            if self.move((-dx, -dy)):
                return
        if dist <= 5 and self.random.uniform() < 0.5:
            self._shoot(self.toward(self.player))
        elif dist <= 8 and self.random.uniform() < 0.3:
            self.move(self.toward(self.player, self.random.uniform() < 0.6))
        elif self.random.uniform() < 0.2:
            self.move(self.random_dir())

    def _shoot(self, direction) -> None:
        if self.reload > 0:
            return
        if direction[0] == 0 and direction[1] == 0:
            return
        pos = (self.pos[0] + direction[0], self.pos[1] + direction[1])
        if self.is_free(pos, Arrow.walkable):
            self.world.add(Arrow(self.world, pos, direction))
            self.reload = 4


class Arrow(_IntPositions, stock.Arrow):
    walkable = WALKABLE + ("water", "lava")

    def __init__(self, world, pos, facing) -> None:
        super().__init__(world, pos, facing)
        self._int_pos(pos)

    def update(self) -> None:
        target = (self.pos[0] + self.facing[0], self.pos[1] + self.facing[1])
        material, obj = self.world[target]
        if obj:
            obj.health -= 2
            self.world.remove(self)
        elif material not in self.walkable:
            self.world.remove(self)
            if material in ("table", "furnace"):
                self.world[target] = "path"
        else:
            self.move(self.facing)


class Plant(_IntPositions, stock.Plant):
    def __init__(self, world, pos) -> None:
        super().__init__(world, pos)
        self._int_pos(pos)

    def update(self) -> None:
        self.grown += 1
        x, y = self.pos
        objs = [self.world[(x + dx, y + dy)][1] for dx, dy in ALL_DIRS]
        if any(isinstance(obj, (stock.Zombie, stock.Skeleton, stock.Cow)) for obj in objs):
            self.health -= 1
        if self.health <= 0:
            self.world.remove(self)


class Fence(_IntPositions, stock.Fence):
    def __init__(self, world, pos) -> None:
        super().__init__(world, pos)
        self._int_pos(pos)
