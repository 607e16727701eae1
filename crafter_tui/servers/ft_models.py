"""Request and response bodies of the fine-tune + inference service, in OpenAI's shapes.

The service speaks the OpenAI fine-tuning protocol (files, jobs, events, checkpoints,
models, chat completions) so that one client — the ``openai`` SDK with a ``base_url`` —
drives OpenAI, the Synth service and this service alike. Request models reject unknown
keys where a typo would silently change a training run; chat requests ignore extras because
every SDK sends a slightly different set of optional sampling knobs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
Auto = Literal["auto"]
CHAT_ROLES: frozenset[str] = frozenset({"system", "developer", "user", "assistant", "tool"})


class ErrorDetail(BaseModel):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error envelope: every non-2xx answer of the service has this shape."""

    error: ErrorDetail


# -- files ------------------------------------------------------------------------------
class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str = "processed"


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


# -- jobs -------------------------------------------------------------------------------
#: Bounds of what a job may ask for (OpenAI allows 1-50 epochs; our config's ``[finetune] epochs`` 1-100).
MAX_EPOCHS = 100
MAX_BATCH_SIZE = 4096
MAX_LR_MULTIPLIER = 100.0


class Hyperparameters(BaseModel):
    """OpenAI's hyperparameters plus the knobs the Synth service and our trainer take.

    ``learning_rate`` is absolute (Synth, ours); ``learning_rate_multiplier`` scales the
    trainer's default (OpenAI). LoRA keys are used when the base model has weights.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n_epochs: int | Auto | None = Field(None)
    batch_size: int | Auto | None = Field(None)
    learning_rate_multiplier: float | Auto | None = Field(None)
    learning_rate: float | None = Field(None, gt=0, le=1.0)
    use_qlora: bool | None = None
    use_lora: bool | None = None
    lora_r: int | None = Field(None, ge=1, le=1024)
    lora_alpha: int | None = Field(None, ge=1)
    lora_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    max_length: int | None = Field(None, ge=16, le=131_072)

    # Checked when the job is created (a 400 naming the field), not when the worker starts: a
    # billion epochs would hold the only training slot, a batch of 0 fails later with a raw dump.
    @field_validator("n_epochs")
    @classmethod
    def _epochs_in_range(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 1 <= value <= MAX_EPOCHS:
            raise ValueError(f"must be between 1 and {MAX_EPOCHS} (or 'auto')")
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch_in_range(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 1 <= value <= MAX_BATCH_SIZE:
            raise ValueError(f"must be between 1 and {MAX_BATCH_SIZE} (or 'auto')")
        return value

    @field_validator("learning_rate_multiplier")
    @classmethod
    def _multiplier_positive(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, (int, float)) and not 0 < value <= MAX_LR_MULTIPLIER:
            raise ValueError(f"must be greater than 0 and at most {MAX_LR_MULTIPLIER} (or 'auto')")
        return value


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class Method(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["supervised"] = "supervised"
    supervised: SupervisedMethod | None = None


class CreateJobRequest(BaseModel):
    """``POST /v1/fine_tuning/jobs``: OpenAI's ``method`` form and Synth's ``training_type`` form."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    suffix: str | None = Field(None, max_length=64)
    seed: int | None = Field(None, ge=0, lt=2**31)
    metadata: dict[str, str] | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    training_type: Literal["sft"] | None = None
    integrations: list[Any] | None = None

    def effective_hyperparameters(self) -> Hyperparameters:
        """``method.supervised.hyperparameters`` wins over the deprecated top-level form."""
        if self.method and self.method.supervised:
            return self.method.supervised.hyperparameters
        return self.hyperparameters or Hyperparameters()


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class JobObject(BaseModel):
    """A fine-tuning job as OpenAI returns it (``fine_tuning.job``)."""

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    finished_at: int | None = None
    model: str
    fine_tuned_model: str | None = None
    organization_id: str = "org-local"
    status: JobStatus
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    training_file: str
    validation_file: str | None = None
    result_files: list[str] = Field(default_factory=list)
    trained_tokens: int | None = None
    error: JobError | None = None
    seed: int = 0
    suffix: str | None = None
    estimated_finish: int | None = None
    integrations: list[Any] | None = None
    metadata: dict[str, str] | None = None
    method: dict[str, Any] | None = None


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobObject]
    has_more: bool = False


class EventObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"] = "info"
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = None


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EventObject]
    has_more: bool = False


class CheckpointObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any] = Field(default_factory=dict)
    step_number: int


class CheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CheckpointObject]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


# -- models -----------------------------------------------------------------------------
class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    #: crafter-tui's extension: how the model must be played (``dataset.card.ModelCard`` as JSON), when the job
    #: that trained it was handed one. OpenAI's clients ignore fields they do not know.
    card: dict[str, Any] | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


# -- chat -------------------------------------------------------------------------------
class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``; only the fields that change our generation are read."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    #: ``{"type": "text" | "json_object" | "json_schema", "json_schema": {"schema": ..., "strict": ...}}``
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1, le=32_768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32_768)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    seed: int | None = Field(None, ge=0, lt=2**63, description="sampling seed: the same seed replays the same reply")
    n: int | None = Field(None, ge=1, le=1)
    stream: bool | None = None

    @field_validator("messages")
    @classmethod
    def _messages_have_roles(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Catch malformed messages here (a 400 naming the message), not deep in the engine."""
        for index, message in enumerate(messages):
            role = message.get("role")
            if role not in CHAT_ROLES:
                raise ValueError(f"messages[{index}].role must be one of {sorted(CHAT_ROLES)}, got {role!r}")
            content = message.get("content")
            if content is not None and not isinstance(content, (str, list)):
                raise ValueError(f"messages[{index}].content must be a string, a list of parts or null")
            if content is None and role != "assistant":
                raise ValueError(f"messages[{index}] ({role}) needs a content")
        return messages

    def token_budget(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


class ToolCallFunction(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
