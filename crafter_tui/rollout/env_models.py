"""HTTP bodies of the Crafter environment service (synth CrafterClassic compatible).

Requests keep the shapes the synth service accepted (``config`` / ``initial_state`` /
``task_instance`` on initialize, ``action.tool_calls`` on step) and allow unknown keys, so
existing clients keep working; every value we *use* is typed and range-checked, so a bad
seed or action is a 422 naming the field instead of being silently clipped.

They live with the rollout, the client that speaks them (``rollout/env_client.py``); the service in
``servers/env_server.py`` sits a layer above and implements them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from crafter_tui.world.difficulty import DifficultyName
from crafter_tui.world.rules import ACTION_IDS, ACTIONS

ENV_NAME = "CrafterClassic"
SEED_LIMIT = 2**32  # numpy RandomState seeds, which Crafter's world generation uses
MAX_STEPS_LIMIT = 1_000_000
DEFAULT_MAX_STEPS = 10_000  # Crafter's own episode length


class Lenient(BaseModel):
    """Unknown keys are allowed (other clients send more than we read)."""

    model_config = ConfigDict(extra="allow")


class ObservationOptions(Lenient):
    """What an observation carries besides the structured fields (documented in docs/modal-rollouts.md)."""

    include_text: bool | None = None
    include_semantic_map: bool | None = None
    include_image: bool | None = None


class InitConfig(ObservationOptions):
    """``config`` of an initialize request."""

    seed: StrictInt | None = Field(None, ge=0, lt=SEED_LIMIT)
    difficulty: DifficultyName | None = None
    max_steps: StrictInt | None = Field(None, ge=1, le=MAX_STEPS_LIMIT)
    length: StrictInt | None = Field(None, ge=1, le=MAX_STEPS_LIMIT, description="crafter.Env's name for max_steps")


class InitialState(Lenient):
    seed: StrictInt | None = Field(None, ge=0, lt=SEED_LIMIT)


class TaskMetadata(Lenient):
    seed: StrictInt | None = Field(None, ge=0, lt=SEED_LIMIT)
    difficulty: DifficultyName | None = None
    max_steps: StrictInt | None = Field(None, ge=1, le=MAX_STEPS_LIMIT)


class TaskInstance(Lenient):
    """A synth task instance: the seed and difficulty may sit at the top or under ``metadata``."""

    seed: StrictInt | None = Field(None, ge=0, lt=SEED_LIMIT)
    difficulty: DifficultyName | None = None
    metadata: TaskMetadata | None = None
    config: InitConfig | None = None


class InitializeRequest(Lenient):
    initial_state: InitialState | None = None
    config: InitConfig | None = None
    task_instance: TaskInstance | None = None

    def _first(self, name: str) -> Any:
        """The first value of ``name`` in precedence order: config, initial_state, task_instance(.config/.metadata)."""
        task = self.task_instance
        for holder in (self.config, self.initial_state, task, task and task.config, task and task.metadata):
            value = getattr(holder, name, None) if holder is not None else None
            if value is not None:
                return value
        return None

    def seed(self) -> int | None:
        return self._first("seed")

    def difficulty(self) -> str:
        return self._first("difficulty") or "normal"

    def max_steps(self) -> int:
        return self._first("max_steps") or self._first("length") or DEFAULT_MAX_STEPS

    def options(self) -> ObservationOptions:
        cfg = self.config or InitConfig()
        return ObservationOptions(
            include_text=True if cfg.include_text is None else cfg.include_text,
            include_semantic_map=bool(cfg.include_semantic_map),
            include_image=bool(cfg.include_image),
        )


class ToolArgs(Lenient):
    """``interact`` arguments: ``action`` (id or name) and/or ``actions`` (a list, the seed agent's shape)."""

    action: StrictInt | str | None = None
    actions: list[StrictInt | str] | None = Field(None, min_length=1, max_length=64)

    @field_validator("action")
    @classmethod
    def _check_action(cls, value: int | str | None) -> int | None:
        return None if value is None else to_action_id(value)

    @field_validator("actions")
    @classmethod
    def _check_actions(cls, value: list[int | str] | None) -> list[int] | None:
        return None if value is None else [to_action_id(item) for item in value]

    @model_validator(mode="after")
    def _some_action(self) -> "ToolArgs":
        if self.action is None and not self.actions:
            raise ValueError("give 'action' (an id 0..16 or an action name) or 'actions' (a list of them)")
        return self

    def action_ids(self) -> list[int]:
        """The actions of this call in order: ``action`` first, then ``actions``."""
        return ([self.action] if self.action is not None else []) + list(self.actions or [])  # type: ignore[list-item]


class ToolCall(Lenient):
    tool: str = "interact"
    args: ToolArgs

    @field_validator("tool")
    @classmethod
    def _check_tool(cls, value: str) -> str:
        if value != "interact":
            raise ValueError(f"unknown tool {value!r}; the env service runs 'interact' calls")
        return value


class StepAction(Lenient):
    tool_calls: list[ToolCall] = Field(min_length=1, max_length=64)


class StepRequest(Lenient):
    env_id: str = Field(min_length=1, max_length=200)
    request_id: str | None = Field(None, max_length=200)
    action: StepAction


class TerminateRequest(Lenient):
    env_id: str = Field(min_length=1, max_length=200)


def to_action_id(value: int | str) -> int:
    """An action id from an int or a name (digit strings count as ids); out-of-range is an error, never clipped."""
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            value = int(text)
        elif text in ACTION_IDS:
            return ACTION_IDS[text]
        else:
            raise ValueError(f"unknown action {value!r}; use an id 0..{len(ACTIONS) - 1} or one of {', '.join(ACTIONS)}")
    if not 0 <= value < len(ACTIONS):
        raise ValueError(f"action id {value} out of range 0..{len(ACTIONS) - 1}")
    return value


class Observation(Lenient):
    """The observation the service returns (synth fields first, then ours). The client validates with it."""

    inventory: dict[str, int]
    achievements_status: dict[str, bool]
    player_position: tuple[int, int]
    player_direction: tuple[int, int]
    num_steps_taken: int
    max_steps_episode: int
    reward_last_step: float
    total_reward_episode: float
    terminated: bool
    truncated: bool
    # ours: enough to rebuild ``WorldState`` exactly
    achievements_counts: dict[str, int]
    local_view: list[list[int]]
    facing_id: int
    sleeping: bool
    daylight: float
    text: str | None = None
    semantic_map: list[list[int]] | None = None
    image_png_base64: str | None = None


class StepInfo(Lenient):
    terminated: bool
    truncated: bool
    new_achievements: list[str] = Field(default_factory=list)
    rewards: list[float] = Field(default_factory=list)
    actions_executed: int = 0


class StepResponse(Lenient):
    observation: Observation
    reward: float
    done: bool
    info: StepInfo


class InitializeResponse(Lenient):
    env_id: str
    observation: Observation
    done: bool = False
    info: dict[str, Any] = Field(default_factory=dict)
