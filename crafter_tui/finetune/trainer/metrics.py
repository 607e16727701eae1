"""Training events in the OpenAI fine-tuning shape, and the callback that produces them.

The service stores these events as ``fine_tuning.job.event`` objects and the job client
parses ``data`` back into step / train_loss / valid_loss, so the field names follow
OpenAI's metrics events exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


class TrainMetrics(BaseModel):
    """One metrics point; absent values are omitted from the event data."""

    step: int
    total_steps: int
    epoch: float | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    tokens_per_second: float | None = None
    learning_rate: float | None = None


class TrainEvent(BaseModel):
    """A job event: a human message, or a metrics point (``type="metrics"``, ``data`` set)."""

    level: Literal["info", "warn", "error"] = "info"
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = None
    created_at: int = Field(default_factory=lambda: int(time.time()))


class CheckpointInfo(BaseModel):
    """A saved checkpoint: its folder, step and the latest metrics at that step."""

    step: int
    path: Path
    metrics: TrainMetrics


class TrainResult(BaseModel):
    """What a finished (or stopped) training run produced."""

    model_path: Path | None
    cancelled: bool = False
    final_metrics: TrainMetrics | None = None
    checkpoints: list[CheckpointInfo] = Field(default_factory=list)
    trained_tokens: int = 0
    train_rows: int = 0
    skipped_rows: int = 0
    parameters: int = 0
    trainable_parameters: int = 0
    seconds: float = 0.0


def metrics_event(metrics: TrainMetrics) -> TrainEvent:
    """The metrics event for one point, with a short readable message."""
    parts = [f"Step {metrics.step}/{metrics.total_steps}"]
    if metrics.train_loss is not None:
        parts.append(f"training loss={metrics.train_loss:.4f}")
    if metrics.valid_loss is not None:
        parts.append(f"validation loss={metrics.valid_loss:.4f}")
    return TrainEvent(message=": ".join([parts[0], ", ".join(parts[1:])]) if len(parts) > 1 else parts[0],
                      type="metrics", data=metrics.model_dump(exclude_none=True))


class EventCallback(TrainerCallback):
    """Turns Trainer logs into TrainEvents, records checkpoints, and polls for cancellation.

    Tokens per second are measured from TRL's ``num_tokens`` (non-padding tokens the model
    processed) over wall time between logs, so they count every prompt token too.
    """

    def __init__(self, emit: Callable[[TrainEvent], None], should_stop: Callable[[], bool],
                 threads: int = 1) -> None:
        self.emit = emit
        self.threads = threads
        self.should_stop = should_stop
        self.latest: TrainMetrics | None = None
        self.checkpoints: list[CheckpointInfo] = []
        self.cancelled = False
        self.total_tokens = 0
        self._last_time = time.perf_counter()
        self._last_tokens: float | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        torch.set_num_threads(self.threads)  # again: loading data or other libraries may have changed it
        self._last_time = time.perf_counter()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self.should_stop():
            self.cancelled = True
            control.should_training_stop = True
            control.should_save = False

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        metrics = TrainMetrics(step=state.global_step, total_steps=state.max_steps, epoch=logs.get("epoch"))
        if "loss" in logs:
            metrics.train_loss = float(logs["loss"])
            metrics.train_mean_token_accuracy = _maybe_float(logs.get("mean_token_accuracy"))
            metrics.learning_rate = _maybe_float(logs.get("learning_rate"))
            metrics.tokens_per_second = self._tokens_per_second(logs.get("num_tokens"))
        if "eval_loss" in logs:
            metrics.valid_loss = float(logs["eval_loss"])
            metrics.valid_mean_token_accuracy = _maybe_float(logs.get("eval_mean_token_accuracy"))
        if metrics.train_loss is None and metrics.valid_loss is None:
            return  # the end-of-training summary log; the caller reports the result
        self.latest = _merge(self.latest, metrics)
        self.emit(metrics_event(metrics))

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        metrics = self.latest or TrainMetrics(step=state.global_step, total_steps=state.max_steps)
        info = CheckpointInfo(step=state.global_step, path=path, metrics=metrics)
        self.checkpoints = [c for c in self.checkpoints if c.step != info.step] + [info]
        self.emit(TrainEvent(message=f"Checkpoint saved at step {state.global_step}",
                             data={"step": state.global_step, "path": str(path)}))

    def _tokens_per_second(self, num_tokens: float | None) -> float | None:
        now = time.perf_counter()
        if num_tokens is None:
            return None
        previous = self._last_tokens if self._last_tokens is not None else 0.0
        elapsed = now - self._last_time
        self._last_time, self._last_tokens = now, float(num_tokens)
        self.total_tokens = int(num_tokens)
        return (float(num_tokens) - previous) / elapsed if elapsed > 0 else None


def _maybe_float(value: Any) -> float | None:
    return float(value) if value is not None else None


def _merge(previous: TrainMetrics | None, new: TrainMetrics) -> TrainMetrics:
    """Latest metrics, keeping the last known validation figures alongside new training ones."""
    if previous is None:
        return new
    merged = previous.model_dump()
    merged.update(new.model_dump(exclude_none=True))
    return TrainMetrics(**merged)
