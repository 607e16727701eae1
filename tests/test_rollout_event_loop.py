"""How episodes share the event loop: worker processes run on uvloop where installed, and an
agent whose every ``act`` waits on I/O sends its next request without queueing behind the
other ready episodes (the episode loop yields on its own only for agents that never wait)."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from crafter_tui.agents.base import AgentDecision
from crafter_tui.agents.prompting import interact_message
from crafter_tui.rollout.envs import LocalEnv
from crafter_tui.rollout.episode import EpisodeJob, play_episode
from crafter_tui.rollout.executors import run_worker_loop
from crafter_tui.rollout.spec import RolloutSpec


def test_worker_loop_runs_the_coroutine_on_the_fastest_loop_available():
    async def which_loop() -> str:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__module__

    module = run_worker_loop(which_loop())
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert module.split(".")[0] == expected


class GatedAgent:
    """Waits in ``act`` until the test opens the gate: a stand-in for an LLM call."""

    kind, model, system_prompt, history_turns, needs_semantic_map = "openai", "gated", None, 0, False

    def __init__(self, name: str, log: list[str], gates: dict[str, asyncio.Future], awaits_io: bool) -> None:
        self.name, self.log, self.gates = name, log, gates
        self.act_awaits_io = awaits_io
        self.turn = 0

    async def start_episode(self, seed: int) -> None:
        pass

    async def act(self, obs: Any, history: list) -> AgentDecision:
        self.log.append(f"ask {self.name}{self.turn}")
        gate = self.gates[self.name] = asyncio.get_running_loop().create_future()
        await gate
        self.turn += 1
        return AgentDecision(["noop"], "r", interact_message(["noop"], "r", "call_0"))

    def record_result(self, decision: AgentDecision, tool_result: str) -> None:
        pass

    async def aclose(self) -> None:
        pass


class LogSink:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def step(self, record: dict[str, Any]) -> None:
        self.log.append(f"step {record['episode']}")

    def turn(self, record: dict[str, Any]) -> None:
        pass

    def progress(self, *args: int) -> None:
        pass


@pytest.mark.parametrize("awaits_io", [True, False])
async def test_an_agent_that_awaits_io_asks_again_before_others_are_served(tmp_path, awaits_io):
    spec = RolloutSpec(agent="openai", model="gated", episodes=2, max_steps=10, max_turns=2,
                       difficulty="peaceful", out_dir=tmp_path)
    log: list[str] = []
    gates: dict[str, asyncio.Future] = {}
    agents = {name: GatedAgent(name, log, gates, awaits_io) for name in "ab"}
    episodes = [asyncio.create_task(play_episode(spec, EpisodeJob(i, i), LocalEnv("peaceful", 10), agents[name],
                                                 LogSink(log), "run")) for i, name in enumerate("ab")]
    while len(gates) < 2 or any(gate.done() for gate in gates.values()):
        await asyncio.sleep(0.01)
    log.clear()
    gates["a"].set_result(None)  # both answers arrive in the same loop iteration
    gates["b"].set_result(None)
    while len(log) < 4:
        await asyncio.sleep(0.01)
    if awaits_io:  # each episode sends its next request right after its own step
        assert log[:4] == ["step 0", "ask a1", "step 1", "ask b1"]
    else:  # each yields after its step, so both steps come first
        assert log[:4] == ["step 0", "step 1", "ask a1", "ask b1"]
    for name in "ab":
        gates[name].set_result(None)
    summaries = await asyncio.gather(*episodes)
    assert [s.turns for s in summaries] == [2, 2]


class _CountingSink:
    def __init__(self) -> None:
        self.steps: list[tuple[int, int]] = []

    def started(self, job: Any) -> None:
        pass

    def step(self, record: dict[str, Any]) -> None:
        self.steps.append((record["episode"], record["step"]))

    def turn(self, record: dict[str, Any]) -> None:
        pass

    def progress(self, *args: int) -> None:
        pass

    def episode(self, summary: Any) -> None:
        pass


@pytest.mark.parametrize("lanes", [1, 2])
async def test_episodes_keep_the_event_loop_served_whether_they_play_alone_or_interleaved(lanes):
    """An episode alone (one lane) yields only every ALONE_YIELD_INTERVAL_S, interleaved ones every turn."""
    from crafter_tui.config import AppConfig
    from crafter_tui.rollout.episode import play_jobs

    spec = RolloutSpec(agent="scripted", episodes=2, max_steps=200, out_dir=Path("unused"))
    sink, ticks = _CountingSink(), []

    async def ticker() -> None:
        while True:
            ticks.append(len(sink.steps))
            await asyncio.sleep(0)

    side = asyncio.create_task(ticker())
    await play_jobs(spec, AppConfig(), [EpisodeJob(0, 0), EpisodeJob(1, 1)], "run", sink, lanes)
    side.cancel()
    assert len({n for n in ticks if 0 < n < len(sink.steps)}) >= 2  # served while the episodes played
    episodes_in_order = [episode for episode, _ in sink.steps]
    if lanes == 1:  # one after the other
        assert episodes_in_order == sorted(episodes_in_order)
    else:  # turn by turn: the second episode's first steps follow the first one's first turn (<= 5 actions)
        assert episodes_in_order.index(1) <= 5
