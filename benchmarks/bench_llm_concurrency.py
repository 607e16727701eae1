"""How many LLM turns per second the rollout sustains with many concurrent episodes.

Setup: the OpenAI-compatible TEST DOUBLE in its own process (so it never shares our GIL)
answers every chat-completions request with one plausible action after a fixed latency
(100 ms). 64 episodes of the ``openai`` agent play at once through the real rollout runner
(``services.rollouts.run_rollout``: the agent's real HTTP client, real Crafter, real trace
files), in this process or spread over ``--workers N`` processes.

Ideal: with 64 episodes each waiting 100 ms per turn, 64 / 0.1 s = 640 turns/s. Goal: the
steady state (all episodes running, none finished yet) reaches >= 0.9 x ideal, and peak memory
stays <= 400 MB (this process's peak RSS; with workers, PSS summed over this process, the
forkserver and the workers). The double's CPU per turn is printed because it shares the
machine's cores with the rollout; the whole-run rate (including 64 world resets and the tail)
is printed too, for information.

    python benchmarks/bench_llm_concurrency.py [--small] [--workers 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, peak_rss_mb  # noqa: E402 - benchmarks run as scripts from a checkout

import argparse
import asyncio
import collections
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable

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
    """Follows per-episode turn counts from progress events to find the steady-state rate.

    ``double_cpu`` reads the test double's CPU seconds, so its cost per request in the same
    window is reported too (the double shares the machine's cores with the rollout).
    """

    def __init__(self, episodes: int, double_cpu: Callable[[], float | None] = lambda: None) -> None:
        self.episodes = episodes
        self.double_cpu = double_cpu
        self.turns: dict[int, int] = {}
        # (wall time, CPU time, total turns, double CPU) once every episode played a turn / when the first one ends
        self.all_running: tuple[float, float, int, float | None] | None = None
        self.first_finish: tuple[float, float, int, float | None] | None = None

    def _mark(self) -> tuple[float, float, int, float | None]:
        return time.perf_counter(), time.process_time(), sum(self.turns.values()), self.double_cpu()

    def on_event(self, event: object) -> None:
        if isinstance(event, EpisodeProgress):
            self.turns[event.episode] = event.turn
            if self.all_running is None and len(self.turns) == self.episodes:
                self.all_running = self._mark()
        elif isinstance(event, EpisodeFinished) and self.first_finish is None:
            self.first_finish = self._mark()

    def steady(self) -> tuple[float, float, float | None] | None:
        """Turns/s, CPU ms per turn and the double's CPU ms per turn between "all running" and "first finished"."""
        if self.all_running is None or self.first_finish is None:
            return None
        (t0, c0, n0, d0), (t1, c1, n1, d1) = self.all_running, self.first_finish
        if t1 <= t0 or n1 <= n0:
            return None
        double_ms = 1000.0 * (d1 - d0) / (n1 - n0) if d0 is not None and d1 is not None else None
        return (n1 - n0) / (t1 - t0), 1000.0 * (c1 - c0) / (n1 - n0), double_ms


class FamilyMemory:
    """Peak memory of this process and its descendants (forkserver, ``--workers``), sampled.

    ``getrusage`` only sees this process (and waited-for children), but the 400 MB budget is
    for the whole rollout. Summed as PSS (proportional set size), so pages the forked workers
    share with the forkserver count once, not once per process. Processes in ``exclude`` (the
    test double) are not counted.
    """

    def __init__(self, exclude: set[int], interval: float = 0.5) -> None:
        self.exclude = exclude
        self.interval = interval
        self.peak_mb = 0.0

    @staticmethod
    def _parents() -> dict[int, int]:
        """pid -> parent pid for every readable process."""
        found = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    found[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        return found

    @staticmethod
    def _pss_kb(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return 0

    def sample(self) -> None:
        parents = self._parents()
        family, frontier = {os.getpid()}, [os.getpid()]
        while frontier:
            parent = frontier.pop()
            for pid, ppid in parents.items():
                if ppid == parent and pid not in family and pid not in self.exclude:
                    family.add(pid)
                    frontier.append(pid)
        self.peak_mb = max(self.peak_mb, sum(self._pss_kb(pid) for pid in family) / 1024.0)

    async def follow(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)


async def run(episodes: int, turns: int, latency_ms: float, double: DoubleProcess, out_dir: Path,
              workers: int = 1) -> dict:
    config = AppConfig()
    config.openai.base_url = double.base_url
    config.openai.api_key = SecretStr("sk-bench-not-a-real-key")
    config.openai.max_retries = 2
    spec = RolloutSpec(agent="openai", model="policy-double", episodes=episodes, max_steps=turns,
                       max_turns=turns, difficulty="peaceful", concurrency=episodes, out_dir=out_dir,
                       workers=workers)
    clock = TurnClock(episodes, double.cpu_seconds)
    family = FamilyMemory(exclude={double.pid}) if workers > 1 else None
    follower = asyncio.create_task(family.follow()) if family else None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        result = await run_rollout(spec, config, clock.on_event)
    finally:
        if follower:
            follower.cancel()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    total_turns = sum(s.turns for s in result.summaries)
    latencies = [json.loads(line)["latency_ms"] for line in (result.run_dir / "turns.jsonl").open()]
    return {"wall": wall, "cpu": cpu, "turns": total_turns, "steady": clock.steady(),
            "latency_p50": statistics.median(latencies), "latency_p95": statistics.quantiles(latencies, n=20)[-1],
            "endings": dict(collections.Counter(s.termination for s in result.summaries)),
            "invalid": sum(s.invalid_actions for s in result.summaries),
            "family_pss_mb": family.peak_mb if family else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="short episodes (CI: < 60 s)")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=1,
                        help="rollout worker processes (the runner's --workers)")
    args = parser.parse_args()
    turns = 25 if args.small else 150
    ideal = args.episodes / (args.latency_ms / 1000.0)
    with DoubleProcess(latency_ms=args.latency_ms) as double, tempfile.TemporaryDirectory() as tmp:
        stats = asyncio.run(run(args.episodes, turns, args.latency_ms, double, Path(tmp), args.workers))
    goal = (f">= {GOAL_FRACTION * ideal:g} ({GOAL_FRACTION} x ideal {ideal:g}: "
            f"{args.episodes} episodes / {args.latency_ms:g} ms)")
    if stats["steady"] is not None:
        rate, cpu_ms, double_ms = stats["steady"]
        emit("llm_turns_per_s_steady", rate, "turns/s", goal)
        emit("llm_turns_per_s_steady_vs_ideal", rate / ideal, "ratio", f">= {GOAL_FRACTION}")
        if args.workers == 1:
            emit("rollout_cpu_per_turn_steady", cpu_ms, "ms",
                 f"<= {1000.0 / (GOAL_FRACTION * ideal):.2f} "
                 f"(what {GOAL_FRACTION * ideal:g} turns/s allows one event loop)")
        else:  # the workers' CPU is not visible here; this process writes the traces
            emit("parent_cpu_per_turn_steady", cpu_ms, "ms", "info (this process: delivery and trace writing)")
        if double_ms is not None:
            emit("double_cpu_per_turn_steady", double_ms, "ms", "info (the test double's CPU, on the same cores)")
    emit("llm_turns_per_s_whole_run", stats["turns"] / stats["wall"], "turns/s",
         f"info (includes {args.episodes} world resets and the tail; ideal {ideal:g})")
    emit("llm_turn_latency_p50", stats["latency_p50"], "ms", f"info (double answers after {args.latency_ms:g} ms)")
    emit("llm_turn_latency_p95", stats["latency_p95"], "ms", "info")
    if args.workers == 1:
        emit("rollout_cpu_per_turn_whole_run", 1000.0 * stats["cpu"] / max(1, stats["turns"]), "ms",
             "info (includes world resets and client start-up)")
    emit("llm_turns_total", stats["turns"], "turns",
         f"info: at most {args.episodes * turns}; episodes ended by {stats['endings']}")
    budget = f"<= {RSS_BUDGET_MB} for {args.episodes} concurrent episodes"
    if args.workers == 1:
        emit("peak_rss", peak_rss_mb(), "MB", budget)
    else:
        emit("peak_memory_total", stats["family_pss_mb"], "MB",
             f"{budget} (PSS summed over this process, the forkserver and its {args.workers} workers, "
             "sampled every 0.5 s)")
        emit("peak_rss_parent", peak_rss_mb(), "MB", "info (this process alone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
