"""TEST DOUBLE: a stand-in trainer and inference engine with the real trainer's interface.

Not part of the product. The service tests that are about job plumbing (queueing, cancel,
restart, pagination, error shapes) use it so they run in a second instead of training a
model; the end-to-end test uses the real trainer. It keeps the real contract: ``TrainJob``
(pydantic), ``run_training(job, emit, should_stop)`` emitting message/metrics events with a
falling loss, ``checkpoint-<step>`` folders and a final ``model`` folder, ``resume`` from the
last checkpoint, and ``load_model(path).chat(...)`` returning a parsed ``interact`` call.

Knobs (environment, read by the worker process): ``FT_DOUBLE_STEPS`` (total steps),
``FT_DOUBLE_STEP_SECONDS`` (sleep per step), ``FT_DOUBLE_FAIL`` (raise with this message).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel


class TrainJob(BaseModel):
    model: str
    training_file: str
    validation_file: str | None = None
    output_dir: str
    n_epochs: int = 1
    batch_size: int = 4
    learning_rate: float | None = None
    seed: int = 0
    suffix: str | None = None
    max_length: int = 1024
    threads: int | None = None
    resume: bool = False


class TrainEvent(BaseModel):
    level: str = "info"
    message: str
    type: str = "message"
    data: dict[str, Any] | None = None


@dataclass
class TrainResult:
    model_dir: str
    steps: int
    trained_tokens: int


def _last_checkpoint(out: Path) -> int:
    steps = [int(p.name.split("-")[1]) for p in out.glob("checkpoint-*")]
    return max(steps, default=0)


def run_training(job: TrainJob, emit: Callable[[TrainEvent], None], should_stop: Callable[[], bool]) -> TrainResult:
    if os.environ.get("FT_DOUBLE_FAIL"):
        raise RuntimeError(os.environ["FT_DOUBLE_FAIL"])
    total = int(os.environ.get("FT_DOUBLE_STEPS", "6"))
    pause = float(os.environ.get("FT_DOUBLE_STEP_SECONDS", "0.05"))
    out = Path(job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = _last_checkpoint(out) if job.resume else 0
    emit(TrainEvent(message=f"double trainer: {job.model}, resume from step {start}"))
    for step in range(start + 1, total + 1):
        if should_stop():
            emit(TrainEvent(message="stopping"))
            return TrainResult(str(out / "model"), step - 1, step * 10)
        time.sleep(pause)
        loss = 3.0 / step
        emit(TrainEvent(type="metrics", message=f"Step {step}/{total}: training loss={loss:.3f}",
                        data={"step": step, "train_loss": loss, "train_mean_token_accuracy": 1 - loss / 4,
                              "total_steps": total}))
        if step % 2 == 0:
            (out / f"checkpoint-{step}").mkdir(exist_ok=True)
    (out / "model").mkdir(exist_ok=True)
    (out / "model" / "double.json").write_text(json.dumps({"steps": total}))
    return TrainResult(str(out / "model"), total, total * 10)


@dataclass
class ChatResult:
    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"


class DoubleModel:
    def __init__(self, path: Path) -> None:
        self.path = path

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
             max_tokens: int = 64, temperature: float = 0.0, seed: int | None = None,
             output: Any = None) -> ChatResult:
        """A canned reply: a valid ``interact`` call, which also meets a required-call ``output``."""
        if not tools:
            return ChatResult(content="no tools given", prompt_tokens=len(messages), completion_tokens=3)
        args = json.dumps({"actions": ["do"], "reasoning": "double"})
        return ChatResult(content=None, tool_calls=[{"name": "interact", "arguments": args}],
                          prompt_tokens=len(messages) * 10, completion_tokens=7, finish_reason="tool_calls")


def load_model(path: Path) -> DoubleModel:
    if not Path(path).exists():
        raise FileNotFoundError(path)
    return DoubleModel(Path(path))


TRAINER = "tests.doubles.ft_trainer_double:run_training"
INFERENCE = "tests.doubles.ft_trainer_double:load_model"


@dataclass(frozen=True)
class _Size:
    default_learning_rate: float


BUILTIN_SIZES = {"crafter-tiny": _Size(1e-3)}
