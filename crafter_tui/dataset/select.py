"""From a ``FilterSpec`` to the selected episodes, turns and examples, in SQL.

Every statement here is assembled only from constant fragments chosen by booleans of the
spec (never from its strings or numbers); all values are bound as named parameters.

Turn mode, in order: episode filter -> turns of the summarised attempt -> drop invalid turns
-> keep the K turns leading to each new achievement -> dedupe identical (history window +
reply) examples -> cap over-represented first actions -> ``max_examples`` (seeded) ->
validation split by episode (seeded). Trajectory mode: one example per episode (or, with
``keep_before_achievement``, per run of consecutive kept turns); ``drop_invalid`` there drops
episodes that contain an invalid turn, because an example is a whole conversation.
"""

from __future__ import annotations

import functools
from typing import Any

import duckdb

from crafter_tui.dataset.spec import COMPLETED_TERMINATIONS, FilterSpec
from crafter_tui.traces.sql import NUM_ACHIEVEMENTS
from crafter_tui.world.rules import ACHIEVEMENTS

_TERMINATIONS = ", ".join(f"'{name}'" for name in COMPLETED_TERMINATIONS)  # constants, not input

EPISODE_WHERE = f"""
    ($min_achievements IS NULL OR e.num_achievements >= $min_achievements)
    AND ($min_reward IS NULL OR e.reward >= $min_reward)
    AND ($max_turns IS NULL OR e.turns <= $max_turns)
    AND (NOT $require_termination OR e.termination IN ({_TERMINATIONS}))
    AND (len($models) = 0 OR list_contains($models, e.model))
    AND (len($runs) = 0 OR list_contains($runs, e.run_id))
    AND (e.ach_mask & $required_mask) = $required_mask
    AND ($min_progression IS NULL OR e.num_achievements >= $min_progression * {NUM_ACHIEVEMENTS} - 1e-9)
    AND (NOT $whole_episode_valid OR e.invalid_actions = 0)
    AND ($max_invalid_fraction IS NULL OR e.invalid_actions <= $max_invalid_fraction * e.turns + 1e-9)
"""

SELECTED_EPISODES = f"SELECT e.* FROM episodes e WHERE {EPISODE_WHERE}"


def episode_params(spec: FilterSpec) -> dict[str, Any]:
    """Named parameters of ``EPISODE_WHERE`` (typed so DuckDB never guesses)."""
    return {
        "min_achievements": spec.min_achievements,
        "min_reward": spec.min_reward,
        "max_turns": spec.max_turns,
        "require_termination": spec.require_termination,
        "models": list(spec.models),
        "runs": list(spec.runs),
        "required_mask": sum(1 << ACHIEVEMENTS.index(name) for name in spec.achievements),
        "min_progression": spec.min_progression,
        "whole_episode_valid": spec.drop_invalid and spec.mode == "trajectory",
        "max_invalid_fraction": spec.max_invalid_fraction,
    }


_PARAM_TYPES = {
    "min_achievements": "BIGINT", "min_reward": "DOUBLE", "max_turns": "BIGINT", "require_termination": "BOOLEAN",
    "models": "VARCHAR[]", "runs": "VARCHAR[]", "required_mask": "BIGINT", "min_progression": "DOUBLE",
    "whole_episode_valid": "BOOLEAN", "drop_invalid": "BOOLEAN", "keep": "BIGINT", "seed": "BIGINT",
    "max_examples": "BIGINT", "split": "DOUBLE", "max_invalid_fraction": "DOUBLE",
}


@functools.lru_cache(maxsize=64)
def typed(sql: str) -> str:
    """Cast each named parameter at its uses so NULLs and empty lists have a type (cached)."""
    for name, kind in _PARAM_TYPES.items():
        sql = sql.replace(f"${name}", f"CAST(${name} AS {kind})")
    return sql


def selection_params(spec: FilterSpec) -> dict[str, Any]:
    params = episode_params(spec)
    params.update({
        "drop_invalid": spec.drop_invalid and spec.mode == "turn",
        "keep": spec.keep_before_achievement,
        "seed": spec.seed,
        "max_examples": spec.max_examples,
        "split": spec.validation_split,
    })
    return params


def _example_hash(spec: FilterSpec) -> str:
    if not spec.dedupe:
        return "NULL::UBIGINT"
    # the prompt is the system prompt plus the history window: hash exactly what the model saw and said
    return ("hash(coalesce(r.prompt_hash, ''), list_slice(list(ti.content_hash) OVER w_hist, "
            "greatest(1, turn_pos - r.history_turns), turn_pos))")


def selection_sql(spec: FilterSpec) -> str:
    """SQL creating the temp table ``selection``: one row per kept turn with its example and split."""
    turn_mode = spec.mode == "turn"
    parts = [f"""
CREATE OR REPLACE TEMP TABLE selection AS
WITH sel AS ({SELECTED_EPISODES}),
t0 AS (
    SELECT ti.run_id, ti.episode, ti.attempt, ti.turn, ti.valid, ti.actions, ti.first_action, ti.n_new,
           ti.content_hash, ti.seq
    FROM turn_index ti JOIN sel USING (run_id, episode, attempt)
    QUALIFY row_number() OVER (PARTITION BY ti.run_id, ti.episode, ti.turn ORDER BY ti.seq DESC) = 1
),
t AS (
    SELECT ti.*, row_number() OVER (PARTITION BY ti.run_id, ti.episode ORDER BY ti.turn) AS turn_pos,
           min(CASE WHEN ti.n_new > 0 THEN ti.turn END) OVER w_next AS next_ach
    FROM t0 ti
    WINDOW w_next AS (PARTITION BY ti.run_id, ti.episode ORDER BY ti.turn
                      ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)
),
h AS (
    SELECT ti.*, {_example_hash(spec) if turn_mode else 'NULL::UBIGINT'} AS example_hash
    FROM t ti JOIN runs r USING (run_id)
    WINDOW w_hist AS (PARTITION BY ti.run_id, ti.episode ORDER BY ti.turn
                      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
f AS (
    SELECT * FROM h
    WHERE (NOT $drop_invalid OR valid)
      AND ($keep IS NULL OR (next_ach IS NOT NULL AND next_ach - turn < $keep))
),
g AS (
    SELECT *, turn_pos - row_number() OVER (PARTITION BY run_id, episode ORDER BY turn) AS segment FROM f
),"""]
    if turn_mode:
        parts.append("""
x AS (SELECT *, hash(run_id, episode, turn) AS example_key FROM g),""")
    else:
        parts.append("""
x AS (
    SELECT g.*, hash(run_id, episode, segment) AS example_key,
           hash(list(content_hash ORDER BY turn) OVER (PARTITION BY run_id, episode, segment)) AS traj_hash
    FROM g
),""")
    dedupe_key = "example_hash" if turn_mode else "traj_hash"
    parts.append(f"""
d AS (
    SELECT * FROM x
    {"QUALIFY dense_rank() OVER (PARTITION BY " + dedupe_key + " ORDER BY run_id, episode, segment) = 1"
     if spec.dedupe else ""}
),""")
    if spec.balance_actions:
        parts.append("""
cap AS (SELECT ceil(avg(n)) AS cap FROM (SELECT count(*) AS n FROM d GROUP BY coalesce(first_action, ''))),
b AS (
    SELECT d.* FROM d, cap
    QUALIFY row_number() OVER (PARTITION BY coalesce(first_action, '') ORDER BY hash(example_key, $seed)) <= cap.cap
),""")
    else:
        parts.append("\nb AS (SELECT * FROM d),")
    parts.append("""
ex AS (
    SELECT example_key, row_number() OVER (ORDER BY hash(example_key, $seed, 'max'), example_key) AS ex_rank
    FROM (SELECT DISTINCT example_key FROM b)
),
m AS (SELECT b.* FROM b JOIN ex USING (example_key) WHERE $max_examples IS NULL OR ex_rank <= $max_examples),
eps AS (
    SELECT run_id, episode, row_number() OVER (ORDER BY hash(run_id, episode, $seed, 'split'), run_id, episode)
               AS split_rank, count(*) OVER () AS n_eps
    FROM (SELECT DISTINCT run_id, episode FROM m)
)
SELECT m.run_id, m.episode, m.attempt, m.turn, m.first_action, m.example_key,
       split_rank <= CASE WHEN $split > 0 AND n_eps >= 2
                          THEN least(n_eps - 1, greatest(1, round($split * n_eps))) ELSE 0 END AS is_valid
FROM m JOIN eps USING (run_id, episode)
""")
    return typed("".join(parts))


def build_selection(cursor: duckdb.DuckDBPyConnection, spec: FilterSpec) -> None:
    """Materialise ``selection`` (temp table, local to this cursor's connection)."""
    cursor.execute(selection_sql(spec), selection_params(spec))
