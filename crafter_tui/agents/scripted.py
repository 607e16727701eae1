"""The scripted expert: plays Crafter well with no model; the product's embedded default agent.

Privileged information it reads (and nothing else):
- ``obs.semantic_map``: the whole 64x64 map of semantic ids (materials, with creatures and
  plants drawn over them), indexed [x, y], as ``CrafterWorld.semantic_map()`` returns it;
- ``obs.state``: position, facing, inventory (vitals included), achievements, sleeping,
  daylight (the same facts the text observation shows, plus the exact position).
It never touches the world object, so it plays the same against a remote env service that
sends only the observation and the semantic map.

It prefers targets inside the 9x7 local view and words its reasoning in the terms of the text
observation (offsets such as "2 north and 1 east"), because its traces train small models that
only see ``obs.text``. Decisions are deterministic: no randomness, no set-order dependence.
"""

from __future__ import annotations

import numpy as np

from crafter_tui.agents.base import AgentDecision, HistoryTurn, TurnObservation
from crafter_tui.agents.expert.planner import Planner
from crafter_tui.agents.prompting import SYSTEM_PROMPT, interact_message


class ScriptedAgent:
    """A goal-priority expert that walks the semantic map with breadth-first search."""

    kind = "scripted"

    def __init__(self, model: str = "scripted-expert") -> None:
        self.model = model
        self.system_prompt: str | None = SYSTEM_PROMPT
        self.history_turns = 0
        self.needs_semantic_map = True
        self._seed = 0
        self._planner = Planner()

    async def start_episode(self, seed: int) -> None:
        self._seed = int(seed)
        self._planner = Planner()

    async def act(self, obs: TurnObservation, history: list[HistoryTurn]) -> AgentDecision:
        if obs.semantic_map is None:
            raise ValueError("the scripted expert needs obs.semantic_map (needs_semantic_map is True)")
        # A remote env service may send the map as nested lists: index it as an integer array.
        plan = self._planner.decide(obs.state, np.asarray(obs.semantic_map, dtype=np.int64))
        call_id = f"call_{self._seed}_{obs.turn}"
        return AgentDecision(
            actions=list(plan.actions), reasoning=plan.reasoning,
            assistant_message=interact_message(plan.actions, plan.reasoning, call_id),
            extra={"goal": plan.goal})

    def record_result(self, decision: AgentDecision, tool_result: str) -> None:
        """The expert re-plans from each observation, so results need no bookkeeping."""

    async def aclose(self) -> None:
        """Nothing to release."""
