"""How many LLM turns per second the rollout sustains with many concurrent episodes.

Setup: the OpenAI-compatible TEST DOUBLE in its own process (so it never shares our GIL)
answers every chat-completions request with one plausible action after a fixed latency
(100 ms). 64 episodes of the ``openai`` agent play at once through the real rollout runner
(``services.rollouts.run_rollout``: real SDK, real HTTP, real Crafter, real trace files).

Ideal: with 64 episodes each waiting 100 ms per turn, 64 / 0.1 s = 640 turns/s. Goal: the
steady state (all episodes running, none finished yet) reaches >= 0.9 x ideal, and peak RSS
of this process stays <= 400 MB. The whole-run rate (including 64 world resets and the
tail) is printed too, for information.

    python benchmarks/bench_llm_concurrency.py [--small]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402 - benchmarks run as scripts from a checkout

import argparse
import asyncio
import collections
import json
import resource
import statistics
import tempfile
import time

from pydantic import SecretStr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.doubles (the test double lives with the tests)

from crafter_tui.config import AppConfig  # noqa: E402
from crafter_tui.rollout.events import EpisodeFinished, EpisodeProgress  # noqa: E402
from crafter_tui.rollout.spec import RolloutSpec  # noqa: E402
from crafter_tui.services.rollouts import run_rollout  # noqa: E402
from tests.doubles.openai_double import DoubleProcess  # noqa: E402

GOAL_FRACTION = 0.9
RSS_BUDGET_MB = 400



class TurnClock:
    """Follows per-episode turn counts from progress events to find the steady-state rate."""

    def __init__(self, episodes: int) -> None:
        self.episodes = episodes
        self.turns: dict[int, int] = {}
        # (wall time, CPU time, total turns) once every episode played a turn / when the first one ends
        self.all_running: tuple[float, float, int] | None = None
        self.first_finish: tuple[float, float, int] | None = None

    def on_event(self, event: object) -> None:
        if isinstance(event, EpisodeProgress):
            self.turns[event.episode] = event.turn
            if self.all_running is None and len(self.turns) == self.episodes:
                self.all_running = (time.perf_counter(), time.process_time(), sum(self.turns.values()))
        elif isinstance(event, EpisodeFinished) and self.first_finish is None:
            self.first_finish = (time.perf_counter(), time.process_time(), sum(self.turns.values()))

    def steady(self) -> tuple[float, float] | None:
        """Turns/s and CPU ms per turn between "all running" and "first finished"."""
        if self.all_running is None or self.first_finish is None:
            return None
        (t0, c0, n0), (t1, c1, n1) = self.all_running, self.first_finish
        if t1 <= t0 or n1 <= n0:
            return None
        return (n1 - n0) / (t1 - t0), 1000.0 * (c1 - c0) / (n1 - n0)


async def run(episodes: int, turns: int, latency_ms: float, base_url: str, out_dir: Path, workers: int = 1) -> dict:
    config = AppConfig()
    config.openai.base_url = base_url
    config.openai.api_key = SecretStr("sk-bench-not-a-real-key")
    config.openai.max_retries = 2
    spec = RolloutSpec(agent="openai", model="policy-double", episodes=episodes, max_steps=turns,
                       max_turns=turns, difficulty="peaceful", concurrency=episodes, out_dir=out_dir,
                       workers=workers)
    clock = TurnClock(episodes)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = await run_rollout(spec, config, clock.on_event)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    total_turns = sum(s.turns for s in result.summaries)
    latencies = [json.loads(line)["latency_ms"] for line in (result.run_dir / "turns.jsonl").open()]
    return {"wall": wall, "cpu": cpu, "turns": total_turns, "steady": clock.steady(),
            "latency_p50": statistics.median(latencies), "latency_p95": statistics.quantiles(latencies, n=20)[-1],
            "endings": dict(collections.Counter(s.termination for s in result.summaries)),
            "invalid": sum(s.invalid_actions for s in result.summaries)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="short episodes (CI: < 60 s)")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=1,
                        help="rollout worker processes (the runner's --workers); CPU and RSS are this process's only")
    args = parser.parse_args()
    turns = 25 if args.small else 150
    ideal = args.episodes / (args.latency_ms / 1000.0)
    with DoubleProcess(latency_ms=args.latency_ms) as double, tempfile.TemporaryDirectory() as tmp:
        stats = asyncio.run(run(args.episodes, turns, args.latency_ms, double.base_url, Path(tmp), args.workers))
    goal = (f">= {GOAL_FRACTION * ideal:g} ({GOAL_FRACTION} x ideal {ideal:g}: "
            f"{args.episodes} episodes / {args.latency_ms:g} ms)")
    if stats["steady"] is not None:
        rate, cpu_ms = stats["steady"]
        emit("llm_turns_per_s_steady", rate, "turns/s", goal)
        if args.workers == 1:  # with workers, this process's CPU is not the rollout's
                emit("rollout_cpu_per_turn_steady", cpu_ms, "ms",
                 f"<= {1000.0 / (GOAL_FRACTION * ideal):.2f} "
                 f"(what {GOAL_FRACTION * ideal:g} turns/s allows one event loop)")
    emit("llm_turns_per_s_whole_run", stats["turns"] / stats["wall"], "turns/s",
         f"info (includes {args.episodes} world resets and the tail; ideal {ideal:g})")
    emit("llm_turn_latency_p50", stats["latency_p50"], "ms", f"info (double answers after {args.latency_ms:g} ms)")
    emit("llm_turn_latency_p95", stats["latency_p95"], "ms", "info")
    if args.workers == 1:
        emit("rollout_cpu_per_turn_whole_run", 1000.0 * stats["cpu"] / max(1, stats["turns"]), "ms",
             "info (includes world resets and client start-up)")
    emit("llm_turns_total", stats["turns"], "turns",
         f"info: at most {args.episodes * turns}; episodes ended by {stats['endings']}")
    emit("peak_rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "MB",
         f"<= {RSS_BUDGET_MB} for {args.episodes} concurrent episodes"
         + (f" (this process only; {args.workers} workers not counted)" if args.workers > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
