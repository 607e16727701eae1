"""``FilterSpec``: every input of a selection, validated once, bound as SQL parameters later.

The filter CLI, the ``[filter]`` config section and the console's filter screen all build one
of these; nothing downstream sees raw flags or strings that could become SQL.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crafter_tui.config import FilterSection
from crafter_tui.errors import UserError
from crafter_tui.world.rules import ACHIEVEMENTS

#: Terminations that mean the episode was played to its end (``--require-termination``).
COMPLETED_TERMINATIONS: tuple[str, ...] = ("death", "max_steps", "agent_terminated")

Mode = Literal["trajectory", "turn"]


class FilterSpec(BaseModel):
    """What to select from a trace store and how to shape it into examples."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_achievements: int | None = Field(None, ge=0, le=len(ACHIEVEMENTS))
    min_reward: float | None = Field(None, allow_inf_nan=False)
    max_turns: int | None = Field(None, ge=1)
    require_termination: bool = False
    models: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    achievements: tuple[str, ...] = ()
    min_progression: float | None = Field(None, ge=0.0, le=1.0)
    max_invalid_fraction: float | None = Field(None, ge=0.0, le=1.0, description="episodes whose invalid turns "
                                               "are at most this fraction of their turns")
    mode: Mode = "turn"
    keep_before_achievement: int | None = Field(None, ge=1, le=1_000_000)
    drop_invalid: bool = False
    dedupe: bool = False
    balance_actions: bool = False
    max_examples: int | None = Field(None, ge=1)
    validation_split: float = Field(0.0, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=-(2**62), le=2**62)
    text_actions: bool = False
    drop_reasoning: bool = False
    goal_reasoning: bool = False
    cost_model: str = "gpt-4o-mini-2024-07-18"

    @field_validator("achievements")
    @classmethod
    def _known_achievements(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in ACHIEVEMENTS]
        if unknown:
            raise ValueError(f"unknown achievement(s) {', '.join(unknown)}; known: {', '.join(ACHIEVEMENTS)}")
        return tuple(dict.fromkeys(value))

    @model_validator(mode="after")
    def _mode_options(self) -> FilterSpec:
        if self.mode == "trajectory" and self.balance_actions:
            raise ValueError("balance_actions balances per-turn examples: use mode 'turn'")
        if self.drop_reasoning and self.goal_reasoning:
            raise ValueError("drop_reasoning empties the reasoning and goal_reasoning replaces it with the "
                             "recorded goal: choose one")
        return self

    @property
    def needs_turns(self) -> bool:
        """True when the selection depends on per-turn data (not answerable from summaries alone)."""
        return self.keep_before_achievement is not None or self.dedupe or self.balance_actions

    @classmethod
    def from_section(cls, section: FilterSection, **overrides: object) -> FilterSpec:
        """The spec of a ``[filter]`` config section, with flags (non-None) on top."""
        data = section.model_dump()
        data.update({key: value for key, value in overrides.items() if value is not None})
        data["models"] = tuple(data.get("models") or ())
        data["runs"] = tuple(data.get("runs") or ())
        data["achievements"] = tuple(data.get("achievements") or ())
        return build_spec(data, where="filter settings")


def build_spec(data: dict[str, object], *, where: str) -> FilterSpec:
    """Validate ``data`` into a spec, turning the first problem into a ``UserError`` naming the field."""
    from pydantic import ValidationError

    try:
        return FilterSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "spec"
        raise UserError(f"{field}: {first['msg']}", where=where) from None
