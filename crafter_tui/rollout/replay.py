"""Step-level resume: an unfinished LLM episode continues from its last recorded turn.

The world is deterministic, so the state after the recorded turns is rebuilt by playing their
recorded actions again from the episode's seed; the agent's history is rebuilt from the recorded
turns. Nothing is asked of the model until the recorded turns run out, so no LLM turn is paid
twice. The replayed turns are written again under the next attempt number (the trace format's
rule: readers keep one attempt per episode), so the episode's lines stay one complete attempt;
every replayed step and turn is checked against the recorded one, and a difference (another
world, a changed observation) abandons the replay: the episode is played again from its seed.

Only agents whose decisions depend on nothing but the prompt can be resumed this way (the
``openai`` agent); agents with memory of their own (the scripted expert, DAgger's labeller)
replay their episodes from the seed as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crafter_tui.agents.base import AgentDecision, HistoryTurn, TurnObservation
from crafter_tui.traces.jsonl import iter_jsonl
from crafter_tui.traces.schema import STEPS_FILE, TURNS_FILE

if TYPE_CHECKING:
    from crafter_tui.agents.base import Agent
    from crafter_tui.rollout.events import RecordSink

#: Agent kinds whose episodes continue from their last recorded turn on ``--resume``.
STEP_RESUMABLE_AGENTS = frozenset({"openai"})
#: Fields a replayed record may differ in from the recorded one (which attempt wrote it).
_NOT_COMPARED = frozenset({"attempt"})


class ReplayMismatch(Exception):
    """The replayed episode differs from its recorded turns: it is played again from its seed."""


@dataclass(slots=True)
class ReplayPoint:
    """The recorded turns (0..T, in order) and their steps that an unfinished episode continues from."""

    turns: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)


def decision_from_record(turn: dict[str, Any]) -> AgentDecision:
    """The decision a turn record holds (what the model answered, with its tokens and latency)."""
    return AgentDecision(
        actions=list(turn.get("actions") or []), reasoning=turn.get("reasoning") or "",
        assistant_message=turn["assistant"], terminate=bool(turn.get("terminate")),
        valid=bool(turn.get("valid", True)), error=turn.get("error"), raw=turn.get("raw"),
        prompt_tokens=int(turn.get("prompt_tokens") or 0), completion_tokens=int(turn.get("completion_tokens") or 0),
        latency_ms=float(turn.get("latency_ms") or 0.0), extra=dict(turn.get("extra") or {}))


def replay_points(run_dir: Path, attempts: dict[int, int]) -> dict[int, ReplayPoint]:
    """Episode -> the recorded prefix it continues from, for each ``episode: attempt`` with recorded turns.

    The prefix is the turns 0..T recorded without a gap, and the steps of those turns, which must run
    1..N without a gap (a turn's steps are written before its turn line, so a turn cut short by a kill
    has no turn line and is asked again). An episode without such a prefix is left out (played from its seed).
    """
    turns: dict[int, dict[int, dict[str, Any]]] = {episode: {} for episode in attempts}
    steps: dict[int, dict[int, dict[str, Any]]] = {episode: {} for episode in attempts}
    for name, into, key in ((TURNS_FILE, turns, "turn"), (STEPS_FILE, steps, "step")):
        for raw in iter_jsonl(run_dir / name):
            episode = raw.get("episode")
            if episode in attempts and raw.get("attempt", 0) == attempts[episode] and isinstance(raw.get(key), int):
                into[episode][raw[key]] = raw
    points = {}
    for episode in attempts:
        point = _prefix(turns[episode], steps[episode])
        if point is not None:
            points[episode] = point
    return points


def _prefix(turns: dict[int, dict[str, Any]], steps: dict[int, dict[str, Any]]) -> ReplayPoint | None:
    ordered = []
    while len(ordered) in turns:
        ordered.append(turns[len(ordered)])
    if not ordered:
        return None
    last = len(ordered) - 1
    kept = sorted((record for record in steps.values() if record.get("turn", -1) <= last), key=lambda r: r["step"])
    if [record["step"] for record in kept] != list(range(1, len(kept) + 1)):
        return None
    return ReplayPoint(turns=ordered, steps=kept)


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as it reads back from its JSON line (tuples as lists), without the fields not compared."""
    return {key: value for key, value in json.loads(json.dumps(record)).items() if key not in _NOT_COMPARED}


def _check(kind: str, made: dict[str, Any], recorded: dict[str, Any]) -> None:
    want = {key: value for key, value in recorded.items() if key not in _NOT_COMPARED}
    got = _plain(made)
    if got != want:
        differ = sorted(key for key in want.keys() | got.keys() if want.get(key) != got.get(key))
        raise ReplayMismatch(f"replayed {kind} {recorded.get(kind)} differs from the recorded one in "
                             f"{', '.join(differ[:5])}")


class ReplayAgent:
    """Answers with the recorded decisions first, then hands every later turn to ``agent``."""

    def __init__(self, agent: Agent, turns: list[dict[str, Any]]) -> None:
        self.agent = agent
        self._turns = turns
        self._next = 0

    def __getattr__(self, name: str) -> Any:  # kind, model, system_prompt, history_turns, act_awaits_io, ...
        return getattr(self.agent, name)

    async def start_episode(self, seed: int) -> None:
        await self.agent.start_episode(seed)

    async def act(self, obs: TurnObservation, history: list[HistoryTurn]) -> AgentDecision:
        if self._next >= len(self._turns):
            return await self.agent.act(obs, history)
        recorded = self._turns[self._next]
        self._next += 1
        if recorded.get("observation") != obs.text:
            raise ReplayMismatch(f"the observation of turn {recorded.get('turn')} differs from the recorded one")
        return decision_from_record(recorded)

    def record_result(self, decision: AgentDecision, tool_result: str) -> None:
        self.agent.record_result(decision, tool_result)

    async def aclose(self) -> None:
        await self.agent.aclose()


class VerifyingSink:
    """Passes records on, checking each replayed step and turn against the recorded one."""

    def __init__(self, sink: RecordSink, point: ReplayPoint) -> None:
        self._sink = sink
        self._steps = {record["step"]: record for record in point.steps}
        self._turns = {record["turn"]: record for record in point.turns}

    def step(self, record: dict[str, Any]) -> None:
        recorded = self._steps.get(record["step"])
        if recorded is not None:
            _check("step", record, recorded)
        self._sink.step(record)

    def turn(self, record: dict[str, Any]) -> None:
        recorded = self._turns.get(record["turn"])
        if recorded is not None:
            _check("turn", record, recorded)
        self._sink.turn(record)

    def progress(self, episode: int, seed: int, step: int, turn: int, achievements: int) -> None:
        self._sink.progress(episode, seed, step, turn, achievements)
