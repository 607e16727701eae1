"""Scripted rollouts: ``--workers 2`` against one process (steps/s), same seeds and settings.

Both runs go through ``run_rollout`` exactly as ``crafter-tui rollout`` does, writing traces to a
temporary folder. Each configuration runs once to warm up (imports, numba, the forkserver),
then the timed runs; the per-episode results of the two are checked to be identical.

The 2 cores are shared (other jobs come and go), so one 1-process run followed by one 2-worker
run measures the neighbours as much as the workers. The timed runs come in ``--repeats`` back
to back pairs (1 process, then 2 workers); the speedup reported is the median of the pairs'
ratios, each pair seeing about the same background load; every pair's ratio is listed too.

    python benchmarks/bench_workers.py [--small] [--repeats N] [--episodes N] [--max-steps N]
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
import statistics
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


async def main_async(small: bool, repeats: int, episodes: int | None, max_steps: int | None) -> None:
    # 32 x 400 steps: since the world got ~5x faster, 16 x 300 ran ~2.5 s a configuration, short
    # enough for the pool's fixed start-up and the neighbours' bursts to decide the ratio.
    episodes = episodes or (4 if small else 32)
    max_steps = max_steps or (150 if small else 400)
    singles, pooled, ratios, same = [], [], [], True
    with tempfile.TemporaryDirectory() as tmp:
        def spec(workers: int, tag: str, count: int = episodes) -> RolloutSpec:
            return RolloutSpec(agent="scripted", model="scripted-expert", episodes=count, seed=100,
                               max_steps=max_steps, concurrency=8, workers=workers, out_dir=Path(tmp),
                               run_id=f"{tag}-w{workers}")

        for workers in (1, 2):
            await timed(spec(workers, "warm", count=2))
        for round_ in range(repeats):
            single, single_outcomes = await timed(spec(1, f"timed{round_}"))
            pair, pooled_outcomes = await timed(spec(2, f"timed{round_}"))
            singles.append(single)
            pooled.append(pair)
            ratios.append(pair / single)
            same = same and pooled_outcomes == single_outcomes
    emit("rollout_scripted_steps_per_s_1_process", statistics.median(singles), "steps/s", None,
         episodes=episodes, max_steps=max_steps, runs=[round(x, 1) for x in singles])
    emit("rollout_scripted_steps_per_s_2_workers", statistics.median(pooled), "steps/s", None,
         episodes=episodes, max_steps=max_steps, runs=[round(x, 1) for x in pooled])
    emit("rollout_workers_2_speedup", statistics.median(ratios), "x", ">= 1.6", cpus=os.cpu_count(),
         pair_ratios=[round(x, 3) for x in ratios], load_avg_1m=round(os.getloadavg()[0], 2), same_episodes=same)
    emit("bench_peak_rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer, shorter episodes (CI)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed (1 process, 2 workers) pairs; default 3, 1 with --small")
    parser.add_argument("--episodes", type=int, default=None, help="episodes a run (default 32, 4 with --small)")
    parser.add_argument("--max-steps", type=int, default=None, help="steps an episode at most (default 400, 150 with --small)")
    args = parser.parse_args()
    repeats = args.repeats if args.repeats is not None else (1 if args.small else 3)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    asyncio.run(main_async(args.small, repeats, args.episodes, args.max_steps))


if __name__ == "__main__":
    main()
