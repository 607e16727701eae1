"""The model card: how a data set's examples were made, and so how a model trained on them must be played.

A model answers well only what looks like its training examples: the observation format and its
wording (revision), how many past turns the prompt carries, the system prompt, the tools, and the
shape of the reply it learned to write. An export records these beside the data
(``<stem>.card.json``); a fine-tune job launched through crafter-tui records the card with the job,
adding the host, the base model and the sampling the model is meant to be evaluated with; the
model it produces carries it (our service: ``card`` in ``/v1/models``; other hosts: our job
registry). Rollout, eval, pipeline, the post-training test and the console apply it
(``services.model_cards``), so the obvious next step — play the model just trained — plays it the
way it was trained.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crafter_tui.config import ObservationFormat
from crafter_tui.errors import UserError, first_validation_error
from crafter_tui.traces.schema import RunRecord

CARD_VERSION = 1
CARD_SUFFIX = ".card.json"
#: The job ``metadata`` key under which our own service is handed the card (as JSON text).
CARD_METADATA_KEY = "crafter_tui_card"
#: How actions are written in a reply: an ``interact`` tool call, or that call's JSON as plain text.
ReplyActions = Literal["tools", "text"]
#: What the reply's ``reasoning`` holds: the recorded text, nothing, or the recorded goal (written first).
Reasoning = Literal["kept", "dropped", "goal"]


class PlayFormat(BaseModel):
    """What a model must be shown and asked for to be played as it was trained."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    observation: ObservationFormat
    observation_revision: int = Field(ge=1)
    history_turns: int = Field(ge=0, le=64)
    system_prompt: str
    prompt_hash: str
    tools_hash: str | None = Field(None, description="hash of the tool list; None when actions are text")
    actions: ReplyActions = "tools"
    reasoning: Reasoning = "kept"


class Sampling(BaseModel):
    """The sampling a model is meant to be played with (its evaluation's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(ge=0.0, le=2.0)
    max_tokens: int = Field(ge=1, le=65_536)


class ModelCard(BaseModel):
    """A data set's card, and, once a model is trained on it, that model's."""

    model_config = ConfigDict(extra="forbid")

    card_version: int = CARD_VERSION
    format: PlayFormat | None = Field(None, description="None when the exported runs were played differently")
    mixed: list[str] = Field(default_factory=list, description="the play settings the exported runs disagreed on")
    mode: Literal["trajectory", "turn"] = "turn"
    examples: int = Field(0, ge=0)
    runs: list[str] = Field(default_factory=list)
    data: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # -- set when a model is trained on the data --------------------------------------------------
    base_model: str | None = None
    host: str | None = None
    job_id: str | None = None
    fine_tuned_model: str | None = None
    sampling: Sampling | None = None


def card_path(data: Path) -> Path:
    """Where the card of ``data`` lives: ``data.jsonl`` -> ``data.card.json`` (any suffix)."""
    return data.with_name(data.stem + CARD_SUFFIX)


def write_card(card: ModelCard, data: Path) -> Path:
    """Write ``data``'s card beside it (atomically) and return its path."""
    from crafter_tui.traces.jsonl import write_json_atomic

    path = card_path(data)
    write_json_atomic(path, card.model_dump(mode="json"))
    return path


def read_card(data: Path) -> ModelCard | None:
    """The card beside ``data``, or None when there is none (a file made elsewhere)."""
    path = card_path(data)
    if not path.is_file():
        return None
    return parse_card(path.read_text(encoding="utf-8"), where=str(path))


def parse_card(data: str | dict[str, Any], *, where: str) -> ModelCard:
    """A card from its JSON text (or decoded JSON); a bad card is a ``UserError`` naming the field and ``where``."""
    try:
        return ModelCard.model_validate_json(data) if isinstance(data, str) else ModelCard.model_validate(data)
    except ValidationError as exc:
        field, message = first_validation_error(exc, default_field="(card)")
        raise UserError(f"bad model card: {field}: {message}", where=where) from None


def reply_shape(*, text_actions: bool, drop_reasoning: bool, goal_reasoning: bool) -> tuple[ReplyActions, Reasoning]:
    """The reply shape an export's options give its examples."""
    reasoning: Reasoning = "goal" if goal_reasoning else "dropped" if drop_reasoning else "kept"
    return ("text" if text_actions else "tools"), reasoning


def run_play_format(record: RunRecord, *, actions: ReplyActions, reasoning: Reasoning) -> PlayFormat:
    """The play format of the examples exported from one run (its recorded settings + the export's shape)."""
    from crafter_tui.agents.prompting import SYSTEM_PROMPT, stable_hash

    observation = record.settings.get("observation", "full")
    system = record.system_prompt if record.system_prompt is not None else SYSTEM_PROMPT
    return PlayFormat(
        observation=observation, observation_revision=int(record.settings.get("observation_revision", 1)),
        history_turns=record.history_turns, system_prompt=system, prompt_hash=stable_hash(system),
        tools_hash=None if actions == "text" else record.tools_hash, actions=actions, reasoning=reasoning)


def export_card(records: list[RunRecord], *, mode: Literal["trajectory", "turn"], examples: int, data: Path,
                actions: ReplyActions, reasoning: Reasoning) -> ModelCard:
    """The card of an export of ``records``' runs: their shared play format, or the settings they disagree on."""
    formats = [run_play_format(record, actions=actions, reasoning=reasoning) for record in records]
    shared, mixed = None, []
    if formats:
        fields = PlayFormat.model_fields
        mixed = [name for name in fields if len({repr(getattr(f, name)) for f in formats}) > 1]
        shared = None if mixed else formats[0]
    return ModelCard(format=shared, mixed=mixed, mode=mode, examples=examples,
                     runs=sorted(record.run_id for record in records), data=data.name)
