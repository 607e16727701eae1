"""The trace file format: the truth every other stage reads.

A run is a folder::

    <trace_dir>/<run_id>/run.json        RunRecord (rewritten atomically at start and end)
    <trace_dir>/<run_id>/turns.jsonl     one TurnRecord per agent decision (the SFT material)
    <trace_dir>/<run_id>/steps.jsonl     one StepRecord per env step (replay, statistics)
    <trace_dir>/<run_id>/episodes.jsonl  one EpisodeSummary per finished episode

Lines are appended and flushed as they happen. An episode interrupted by a crash is rerun
from its seed with ``attempt + 1``; readers keep, per episode, only the lines of the attempt
that its summary names (or of the latest attempt while it is still running).

The step record is compact on purpose (3M steps must fit a laptop): the local view is a
63-character string of map symbols (``world.text_obs.SYMBOLS``, rows north to south) and the
inventory a list in ``world.rules.ITEMS`` order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FORMAT_VERSION = 1
RUN_FILE = "run.json"
TURNS_FILE = "turns.jsonl"
STEPS_FILE = "steps.jsonl"
EPISODES_FILE = "episodes.jsonl"

RunStatus = Literal["running", "finished", "failed", "interrupted"]
Termination = Literal[
    "death", "max_steps", "max_turns", "agent_terminated", "timeout", "agent_error", "env_error", "cancelled",
]
#: Episodes that ended in a failure (the agent's endpoint, the env, the wall clock), not in play: they are
#: reported as failed, never scored (no achievements, Crafter score or progression), and ``--resume`` plays them again.
FAILED_TERMINATIONS: tuple[str, ...] = ("agent_error", "env_error", "timeout")


class Record(BaseModel):
    """Base for trace lines: unknown keys are kept (newer writers), types are checked.

    No NaN or infinity in any number: a reward of ``"NaN"`` would poison every mean computed over it.
    """

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class Versions(BaseModel):
    crafter: str
    crafter_tui: str
    python: str
    git_commit: str | None = None


class RunRecord(Record):
    """Everything needed to know what produced a run, and nothing secret."""

    format_version: int = FORMAT_VERSION
    run_id: str
    status: RunStatus = "running"
    created_at: datetime
    finished_at: datetime | None = None
    pid: int | None = None
    host: str | None = None
    agent: str
    model: str
    endpoint: str | None = None  # base URL only, never a key
    env: str = "local"  # local | remote URL | modal
    system_prompt: str | None = None
    prompt_hash: str | None = None
    history_turns: int = 0
    tools_hash: str | None = None
    difficulty: str = "normal"
    seed: int = 0
    episodes: int = 0
    seeds: list[int] = Field(default_factory=list)
    max_steps: int = 10_000
    max_turns: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict)  # temperature, max_tokens, concurrency...
    model_card: dict[str, Any] | None = None  # the model card the run was played by (a model trained here)
    mismatches: list[str] = Field(default_factory=list)  # card settings overridden with --allow-mismatch
    versions: Versions
    experiment: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    episodes_finished: int = 0
    wall_s: float | None = None


class StepRecord(Record):
    """One env step."""

    episode: int
    seed: int
    attempt: int = 0
    step: int  # 1-based step number after this action
    turn: int  # the turn (0-based) whose decision produced this action
    action: int
    action_name: str
    reward: float
    done: bool = False
    pos: tuple[int, int]
    facing: tuple[int, int]
    sleeping: bool = False
    daylight: float = 1.0
    inventory: list[int]
    view: str  # 63 symbols, 7 rows of 9, north to south
    new_achievements: list[str] = Field(default_factory=list)


class TurnRecord(Record):
    """One agent decision: exactly what the model saw (this turn's part) and said."""

    episode: int
    seed: int
    attempt: int = 0
    turn: int  # 0-based
    step: int  # env steps taken before this turn
    observation: str  # the user message content of this turn
    assistant: dict[str, Any]  # the exact assistant message (OpenAI chat format)
    tool_result: str | None = None  # the tool message content returned after the call
    actions: list[str] = Field(default_factory=list)  # action names executed
    reasoning: str = ""
    valid: bool = True
    error: str | None = None
    raw: str | None = None  # raw model text when the reply was invalid
    terminate: bool = False
    reward: float = 0.0
    new_achievements: list[str] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0

    @field_validator("assistant")
    @classmethod
    def _calls_are_answerable(cls, assistant: dict[str, Any]) -> dict[str, Any]:
        """Every tool call is an object with a string ``id``: the history and the export answer each call by
        its id (a turn without one is refused when read, not a KeyError mid-export). The rest of a call is
        the model's to get wrong: such a turn is recorded invalid, and kept."""
        calls = assistant.get("tool_calls")
        if calls is None:
            return assistant
        if not isinstance(calls, list):
            raise ValueError("tool_calls must be a list")
        for index, call in enumerate(calls):
            if not isinstance(call, dict) or not isinstance(call.get("id"), str):
                raise ValueError(f"tool_calls[{index}] has no string 'id'")
        return assistant


class EpisodeSummary(Record):
    """The row the filter screen and the statistics work on."""

    episode: int
    seed: int
    attempt: int = 0
    run_id: str
    agent: str
    model: str
    difficulty: str = "normal"
    steps: int
    turns: int
    reward: float
    achievements: list[str]  # unlocked at least once, Crafter's order
    num_achievements: int
    termination: Termination
    error: str | None = None
    invalid_actions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started_at: datetime
    finished_at: datetime
    wall_s: float
