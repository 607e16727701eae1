"""The random baseline: one uniformly random action per turn.

Its random generator is seeded from the episode seed in ``start_episode``, so a seed always
replays the same actions (and the same trajectory, since the world is deterministic too).
It is the floor every other agent is compared against.
"""

from __future__ import annotations

import random

from crafter_tui.agents.base import AgentDecision, HistoryTurn, TurnObservation
from crafter_tui.agents.prompting import SYSTEM_PROMPT, interact_message
from crafter_tui.world.rules import ACTIONS

RANDOM_REASONING = "Exploring at random."


class RandomAgent:
    """Uniform random actions, deterministic per episode seed."""

    kind = "random"

    def __init__(self, model: str = "random") -> None:
        self.model = model
        self.system_prompt: str | None = SYSTEM_PROMPT
        self.history_turns = 0
        self.needs_semantic_map = False
        self._seed = 0
        self._rng = random.Random(0)

    async def start_episode(self, seed: int) -> None:
        self._seed = int(seed)
        self._rng = random.Random(self._seed)

    async def act(self, obs: TurnObservation, history: list[HistoryTurn]) -> AgentDecision:
        action = ACTIONS[self._rng.randrange(len(ACTIONS))]
        call_id = f"call_{self._seed}_{obs.turn}"
        return AgentDecision(
            actions=[action], reasoning=RANDOM_REASONING,
            assistant_message=interact_message([action], RANDOM_REASONING, call_id))

    def record_result(self, decision: AgentDecision, tool_result: str) -> None:
        """The random agent learns nothing from results."""

    async def aclose(self) -> None:
        """Nothing to release."""
