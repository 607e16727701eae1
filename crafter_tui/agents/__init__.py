"""Agents and the one factory the runner uses to build them by kind.

``make_agent`` maps a kind to a builder. The OpenAI agent is imported lazily so that the
offline agents (scripted expert, random baseline) work without the OpenAI client stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crafter_tui.agents.base import Agent
from crafter_tui.errors import UserError


def _build_scripted(model: str | None, config: Any) -> Agent:
    from crafter_tui.agents.scripted import ScriptedAgent

    return ScriptedAgent()


def _build_random(model: str | None, config: Any) -> Agent:
    from crafter_tui.agents.random_agent import RandomAgent

    return RandomAgent()


def _build_openai(model: str | None, config: Any) -> Agent:
    from crafter_tui.agents.openai_agent import OpenAIAgent  # added by the OpenAI agent's owner

    return OpenAIAgent(model=model, config=config)


#: One builder per agent kind; a new kind is one entry here.
AGENT_BUILDERS: dict[str, Callable[[str | None, Any], Agent]] = {
    "scripted": _build_scripted,
    "random": _build_random,
    "openai": _build_openai,
}


def make_agent(kind: str, *, model: str | None = None, config: Any = None) -> Agent:
    """A fresh agent of ``kind``; ``model`` and ``config`` matter only to model-backed agents."""
    builder = AGENT_BUILDERS.get(kind)
    if builder is None:
        raise UserError(f"unknown agent kind {kind!r}; known: {', '.join(AGENT_BUILDERS)}", where="agent")
    return builder(model, config)
