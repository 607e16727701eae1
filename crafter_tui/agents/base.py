"""The one async protocol every agent speaks, so the runner treats a scripted expert, a
random baseline and any OpenAI-compatible model the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: the SFT export imports this module and needs no game engine
    import numpy as np

    from crafter_tui.world.env import WorldState


@dataclass(slots=True)
class TurnObservation:
    """What an agent gets each turn."""

    state: WorldState
    text: str  # the text observation (the user message of this turn)
    turn: int
    max_steps: int
    semantic_map: np.ndarray | None = None  # whole 64x64 map, only for agents that ask for it


@dataclass(slots=True)
class AgentDecision:
    """What an agent decided, with the exact assistant message kept for SFT export."""

    actions: list[str]
    reasoning: str
    assistant_message: dict[str, Any]
    terminate: bool = False
    valid: bool = True
    error: str | None = None
    raw: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Agent(Protocol):
    """A Crafter player. ``act`` is called once per turn until the episode ends."""

    kind: str  # "scripted" | "random" | "openai"
    model: str  # opaque model name recorded in traces
    system_prompt: str | None  # what an LLM sees first (recorded and exported)
    history_turns: int  # past turns included in each prompt
    needs_semantic_map: bool  # True only for privileged agents (the scripted expert)

    async def start_episode(self, seed: int) -> None:
        """Reset per-episode memory."""

    async def act(self, obs: TurnObservation, history: list["HistoryTurn"]) -> AgentDecision:
        """Decide the next 1-5 actions (or terminate)."""

    def record_result(self, decision: AgentDecision, tool_result: str) -> None:
        """Learn what the last decision did (the text returned as the tool result)."""

    async def aclose(self) -> None:
        """Release clients and connections."""


@dataclass(slots=True)
class HistoryTurn:
    """One earlier turn as the model saw it: observation, its reply, the tool result."""

    observation: str
    assistant: dict[str, Any]
    tool_result: str | None
