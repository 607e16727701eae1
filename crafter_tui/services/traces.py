"""The trace store as the front ends use it: async methods, DuckDB work in threads.

One ``TraceService`` owns one ``TraceStore`` (an in-memory DuckDB over a trace folder).
Every blocking call runs in ``asyncio.to_thread`` so the console's event loop never waits
on DuckDB or the disk; refreshes are serialised by the store's own lock.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from crafter_tui.config import AppConfig
from crafter_tui.errors import UserError
from crafter_tui.traces.store import RefreshReport, TraceStore


class RunRow(BaseModel):
    """One line of ``traces list``."""

    run_id: str
    path: str
    status: str
    agent: str
    model: str
    difficulty: str
    created_at: str
    episodes_planned: int
    episodes_finished: int
    mean_achievements: float | None = None
    mean_reward: float | None = None


class RunDetail(RunRow):
    """``traces show RUN``: the run plus its episodes and their terminations."""

    history_turns: int
    terminations: dict[str, int]
    achievements: dict[str, int]
    episodes: list[dict[str, Any]]


_LIST_SQL = """
SELECT r.run_id, r.path, r.status, r.agent, r.model, r.difficulty, r.created_at, r.episodes_planned,
       count(e.episode) AS finished, avg(e.num_achievements), avg(e.reward), r.history_turns
FROM runs r LEFT JOIN episodes e USING (run_id)
WHERE ? IS NULL OR r.run_id = ?
GROUP BY ALL ORDER BY r.created_at, r.run_id
"""


def list_runs(store: TraceStore, run_id: str | None = None) -> list[RunRow]:
    rows = store.cursor().execute(_LIST_SQL, [run_id, run_id]).fetchall()
    return [RunRow(run_id=r[0], path=r[1], status=r[2], agent=r[3], model=r[4], difficulty=r[5], created_at=r[6],
                   episodes_planned=r[7], episodes_finished=r[8], mean_achievements=r[9], mean_reward=r[10])
            for r in rows]


def show_run(store: TraceStore, run_id: str) -> RunDetail:
    store.run_dir(run_id)  # raises a UserError naming the known runs
    row = list_runs(store, run_id)[0]
    cursor = store.cursor()
    terms = dict(cursor.execute("SELECT termination, count(*) FROM episodes WHERE run_id = ? GROUP BY 1 ORDER BY 1",
                                [run_id]).fetchall())
    unlocked = dict(cursor.execute("""SELECT a, count(*) FROM (SELECT unnest(achievements) AS a FROM episodes
                                      WHERE run_id = ?) GROUP BY 1 ORDER BY 2 DESC, 1""", [run_id]).fetchall())
    columns = ["episode", "seed", "attempt", "steps", "turns", "reward", "num_achievements", "termination",
               "invalid_actions", "tokens"]
    episodes = [dict(zip(columns, values, strict=True)) for values in cursor.execute(
        """SELECT episode, seed, attempt, steps, turns, reward, num_achievements, termination, invalid_actions,
                  tokens FROM episodes WHERE run_id = ? ORDER BY episode""", [run_id]).fetchall()]
    return RunDetail(**row.model_dump(), history_turns=store.run_record(run_id).history_turns, terminations=terms,
                     achievements=unlocked, episodes=episodes)


class TraceService:
    """Async access to one trace folder's store."""

    def __init__(self, config: AppConfig | None = None) -> None:
        self.config = config or AppConfig()
        self._store: TraceStore | None = None

    @property
    def store(self) -> TraceStore:
        if self._store is None:
            raise UserError("no trace folder is open")
        return self._store

    async def open(self, root: Path | None = None, *, turns: bool = False) -> RefreshReport:
        """Open ``root`` (default ``[output] trace_dir``) and load what is on disk."""
        folder = Path(root) if root is not None else self.config.output.trace_dir
        store = await asyncio.to_thread(TraceStore, folder)
        report = await asyncio.to_thread(store.refresh)
        if turns:
            await asyncio.to_thread(store.ensure_turns)
        if self._store is not None:
            self._store.close()
        self._store = store
        return report

    async def refresh(self) -> RefreshReport:
        """Read what was appended since the last refresh (cheap; safe while a rollout writes)."""
        return await asyncio.to_thread(self.store.refresh)

    async def list_runs(self) -> list[RunRow]:
        return await asyncio.to_thread(list_runs, self.store)

    async def show_run(self, run_id: str) -> RunDetail:
        return await asyncio.to_thread(show_run, self.store, run_id)

    async def compact(self) -> list[Path]:
        return await asyncio.to_thread(self.store.compact)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
