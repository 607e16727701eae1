"""The store's SQL: constant statements only; every value is bound as a parameter.

Kept apart from ``store.py`` so a reader can audit in one place that no SQL text is ever
built from user input (table names below are fixed strings chosen by code, not by users).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from crafter_tui.traces.schema import RunRecord
from crafter_tui.world.rules import ACHIEVEMENTS

NUM_ACHIEVEMENTS = len(ACHIEVEMENTS)

RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("path", pa.string()), ("status", pa.string()), ("agent", pa.string()),
    ("model", pa.string()), ("difficulty", pa.string()), ("created_at", pa.string()),
    ("finished_at", pa.string()), ("episodes_planned", pa.int64()), ("episodes_finished", pa.int64()),
    ("history_turns", pa.int64()), ("seed", pa.int64()), ("max_steps", pa.int64()),
    ("prompt_hash", pa.string()), ("experiment", pa.string()),
])

CREATE_TABLES: tuple[str, ...] = (
    """CREATE TABLE runs (run_id VARCHAR, path VARCHAR, status VARCHAR, agent VARCHAR, model VARCHAR,
        difficulty VARCHAR, created_at VARCHAR, finished_at VARCHAR, episodes_planned BIGINT,
        episodes_finished BIGINT, history_turns BIGINT, seed BIGINT, max_steps BIGINT,
        prompt_hash VARCHAR, experiment VARCHAR)""",
    """CREATE TABLE episode_lines (run_id VARCHAR, seq BIGINT, episode BIGINT, seed BIGINT, attempt BIGINT,
        agent VARCHAR, model VARCHAR, difficulty VARCHAR, steps BIGINT, turns BIGINT, reward DOUBLE,
        achievements VARCHAR[], num_achievements BIGINT, termination VARCHAR, error VARCHAR,
        invalid_actions BIGINT, prompt_tokens BIGINT, completion_tokens BIGINT, wall_s DOUBLE)""",
    """CREATE TABLE turn_index (run_id VARCHAR, seq BIGINT, episode BIGINT, attempt BIGINT, turn BIGINT,
        step BIGINT, valid BOOLEAN, actions VARCHAR[], first_action VARCHAR, n_actions BIGINT,
        new_achievements VARCHAR[], n_new BIGINT, content_hash UBIGINT, line_offset BIGINT, line_bytes BIGINT)""",
    """CREATE TABLE steps (run_id VARCHAR, seq BIGINT, episode BIGINT, attempt BIGINT, step BIGINT,
        turn BIGINT, action BIGINT, action_name VARCHAR, reward DOUBLE, done BOOLEAN,
        new_achievements VARCHAR[])""",
    """CREATE TABLE episodes AS SELECT * EXCLUDE (seq), 0::BIGINT AS tokens, 0.0::DOUBLE AS progression,
        0::BIGINT AS ach_mask FROM episode_lines WHERE false""",
)

# ``_new_rows`` is the Arrow table of new lines registered by the store; ``?`` = run id, first seq.
INSERT: dict[str, str] = {
    "episode_lines": """INSERT INTO episode_lines SELECT ?, ? + _idx, episode, seed, attempt, agent, model,
        difficulty, steps, turns, reward, achievements, num_achievements, termination, error, invalid_actions,
        prompt_tokens, completion_tokens, wall_s FROM _new_rows""",
    "turn_index": """INSERT INTO turn_index SELECT ?, ? + _idx, episode, attempt, turn, step, valid, actions,
        actions[1], len(actions), new_achievements, len(new_achievements),
        hash(observation, coalesce(tool_result, ''), coalesce(assistant.content, ''),
             coalesce(list_transform(assistant.tool_calls, lambda c: c.function.name || ':' || c.function.arguments),
                      []::VARCHAR[])),
        _line_offset, _line_bytes
        FROM _new_rows""",
    "steps": """INSERT INTO steps SELECT ?, ? + _idx, episode, attempt, step, turn, action, action_name, reward,
        done, new_achievements FROM _new_rows""",
}

#: ``?`` = the path of a run's Parquet snapshot (written by ``compact``).
INSERT_SNAPSHOT: dict[str, str] = {
    "episode_lines": "INSERT INTO episode_lines SELECT * FROM read_parquet(?)",
    "turn_index": "INSERT INTO turn_index SELECT * FROM read_parquet(?)",
}
SNAPSHOT_MAX_SEQ = "SELECT max(seq) FROM read_parquet(?)"

SELECT_RUN_ROWS: dict[str, str] = {
    "episode_lines": "SELECT * FROM episode_lines WHERE run_id = ? ORDER BY seq",
    "turn_index": "SELECT * FROM turn_index WHERE run_id = ? ORDER BY seq",
}

DELETE_RUN: dict[str, str] = {
    "episode_lines": "DELETE FROM episode_lines WHERE run_id = ?",
    "turn_index": "DELETE FROM turn_index WHERE run_id = ?",
    "steps": "DELETE FROM steps WHERE run_id = ?",
}

#: One row per finished episode: the last summary line of each (run, episode) wins (a rerun).
#: Achievement names as a SQL list literal: constants from Crafter's data, never user input.
ACHIEVEMENT_LIST_SQL = "[" + ", ".join(f"'{name}'" for name in ACHIEVEMENTS) + "]"

#: ``ach_mask`` has bit i set when the episode unlocked ``ACHIEVEMENTS[i]``: per-achievement
#: counts and "unlocked all of these" become integer operations in the hot statistics query.
REBUILD_EPISODES = f"""CREATE OR REPLACE TABLE episodes AS
    SELECT * EXCLUDE (seq), prompt_tokens + completion_tokens AS tokens,
           num_achievements / {NUM_ACHIEVEMENTS}.0 AS progression,
           coalesce(list_sum(list_transform(list_distinct(achievements), lambda a:
               coalesce(1::BIGINT << (list_position({ACHIEVEMENT_LIST_SQL}, a) - 1), 0))), 0)::BIGINT AS ach_mask
    FROM episode_lines
    QUALIFY row_number() OVER (PARTITION BY run_id, episode ORDER BY seq DESC) = 1"""


def run_row(record: RunRecord, path: Path) -> dict[str, Any]:
    """The ``runs`` table row of a run record."""
    return {
        "run_id": record.run_id, "path": str(path), "status": record.status, "agent": record.agent,
        "model": record.model, "difficulty": record.difficulty, "created_at": record.created_at.isoformat(),
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "episodes_planned": record.episodes, "episodes_finished": record.episodes_finished,
        "history_turns": record.history_turns, "seed": record.seed, "max_steps": record.max_steps,
        "prompt_hash": record.prompt_hash, "experiment": record.experiment,
    }
