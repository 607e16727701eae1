"""Scripted expert quality and speed: achievements per episode and the loop's steps per second.

Plays 300-step episodes (normal difficulty) through the real per-episode loop
(``rollout.episode.play_episode`` with the embedded world and a sink that keeps nothing),
for the scripted expert and the random baseline, on seeds 0-9 (0-3 with ``--small``), plus
held-out seeds 10-29 for the expert in the full run. Steps/s counts env steps over the time
spent in the loop, world resets included, both per wall second and per CPU second (the
latter is what to compare when other work shares the machine); the expert's own decide time
(CPU) is reported apart.

    python benchmarks/bench_expert.py [--small]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _common import peak_rss_mb, report

from crafter_tui.agents import make_agent
from crafter_tui.agents.base import Agent, AgentDecision, HistoryTurn, TurnObservation
from crafter_tui.rollout.envs import LocalEnv
from crafter_tui.rollout.episode import EpisodeJob, play_episode
from crafter_tui.rollout.spec import RolloutSpec

MAX_STEPS = 300


class _NullSink:
    def step(self, record) -> None: ...

    def turn(self, record) -> None: ...

    def progress(self, episode, seed, step, turn, achievements) -> None: ...


class _Timed:
    """Wraps an agent to add up the time spent deciding."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.decide_s = 0.0
        for name in ("kind", "model", "system_prompt", "history_turns", "needs_semantic_map"):
            setattr(self, name, getattr(agent, name))

    async def start_episode(self, seed: int) -> None:
        await self.agent.start_episode(seed)

    async def act(self, obs: TurnObservation, history: list[HistoryTurn]) -> AgentDecision:
        start = time.process_time()  # CPU time: other load on the machine does not count
        try:
            return await self.agent.act(obs, history)
        finally:
            self.decide_s += time.process_time() - start

    def record_result(self, decision: AgentDecision, tool_result: str) -> None:
        self.agent.record_result(decision, tool_result)

    async def aclose(self) -> None:
        await self.agent.aclose()


async def _play(kind: str, seeds: list[int]) -> dict[str, float]:
    spec = RolloutSpec(agent=kind, model="scripted-expert" if kind == "scripted" else kind,
                       episodes=len(seeds), seed=seeds[0], max_steps=MAX_STEPS)
    env = LocalEnv("normal", MAX_STEPS)
    agent = _Timed(make_agent(kind, model=None, config=None))
    counts, steps = [], 0
    start, start_cpu = time.perf_counter(), time.process_time()
    for index, seed in enumerate(seeds):
        summary = await play_episode(spec, EpisodeJob(index, seed), env, agent, _NullSink(), "bench")
        counts.append(summary.num_achievements)
        steps += summary.steps
    elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return {"mean": sum(counts) / len(counts), "steps_per_s": steps / elapsed,
            "steps_per_cpu_s": steps / elapsed_cpu, "decide_ms_per_step": 1000 * agent.decide_s / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="4 seeds, no held-out set (CI)")
    args = parser.parse_args()
    seeds = list(range(4 if args.small else 10))
    LocalEnv("normal", 1).world.reset(0)  # compile/load once, outside the timings

    expert = asyncio.run(_play("scripted", seeds))
    report("expert_achievements_mean", expert["mean"], f"achievements/episode (seeds 0-{seeds[-1]}, 300 steps)",
           ">= 10")
    report("expert_loop_steps_per_s", expert["steps_per_s"], "env steps/s wall (runner loop, resets included)",
           ">= 1000")
    report("expert_loop_steps_per_cpu_s", expert["steps_per_cpu_s"],
           "env steps per CPU second (same loop; robust to other load on the machine)", ">= 1000")
    report("expert_decide_ms_per_step", expert["decide_ms_per_step"], "CPU ms/step", "<= 0.5")
    baseline = asyncio.run(_play("random", seeds))
    report("random_achievements_mean", baseline["mean"], f"achievements/episode (seeds 0-{seeds[-1]}, 300 steps)",
           "<= 4")
    report("random_loop_steps_per_cpu_s", baseline["steps_per_cpu_s"],
           "env steps per CPU second (runner loop, resets included)", "for comparison")
    if not args.small:
        held_out = asyncio.run(_play("scripted", list(range(10, 30))))
        report("expert_achievements_mean_heldout", held_out["mean"], "achievements/episode (seeds 10-29, 300 steps)",
               ">= 10")
    report("peak_rss", peak_rss_mb(), "MB", "<= 500")


if __name__ == "__main__":
    main()
