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

from typing import Any

import duckdb
from pydantic import BaseModel

from crafter_tui.dataset.select import SELECTED_EPISODES, build_selection, episode_params, typed
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


_EPISODE_STATS = f"""
WITH sel AS ({SELECTED_EPISODES})
SELECT
    (SELECT count(*) FROM episodes),
    (SELECT coalesce(sum(CASE WHEN $trajectory THEN (turns > 0)::BIGINT ELSE turns END), 0) FROM episodes),
    count(*),
    coalesce(sum(CASE WHEN $trajectory THEN (turns > 0)::BIGINT
                      WHEN $drop_invalid THEN greatest(turns - invalid_actions, 0) ELSE turns END), 0),
    avg(num_achievements), avg(reward),
    (SELECT map_entries(histogram(num_achievements)) FROM sel),
    (SELECT map_entries(histogram(a)) FROM (SELECT unnest(achievements) AS a FROM sel)),
    (SELECT map_entries(histogram(termination)) FROM sel)
FROM sel
"""


def episode_stats(cursor: duckdb.DuckDBPyConnection, spec: FilterSpec) -> SelectionStats:
    """Episode-level statistics (one query over the episodes table)."""
    params = episode_params(spec)
    params.update(trajectory=spec.mode == "trajectory", drop_invalid=spec.drop_invalid)
    sql = typed(_EPISODE_STATS).replace("$trajectory", "CAST($trajectory AS BOOLEAN)")
    row = cursor.execute(sql, params).fetchone()
    assert row is not None
    total, examples_total, selected, examples, mean_ach, mean_reward, hist, unlocked, terms = row
    exact = not spec.needs_turns
    if spec.max_examples is not None:
        examples = min(examples, spec.max_examples)
    return SelectionStats(
        episodes_total=total, episodes_selected=selected, examples_total=examples_total,
        examples_selected=examples, examples_exact=exact,
        achievements_histogram=_histogram(hist), success_rates=_rates(unlocked, selected),
        mean_achievements=mean_ach, mean_reward=mean_reward, terminations=_entries(terms),
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
        SELECT map_entries(histogram(a)) FROM (SELECT unnest(actions) AS a FROM selection)""").fetchone()
    stats.examples_selected, stats.examples_train, stats.examples_valid, stats.episodes_valid = row
    stats.examples_exact = True
    stats.action_distribution = dict(sorted(_entries(actions[0] if actions else None).items(),
                                            key=lambda item: (-item[1], item[0])))
    return stats


def _entries(entries: list[dict[str, Any]] | None) -> dict[str, int]:
    return {str(entry["key"]): int(entry["value"]) for entry in entries or []}


def _histogram(entries: list[dict[str, Any]] | None) -> dict[str, int]:
    counts = {int(entry["key"]): int(entry["value"]) for entry in entries or []}
    return {str(k): counts[k] for k in sorted(counts)}


def _rates(entries: list[dict[str, Any]] | None, selected: int) -> dict[str, float]:
    counts = _entries(entries)
    return {name: (counts.get(name, 0) / selected if selected else 0.0) for name in ACHIEVEMENTS}
