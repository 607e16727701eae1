"""One fine-tuning job client for every OpenAI-protocol host (OpenAI, Synth, our service).

It is the ``openai`` SDK with a ``base_url``: the SDK's own retry (429 and 5xx, honouring
``Retry-After``, exponential back-off) is used with the configured ``max_retries``. What differs
between hosts is only how hyperparameters are sent (``Host.dialect``):

- ``openai``: ``method={"type": "supervised", "supervised": {"hyperparameters": {...}}}`` with
  ``learning_rate_multiplier`` (OpenAI takes no absolute learning rate and no LoRA settings);
- ``synth``: ``training_type: "sft"`` and top-level ``hyperparameters`` with ``learning_rate``,
  ``use_qlora``, ``lora_r``, ... (sent through ``extra_body``);
- ``local``: OpenAI's ``method`` form, with our extra keys (learning rate, LoRA) in it.

Results come back as small pydantic models (``JobInfo``, ``JobEvent``, ``MetricPoint``, ...),
so services and front ends never touch SDK objects. Model names are opaque strings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import openai
from pydantic import BaseModel, Field

from crafter_tui.errors import UserError
from crafter_tui.finetune.hosts import Host

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
METRIC_KEYS = ("train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy",
               "full_valid_loss", "full_valid_mean_token_accuracy", "total_steps")


class JobSpec(BaseModel):
    """What to train. ``None`` means "the host's default"."""

    model: str
    training_file: str  # a file id on the host
    validation_file: str | None = None
    n_epochs: int | None = Field(None, ge=1, le=100)
    batch_size: int | None = Field(None, ge=1, le=4096)
    learning_rate: float | None = Field(None, gt=0)
    learning_rate_multiplier: float | None = Field(None, gt=0)
    suffix: str | None = Field(None, max_length=64)
    seed: int | None = Field(None, ge=0, lt=2**31)
    use_qlora: bool | None = None
    lora_r: int | None = Field(None, ge=1)
    lora_alpha: int | None = Field(None, ge=1)
    lora_dropout: float | None = Field(None, ge=0, lt=1)
    metadata: dict[str, str] | None = None


class JobInfo(BaseModel):
    """A job's state as any host reports it."""

    id: str
    host: str
    status: str
    model: str
    fine_tuned_model: str | None = None
    created_at: int | None = None
    finished_at: int | None = None
    error: str | None = None
    trained_tokens: int | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    suffix: str | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


class JobEvent(BaseModel):
    id: str
    created_at: int
    level: str = "info"
    message: str
    type: str = "message"
    data: dict[str, Any] | None = None


class MetricPoint(BaseModel):
    """One metrics event: the step and whatever losses/accuracies the host logged at it."""

    step: int
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    total_steps: int | None = None


class CheckpointInfo(BaseModel):
    model: str
    step: int
    metrics: dict[str, Any] = Field(default_factory=dict)


class ChatReply(BaseModel):
    content: str | None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _as_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return dict(value)


def metrics_from_events(events: Sequence[JobEvent]) -> list[MetricPoint]:
    """Metrics events as points sorted by step; a step logged twice (after a resume) keeps the last."""
    by_step: dict[int, MetricPoint] = {}
    for event in sorted(events, key=lambda e: (e.created_at, e.id)):
        data = event.data or {}
        if event.type != "metrics" or "step" not in data:
            continue
        try:
            point = MetricPoint(step=int(data["step"]), **{k: data[k] for k in METRIC_KEYS if data.get(k) is not None})
        except (TypeError, ValueError):
            continue
        by_step[point.step] = point
    return [by_step[step] for step in sorted(by_step)]


class FineTuneClient:
    """The OpenAI fine-tuning protocol against one host."""

    def __init__(self, host: Host, *, max_retries: int = 6, timeout: float = 60.0,
                 sdk: openai.OpenAI | None = None) -> None:
        self.host = host
        secret = host.require_key()
        key = secret.get_secret_value() if secret else "not-needed"
        self.sdk = sdk or openai.OpenAI(base_url=host.require_url(), api_key=key,
                                        max_retries=max_retries, timeout=timeout)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """SDK errors as one-line ``UserError``s naming the host (never the key)."""
        try:
            yield
        except openai.AuthenticationError:
            raise UserError(f"{what}: the {self.host.name} host rejected the API key", where=self.host.name) from None
        except openai.APIStatusError as exc:
            message = _error_message(exc)
            raise UserError(f"{what}: HTTP {exc.status_code}: {message}", where=self.host.name) from None
        except openai.APIConnectionError as exc:
            raise UserError(f"{what}: cannot reach {self.host.base_url} ({type(exc).__name__})",
                            where=self.host.name) from None

    # -- files ---------------------------------------------------------------------------
    def upload(self, path: Path) -> str:
        """Upload a training file; returns the host's file id."""
        extra = {"extra_query": {"purpose": "fine-tune"}} if self.host.dialect == "synth" else {}
        with self._errors(f"upload {path.name}"), path.open("rb") as handle:
            return self.sdk.files.create(file=(path.name, handle), purpose="fine-tune", **extra).id

    # -- jobs -------------------------------------------------------------------------------
    def create(self, spec: JobSpec) -> JobInfo:
        kwargs = self.create_arguments(spec)
        with self._errors("create job"):
            return self._info(self.sdk.fine_tuning.jobs.create(**kwargs))

    def create_arguments(self, spec: JobSpec) -> dict[str, Any]:
        """The SDK call's arguments in this host's dialect (checked: no silent drops)."""
        dialect = self.host.dialect
        lora = {k: getattr(spec, k) for k in ("use_qlora", "lora_r", "lora_alpha", "lora_dropout")
                if getattr(spec, k) is not None}
        if spec.learning_rate is not None and not self.host.takes_learning_rate:
            raise UserError(f"the {self.host.name} host takes a learning-rate multiplier, not a learning rate",
                            where="--learning-rate (use --learning-rate-multiplier)")
        if lora and not self.host.takes_lora:
            raise UserError(f"the {self.host.name} host takes no LoRA settings", where="--lora-*")
        self.host.refuse_qlora(spec.use_qlora)
        kwargs: dict[str, Any] = {"model": spec.model, "training_file": spec.training_file}
        for key in ("validation_file", "suffix", "seed", "metadata"):
            if getattr(spec, key) is not None:
                kwargs[key] = getattr(spec, key)
        hyper: dict[str, Any] = {k: getattr(spec, k) for k in ("n_epochs", "batch_size") if getattr(spec, k)}
        if dialect == "openai":
            if spec.learning_rate_multiplier is not None:
                hyper["learning_rate_multiplier"] = spec.learning_rate_multiplier
            kwargs["method"] = {"type": "supervised", "supervised": {"hyperparameters": hyper}}
            return kwargs
        if spec.learning_rate is not None:
            hyper["learning_rate"] = spec.learning_rate
        if spec.learning_rate_multiplier is not None:
            hyper["learning_rate_multiplier"] = spec.learning_rate_multiplier
        hyper.update(lora)
        if dialect == "synth":
            kwargs["extra_body"] = {"training_type": "sft", "hyperparameters": hyper}
        else:
            kwargs["extra_body"] = {"method": {"type": "supervised", "supervised": {"hyperparameters": hyper}}}
        return kwargs

    def retrieve(self, job_id: str) -> JobInfo:
        with self._errors(f"job {job_id}"):
            return self._info(self.sdk.fine_tuning.jobs.retrieve(job_id))

    def list(self, limit: int = 20) -> list[JobInfo]:
        with self._errors("list jobs"):
            page = self.sdk.fine_tuning.jobs.list(limit=limit)
            return [self._info(job) for job in page.data]

    def cancel(self, job_id: str) -> JobInfo:
        with self._errors(f"cancel {job_id}"):
            return self._info(self.sdk.fine_tuning.jobs.cancel(job_id))

    def events(self, job_id: str, *, stop_at: set[str] | None = None, page_size: int = 100,
               max_pages: int = 1000) -> list[JobEvent]:
        """Events oldest first. Pages newest-first with ``after`` and stops at an id in ``stop_at``
        (the ids already seen), so a watcher fetches only what is new."""
        found: list[JobEvent] = []
        after: str | None = None
        with self._errors(f"events of {job_id}"):
            for _ in range(max_pages):
                params: dict[str, Any] = {"limit": page_size}
                if after:
                    params["after"] = after
                page = self.sdk.fine_tuning.jobs.list_events(job_id, **params)
                batch = [self._event(e) for e in page.data]
                for event in batch:
                    if stop_at and event.id in stop_at:
                        return list(reversed(found))
                    found.append(event)
                if not batch or not getattr(page, "has_more", False):
                    break
                after = batch[-1].id
        return list(reversed(found))

    def metrics(self, job_id: str) -> list[MetricPoint]:
        return metrics_from_events(self.events(job_id))

    def checkpoints(self, job_id: str) -> list[CheckpointInfo]:
        with self._errors(f"checkpoints of {job_id}"):
            page = self.sdk.fine_tuning.jobs.checkpoints.list(job_id, limit=100)
            items = [CheckpointInfo(model=c.fine_tuned_model_checkpoint, step=c.step_number,
                                    metrics=_as_dict(c.metrics) or {}) for c in page.data]
        return sorted(items, key=lambda c: c.step)

    # -- models -----------------------------------------------------------------------------
    def models(self) -> list[str]:
        with self._errors("list models"):
            return [m.id for m in self.sdk.models.list().data]

    def chat(self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
             *, max_tokens: int = 256, temperature: float = 0.0) -> ChatReply:
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens,
                                  "temperature": temperature}
        if tools:
            kwargs["tools"] = tools
        with self._errors(f"chat with {model}"):
            reply = self.sdk.chat.completions.create(**kwargs)
        choice = reply.choices[0]
        calls = [c.model_dump() for c in (choice.message.tool_calls or [])]
        usage = reply.usage
        return ChatReply(content=choice.message.content, tool_calls=calls, finish_reason=choice.finish_reason,
                         prompt_tokens=usage.prompt_tokens if usage else 0,
                         completion_tokens=usage.completion_tokens if usage else 0)

    # -- conversions ------------------------------------------------------------------------
    def _info(self, job: Any) -> JobInfo:
        error = getattr(job, "error", None)
        message = getattr(error, "message", None) if error else None
        hyper = _as_dict(getattr(job, "hyperparameters", None)) or {}
        method = _as_dict(getattr(job, "method", None)) or {}
        supervised = (method.get("supervised") or {}).get("hyperparameters") if method else None
        if supervised:
            hyper = {**hyper, **{k: v for k, v in supervised.items() if v is not None}}
        return JobInfo(id=job.id, host=self.host.name, status=job.status, model=job.model,
                       fine_tuned_model=job.fine_tuned_model, created_at=job.created_at,
                       finished_at=getattr(job, "finished_at", None), error=message,
                       trained_tokens=getattr(job, "trained_tokens", None),
                       hyperparameters={k: v for k, v in hyper.items() if v is not None},
                       suffix=getattr(job, "suffix", None))

    @staticmethod
    def _event(event: Any) -> JobEvent:
        return JobEvent(id=event.id, created_at=int(event.created_at or 0), level=event.level or "info",
                        message=event.message or "", type=getattr(event, "type", None) or "message",
                        data=_as_dict(getattr(event, "data", None)))


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else None
    if body:
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return exc.message
