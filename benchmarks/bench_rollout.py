"""Foundation benchmarks: world reset time and the runner's overhead over a bare loop.

    python benchmarks/bench_rollout.py [--small]

- reset: median of resets after the first (goal <= 60 ms);
- engine overhead: the scripted expert through the rollout runner with trace writing vs a bare
  loop of the same expert on the same seeds calling the world directly (goal >= 0.85x steps/s);
- peak RSS of a 64-episode concurrent rollout (goal <= 400 MB).
"""

from __future__ import annotations

import argparse
import asyncio
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


def bench_overhead(episodes: int, max_steps: int) -> None:
    seeds = list(range(episodes))
    start = time.perf_counter()
    bare_steps = asyncio.run(bare_loop(seeds, max_steps))
    bare = bare_steps / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        spec = RolloutSpec(agent="scripted", model="scripted-expert", episodes=episodes, max_steps=max_steps,
                           concurrency=1, out_dir=Path(tmp))
        start = time.perf_counter()
        result = asyncio.run(run_rollout(spec, AppConfig()))
        runner = sum(result.stats.steps_per_episode) / (time.perf_counter() - start)
    report("bare_loop_steps_per_s", bare, "steps/s", "reference")
    report("runner_steps_per_s", runner, "steps/s", "reference")
    report("runner_vs_bare", runner / bare, "x", ">= 0.85")


def bench_concurrent_memory(episodes: int, max_steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spec = RolloutSpec(agent="scripted", model="scripted-expert", episodes=episodes, max_steps=max_steps,
                           concurrency=episodes, out_dir=Path(tmp))
        asyncio.run(run_rollout(spec, AppConfig()))
    report("rollout_64_concurrent_peak_rss", peak_rss_mb(), "MB", "<= 400")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    bench_reset(10 if args.small else 50)
    bench_overhead(3 if args.small else 10, 300)
    bench_concurrent_memory(64, 30 if args.small else 200)


if __name__ == "__main__":
    main()
