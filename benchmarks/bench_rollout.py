"""Foundation benchmarks: world reset time and the runner's overhead over a bare loop.

    python benchmarks/bench_rollout.py [--small]

- reset: median of resets after the first (goal <= 60 ms);
- engine overhead: the scripted expert through the rollout runner with trace writing vs a bare
  loop of the same expert on the same seeds calling the world directly (goal >= 0.85x steps/s).
  Both run once untimed first (imports, the expert's and the world's caches: the first loop of
  either was up to ~2x slower than the next, which favoured whichever ran second), then
  alternately ``--repeats`` times; each side's best wall time is its figure (the least disturbed
  by other work on a shared machine). ``runner_vs_bare_cpu`` is the same ratio in process CPU
  seconds and ``runner_overhead_cpu_per_step`` the runner's own CPU per env step: both steadier
  than wall time while other work shares the cores; ``pair_ratio_median`` the median of the
  back-to-back pairs' ratios (a pair shares the machine's conditions more than two minima do).
  The runner side includes its run setup, run.json and episode summaries: ~3 ms a run and
  ~1 ms an episode (measured 2026-11), under 1% of a run of 3000 steps;
- peak RSS of a 64-episode concurrent rollout (goal <= 400 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import peak_rss_mb, report

from crafter_tui.agents.base import TurnObservation
from crafter_tui.agents.scripted import ScriptedAgent
from crafter_tui.config import AppConfig
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.services.rollouts import run_rollout
from crafter_tui.world.env import CrafterWorld
from crafter_tui.world.rules import ACTION_IDS


def bench_reset(count: int) -> None:
    world = CrafterWorld()
    world.reset(0)
    times = []
    for seed in range(1, count + 1):
        start = time.perf_counter()
        world.reset(seed)
        times.append(time.perf_counter() - start)
    report("reset_median", 1000 * statistics.median(times), "ms", "<= 60")


async def bare_loop(seeds: list[int], max_steps: int) -> int:
    """The same expert and seeds, calling the world directly: no runner, no traces, no text."""
    steps = 0
    for seed in seeds:
        world, agent = CrafterWorld(max_steps=max_steps), ScriptedAgent()
        await agent.start_episode(seed)
        state, turn = world.reset(seed), 0
        while not world.done:
            obs = TurnObservation(state=state, text="", turn=turn, max_steps=max_steps,
                                  semantic_map=world.semantic_map())
            decision = await agent.act(obs, [])
            for name in decision.actions:
                outcome = world.step(ACTION_IDS[name])
                state, steps = outcome.state, steps + 1
                if outcome.done:
                    break
            turn += 1
    return steps


def timed_bare(episodes: int, max_steps: int) -> tuple[int, float, float]:
    """(steps, wall s, CPU s) of the bare loop."""
    wall, cpu = time.perf_counter(), time.process_time()
    steps = asyncio.run(bare_loop(list(range(episodes)), max_steps))
    return steps, time.perf_counter() - wall, time.process_time() - cpu


def timed_runner(episodes: int, max_steps: int) -> tuple[int, float, float]:
    """(steps, wall s, CPU s) of a whole rollout run: run folder, traces, summaries."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = RolloutSpec(agent="scripted", model="scripted-expert", episodes=episodes, max_steps=max_steps,
                           concurrency=1, out_dir=Path(tmp))
        wall, cpu = time.perf_counter(), time.process_time()
        result = asyncio.run(run_rollout(spec, AppConfig()))
        return (sum(result.stats.steps_per_episode), time.perf_counter() - wall, time.process_time() - cpu)


def bench_overhead(episodes: int, max_steps: int, repeats: int) -> None:
    timed_bare(1, max_steps)  # warm-up, untimed
    timed_runner(1, max_steps)
    bare, runner = [], []
    for _ in range(repeats):
        bare.append(timed_bare(episodes, max_steps))
        runner.append(timed_runner(episodes, max_steps))
    steps = bare[0][0]
    if any(run[0] != steps for run in bare + runner):
        raise SystemExit(f"runs played different step counts: {[run[0] for run in bare + runner]}")
    bare_wall, runner_wall = min(run[1] for run in bare), min(run[1] for run in runner)
    bare_cpu, runner_cpu = min(run[2] for run in bare), min(run[2] for run in runner)
    report("bare_loop_steps_per_s", steps / bare_wall, "steps/s", "reference")
    report("runner_steps_per_s", steps / runner_wall, "steps/s", "reference")
    pairs = [round(b[1] / r[1], 3) for b, r in zip(bare, runner)]
    report("runner_vs_bare", bare_wall / runner_wall, "x", ">= 0.85",
           pair_ratios=pairs, pair_ratio_median=statistics.median(pairs), load_avg_1m=os.getloadavg()[0])
    report("runner_vs_bare_cpu", bare_cpu / runner_cpu, "x", ">= 0.85",
           pair_ratios=[round(b[2] / r[2], 3) for b, r in zip(bare, runner)])
    report("runner_overhead_cpu_per_step", 1e6 * (runner_cpu - bare_cpu) / steps, "us", "reference")


def bench_concurrent_memory(episodes: int, max_steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spec = RolloutSpec(agent="scripted", model="scripted-expert", episodes=episodes, max_steps=max_steps,
                           concurrency=episodes, out_dir=Path(tmp))
        asyncio.run(run_rollout(spec, AppConfig()))
    report("rollout_64_concurrent_peak_rss", peak_rss_mb(), "MB", "<= 400")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--repeats", type=int, default=None, help="timed bare/runner pairs (default 3, 1 with --small)")
    args = parser.parse_args()
    bench_reset(10 if args.small else 50)
    bench_overhead(3 if args.small else 10, 300, args.repeats or (1 if args.small else 3))
    bench_concurrent_memory(64, 30 if args.small else 200)


if __name__ == "__main__":
    main()
