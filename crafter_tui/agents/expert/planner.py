"""The expert's decision making: a priority list of goals, each either a plan or a pass.

Every turn the planner builds a ``Context`` (position, inventory, masks of the semantic map)
and asks each goal in ``Planner.goals`` order for a plan; the first goal with one wins. Goals
re-plan from scratch every turn, so a cow walking into the path or a zombie showing up only
changes the next turn. Costs and requirements come from ``world.rules`` (PLACE_RULES,
MAKE_RULES, COLLECT_RULES). A watchdog bans a goal for a while when it stops making
progress, so the expert never loops forever on an unreachable target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from crafter_tui.agents.expert import phrases
from crafter_tui.agents.expert.navigation import (
    CREATURE_NAMES, DIRECTIONS, ID, MOVE_ACTIONS, SOLID_NAMES, WALKABLE_NAMES, at, diggable_names, ids_of,
    in_bounds, mask_of, neighbours, shortest_path, square_neighbours)
from crafter_tui.agents.expert.phrases import where
from crafter_tui.world.env import LOCAL_VIEW, WorldState
from crafter_tui.world.rules import COLLECT_RULES, MAKE_RULES, MAX_ITEM, PLACE_RULES

Cell = tuple[int, int]
WALKABLE_SET = ids_of(*WALKABLE_NAMES)
TOOLS_IN_ORDER = ("wood_pickaxe", "wood_sword", "stone_pickaxe", "stone_sword", "iron_pickaxe", "iron_sword")
MAX_ACTIONS = 3
VIEW_LIMIT = 24  # path steps we accept to reach a target in the view
FAR_LIMIT = 120  # path steps toward remembered places (shelter, planted sapling) and unexplored ground
STALL_TURNS = 40  # turns a goal may run without new items or achievements before it is banned
BAN_TURNS = 60
WOOD_TOOLS_BEFORE_TABLE = 3  # pickaxe, sword, stone pickaxe


@dataclass(slots=True)
class Plan:
    """The actions of one turn and why."""

    actions: list[str]
    reasoning: str
    goal: str


@dataclass
class Memory:
    """What the expert remembers across turns of one episode."""

    shelter: tuple[Cell, Cell] | None = None  # (entry cell A, inward direction d)
    shelter_turns: int = 0
    shelter_still: int = 0  # shelter turns in a row without moving
    last_pos: Cell | None = None
    bad_shelters: set[Cell] = field(default_factory=set)  # entries that did not work out
    plant: tuple[Cell, int] | None = None  # where we planted a sapling, and the step
    goal: str = ""
    goal_turns: int = 0
    progress: tuple = ()
    banned: dict[str, int] = field(default_factory=dict)  # goal -> turn the ban ends
    turn: int = 0
    seen: np.ndarray | None = None  # cells that have been in the local view this episode


class Context:
    """One turn's view of the world, with the masks goals share."""

    def __init__(self, state: WorldState, sem: np.ndarray) -> None:
        self.state = state
        self.sem = sem
        self.pos: Cell = state.position
        self.facing: Cell = state.facing
        self.inv = state.inventory
        self.ach = state.achievements
        self.walk = mask_of(sem, WALKABLE_NAMES)
        self.walk[self.pos] = True
        self.passable = self.walk | mask_of(sem, diggable_names(self.inv))
        self.passable[self.pos] = True
        half_w, half_h = LOCAL_VIEW[0] // 2, LOCAL_VIEW[1] // 2
        self.view = np.zeros_like(self.walk)
        x, y = self.pos
        self.view[max(x - half_w, 0): x + half_w + 1, max(y - half_h, 0): y + half_h + 1] = True
        self.night = state.daylight < 0.5
        # Daylight falls during the first 210 steps of each 300-step day (see CrafterWorld).
        self.dusk = not self.night and state.daylight < 0.8 and state.step % 300 < 210

    def faced(self) -> Cell:
        return (self.pos[0] + self.facing[0], self.pos[1] + self.facing[1])

    def faced_id(self) -> int:
        return at(self.sem, self.faced())

    def has(self, items: dict[str, int]) -> bool:
        return all(self.inv.get(name, 0) >= amount for name, amount in items.items())

    def done(self, achievement: str) -> bool:
        return self.ach.get(achievement, 0) > 0

    def offset(self, cell: Cell) -> Cell:
        return (cell[0] - self.pos[0], cell[1] - self.pos[1])

    def near(self, names: tuple[str, ...], reach: int) -> list[Cell]:
        """Cells of ``names`` within Manhattan ``reach`` of the player, nearest first."""
        x, y = self.pos
        if reach == 1:  # the common case (what is next to us), without array work
            wanted = ids_of(*names)
            cells = [(x + dx, y + dy) for dx, dy in DIRECTIONS]
            return sorted(cell for cell in cells if at(self.sem, cell) in wanted)
        x0, y0 = max(x - reach, 0), max(y - reach, 0)
        xs, ys = np.nonzero(mask_of(self.sem[x0: x + reach + 1, y0: y + reach + 1], names))
        xs, ys = xs + x0, ys + y0
        dist = np.abs(xs - x) + np.abs(ys - y)
        keep = dist <= reach
        xs, ys, dist = xs[keep], ys[keep], dist[keep]
        order = np.lexsort((ys, xs, dist))
        return [(int(xs[i]), int(ys[i])) for i in order]


def path_actions(ctx: Context, path: list[Cell]) -> list[str]:
    """The first straight segment of ``path`` as actions (tunnelling through diggable cells).

    Only one direction per turn: if a creature blocks the first move, later moves of the
    same turn still lead only into cells that were safe when we planned (never into lava).
    """
    actions: list[str] = []
    cur, face = ctx.pos, ctx.facing
    first: Cell | None = None
    for cell in path:
        d = (cell[0] - cur[0], cell[1] - cur[1])
        if first is None:
            first = d
        elif d != first:
            break
        if not ctx.walk[cell]:
            if face != d:
                actions.append(MOVE_ACTIONS[d])
            actions.append("do")
        actions.append(MOVE_ACTIONS[d])
        cur, face = cell, d
        if len(actions) >= MAX_ACTIONS:
            break
    return actions[:MAX_ACTIONS]


_MOVES = {action: d for d, action in MOVE_ACTIONS.items()}
_LAVA = ID["lava"]


def safe_prefix(ctx: Context, actions: list[str]) -> list[str]:
    """``actions`` cut before the first move that could end in lava (the player can walk into it).

    Every outcome is followed: a move into open ground may also be blocked by a creature, and
    ``do`` may have dug out the faced cell, so later moves are checked from every place we
    might be. A plan that would start with such a move becomes a harmless ``noop``.
    """
    states = {(ctx.pos, ctx.facing)}
    dug: set[Cell] = set()
    for index, action in enumerate(actions):
        if action in _MOVES:
            d = _MOVES[action]
            nxt = set()
            for pos, _ in states:
                target = (pos[0] + d[0], pos[1] + d[1])
                if at(ctx.sem, target) == _LAVA:
                    return actions[:index] or ["noop"]
                nxt.add((pos, d))
                if target in dug or (in_bounds(ctx.sem, target) and ctx.walk[target]):
                    nxt.add((target, d))
            states = nxt
        elif action == "do":
            dug.update((pos[0] + f[0], pos[1] + f[1]) for pos, f in states)
    return actions


class Planner:
    """Chooses each turn's plan; one instance per episode."""

    def __init__(self) -> None:
        self.memory = Memory()
        self.goals: list[tuple[str, Callable[[Context], Plan | None]]] = [
            ("sleeping", self._keep_sleeping),
            ("fight", self._fight),
            ("recover", self._recover),
            ("drink_low", lambda c: self._drink(c, urgent=True)),
            ("eat_low", lambda c: self._eat(c, urgent=True)),
            ("sleep", self._sleep),
            ("nap", self._nap),
            ("craft", self._craft),
            ("drink", lambda c: self._drink(c, urgent=False)),
            ("eat", lambda c: self._eat(c, urgent=False)),
            ("zombie", self._hunt_zombie),
            ("wood", self._wood),
            ("table", self._table),
            ("sapling", self._sapling),
            ("place_stone", self._place_stone),
            ("furnace", self._furnace),
            ("stone", self._stone),
            ("iron_station", self._iron_station),
            ("coal", lambda c: self._mine(c, "coal")),
            ("iron", lambda c: self._mine(c, "iron")),
            ("diamond", lambda c: self._mine(c, "diamond")),
            ("eat_plant", self._eat_plant),
            ("explore", self._explore),
        ]

    # -- top level -----------------------------------------------------------------
    def decide(self, state: WorldState, sem: np.ndarray) -> Plan:
        ctx = Context(state, sem)
        memory = self.memory
        memory.turn += 1
        if memory.seen is None or memory.seen.shape != sem.shape:
            memory.seen = np.zeros(sem.shape, bool)
        memory.seen |= ctx.view
        for name, goal in self.goals:
            if memory.banned.get(name, 0) > memory.turn:
                continue
            plan = goal(ctx)
            if plan is not None and plan.actions:
                plan.actions = safe_prefix(ctx, plan.actions)
                self._watch(ctx, plan)
                return plan
        return Plan(["noop"], "Nothing useful to do right now, so I wait a moment.", "wait")

    def _watch(self, ctx: Context, plan: Plan) -> None:
        """Ban a goal that ran ``STALL_TURNS`` turns without new items or achievements."""
        memory = self.memory
        progress = (tuple(sorted(ctx.ach.items())),
                    tuple(v for k, v in sorted(ctx.inv.items()) if k not in ("health", "food", "drink", "energy")))
        if plan.goal != memory.goal or progress != memory.progress:
            memory.goal, memory.goal_turns, memory.progress = plan.goal, 0, progress
            return
        memory.goal_turns += 1
        if memory.goal_turns >= STALL_TURNS and plan.goal not in ("sleeping", "sleep", "explore"):
            memory.banned[plan.goal] = memory.turn + BAN_TURNS
            memory.goal_turns = 0

    # -- shared moves ----------------------------------------------------------------
    def _go_use(self, ctx: Context, names: tuple[str, ...], use: list[str], goal: str, why: str,
                label: str | None = None, limit: int = VIEW_LIMIT, walk_only: bool = False) -> Plan | None:
        """Walk next to the nearest cell of ``names`` in the view, face it, run ``use``.

        Only targets in the 9x7 view: the expert is a teacher, and a move toward water or a cow
        out of sight cannot be learned from the observation a student gets (the same expert
        scores as well: it explores until the target comes into view). ``walk_only`` forbids
        tunnelling (for creatures: never dig out of a shelter to chase one).
        """
        targets = mask_of(ctx.sem, names) & ctx.view
        if not targets.any():
            return None
        label = label or names[0]
        passable = ctx.walk if walk_only else ctx.passable
        path = shortest_path(passable, ctx.pos, neighbours(targets) & passable, limit)
        if path is None:
            return None
        end = path[-1] if path else ctx.pos
        target = self._adjacent_target(ctx, end, targets)
        dx, dy = ctx.offset(target)
        if path:
            return Plan(path_actions(ctx, path), f"{where(label, dx, dy)}. {why}", goal)
        direction = (target[0] - ctx.pos[0], target[1] - ctx.pos[1])
        actions = [] if ctx.facing == direction else [MOVE_ACTIONS[direction]]
        actions += use
        text = f"I face the {label}" if not actions[0].startswith("move") else where(label, dx, dy)
        return Plan(actions[:MAX_ACTIONS], f"{text}. {why}", goal)

    @staticmethod
    def _adjacent_target(ctx: Context, cell: Cell, targets: np.ndarray) -> Cell:
        """The target next to ``cell``: the faced one if we stand there, else in fixed order."""
        if cell == ctx.pos and in_bounds(targets, ctx.faced()) and targets[ctx.faced()]:
            return ctx.faced()
        for dx, dy in DIRECTIONS:
            near = (cell[0] + dx, cell[1] + dy)
            if in_bounds(targets, near) and targets[near]:
                return near
        return cell

    def _go_to(self, ctx: Context, goals: np.ndarray, limit: int) -> list[Cell] | None:
        return shortest_path(ctx.passable, ctx.pos, goals, limit) if goals.any() else None

    def _place(self, ctx: Context, item: str, why: str, goal: str) -> Plan | None:
        """Place ``item`` on the faced cell, turning or stepping first to face a valid cell."""
        rule = PLACE_RULES[item]
        if not ctx.has(rule["uses"]):
            return None
        valid = ids_of(*rule["where"])
        action = f"place_{item}"
        if ctx.faced_id() in valid:
            return Plan([action], f"I face open ground. {why}", goal)
        x, y = ctx.pos
        for d in DIRECTIONS:  # a valid cell we can face without stepping (e.g. water for stone)
            cell = (x + d[0], y + d[1])
            if at(ctx.sem, cell) in valid and not ctx.walk[cell] and at(ctx.sem, cell) != ID["lava"]:
                return Plan([MOVE_ACTIONS[d], action], f"I turn {phrases.heading(*d)} to face a free cell. {why}", goal)
        for d in DIRECTIONS:  # step back and forth to face a free neighbour
            back = (x - d[0], y - d[1])
            cell = (x + d[0], y + d[1])
            if at(ctx.sem, cell) in valid and ctx.walk[cell] and in_bounds(ctx.sem, back) and ctx.walk[back] \
                    and at(ctx.sem, back) in WALKABLE_SET:
                back_dir = (-d[0], -d[1])
                return Plan([MOVE_ACTIONS[back_dir], MOVE_ACTIONS[d], action],
                            f"I step back and turn {phrases.heading(*d)} to face open ground. {why}", goal)
        for d in DIRECTIONS:  # walk on to find open ground
            cell = (x + d[0], y + d[1])
            if at(ctx.sem, cell) in WALKABLE_SET:
                return Plan([MOVE_ACTIONS[d]], f"There is no room here, so I step {phrases.heading(*d)}. {why}", goal)
        return None

    # -- survival --------------------------------------------------------------------
    def _keep_sleeping(self, ctx: Context) -> Plan | None:
        if not ctx.state.sleeping:
            return None
        energy, full = ctx.inv["energy"], MAX_ITEM["energy"]
        if energy >= full:
            return Plan(["sleep"], f"I am asleep with energy {energy}/{full}; I am rested and about to wake up.",
                        "sleeping")
        return Plan(["sleep"] * MAX_ACTIONS, f"I am asleep with energy {energy}/{full}; "
                                             "I keep sleeping until I am rested.", "sleeping")

    def _fight(self, ctx: Context) -> Plan | None:
        """Hit a zombie or skeleton standing next to us (turning to face it first)."""
        for name in ("zombie", "skeleton"):
            if ctx.near((name,), 1):
                weapon = "my sword" if any(ctx.inv.get(t, 0) for t in TOOLS_IN_ORDER if t.endswith("sword")) \
                    else "my bare hands"
                return self._go_use(ctx, (name,), ["do", "do"], "fight",
                                    f"It would hurt me, so I attack it with {weapon}.", limit=1, walk_only=True)
        return None

    def _drink(self, ctx: Context, urgent: bool) -> Plan | None:
        """Drink when low (urgent), top up to full once at the water, or for the achievement."""
        drink, full = ctx.inv["drink"], MAX_ITEM["drink"]
        if drink >= full:
            return None
        at_water = bool(ctx.near(("water",), 1))
        low = self._low_mark(ctx)
        if urgent and drink > low and not at_water:
            return None
        if not urgent and ctx.done("collect_drink") and drink > (7 if ctx.dusk else 6):
            return None
        sips = max(1, min(MAX_ACTIONS, full - drink))
        why = f"My drink is {drink}/{full}, so I drink until I am full."
        if ctx.dusk and not urgent:
            why = f"It is getting dark and my drink is {drink}/{full}; I drink before I shelter for the night."
        return self._go_use(ctx, ("water",), ["do"] * sips, "drink", why)

    def _eat(self, ctx: Context, urgent: bool) -> Plan | None:
        """Hunt a cow when hungry (urgent), when one is close, or for the achievement."""
        food, full = ctx.inv["food"], MAX_ITEM["food"]
        if food >= full:
            return None
        low = self._low_mark(ctx)
        if urgent and food > low and not (food <= 6 and ctx.near(("cow",), 1)):
            return None
        if not urgent and ctx.done("eat_cow") and food > 6:
            return None
        why = f"My food is {food}/{full}, so I hunt the cow for food."
        return self._go_use(ctx, ("cow",), ["do", "do"], "eat", why, walk_only=self._enclosed(ctx) and not urgent)

    def _low_mark(self, ctx: Context) -> int:
        """Food or drink at or below this sends us out: later when walled in at night or hurt,
        where leaving the shelter costs more than a few points of food or drink."""
        if self._enclosed(ctx) and (ctx.night or ctx.inv["health"] <= 4):
            return 1 if ctx.night else 2
        return 4

    # -- sleeping in a shelter -------------------------------------------------------
    def _sleep(self, ctx: Context) -> Plan | None:
        """Wall ourselves in to sleep when tired or hurt, and to wait out the night."""
        energy, health = ctx.inv["energy"], ctx.inv["health"]
        can_sleep = energy < MAX_ITEM["energy"]
        tired = energy <= 3
        hurt = health <= 4 and ctx.inv["food"] > 2 and ctx.inv["drink"] > 2
        night = ctx.night and ctx.done("make_wood_pickaxe")
        early_rest = not ctx.done("wake_up") and energy < MAX_ITEM["energy"] - 1 \
            and ctx.done("make_stone_pickaxe") and ctx.inv["stone"] >= 2
        if not (tired or hurt or night or early_rest):
            self.memory.shelter = None
            return None
        why = f"My energy is {energy}/{MAX_ITEM['energy']}" if (tired or early_rest or not (hurt or night)) \
            else f"My health is {health}/{MAX_ITEM['health']}" if hurt else "It is night"
        if self._enclosed(ctx):
            if can_sleep:
                return Plan(["sleep"] * MAX_ACTIONS, f"{why} and I am walled in, so I sleep safely.", "sleep")
            return Plan(["noop"] * MAX_ACTIONS, f"{why}; I am rested and walled in, so I wait here "
                                                "until it is safe to go out.", "sleep")
        plan = self._build_shelter(ctx, why)
        if plan is not None:
            return plan
        if energy <= 1:
            return Plan(["sleep"], f"{why}; I am exhausted and must sleep where I stand.", "sleep")
        return None

    def _nap(self, ctx: Context) -> Plan | None:
        """Sleep in the open the first time energy drops, in daylight with no enemy in sight.

        Waking up is an achievement, and energy 8 of 9 takes ~11 steps of sleep to refill: the
        cheapest achievement of the game, early in the first day when zombies are few. A student
        learns it from what it sees: its vitals just below full, no zombie in the near list.
        """
        energy = ctx.inv["energy"]
        if ctx.done("wake_up") or energy >= MAX_ITEM["energy"] or ctx.night or ctx.dusk:
            return None
        if ctx.inv["health"] < 6 or min(ctx.inv["food"], ctx.inv["drink"]) <= 2:
            return None
        if (mask_of(ctx.sem, ("zombie", "skeleton", "arrow")) & ctx.view).any():
            return None
        return Plan(["sleep"], f"My energy is {energy}/{MAX_ITEM['energy']} and no enemy is in sight, "
                               "so I take a short nap.", "nap")

    def _recover(self, ctx: Context) -> Plan | None:
        """Badly hurt but fed and watered: wall in first and heal before running errands."""
        if ctx.inv["health"] > 4 or min(ctx.inv["food"], ctx.inv["drink"]) <= 2:
            return None
        return self._sleep(ctx)

    def _enclosed(self, ctx: Context) -> bool:
        """True when zombies cannot reach a cell next to us (our pocket has at most 2 cells)."""
        open_ground = ctx.walk | mask_of(ctx.sem, CREATURE_NAMES)
        region = {ctx.pos}
        stack = [ctx.pos]
        while stack:
            x, y = stack.pop()
            for dx, dy in DIRECTIONS:
                cell = (x + dx, y + dy)
                if in_bounds(ctx.sem, cell) and open_ground[cell] and cell not in region:
                    region.add(cell)
                    if len(region) > 2:
                        return False
                    stack.append(cell)
        return True

    def _build_shelter(self, ctx: Context, why: str) -> Plan | None:
        memory = self.memory
        memory.shelter_turns += 1
        memory.shelter_still = memory.shelter_still + 1 if memory.last_pos == ctx.pos else 0
        memory.last_pos = ctx.pos
        if memory.shelter is not None and (memory.shelter_turns > 30 or memory.shelter_still >= 4):
            memory.bad_shelters.add(memory.shelter[0])  # blocked or too slow: try another pocket
            memory.shelter = None
        if memory.shelter is None:
            memory.shelter, memory.shelter_turns, memory.shelter_still = self._find_shelter(ctx), 0, 0
        if memory.shelter is None:
            return None
        a, d = memory.shelter
        b = (a[0] + d[0], a[1] + d[1])
        c = (b[0] + d[0], b[1] + d[1])
        beyond = (c[0] + d[0], c[1] + d[1])
        back = (-d[0], -d[1])
        into, out = MOVE_ACTIONS[d], MOVE_ACTIONS[back]
        pos = ctx.pos
        if pos == a:
            dig = [] if ctx.walk[b] else ([] if ctx.facing == d else [into]) + ["do"]
            return Plan(dig + [into], f"{why}; I dig a narrow pocket {phrases.heading(*d)} to sleep in.", "sleep")
        if pos == b and ctx.facing == d:
            dig = [] if ctx.walk[c] else ["do"]
            return Plan(dig + [into], f"{why}; I go deeper into the pocket.", "sleep")
        if pos == c:
            if ctx.walk[beyond] and at(ctx.sem, beyond) in WALKABLE_SET:
                if ctx.facing != d:
                    memory.shelter = None
                    return None
                return Plan(["place_stone", out], f"{why}; I block the far end with stone and step back.", "sleep")
            return Plan([out], f"{why}; the far end is closed, so I step back to seal the entrance.", "sleep")
        if pos == b and ctx.facing == back:
            return Plan(["place_stone"], f"{why}; I seal the entrance with stone behind me.", "sleep")
        path = self._go_to(ctx, self._single(ctx, a), FAR_LIMIT)
        if path is None:
            memory.shelter = None
            return None
        dx, dy = ctx.offset(a)
        return Plan(path_actions(ctx, path), f"{why}; I head {phrases.heading(dx, dy)} to a sheltered spot "
                                             "between rocks where zombies cannot reach me.", "sleep")

    @staticmethod
    def _single(ctx: Context, cell: Cell) -> np.ndarray:
        goals = np.zeros_like(ctx.walk)
        goals[cell] = True
        return goals

    def _find_shelter(self, ctx: Context) -> tuple[Cell, Cell] | None:
        """The nearest two-cell pocket B, C = B + d entered from A = B - d.

        The sides of B and C must be solid (zombies cannot enter); B and C open or diggable;
        the far end C + d solid, or open ground we seal with stone (needs a second stone).
        """
        sem = ctx.sem
        stone = ctx.inv.get("stone", 0)
        if stone < 1:
            return None
        solid = mask_of(sem, SOLID_NAMES)
        open_or_dig = ctx.passable & ~mask_of(sem, CREATURE_NAMES)
        walk = ctx.walk
        candidates = np.zeros_like(ctx.walk)
        entries: dict[Cell, Cell] = {}
        for d in DIRECTIONS:
            p = (d[1], d[0])  # perpendicular to d
            ok = _shift(walk, -d[0], -d[1]) & open_or_dig & _shift(open_or_dig, d[0], d[1])
            for k in (0, 1):
                for s in (1, -1):
                    ok &= _shift(solid, k * d[0] + s * p[0], k * d[1] + s * p[1])
            far_end = _shift(solid, 2 * d[0], 2 * d[1])
            if stone >= 2:
                far_end |= _shift(walk, 2 * d[0], 2 * d[1])
            ok &= far_end
            xs, ys = np.nonzero(ok)  # ok marks the B cells
            for x, y in zip(xs.tolist(), ys.tolist()):
                a = (x - d[0], y - d[1])
                if a not in entries and a not in self.memory.bad_shelters:
                    entries[a] = d
                    candidates[a] = True
        for sx, sy in ctx.near(("skeleton",), 40):  # skeletons shoot down tunnels: keep away
            candidates[max(sx - 6, 0): sx + 7, max(sy - 6, 0): sy + 7] = False
        if not candidates.any():
            return None
        path = shortest_path(ctx.walk, ctx.pos, candidates, 40)
        if path is None:
            return None
        a = path[-1] if path else ctx.pos
        return a, entries[a]

    # -- tools and materials -----------------------------------------------------------
    def _pending_tools(self, ctx: Context) -> list[str]:
        return [tool for tool in TOOLS_IN_ORDER if ctx.inv.get(tool, 0) == 0]

    def _craft(self, ctx: Context) -> Plan | None:
        """Make every affordable missing tool, walking to its table (and furnace) first."""
        affordable = [t for t in self._pending_tools(ctx) if ctx.has(MAKE_RULES[t]["uses"])]
        if not affordable:
            return None
        here = [t for t in affordable if self._nearby_ok(ctx, ctx.pos, MAKE_RULES[t]["nearby"])]
        if here:
            chosen = self._fit_budget(ctx, here)
            names = " and a ".join(t.replace("_", " ") for t in chosen)
            stations = MAKE_RULES[chosen[0]]["nearby"]
            needs = " and ".join(stations) + (" are" if len(stations) > 1 else " is")
            return Plan([f"make_{t}" for t in chosen], f"The {needs} next to me and I have the materials, "
                                                       f"so I make a {names}.", "craft")
        if not self._gathered_enough(ctx):
            affordable = [t for t in affordable if "furnace" in MAKE_RULES[t]["nearby"]]
        for tool in affordable:
            nearby = MAKE_RULES[tool]["nearby"]
            goals = ctx.walk.copy()
            for name in nearby:
                goals &= square_neighbours(mask_of(ctx.sem, (name,)))
            path = self._go_to(ctx, goals, 30)
            if path:
                station = nearby[-1]
                target = self._nearest(ctx, station)
                dx, dy = ctx.offset(target)
                return Plan(path_actions(ctx, path), f"{where(station, dx, dy)}. I have the materials for a "
                                                     f"{tool.replace('_', ' ')}, so I go there to craft it.", "craft")
        return None

    def _gathered_enough(self, ctx: Context) -> bool:
        """Whether to walk back to the table now rather than mine the stone we still want
        (one trip crafts the stone pickaxe and sword together and brings the furnace stone)."""
        if not ctx.has(COLLECT_RULES["stone"]["require"]) or ctx.inv["stone"] >= self._stone_needed(ctx):
            return True
        return self.memory.banned.get("stone", 0) > self.memory.turn or self._stone(ctx) is None

    @staticmethod
    def _fit_budget(ctx: Context, tools: list[str]) -> list[str]:
        """The tools we can make one after another with what we have."""
        left = dict(ctx.inv)
        chosen = []
        for tool in tools:
            uses = MAKE_RULES[tool]["uses"]
            if all(left.get(k, 0) >= v for k, v in uses.items()):
                for k, v in uses.items():
                    left[k] -= v
                chosen.append(tool)
        return chosen[:MAX_ACTIONS]

    @staticmethod
    def _nearby_ok(ctx: Context, cell: Cell, names: list[str]) -> bool:
        x, y = cell
        square = ctx.sem[max(x - 1, 0): x + 2, max(y - 1, 0): y + 2]
        return all((square == ID[name]).any() for name in names)

    def _nearest(self, ctx: Context, name: str) -> Cell:
        cells = ctx.near((name,), 200)
        return cells[0] if cells else ctx.pos

    def _wood_needed(self, ctx: Context) -> int:
        """Wood for the missing tools; before the first table only for it and the first tools
        (trees may be scarce: better to start crafting early and top up when trees are in view)."""
        pending = self._pending_tools(ctx)
        if not ctx.done("place_table"):
            pending = pending[:WOOD_TOOLS_BEFORE_TABLE]
        need = sum(MAKE_RULES[t]["uses"].get("wood", 0) for t in pending)
        if not ctx.done("place_table"):
            need += PLACE_RULES["table"]["uses"].get("wood", 0)
        return min(need, MAX_ITEM["wood"])

    def _wood(self, ctx: Context) -> Plan | None:
        wood, need = ctx.inv["wood"], self._wood_needed(ctx)
        if wood >= need:
            return None
        why = f"I have {wood} wood and want {need} for a table and tools, so I collect wood."
        return self._go_use(ctx, ("tree",), ["do"] * min(MAX_ACTIONS, need - wood), "wood", why)

    def _table(self, ctx: Context) -> Plan | None:
        cost = PLACE_RULES["table"]["uses"]
        if ctx.done("place_table"):
            # A second table only when a tool is affordable but every table is far away.
            affordable = [t for t in self._pending_tools(ctx) if ctx.has(MAKE_RULES[t]["uses"])
                          and MAKE_RULES[t]["nearby"] == ["table"]]
            spare = {k: v + 1 for k, v in cost.items()}
            if not affordable or not ctx.has(spare):
                return None
        return self._place(ctx, "table", "I have enough wood, so I place a crafting table here.", "table")

    def _sapling(self, ctx: Context) -> Plan | None:
        if ctx.done("place_plant") or not ctx.done("make_wood_pickaxe"):
            return None
        if ctx.inv["sapling"] > 0:
            plan = self._place(ctx, "plant", "I plant my sapling so it can grow into food.", "sapling")
            if plan and plan.actions[-1] == "place_plant" and len(plan.actions) == 1:
                self.memory.plant = (ctx.faced(), ctx.state.step)
            return plan
        if ctx.faced_id() == ID["grass"]:
            return Plan(["do", "do", "do"], "I face grass; I search it for a sapling to plant.", "sapling")
        x, y = ctx.pos
        for d in DIRECTIONS:
            cell, ahead = (x + d[0], y + d[1]), (x + 2 * d[0], y + 2 * d[1])
            if at(ctx.sem, cell) in (ID["grass"], ID["sand"], ID["path"]) and at(ctx.sem, ahead) == ID["grass"]:
                return Plan([MOVE_ACTIONS[d], "do"], f"There is grass {phrases.heading(*d)}; I step toward it "
                                                     "and search it for a sapling.", "sapling")
        return None

    def _stone_needed(self, ctx: Context) -> int:
        need = sum(MAKE_RULES[t]["uses"].get("stone", 0) for t in self._pending_tools(ctx))
        if not ctx.done("place_furnace"):
            need += PLACE_RULES["furnace"]["uses"].get("stone", 0)
        if not ctx.done("place_stone"):
            need += 1
        return min(need + 2, MAX_ITEM["stone"])  # two spare to wall in a sleeping pocket

    def _stone(self, ctx: Context) -> Plan | None:
        if not ctx.has(COLLECT_RULES["stone"]["require"]):
            return None
        stone, need = ctx.inv["stone"], self._stone_needed(ctx)
        if stone >= need:
            return None
        why = f"I have {stone} stone and want {need} for tools, a furnace and building, so I mine it."
        return self._go_use(ctx, ("stone",), ["do"], "stone", why)

    def _place_stone(self, ctx: Context) -> Plan | None:
        if ctx.done("place_stone") or ctx.inv["stone"] < 1:
            return None
        valid = ids_of(*PLACE_RULES["stone"]["where"])
        if ctx.faced_id() in valid:
            return Plan(["place_stone"], "I face open ground and carry stone; I place a stone block.", "place_stone")
        return None

    def _furnace(self, ctx: Context) -> Plan | None:
        """Place the first furnace beside a table (iron tools need both within reach)."""
        cost = dict(PLACE_RULES["furnace"]["uses"])
        for tool in self._pending_tools(ctx):  # keep the stone the stone tools still need
            if "furnace" not in MAKE_RULES[tool]["nearby"]:
                for item, amount in MAKE_RULES[tool]["uses"].items():
                    if item in cost:
                        cost[item] += amount
        if ctx.done("place_furnace") or not ctx.has(cost):
            return None
        return self._station(ctx, "furnace", "I have the stone, so I place a furnace next to the table "
                                             "for iron tools.")

    def _iron_station(self, ctx: Context) -> Plan | None:
        """Iron tools affordable but no table and furnace side by side within reach: build them."""
        iron_tools = [t for t in self._pending_tools(ctx) if "furnace" in MAKE_RULES[t]["nearby"]
                      and ctx.has(MAKE_RULES[t]["uses"])]
        if not iron_tools:
            return None
        both = square_neighbours(mask_of(ctx.sem, ("table",))) & square_neighbours(mask_of(ctx.sem, ("furnace",)))
        if self._go_to(ctx, both & ctx.walk, 30) is not None:
            return None  # the craft goal walks there
        uses = MAKE_RULES[iron_tools[0]]["uses"]
        table_cost = {k: v + uses.get(k, 0) for k, v in PLACE_RULES["table"]["uses"].items()}
        if not self._nearby_ok(ctx, ctx.pos, ["table"]):
            if not ctx.has(table_cost):
                return None
            return self._place(ctx, "table", "No table is close, so I place a new one here for iron tools.",
                               "iron_station")
        if not ctx.has(PLACE_RULES["furnace"]["uses"]):
            return None
        return self._station(ctx, "iron_station", "I place a furnace next to this table to make iron tools.")

    def _station(self, ctx: Context, goal: str, why: str) -> Plan | None:
        """Place a furnace within crafting reach of a table: walk to a close table, else use a
        new table here (when there is wood for it), else place the furnace here anyway."""
        if self._nearby_ok(ctx, ctx.pos, ["table"]):
            return self._place(ctx, "furnace", f"The table is next to me. {why}", goal)
        tables = mask_of(ctx.sem, ("table",))
        path = self._go_to(ctx, square_neighbours(tables) & ctx.walk, 15) if tables.any() else None
        if path:
            dx, dy = ctx.offset(self._nearest(ctx, "table"))
            return Plan(path_actions(ctx, path), f"{where('table', dx, dy)}. {why}", goal)
        if ctx.has(PLACE_RULES["table"]["uses"]):
            return self._place(ctx, "table", "No table is close, so I place a new one here to put a furnace "
                                             "beside it.", goal)
        return self._place(ctx, "furnace", "No table is close, but I have the stone: I place a furnace here.", goal)

    def _mine(self, ctx: Context, material: str) -> Plan | None:
        rule = COLLECT_RULES[material]
        if not ctx.has(rule["require"]):
            return None
        uses = sum(MAKE_RULES[t]["uses"].get(material, 0) for t in self._pending_tools(ctx))
        have = ctx.inv.get(material, 0)
        if material != "diamond" and have >= uses:
            return None
        why = f"I can mine {material} with my pickaxe" + (f" and need {uses} for iron tools." if uses else ".")
        return self._go_use(ctx, (material,), ["do"], material, why)

    def _hunt_zombie(self, ctx: Context) -> Plan | None:
        if ctx.done("defeat_zombie") or ctx.inv["health"] < 6 or not ctx.near(("zombie",), 4):
            return None
        return self._go_use(ctx, ("zombie",), ["do", "do"], "zombie",
                            "I am healthy, so I fight it to defeat a zombie.", limit=8, walk_only=True)

    def _eat_plant(self, ctx: Context) -> Plan | None:
        planted = self.memory.plant
        if planted is None or ctx.done("eat_plant"):
            return None
        cell, step = planted
        if at(ctx.sem, cell) != ID["plant"]:
            self.memory.plant = None
            return None
        if ctx.state.step - step < 320:
            return None
        targets = self._single(ctx, cell)
        path = self._go_to(ctx, neighbours(targets) & ctx.walk, FAR_LIMIT)
        if path is None:
            return None
        if path:
            dx, dy = ctx.offset(cell)
            return Plan(path_actions(ctx, path), f"{where('plant', dx, dy)}. My sapling should be ripe by now, "
                                                 "so I go back to eat it.", "eat_plant")
        direction = ctx.offset(cell)
        turn = [] if ctx.facing == direction else [MOVE_ACTIONS[direction]]
        return Plan(turn + ["do"], "My plant is next to me and should be ripe; I eat it.", "eat_plant")

    # -- exploring -----------------------------------------------------------------
    def _explore(self, ctx: Context) -> Plan | None:
        """Walk toward the nearest ground never seen yet, else toward far-away open ground."""
        unseen = ctx.walk & ~self.memory.seen
        path = self._go_to(ctx, unseen, FAR_LIMIT)
        if not path:
            x, y = ctx.pos
            xs, ys = np.indices(ctx.walk.shape)
            far = (np.abs(xs - x) + np.abs(ys - y)) >= 8 + (self.memory.turn // 50) % 8
            path = self._go_to(ctx, far & ctx.walk, FAR_LIMIT)
        if not path:
            return None
        dx, dy = ctx.offset(path[-1])
        return Plan(path_actions(ctx, path), f"Nothing I need is in view, so I explore {phrases.heading(dx, dy)}.",
                    "explore")

def _shift(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(mask)
    w, h = mask.shape
    xs_dst = slice(max(-dx, 0), w - max(dx, 0))
    xs_src = slice(max(dx, 0), w - max(-dx, 0))
    ys_dst = slice(max(-dy, 0), h - max(dy, 0))
    ys_src = slice(max(dy, 0), h - max(-dy, 0))
    out[xs_dst, ys_dst] = mask[xs_src, ys_src]
    return out
