"""World generation: Crafter's terrain and object placement, fast and parameterised.

Stock ``crafter.worldgen`` calls OpenSimplex once per cell and noise octave from Python
(~4,096 cells x up to 9 noise calls), which dominates a reset. Here every noise field is
computed for the whole map in one vectorised ``noise3array`` call, and only the branching
that consumes the world RNG stays a per-cell loop, in the same order as stock. With the
``normal`` difficulty the generated world is identical to stock Crafter's (a test checks
that, cell for cell and object for object).
"""

from __future__ import annotations

import numpy as np
import opensimplex
from crafter import objects

from crafter_tui.world.difficulty import Difficulty


def _threshold(stock: float, scale: float) -> float:
    """The ``uniform() > t`` threshold giving ``scale`` times stock's probability ``1 - stock``."""
    if scale == 1.0:
        return stock
    return max(0.0, 1.0 - (1.0 - stock) * scale)


class _Noise:
    """OpenSimplex fields over the whole map, evaluated exactly like stock's ``_simplex``."""

    def __init__(self, seed: int, area: tuple[int, int]) -> None:
        self._gen = opensimplex.OpenSimplex(seed=seed)
        self._xs = np.arange(area[0], dtype=np.float64)
        self._ys = np.arange(area[1], dtype=np.float64)

    def field(self, z: float, sizes: float | dict[float, float], normalize: bool = True,
              x_scale: float = 1.0, y_scale: float = 1.0) -> np.ndarray:
        """noise[x, y] for stock's ``simplex(x * x_scale, y * y_scale, z, sizes)``."""
        if not isinstance(sizes, dict):
            sizes = {sizes: 1}
        xs = self._scaled(self._xs, x_scale)
        ys = self._scaled(self._ys, y_scale)
        value = np.zeros((len(xs), len(ys)))
        for size, weight in sizes.items():
            noise = self._gen.noise3array(xs / size, ys / size, np.array([float(z)]))[0].T
            value = value + weight * noise
        if normalize:
            value /= sum(sizes.values())
        return value

    @staticmethod
    def _scaled(values: np.ndarray, scale: float) -> np.ndarray:
        # Stock writes ``2 * x`` and ``y / 5``: reproduce the same float operations.
        if scale == 1.0:
            return values
        if scale >= 1.0:
            return scale * values
        return values / round(1.0 / scale)


def generate_world(world, player, difficulty: Difficulty) -> None:
    """Fill ``world`` with terrain and creatures around ``player``, like ``crafter.worldgen``."""
    noise = _Noise(world.random.randint(0, 2**31 - 1), world.area)
    tunnels = _set_materials(world, player, noise, difficulty)
    _set_objects(world, player, tunnels, difficulty)


def _set_materials(world, player, noise: _Noise, difficulty: Difficulty) -> np.ndarray:
    area = world.area
    xs, ys = np.meshgrid(np.arange(area[0]), np.arange(area[1]), indexing="ij")
    px, py = player.pos
    start = 4 - np.sqrt((xs - px) ** 2 + (ys - py) ** 2)
    start = start + 2 * noise.field(8, 3)
    start = 1 / (1 + np.exp(-start))
    water = noise.field(3, {15: 1, 5: 0.15}, False) + 0.1
    water = water - 2 * start
    mountain = noise.field(0, {15: 1, 5: 0.3})
    mountain = mountain - 4 * start - 0.3 * water
    cave = noise.field(6, 7)
    htunnel = noise.field(7, 3, x_scale=2.0, y_scale=0.2)
    vtunnel = noise.field(7, 3, x_scale=0.2, y_scale=2.0)
    coal = noise.field(1, 8)
    iron = noise.field(2, 6)
    lava = noise.field(6, 5)
    sand = noise.field(4, 9)
    tree = noise.field(5, 7)
    t_coal = _threshold(0.85, difficulty.ores)
    t_iron = _threshold(0.75, difficulty.ores)
    t_diamond = _threshold(0.994, difficulty.ores)
    t_tree = _threshold(0.8, difficulty.trees)
    uniform = world.random.uniform
    tunnels = np.zeros(area, bool)
    names = np.empty(area, dtype=object)
    for x in range(area[0]):
        for y in range(area[1]):
            m = mountain[x, y]
            w = water[x, y]
            if start[x, y] > 0.5:
                name = "grass"
            elif m > 0.15:
                if cave[x, y] > 0.15 and m > 0.3:
                    name = "path"
                elif htunnel[x, y] > 0.4 or vtunnel[x, y] > 0.4:
                    name = "path"
                    tunnels[x, y] = True
                elif coal[x, y] > 0 and uniform() > t_coal:
                    name = "coal"
                elif iron[x, y] > 0.4 and uniform() > t_iron:
                    name = "iron"
                elif m > 0.18 and uniform() > t_diamond:
                    name = "diamond"
                elif m > 0.3 and lava[x, y] > 0.35:
                    name = "lava"
                else:
                    name = "stone"
            elif 0.25 < w <= 0.35 and sand[x, y] > -0.2:
                name = "sand"
            elif 0.3 < w:
                name = "water"
            elif tree[x, y] > 0 and uniform() > t_tree:
                name = "tree"
            else:
                name = "grass"
            names[x, y] = name
    _assign_materials(world, names)
    return tunnels


def _assign_materials(world, names: np.ndarray) -> None:
    """Write all material ids at once (every material is registered when the World is built)."""
    ids = world._mat_ids  # noqa: SLF001 - crafter's World keeps ids private
    lookup = np.vectorize(ids.__getitem__, otypes=[np.uint8])
    world._mat_map[:, :] = lookup(names)  # noqa: SLF001


def _set_objects(world, player, tunnels: np.ndarray, difficulty: Difficulty) -> None:
    uniform = world.random.uniform
    area = world.area
    px, py = player.pos
    walkable = {"grass", "path", "sand"}
    t_cow = _threshold(0.985, difficulty.cows)
    t_zombie = _threshold(0.993, difficulty.zombies)
    t_skeleton = _threshold(0.95, difficulty.skeletons)
    mat_names = world._mat_names  # noqa: SLF001
    mat_map = world._mat_map  # noqa: SLF001
    for x in range(area[0]):
        for y in range(area[1]):
            material = mat_names[mat_map[x, y]]
            if material not in walkable:
                continue
            dist = np.sqrt((x - px) ** 2 + (y - py) ** 2)
            if dist > 3 and material == "grass" and uniform() > t_cow:
                world.add(objects.Cow(world, (x, y)))
            elif dist > 10 and uniform() > t_zombie:
                world.add(objects.Zombie(world, (x, y), player))
            elif material == "path" and tunnels[x, y] and uniform() > t_skeleton:
                world.add(objects.Skeleton(world, (x, y), player))
