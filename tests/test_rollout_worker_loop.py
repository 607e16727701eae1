"""Worker processes run their episodes on uvloop's event loop where it is installed."""

from __future__ import annotations

import asyncio
import importlib.util

from crafter_tui.rollout.executors import run_worker_loop


def test_worker_loop_runs_the_coroutine_on_the_fastest_loop_available():
    async def which_loop() -> str:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__module__

    module = run_worker_loop(which_loop())
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert module.split(".")[0] == expected
