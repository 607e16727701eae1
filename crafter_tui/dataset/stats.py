"""Selection statistics: what a filter keeps, answered in milliseconds from the episode table.

Two levels:
- episode level (``turn_level=False``): counts, achievements histogram, success rates,
  examples (exact whenever the spec needs no per-turn data: turns per episode are in the
  summaries), from the ``episodes`` table only. This is what a threshold change re-runs.
- turn level: the full selection (dedupe, balance, keep-before-achievement, max examples,
  validation split) from the turn index, plus the action distribution.
Tokens and cost come from ``dataset.tokens`` (they need the texts).
"""

from __future__ import annotations

import functools
from typing import Any

import duckdb
from pydantic import BaseModel

from crafter_tui.dataset.select import EPISODE_WHERE, build_selection, episode_params, typed
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.world.rules import ACHIEVEMENTS


class TokenStats(BaseModel):
    """Training tokens of the selection (exact or estimated from a seeded sample)."""

    encoding: str
    method: str  # "exact" | "sampled"
    examples_counted: int
    total: int
    per_example_mean: float
    per_example_max: int
    assistant_total: int
    over_limit: int = 0


class CostEstimate(BaseModel):
    model: str
    epochs: int
    price_per_million: float
    price_date: str
    billed_tokens: int
    usd: float


class SelectionStats(BaseModel):
    """Everything the filter command prints and the filter screen shows."""

    episodes_total: int
    episodes_selected: int
    examples_total: int  # examples the whole store would give in this mode (no filters)
    examples_selected: int
    examples_exact: bool
    examples_train: int | None = None
    examples_valid: int | None = None
    episodes_valid: int | None = None
    achievements_histogram: dict[str, int]
    success_rates: dict[str, float]
    mean_achievements: float | None = None
    mean_reward: float | None = None
    terminations: dict[str, int] = {}
    action_distribution: dict[str, int] | None = None
    tokens: TokenStats | None = None
    cost: CostEstimate | None = None


# The selection grouped by what the statistics need: few groups, so the rest is cheap Python.
# (One GROUP BY is about half the cost of per-column histograms in DuckDB.)
_GROUPS = f"""
SELECT e.num_achievements, e.termination, e.ach_mask, count(*), sum(e.turns),
       sum(greatest(e.turns - e.invalid_actions, 0)), count(*) FILTER (WHERE e.turns > 0), sum(e.reward)
FROM episodes e WHERE {EPISODE_WHERE}
GROUP BY ALL
"""
_TOTALS = "SELECT count(*), coalesce(sum(turns), 0), count(*) FILTER (WHERE turns > 0) FROM episodes"


@functools.lru_cache(maxsize=1)
def _groups_sql() -> str:
    return typed(_GROUPS)


def episode_stats(cursor: duckdb.DuckDBPyConnection, spec: FilterSpec) -> SelectionStats:
    """Episode-level statistics (two small queries over the episodes table)."""
    total, turns_all, nonempty_all = cursor.execute(_TOTALS).fetchone()  # type: ignore[misc]
    groups = cursor.execute(_groups_sql(), episode_params(spec)).fetchall()
    trajectory = spec.mode == "trajectory"
    histogram: dict[int, int] = {}
    terminations: dict[str, int] = {}
    unlocked = dict.fromkeys(ACHIEVEMENTS, 0)
    selected = examples = achievements_sum = 0
    reward_sum = 0.0
    for n_ach, termination, mask, count, turns, valid_turns, nonempty, reward in groups:
        selected += count
        examples += nonempty if trajectory else (valid_turns if spec.drop_invalid else turns)
        achievements_sum += n_ach * count
        reward_sum += reward
        histogram[n_ach] = histogram.get(n_ach, 0) + count
        terminations[termination] = terminations.get(termination, 0) + count
        for index, name in enumerate(ACHIEVEMENTS):
            if mask >> index & 1:
                unlocked[name] += count
    if spec.max_examples is not None:
        examples = min(examples, spec.max_examples)
    return SelectionStats(
        episodes_total=total, episodes_selected=selected,
        examples_total=nonempty_all if trajectory else turns_all,
        examples_selected=examples, examples_exact=not spec.needs_turns,
        achievements_histogram={str(k): histogram[k] for k in sorted(histogram)},
        success_rates={name: (count / selected if selected else 0.0) for name, count in unlocked.items()},
        mean_achievements=achievements_sum / selected if selected else None,
        mean_reward=reward_sum / selected if selected else None,
        terminations=dict(sorted(terminations.items())),
    )


def turn_stats(cursor: duckdb.DuckDBPyConnection, spec: FilterSpec) -> SelectionStats:
    """Full statistics over the materialised selection (the turn index must be loaded)."""
    stats = episode_stats(cursor, spec)
    build_selection(cursor, spec)
    row = cursor.execute("""
        SELECT count(DISTINCT example_key), count(DISTINCT example_key) FILTER (WHERE NOT is_valid),
               count(DISTINCT example_key) FILTER (WHERE is_valid),
               count(DISTINCT (run_id, episode)) FILTER (WHERE is_valid)
        FROM selection""").fetchone()
    assert row is not None
    actions = cursor.execute("""
        SELECT map_entries(histogram(a)) FROM (
            SELECT unnest(ti.actions) AS a FROM selection s
            JOIN turn_index ti USING (run_id, episode, attempt, turn))""").fetchone()
    stats.examples_selected, stats.examples_train, stats.examples_valid, stats.episodes_valid = row
    stats.examples_exact = True
    stats.action_distribution = dict(sorted(_entries(actions[0] if actions else None).items(),
                                            key=lambda item: (-item[1], item[0])))
    return stats


def _entries(entries: list[dict[str, Any]] | None) -> dict[str, int]:
    return {str(entry["key"]): int(entry["value"]) for entry in entries or []}
