"""Scripted rollouts: ``--workers 2`` against one process (steps/s), same seeds and settings.

Both runs go through ``run_rollout`` exactly as ``crafter-tui rollout`` does, writing traces to a
temporary folder. Each configuration runs once to warm up (imports, numba, the forkserver),
then the timed run; the per-episode results of the two are checked to be identical.

    python benchmarks/bench_workers.py [--small]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402 - benchmarks run as scripts from a checkout

import argparse
import asyncio
import os
import resource
import tempfile
import time

from crafter_tui.config import AppConfig
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.services.rollouts import run_rollout



async def timed(spec: RolloutSpec) -> tuple[float, list[tuple]]:
    start = time.perf_counter()
    result = await run_rollout(spec, AppConfig())
    elapsed = time.perf_counter() - start
    steps = sum(s.steps for s in result.summaries)
    outcomes = sorted((s.episode, s.steps, s.reward, tuple(s.achievements), s.termination) for s in result.summaries)
    return steps / elapsed, outcomes


async def main_async(small: bool) -> None:
    episodes, max_steps = (4, 150) if small else (16, 300)
    with tempfile.TemporaryDirectory() as tmp:
        def spec(workers: int, tag: str, count: int = episodes) -> RolloutSpec:
            return RolloutSpec(agent="scripted", model="scripted-expert", episodes=count, seed=100,
                               max_steps=max_steps, concurrency=8, workers=workers, out_dir=Path(tmp),
                               run_id=f"{tag}-w{workers}")

        for workers in (1, 2):
            await timed(spec(workers, "warm", count=2))
        single, single_outcomes = await timed(spec(1, "timed"))
        pooled, pooled_outcomes = await timed(spec(2, "timed"))
    emit("rollout_scripted_steps_per_s_1_process", single, "steps/s", None, episodes=episodes, max_steps=max_steps)
    emit("rollout_scripted_steps_per_s_2_workers", pooled, "steps/s", None, episodes=episodes, max_steps=max_steps)
    emit("rollout_workers_2_speedup", pooled / single, "x", ">= 1.6", cpus=os.cpu_count(),
         load_avg_1m=round(os.getloadavg()[0], 2), same_episodes=pooled_outcomes == single_outcomes)
    emit("bench_peak_rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer, shorter episodes (CI)")
    asyncio.run(main_async(parser.parse_args().small))


if __name__ == "__main__":
    main()
