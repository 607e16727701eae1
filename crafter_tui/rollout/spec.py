"""What a rollout is asked to do, validated once at the boundary."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crafter_tui.config import DEFAULT_TRACE_DIR, AgentKind, AppConfig, Difficulty, ObservationFormat, http_url


class RolloutSpec(BaseModel):
    """A rollout: which agent plays which seeds, how, and where traces go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: AgentKind = "scripted"
    model: str = "scripted-expert"
    episodes: int = Field(10, ge=1, le=1_000_000)
    seed: int = Field(0, ge=0, lt=2**31)
    max_steps: int = Field(300, ge=1, le=100_000)
    max_turns: int | None = Field(None, ge=1)
    difficulty: Difficulty = "normal"
    concurrency: int = Field(8, ge=1, le=4096)
    episode_timeout: float | None = Field(None, gt=0)
    history_turns: int = Field(4, ge=0, le=64)
    observation: ObservationFormat = "full"
    out_dir: Path = DEFAULT_TRACE_DIR
    run_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    resume: str | None = None
    env: Literal["local", "remote"] = "local"
    env_url: str | None = None
    workers: int = Field(1, ge=1, le=256)
    on: Literal["local", "modal"] = "local"
    experiment: str | None = None
    system_prompt: str | None = Field(None, description="the LLM's system prompt (None: the observation format's)")
    actions: Literal["tools", "text"] = Field("tools", description="how an LLM writes its actions: an interact "
                                              "tool call, or that call's JSON as text (models trained on "
                                              "--text-actions data)")
    model_card: dict[str, Any] | None = Field(None, description="the model card applied to this run (recorded)")
    mismatches: tuple[str, ...] = Field((), description="card settings the user overrode with --allow-mismatch")

    @model_validator(mode="after")
    def _check(self) -> "RolloutSpec":
        if self.env == "remote" and not self.env_url:
            raise ValueError("env 'remote' needs an env_url (the Crafter env service)")
        if self.env == "remote":
            try:
                http_url(self.env_url or "")
            except ValueError as exc:
                raise ValueError(f"env_url {exc}") from None
        return self

    @property
    def seeds(self) -> list[int]:
        """Episode i plays seed ``seed + i``."""
        return [self.seed + i for i in range(self.episodes)]

    @property
    def turn_limit(self) -> int:
        """Turns allowed per episode; without a limit, one turn per env step (bounds invalid replies)."""
        return self.max_turns if self.max_turns is not None else self.max_steps

    @classmethod
    def from_config(cls, config: AppConfig, **overrides: object) -> "RolloutSpec":
        """The spec the config describes, with explicit overrides (None values ignored)."""
        ev = config.eval
        values: dict[str, object] = {
            "agent": ev.agent, "model": ev.model_name, "episodes": ev.episodes, "seed": ev.seed,
            "max_steps": ev.max_steps, "max_turns": ev.max_turns, "difficulty": ev.difficulty,
            "concurrency": ev.concurrency, "episode_timeout": ev.episode_timeout,
            "history_turns": ev.history_turns, "observation": ev.observation, "out_dir": config.output.trace_dir,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
