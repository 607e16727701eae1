"""The ``dagger`` agent: a model plays, the scripted expert labels every state it visits.

Behaviour cloning trains on the states the expert visits; the trained model drifts into states
the expert never reaches (low health, hunger, a zombie next to it) and has no example of what to
do there. DAgger (Ross et al., 2011) closes that gap: play the *student*, ask the expert what it
would do in each state the student actually reached, and train on those labels too.

Per turn this agent:

- asks the scripted expert for its decision first, every turn, so the expert's per-episode
  memory (``expert.planner.Memory``) follows the trajectory that is really played;
- executes the student's decision, or, with probability ``beta`` (a generator seeded by the
  episode seed, so a seed replays), the expert's own;
- returns a decision whose ``assistant_message`` is the expert's reply (the SFT exporter turns
  a turn's assistant message into the example's label) while ``actions``, ``valid``,
  ``terminate`` and ``reasoning`` are those of the decision that was executed, so the trace's
  steps, tool results and statistics say truthfully what happened. The executed reply itself
  is kept in the turn's ``extra`` (``executed_by``: ``student`` | ``expert``; ``executed``:
  its exact assistant message; ``label_goal``: the expert's goal).

The student is sent the history the runner keeps, which (like the export) holds the labels of
earlier turns: with ``history_turns`` 0 the prompt is exactly the observation.
"""

from __future__ import annotations

import random
from typing import Any

from crafter_tui.agents.base import Agent, AgentDecision, HistoryTurn, TurnObservation

STUDENT, EXPERT = "student", "expert"


class DaggerAgent:
    """Executes ``student`` (or, with probability ``beta``, ``expert``); labels every turn with ``expert``."""

    kind = "dagger"
    needs_semantic_map = True  # the expert plans on the whole map

    def __init__(self, student: Agent, expert: Agent, beta: float = 0.0) -> None:
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be within [0, 1], got {beta}")
        self.student = student
        self.expert = expert
        self.beta = beta
        self.model = student.model
        # only a student turn waits on I/O; an expert-executed turn must still let other episodes run
        self.act_awaits_io = bool(getattr(student, "act_awaits_io", False)) and beta == 0.0
        self._rng = random.Random(0)

    # the runner sets the prompt and history window after construction: they are the student's
    @property
    def system_prompt(self) -> str | None:
        return self.student.system_prompt

    @system_prompt.setter
    def system_prompt(self, value: str | None) -> None:
        self.student.system_prompt = value
        self.expert.system_prompt = value

    @property
    def history_turns(self) -> int:
        return self.student.history_turns

    @history_turns.setter
    def history_turns(self, value: int) -> None:
        self.student.history_turns = value

    async def start_episode(self, seed: int) -> None:
        self._rng = random.Random(f"dagger-beta-{int(seed)}")
        await self.expert.start_episode(seed)
        await self.student.start_episode(seed)

    async def act(self, obs: TurnObservation, history: list[HistoryTurn]) -> AgentDecision:
        label = await self.expert.act(obs, history)
        # one draw per turn whatever beta is, so the same seed gives the same choices
        executed_by = EXPERT if self._rng.random() < self.beta else STUDENT
        executed = label if executed_by == EXPERT else await self.student.act(obs, history)
        return relabelled(executed, label, executed_by)

    def record_result(self, decision: AgentDecision, tool_result: str) -> None:
        self.expert.record_result(decision, tool_result)
        self.student.record_result(decision, tool_result)

    async def aclose(self) -> None:
        try:
            await self.student.aclose()
        finally:
            await self.expert.aclose()


def relabelled(executed: AgentDecision, label: AgentDecision, executed_by: str) -> AgentDecision:
    """``executed`` as the runner must carry it out, with ``label``'s reply as the turn's assistant message."""
    extra: dict[str, Any] = {**executed.extra, "executed_by": executed_by,
                             "executed": executed.assistant_message, "label_goal": label.extra.get("goal")}
    return AgentDecision(
        actions=list(executed.actions), reasoning=executed.reasoning, assistant_message=label.assistant_message,
        terminate=executed.terminate, valid=executed.valid, error=executed.error, raw=executed.raw,
        prompt_tokens=executed.prompt_tokens, completion_tokens=executed.completion_tokens,
        latency_ms=executed.latency_ms, extra=extra)
