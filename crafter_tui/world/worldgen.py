"""World generation: Crafter's terrain and object placement, fast and parameterised.

Stock ``crafter.worldgen`` calls OpenSimplex once per cell and noise octave from Python
(~4,096 cells x up to 9 noise calls) and walks the map twice in Python, which dominates a
reset. Here every noise field is one compiled pass over the map (opensimplex's own ``_noise3``
per cell, so the values are bit-identical), and the two per-cell walks that branch on the world
RNG run compiled too, on uniforms drawn ahead from the world RNG: the walk reports how many it
consumed and the RNG is then wound to exactly where stock's one-by-one draws would leave it.
With the ``normal`` difficulty the generated world is identical to stock Crafter's (a test
checks that, cell for cell and object for object).

Why not opensimplex's ``noise3array``: it is ``parallel=True``, and on small 64x64 fields its
thread hand-offs cost ~20x the arithmetic (7.8 ms vs 0.38 ms a field on 2 busy cores).
"""

from __future__ import annotations

import numba
import numpy as np
from opensimplex.constants import GRADIENTS3
from opensimplex.internals import _noise3

from crafter_tui.world import engine
from crafter_tui.world.difficulty import Difficulty

# Material codes of the compiled walks (looked up as world material ids afterwards).
_CODES = ("grass", "path", "coal", "iron", "diamond", "lava", "stone", "sand", "water", "tree")
GRASS, PATH, COAL, IRON, DIAMOND, LAVA, STONE, SAND, WATER, TREE = range(len(_CODES))
COW, ZOMBIE, SKELETON = 0, 1, 2


def _threshold(stock: float, scale: float) -> float:
    """The ``uniform() > t`` threshold giving ``scale`` times stock's probability ``1 - stock``."""
    if scale == 1.0:
        return stock
    return max(0.0, 1.0 - (1.0 - stock) * scale)


@numba.njit(cache=True)
def _noise_plane(xs: np.ndarray, ys: np.ndarray, z: float, perm: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """noise[x, y] of opensimplex's 3-D noise at height ``z`` (``noise3array(xs, ys, [z])[0].T``)."""
    out = np.empty((xs.size, ys.size))
    for i in range(xs.size):
        for j in range(ys.size):
            out[i, j] = _noise3(xs[i], ys[j], z, perm, grad)
    return out


_WRAP, _HALF = 2**64, 2**63


def permutation_tables(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``opensimplex.internals._init(seed)`` with Python ints instead of numpy scalars and ctypes
    (1.2 ms -> ~0.1 ms): the same 64-bit wrapping LCG, the same permutation, the same gradient index."""
    def wrap(value: int) -> int:
        return (value + _HALF) % _WRAP - _HALF

    for _ in range(3):
        seed = wrap(seed * 6364136223846793005 + 1442695040888963407)
    source = list(range(256))
    perm = [0] * 256
    for i in range(255, -1, -1):
        seed = wrap(seed * 6364136223846793005 + 1442695040888963407)
        r = (seed + 31) % (i + 1)  # Python's modulo is never negative here
        perm[i] = source[r]
        source[r] = source[i]
    grad = [(value % (len(GRADIENTS3) // 3)) * 3 for value in perm]
    return np.array(perm, np.int64), np.array(grad, np.int64)


class _Noise:
    """OpenSimplex fields over the whole map, evaluated exactly like stock's ``_simplex``."""

    def __init__(self, seed: int, area: tuple[int, int]) -> None:
        self.perm, self.grad = permutation_tables(seed)
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
            noise = _noise_plane(xs / size, ys / size, float(z), self.perm, self.grad)
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


class _Uniforms:
    """Stock's one-at-a-time ``world.random.uniform()`` draws, taken ahead for a compiled walk.

    ``uniform()`` is ``next_double`` of the legacy MT19937 stream, the same values
    ``uniform(size=n)`` returns in order; after the walk, ``consume(k)`` winds the RNG back and
    draws exactly the ``k`` values stock would have drawn, so the RNG state matches stock's.
    """

    def __init__(self, random: np.random.RandomState, most: int) -> None:
        self._random = random
        self._saved = random.get_state()
        self.values = random.uniform(size=most)

    def consume(self, count: int) -> None:
        self._random.set_state(self._saved)
        if count:
            self._random.uniform(size=count)


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
    fields = np.stack([start, mountain, water])
    thresholds = np.array([_threshold(0.85, difficulty.ores), _threshold(0.75, difficulty.ores),
                           _threshold(0.994, difficulty.ores), _threshold(0.8, difficulty.trees)])
    uniforms = _Uniforms(world.random, 3 * area[0] * area[1])  # at most coal, iron and diamond draws a cell
    codes, tunnels, used = _materials_walk(fields, noise.perm, noise.grad, thresholds, uniforms.values)
    uniforms.consume(used)
    ids = np.array([world._mat_ids[name] for name in _CODES], np.uint8)  # noqa: SLF001
    world._mat_map[:, :] = ids[codes]  # noqa: SLF001
    return tunnels


@numba.njit(cache=True)
def _single(x: float, y: float, z: float, size: float, perm: np.ndarray, grad: np.ndarray) -> float:
    """One cell of a one-octave field: ``_Noise.field(z, size)[x, y]`` for the comparisons made here.

    ``field`` computes ``(0 + 1 * noise) / 1``, which differs from ``noise`` only in the sign of a
    zero, and zeros of either sign compare alike with every threshold the walk uses.
    """
    return _noise3(x / size, y / size, z, perm, grad)


@numba.njit(cache=True)
def _materials_walk(fields: np.ndarray, perm: np.ndarray, grad: np.ndarray, thresholds: np.ndarray,
                    uniforms: np.ndarray):
    """Stock ``_set_material`` for every cell in x-major order: (codes, tunnels, uniforms used).

    ``start``, ``mountain`` and ``water`` decide every cell, so they come in as whole maps; the
    other eight fields (cave, tunnels, ores, lava, sand, trees) are evaluated only in the cells
    whose branch reads them, like stock's per-cell ``simplex`` calls (same arguments: stock's
    ``2 * x`` and ``y / 5`` scalings, then ``/ size``).
    """
    start, mountain, water = fields[0], fields[1], fields[2]
    t_coal, t_iron, t_diamond, t_tree = thresholds[0], thresholds[1], thresholds[2], thresholds[3]
    width, height = start.shape
    codes = np.empty((width, height), np.uint8)
    tunnels = np.zeros((width, height), np.bool_)
    used = 0
    for xi in range(width):
        x = float(xi)
        for yi in range(height):
            y = float(yi)
            m = mountain[xi, yi]
            w = water[xi, yi]
            if start[xi, yi] > 0.5:
                code = GRASS
            elif m > 0.15:
                code = STONE
                if _single(x, y, 6.0, 7.0, perm, grad) > 0.15 and m > 0.3:  # cave
                    code = PATH
                elif (_single(2.0 * x, y / 5.0, 7.0, 3.0, perm, grad) > 0.4  # horizontal tunnel
                      or _single(x / 5.0, 2.0 * y, 7.0, 3.0, perm, grad) > 0.4):  # vertical tunnel
                    code = PATH
                    tunnels[xi, yi] = True
                else:
                    drawn = False
                    if _single(x, y, 1.0, 8.0, perm, grad) > 0:  # coal
                        used += 1
                        drawn = uniforms[used - 1] > t_coal
                        if drawn:
                            code = COAL
                    if not drawn and _single(x, y, 2.0, 6.0, perm, grad) > 0.4:  # iron
                        used += 1
                        drawn = uniforms[used - 1] > t_iron
                        if drawn:
                            code = IRON
                    if not drawn and m > 0.18:
                        used += 1
                        drawn = uniforms[used - 1] > t_diamond
                        if drawn:
                            code = DIAMOND
                    if not drawn and m > 0.3 and _single(x, y, 6.0, 5.0, perm, grad) > 0.35:  # lava
                        code = LAVA
            elif 0.25 < w <= 0.35 and _single(x, y, 4.0, 9.0, perm, grad) > -0.2:  # sand
                code = SAND
            elif 0.3 < w:
                code = WATER
            elif _single(x, y, 5.0, 7.0, perm, grad) > 0:  # tree
                used += 1
                code = TREE if uniforms[used - 1] > t_tree else GRASS
            else:
                code = GRASS
            codes[xi, yi] = code
    return codes, tunnels, used


def _set_objects(world, player, tunnels: np.ndarray, difficulty: Difficulty) -> None:
    area = world.area
    px, py = (int(v) for v in player.pos)
    walk_codes = np.full(len(world._mat_ids) + 1, -1, np.int64)  # noqa: SLF001 - material id -> walk code
    for code, name in enumerate(_CODES):
        walk_codes[world._mat_ids[name]] = code  # noqa: SLF001
    materials = walk_codes[world._mat_map]  # noqa: SLF001
    thresholds = np.array([_threshold(0.985, difficulty.cows), _threshold(0.993, difficulty.zombies),
                           _threshold(0.95, difficulty.skeletons)])
    uniforms = _Uniforms(world.random, 3 * area[0] * area[1])  # at most cow, zombie and skeleton draws a cell
    spawns, used = _objects_walk(materials, tunnels, px, py, thresholds, uniforms.values)
    uniforms.consume(used)
    for kind, x, y in spawns.tolist():
        if kind == COW:
            world.add(engine.Cow(world, (x, y)))
        elif kind == ZOMBIE:
            world.add(engine.Zombie(world, (x, y), player))
        else:
            world.add(engine.Skeleton(world, (x, y), player))


@numba.njit(cache=True)
def _objects_walk(materials: np.ndarray, tunnels: np.ndarray, px: int, py: int,
                  thresholds: np.ndarray, uniforms: np.ndarray):
    """Stock ``_set_object`` for every cell in x-major order: ((kind, x, y) rows in order, uniforms used)."""
    t_cow, t_zombie, t_skeleton = thresholds
    width, height = materials.shape
    spawns = np.empty((width * height, 3), np.int64)
    count = 0
    used = 0
    for x in range(width):
        for y in range(height):
            code = materials[x, y]
            if code != GRASS and code != PATH and code != SAND:
                continue
            dist = np.sqrt((x - px) ** 2 + (y - py) ** 2)
            kind = -1
            if dist > 3 and code == GRASS:
                used += 1
                if uniforms[used - 1] > t_cow:
                    kind = COW
            if kind < 0 and dist > 10:
                used += 1
                if uniforms[used - 1] > t_zombie:
                    kind = ZOMBIE
            if kind < 0 and code == PATH and tunnels[x, y]:
                used += 1
                if uniforms[used - 1] > t_skeleton:
                    kind = SKELETON
            if kind >= 0:
                spawns[count, 0], spawns[count, 1], spawns[count, 2] = kind, x, y
                count += 1
    return spawns[:count], used
