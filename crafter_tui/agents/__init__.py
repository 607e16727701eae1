"""Agents: one async protocol (``base.Agent``), four kinds, one factory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crafter_tui.errors import UserError

if TYPE_CHECKING:
    from crafter_tui.agents.base import Agent
    from crafter_tui.config import AppConfig

AGENT_KINDS = ("scripted", "random", "openai", "dagger")


def make_agent(kind: str, *, model: str | None, config: "AppConfig") -> "Agent":
    """A fresh agent of ``kind`` (one per episode; agents keep per-episode memory)."""
    if kind == "scripted":
        from crafter_tui.agents.scripted import ScriptedAgent

        return ScriptedAgent()
    if kind == "random":
        from crafter_tui.agents.random_agent import RandomAgent

        return RandomAgent()
    if kind == "openai":
        from crafter_tui.agents.openai_agent import OpenAIAgent

        if not model:
            raise UserError("the openai agent needs a model name", where="--model")
        return OpenAIAgent.from_config(config, model)
    if kind == "dagger":
        from crafter_tui.agents.dagger import DaggerAgent
        from crafter_tui.agents.openai_agent import OpenAIAgent
        from crafter_tui.agents.scripted import ScriptedAgent

        if not model:
            raise UserError("the dagger agent needs the model that plays (the expert labels its turns)",
                            where="--model")
        return DaggerAgent(OpenAIAgent.from_config(config, model), ScriptedAgent(), beta=config.eval.expert_beta)
    raise UserError(f"unknown agent {kind!r}; choose one of {', '.join(AGENT_KINDS)}", where="--agent")
