"""The text observation an LLM agent reads instead of the 64x64 image.

It carries what the image shows, in a form a language model can use: the 9x7 local view
as a grid of one-character symbols with a legend of the symbols present, the nearest
instance of each visible kind with offsets (as BALROG/SmartPlay do), the faced cell,
vitals, inventory, achievements so far, and step/turn counters. The output is a pure
function of the world state, so the same seed always yields the same prompt text.

Why it is written with tables: it is rendered on every agent turn (and every env-service
step), so its cost is part of every rollout's per-step overhead. The view's 63 semantic
ids become one ``bytes`` object (a caller that already has it, as the rollout loop has from
the step record's ``view``, passes it as ``cells``); symbols come from one ``bytes.translate``
and the spaced grid from one slice assignment into a template; the cells are reordered
nearest first once (one ``itemgetter``), so the nearest cell of each visible kind is one
``bytes.index``; every per-kind, per-distance-rank phrase and sort key is precomputed.
``tests/test_world_textobs_equivalence.py`` keeps the original per-cell implementation and
checks every format byte for byte against it.
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import gt, itemgetter
from typing import TYPE_CHECKING

from crafter_tui.world.rules import (
    ACHIEVEMENTS, DIRECTIONS, ITEMS, LOCAL_VIEW, MAKE_RULES, MAX_ITEM, PLACE_RULES, SEMANTIC_IDS, SEMANTIC_NAMES,
    TUNNEL_RULES, VITALS, WALKABLE,
)

if TYPE_CHECKING:  # annotations only: prompts and the SFT export must not import the game engine
    from crafter_tui.world.env import WorldState

#: One symbol per semantic kind, chosen to be distinct and mnemonic.
SYMBOLS: dict[str, str] = {
    "unknown": "?", "water": "~", "grass": ".", "stone": "#", "path": "_", "sand": ":",
    "tree": "T", "lava": "%", "coal": "c", "iron": "i", "diamond": "d", "table": "t",
    "furnace": "f", "player": "@", "cow": "C", "zombie": "Z", "skeleton": "S", "arrow": "*",
    "plant": "p",
}
_CENTER = (LOCAL_VIEW[0] // 2, LOCAL_VIEW[1] // 2)


def _offset(dx: int, dy: int, words: tuple[str, str, str, str], joiner: str, here: str) -> str:
    """An offset in (north, south, west, east) ``words``: the one wording rule both forms share."""
    parts = []
    if dy:
        parts.append(f"{abs(dy)}{words[0] if dy < 0 else words[1]}")
    if dx:
        parts.append(f"{abs(dx)}{words[2] if dx < 0 else words[3]}")
    return joiner.join(parts) or here


def offset_text(dx: int, dy: int) -> str:
    """'2 north and 1 east': how observations (and the expert's reasoning) word an offset."""
    return _offset(dx, dy, (" north", " south", " west", " east"), " and ", "here")


def _short_offset(dx: int, dy: int) -> str:
    """'2n1e': the compact and brief observations' form."""
    return _offset(dx, dy, ("n", "s", "w", "e"), "", "0")


# -- lookup tables (built once per process) ----------------------------------------------
_W, _H = LOCAL_VIEW
_CELLS = _W * _H
_CENTER_CELL = _CENTER[1] * _W + _CENTER[0]
_KINDS = len(SEMANTIC_NAMES)
_PLAYER_ID = SEMANTIC_NAMES.index("player")
_UNKNOWN_ID = SEMANTIC_NAMES.index("unknown")
_GRASS_ID = SEMANTIC_NAMES.index("grass")
#: ``bytes.translate`` table: semantic id -> its symbol's byte (ids beyond the kinds map to 0, rejected).
_SYMBOL_TABLE = bytes(ord(SYMBOLS[SEMANTIC_NAMES[i]]) if i < _KINDS else 0 for i in range(256))
_OFFSETS = [(cell % _W - _CENTER[0], cell // _W - _CENTER[1]) for cell in range(_CELLS)]
_DIST = [abs(dx) + abs(dy) for dx, dy in _OFFSETS]
#: Cells other than the player's, nearest first; equally near cells in row-major order, as
#: the original scan kept the first of equally near cells it met.
_BY_DISTANCE = sorted((cell for cell in range(_CELLS) if cell != _CENTER_CELL), key=lambda c: (_DIST[c], c))
_CELLS_BY_DISTANCE = itemgetter(*_BY_DISTANCE)
_NAME_RANK = {sid: rank for rank, sid in enumerate(sorted(range(_KINDS), key=SEMANTIC_NAMES.__getitem__))}
#: Per kind, per position in ``_BY_DISTANCE``: the sort key (nearest first, then by kind name:
#: the original's order) and the short and long phrases of that kind at that cell.
_RANK = [[_DIST[cell] * 64 + _NAME_RANK[sid] for cell in _BY_DISTANCE] for sid in range(_KINDS)]
_SHORT_PHRASE = [[f"{SEMANTIC_NAMES[sid]}:{_short_offset(*_OFFSETS[cell])}" for cell in _BY_DISTANCE]
                 for sid in range(_KINDS)]
_LONG_PHRASE = [[f"{SEMANTIC_NAMES[sid]} {offset_text(*_OFFSETS[cell])}" for cell in _BY_DISTANCE]
                for sid in range(_KINDS)]
#: (sort key, long phrase) pairs: the full form sorts these directly (the keys are unique per kind).
_LONG_KEYED = [list(zip(ranks, phrases)) for ranks, phrases in zip(_RANK, _LONG_PHRASE)]
_LEGEND_PIECE = [f"{SYMBOLS[SEMANTIC_NAMES[sid]]} {SEMANTIC_NAMES[sid]}" for sid in range(_KINDS)]
#: The spaced grid's separators: symbols go to the even bytes, a space between the cells of a
#: row and a newline between rows at the odd ones.
_GRID_TEMPLATE = bytes(b"\n"[0] if i % (2 * _W) == 2 * _W - 1 else 32 for i in range(2 * _CELLS - 1))
_CENTER_BYTE = 2 * _CENTER_CELL
_NEIGHBOUR_CELLS = (("n", _CENTER_CELL - _W), ("s", _CENTER_CELL + _W), ("w", _CENTER_CELL - 1),
                    ("e", _CENTER_CELL + 1))
_OTHER_ITEMS = [name for name in ITEMS if name not in VITALS]
_VITAL_PREFIX = [(name, name[:2]) for name in VITALS]
#: Counts in a fixed order, each in one C call (a missing key raises KeyError: the slow path).
_OTHER_COUNTS = itemgetter(*_OTHER_ITEMS)
_VITAL_COUNTS = itemgetter(*VITALS)
_ACHIEVEMENT_COUNTS = itemgetter(*ACHIEVEMENTS)
_ZEROS = repeat(0)  # endless: ``map(gt, counts, _ZEROS)`` is ``count > 0`` for each count
#: The achievements line by which achievements have a count above 0 (one byte each, 0 or 1):
#: few such sets occur, as achievements unlock in a few orders. The cache is bounded.
_ACHIEVEMENT_LINES: dict[bytes, str] = {}
#: "health {}/9, food {}/9, ...": the full form's vitals, filled with one ``str.format``.
_VITALS_FORMAT = ", ".join([f"{name} {{}}/{MAX_ITEM[name]}" for name in VITALS])
#: Each text cache below (and the achievements lines above) holds at most this many entries.
_TEXT_CACHE_MAX = 4096
#: Legend text by the set of kinds in view (few distinct sets occur).
_LEGENDS: dict[frozenset[int], str] = {}
#: Vitals and inventory texts of the full form by the counts (vitals, then other items), bounded.
_INVENTORY_TEXTS: dict[tuple[int, ...], tuple[str, str]] = {}
_VITAL_COUNT = len(VITALS)
_INT = frozenset([int])


if _H != 7:  # pragma: no cover - the unpacking below is written out for seven rows
    raise ImportError(f"view_cells_and_symbols expects a view of 7 rows, LOCAL_VIEW says {_H}")


def view_cells_and_symbols(state: WorldState) -> tuple[bytes, str]:
    """``view_cells(state)`` and ``view_symbols(state)`` with one conversion (the rollout loop needs both).

    The rows are unpacked into one list and converted by one ``bytes`` call (it runs once per
    env step; a ``bytes`` per row and a join took half as long again).
    """
    rows = state.local_view
    if len(rows) != _H:
        raise ValueError(f"local view is not {_W}x{_H} semantic ids below {_KINDS}")
    r0, r1, r2, r3, r4, r5, r6 = rows
    cells = bytes([*r0, *r1, *r2, *r3, *r4, *r5, *r6])
    symbols = cells.translate(_SYMBOL_TABLE)
    if len(cells) != _CELLS or b"\0" in symbols:  # ids past the kinds translate to 0
        raise ValueError(f"local view is not {_W}x{_H} semantic ids below {_KINDS}")
    return cells, symbols.decode("ascii")


def view_cells(state: WorldState) -> bytes:
    """The view's semantic ids, row-major, one byte each (raises on an id that is not a kind).

    Renderers take it as ``cells`` so that a caller that needs the view for something else
    too (the rollout loop's step record) converts it once.
    """
    return view_cells_and_symbols(state)[0]


def view_symbols(state: WorldState) -> str:
    """The local view as its 63 map symbols, rows north to south (the step record's ``view``)."""
    return view_cells_and_symbols(state)[1]


def _grid_text(cells: bytes) -> str:
    """The grid's rows joined by newlines: symbols spaced, '@' at the player's cell."""
    grid = bytearray(_GRID_TEMPLATE)
    grid[::2] = cells.translate(_SYMBOL_TABLE)
    grid[_CENTER_BYTE] = 64  # '@'
    return grid.decode("ascii")


def _grid_rows(cells: bytes) -> list[str]:
    return _grid_text(cells).split("\n")


def _nearest(cells: bytes) -> list[tuple[int, int, int]]:
    """(sort rank, kind id, position in ``_BY_DISTANCE``) of each visible kind's nearest cell, nearest first."""
    ordered = bytes(_CELLS_BY_DISTANCE(cells))
    kinds = set(ordered)
    kinds.discard(_UNKNOWN_ID)
    kinds.discard(_PLAYER_ID)
    find = ordered.index  # the first, so the nearest; equally near cells in row-major order
    return sorted([(_RANK[sid][at], sid, at) for sid in kinds for at in (find(sid),)])


def _seen(cells: bytes) -> list[tuple[int, str]]:
    """``_nearest`` as (sort key, long phrase) pairs, nearest first (the full form's ``You see``)."""
    ordered = bytes(_CELLS_BY_DISTANCE(cells))
    kinds = set(ordered)
    kinds.discard(_UNKNOWN_ID)
    kinds.discard(_PLAYER_ID)
    find = ordered.index
    return sorted([_LONG_KEYED[sid][find(sid)] for sid in kinds])


def map_grid(state: WorldState) -> list[str]:
    """The local view as text rows, north at the top, '@' at the player's cell."""
    return _grid_rows(view_cells(state))


def nearest_objects(state: WorldState) -> list[tuple[str, int, int]]:
    """(kind, dx, dy) of the nearest visible cell of each kind, nearest first."""
    return [(SEMANTIC_NAMES[sid], *_OFFSETS[_BY_DISTANCE[at]]) for _, sid, at in _nearest(view_cells(state))]


def _vitals_and_items(state: WorldState) -> tuple[str, str]:
    inventory = state.inventory
    get = inventory.get
    vitals = " ".join([f"{prefix}{get(name, 0)}" for name, prefix in _VITAL_PREFIX])
    items = " ".join([f"{name}{inventory[name]}" for name in _OTHER_ITEMS if get(name, 0) > 0])
    return vitals, items


def _short_lines(state: WorldState, cells: bytes | None = None,
                 steps: dict[int, str] | None = None) -> dict[str, str]:
    """The ``near``, ``face``, vitals and ``inv`` lines shared by the compact and brief formats
    (``steps``: the first step toward some kinds, written after their offsets as ``>n``)."""
    if cells is None:
        cells = view_cells(state)
    steps = steps or {}
    near = " ".join([_SHORT_PHRASE[sid][at] + (f">{steps[sid]}" if sid in steps else "")
                     for _, sid, at in _nearest(cells) if sid != _GRASS_ID])
    facing = f"{SEMANTIC_NAMES[state.facing_id]}:{DIRECTIONS.get(state.facing, '?')[0]}"
    vitals, items = _vitals_and_items(state)
    night = "" if state.daylight > 0.5 else " night"
    return {"near": f"near {near or '-'}", "face": f"face {facing}{' sleeping' if state.sleeping else ''}",
            "vitals": f"{vitals}{night}", "inv": f"inv {items or '-'}"}


def render_compact_observation(state: WorldState, *, turn: int, max_steps: int, cells: bytes | None = None) -> str:
    """A short form of the same facts for small models (~3x fewer tokens than ``full``).

    Same grid and symbols; the legend is left to the system prompt, offsets are written as
    ``2n1e`` (2 north, 1 east), vitals and inventory as ``name count`` pairs. ``cells``:
    ``view_cells(state)`` when the caller has it already.
    """
    if cells is None:
        cells = view_cells(state)
    short = _short_lines(state, cells)
    return "\n".join([_grid_text(cells), short["near"], short["face"], short["vitals"], short["inv"]])


def neighbour_names(state: WorldState) -> list[tuple[str, str]]:
    """(direction letter, kind) of the four cells next to the player: what a move would run into."""
    x, y = _CENTER
    view = state.local_view
    cells = (("n", view[y - 1][x]), ("s", view[y + 1][x]), ("w", view[y][x - 1]), ("e", view[y][x + 1]))
    return [(letter, SEMANTIC_NAMES[sid]) for letter, sid in cells]


#: Picks the 3x3 square around the player out of the view's cells: Crafter crafts with what is in it.
_CRAFT_SQUARE = itemgetter(*[_CENTER_CELL + dy * _W + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
#: (action, cost, faced kinds it may go on) of each place_* action, in Crafter's order.
_PLACES = [(f"place_{thing}", tuple(rule["uses"].items()), frozenset(SEMANTIC_IDS[kind] for kind in rule["where"]))
           for thing, rule in PLACE_RULES.items()]
#: (tool, cost, stations it needs in the square) of each make_* action, in Crafter's order.
_MAKES = [(tool, tuple(rule["uses"].items()), frozenset(SEMANTIC_IDS[kind] for kind in rule["nearby"]))
          for tool, rule in MAKE_RULES.items()]


def _affordable(inventory: dict[str, int], cost: tuple[tuple[str, int], ...]) -> bool:
    for item, amount in cost:  # a loop, not all() over a generator: this runs on every brief step
        if inventory.get(item, 0) < amount:
            return False
    return True


def possible_crafts(state: WorldState, cells: bytes | None = None) -> list[str]:
    """The place_* actions that would succeed now, and the make_* actions that would give a tool not
    yet held (a second copy brings nothing).

    Crafter's own rules, applied to what the player can see: the inventory, the faced cell (the
    target must be free ground of an allowed kind) and the 3x3 square around the player (where
    make_* looks for its table and furnace). None while asleep: the game turns every action into
    sleep until energy is full. ``cells``: ``view_cells(state)`` when the caller has it already.
    """
    inventory = state.inventory
    if state.sleeping and inventory.get("energy", 0) < MAX_ITEM["energy"]:
        return []
    if cells is None:
        cells = view_cells(state)
    square = set(_CRAFT_SQUARE(cells))
    can = [action for action, cost, where in _PLACES if state.facing_id in where and _affordable(inventory, cost)]
    can += [f"make_{tool}" for tool, cost, stations in _MAKES
            if stations <= square and not inventory.get(tool, 0) and _affordable(inventory, cost)]
    return can


#: Steps in the order the scripted expert tries them when it walks a path back (north, east, south, west).
_STEPS = ((0, -1), (1, 0), (0, 1), (-1, 0))
_STEP_LETTER = {step: DIRECTIONS[step][0] for step in _STEPS}
_OPPOSITE = {"n": "s", "s": "n", "w": "e", "e": "w"}
#: Per cell of the view, (neighbour cell, step letter) in ``_STEPS`` order, inside the view only.
_NEXT = [[(cell + dy * _W + dx, _STEP_LETTER[(dx, dy)]) for dx, dy in _STEPS
          if 0 <= cell % _W + dx < _W and 0 <= cell // _W + dy < _H] for cell in range(_CELLS)]
#: Per cell, the cells of its 3x3 square (Crafter's crafting square) inside the view.
_SQUARE = [[cell + dy * _W + dx for dx in (-1, 0, 1) for dy in (-1, 0, 1)
            if 0 <= cell % _W + dx < _W and 0 <= cell // _W + dy < _H] for cell in range(_CELLS)]
_WALK_IDS = frozenset(SEMANTIC_IDS[kind] for kind in WALKABLE)
#: (kind id, tool needs) of what a walk can dig through (``rules.TUNNEL_RULES``).
_DIGGABLE = [(SEMANTIC_IDS[kind], tuple(needs.items())) for kind, needs in TUNNEL_RULES.items()
             if kind in SEMANTIC_IDS]
#: Kinds the expert walks next to (to collect, drink, eat, fight), and the stations whose
#: crafting square it walks into.
_HINT_NEXT_TO = frozenset(SEMANTIC_IDS[kind] for kind in
                          ("tree", "water", "cow", "stone", "coal", "iron", "diamond", "zombie", "plant"))
_HINT_SQUARE = frozenset(SEMANTIC_IDS[kind] for kind in ("table", "furnace"))
_HINT_KINDS = _HINT_NEXT_TO | _HINT_SQUARE


def _xy_order(cell: int) -> tuple[int, int]:
    """The expert searches its [x, y] map column by column: equally near goals go by (x, y)."""
    return cell % _W, cell // _W


def first_steps(cells: bytes, inventory: dict[str, int], facing: tuple[int, int]) -> dict[int, str]:
    """The first step (n, s, w or e) of the scripted expert's walk to each kind it walks to in the view.

    Breadth-first from the player over walkable ground and what the inventory's tools can dig,
    toward a cell next to the kind (a walkable cell in the 3x3 square of a table or furnace),
    equally short walks chosen as the expert chooses them; a kind already next to the player
    gets the side that faces it (the faced one first). Why: a tiny student reads ``tree:2n3w``
    and must still work out which way to step around water and rock; the expert's own first
    step is a fact of the view it can copy once it knows what it wants.
    """
    kinds = _HINT_KINDS.intersection(cells)
    if not kinds:
        return {}
    passable = _WALK_IDS.union([kind for kind, needs in _DIGGABLE if _affordable(inventory, needs)])
    dist = [-1] * _CELLS
    dist[_CENTER_CELL] = 0
    frontier, step = [_CENTER_CELL], 0
    while frontier:
        step += 1
        reached = []
        for cell in frontier:
            for near, _ in _NEXT[cell]:
                if dist[near] < 0 and cells[near] in passable:
                    dist[near] = step
                    reached.append(near)
        frontier = reached
    steps: dict[int, str] = {}
    for kind in kinds:
        targets = [cell for cell in range(_CELLS) if cells[cell] == kind]
        if kind in _HINT_SQUARE:
            goals = {near for cell in targets for near in _SQUARE[cell]
                     if near == _CENTER_CELL or cells[near] in _WALK_IDS}
        else:
            goals = {near for cell in targets for near, _ in _NEXT[cell]}
        if _CENTER_CELL in goals:
            if kind in _HINT_NEXT_TO:
                steps[kind] = _facing_side(cells, kind, facing)
            continue
        reachable = [cell for cell in goals if dist[cell] > 0]
        if reachable:
            best = min(dist[cell] for cell in reachable)
            steps[kind] = _first_step(dist, min((c for c in reachable if dist[c] == best), key=_xy_order))
    return steps


def _first_step(dist: list[int], goal: int) -> str:
    """Walk back from ``goal`` to the player, each time to the first neighbour one step nearer."""
    cell, letter = goal, ""
    for d in range(dist[goal] - 1, -1, -1):
        for near, step_letter in _NEXT[cell]:
            if dist[near] == d:
                cell, letter = near, step_letter
                break
    return _OPPOSITE[letter]


def _facing_side(cells: bytes, kind: int, facing: tuple[int, int]) -> str:
    """The side of a ``kind`` cell next to the player: the faced one first, as the expert turns."""
    sides = (facing, *_STEPS) if facing in _STEP_LETTER else _STEPS
    return next(_STEP_LETTER[side] for side in sides if cells[_CENTER_CELL + side[1] * _W + side[0]] == kind)


def render_brief_observation(state: WorldState, *, turn: int, max_steps: int, cells: bytes | None = None) -> str:
    """The facts a tiny model can learn a policy from in minutes of CPU training (~45 tokens).

    No grid: the four neighbouring cells say what blocks a move, the nearest-of-each-kind
    offsets say where to go, a ``can`` line (only when there is something) names the crafts
    that would work now, and the faced cell comes last, next to the reply, because it decides
    the most frequent action (``do``) and short-range dependencies are what a small transformer
    learns first. Why ``can``: without it a tiny student copies "table next to me: craft" and
    stands at its table with no wood, crafting in vain; the line turns the recipe book and the
    counting into a fact it can read (what that is worth: docs/recipe.md's validation table).
    Why vitals and inventory first: they decide which entry of ``near`` matters (wood while
    tools are missing, water when thirsty), and a causal model's tokens only read what came
    before them; written first, every offset in ``near`` can already be read against them, and
    ``around`` sits next to the reply with the faced cell (a student reading it there turns to
    face a zombie beside it 3-4x as often: docs/recipe.md). Each kind the expert walks
    to carries the first step of its walk there (``tree:2n3w>n``, ``first_steps``): the way round
    water and rock is then a fact to copy, not a search a two-layer model cannot do.
    ``cells``: ``view_cells(state)`` when the caller has it already.
    """
    if cells is None:
        cells = view_cells(state)
    short = _short_lines(state, cells, first_steps(cells, state.inventory, state.facing))
    around = "around " + " ".join([f"{letter}:{SEMANTIC_NAMES[cells[cell]]}" for letter, cell in _NEIGHBOUR_CELLS])
    can = possible_crafts(state, cells)
    lines = [short["vitals"], short["inv"]]
    if can:
        lines.append("can " + " ".join(can))
    return "\n".join([*lines, short["near"], around, short["face"]])


def _legend(cells: bytes) -> str:
    """The legend's kinds (all in view but the player), by name."""
    key = frozenset(cells)
    legend = _LEGENDS.get(key)
    if legend is None:
        present = set(key)
        present.discard(_PLAYER_ID)
        legend = ", ".join([_LEGEND_PIECE[sid] for sid in sorted(present, key=_NAME_RANK.__getitem__)])
        if len(_LEGENDS) >= _TEXT_CACHE_MAX:
            _LEGENDS.clear()
        _LEGENDS[key] = legend
    return legend


def _full_inventory(inventory: dict[str, int]) -> tuple[str, str]:
    """The full form's vitals text and inventory text (``name count`` pieces, or ``empty``).

    Keyed by the counts (int counts only: ``True`` and ``1.0`` equal ``1`` but are written
    otherwise): an inventory is the same as on the turn before about half the time.
    """
    try:
        counts = _VITAL_COUNTS(inventory) + _OTHER_COUNTS(inventory)
    except KeyError:  # a partial inventory: missing items count as 0
        get = inventory.get
        items = [f"{name} {inventory[name]}" for name in _OTHER_ITEMS if get(name, 0) > 0]
        return (_VITALS_FORMAT.format(*[get(name, 0) for name in VITALS]), ", ".join(items) if items else "empty")
    ints = _INT.issuperset(map(type, counts))
    texts = _INVENTORY_TEXTS.get(counts) if ints else None
    if texts is None:
        vitals, others = counts[:_VITAL_COUNT], counts[_VITAL_COUNT:]
        held = [f"{name} {count}" for name, count in compress(zip(_OTHER_ITEMS, others), map(gt, others, _ZEROS))]
        texts = _VITALS_FORMAT.format(*vitals), ", ".join(held) if held else "empty"
        if ints:
            if len(_INVENTORY_TEXTS) >= _TEXT_CACHE_MAX:
                _INVENTORY_TEXTS.clear()
            _INVENTORY_TEXTS[counts] = texts
    return texts


def _achievements_line(achievements: dict[str, int]) -> str:
    """``Achievements (n/22): ...``: those with a count above 0, in Crafter's order."""
    try:
        counts = _ACHIEVEMENT_COUNTS(achievements)
    except KeyError:  # a partial dict: missing achievements count as 0
        achieved = achievements.get
        return _unlocked_line([name for name in ACHIEVEMENTS if achieved(name, 0) > 0])
    above = bytes(map(gt, counts, _ZEROS))
    line = _ACHIEVEMENT_LINES.get(above)
    if line is None:
        line = _unlocked_line(list(compress(ACHIEVEMENTS, above)))
        if len(_ACHIEVEMENT_LINES) >= _TEXT_CACHE_MAX:
            _ACHIEVEMENT_LINES.clear()
        _ACHIEVEMENT_LINES[above] = line
    return line


def _unlocked_line(unlocked: list[str]) -> str:
    return f"Achievements ({len(unlocked)}/{len(ACHIEVEMENTS)}): {', '.join(unlocked) if unlocked else 'none'}."


def render_text_observation(state: WorldState, *, turn: int, max_steps: int, cells: bytes | None = None) -> str:
    """The full text observation for one agent turn (``cells``: ``view_cells(state)`` if the caller has it)."""
    if cells is None:
        cells = view_cells(state)
    seen = "; ".join([phrase for _, phrase in _seen(cells)])
    vitals, items = _full_inventory(state.inventory)
    return "\n".join([
        f"Step {state.step}/{max_steps}, turn {turn}, {'day' if state.daylight > 0.5 else 'night'}.",
        "Map (north is up; @ is you):",
        _grid_text(cells),
        f"Legend: @ you, {_legend(cells)}",
        f"You see: {seen or 'nothing'}.",
        f"You face {SEMANTIC_NAMES[state.facing_id]} ({DIRECTIONS.get(state.facing, '?')})"
        + (", asleep." if state.sleeping else "."),
        f"Status: {vitals}.",
        f"Inventory: {items}.",
        _achievements_line(state.achievements),
    ])


#: Observation formats by name (recorded in run records; the agent's system prompt matches).
OBSERVATION_FORMATS = {"full": render_text_observation, "compact": render_compact_observation,
                       "brief": render_brief_observation}
#: Which wording of each format this code writes, raised whenever one changes (brief: 2 added the
#: ``can`` line, 3 put vitals and inventory first, 4 added the first step toward each kind). Work
#: that is resumed (a pipeline folder) records it, so data and a model of an earlier wording are
#: never mixed with this one.
OBSERVATION_REVISIONS = {"full": 1, "compact": 1, "brief": 4}
