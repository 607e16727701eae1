"""Before a job is launched: subset and split files, validation, and a token/cost/time estimate.

Everything here happens before anything is uploaded, so a dataset with errors costs nothing:
``prepare_dataset`` raises ``DatasetRejected`` naming the lines. Subset and split files are
written next to the data with their size in the name, so a later run can reuse them and a
reader can tell what each job trained on.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from crafter_tui.dataset.card import ModelCard, read_card
from crafter_tui.dataset.validate import ValidationReport, validate_file
from crafter_tui.errors import UserError
from crafter_tui.finetune.compat import Compatibility, check_model
from crafter_tui.finetune.hosts import (
    GPU_PRICE_PER_HOUR,
    GPU_TOKENS_PER_SECOND,
    LOCAL_TOKENS_PER_SECOND,
    model_size_key,
)
from crafter_tui.traces.jsonl import write_bytes_atomic

MAX_ERRORS_SHOWN = 10
LOCAL_STARTUP_S = 15.0  # worker process, torch/transformers import, tokenizer training (measured, 2 cores)
VALIDATION_MODEL_FOR_OPEN_HOSTS = "gpt-4o-mini-2024-07-18"  # token counting only; no price is used


class DatasetRejected(UserError):
    """The dataset has format errors; nothing was uploaded."""


class PrepareRequest(BaseModel):
    data: Path
    backend: Literal["openai", "synth", "modal", "local"]
    model: str
    epochs: int | None = Field(None, ge=1, le=100)
    subset: int | None = Field(None, ge=1)
    subset_mode: Literal["first", "sample"] = "first"
    validation_split: float = Field(0.0, ge=0.0, lt=1.0)
    seed: int = 0


class Estimate(BaseModel):
    """What the job will cost before it runs (estimates, labelled as such)."""

    examples: int
    validation_examples: int
    tokens_per_epoch: int
    epochs: int
    total_tokens: int
    cost_usd: float | None
    cost_note: str
    seconds: float | None
    time_note: str


class PreparedData(BaseModel):
    train_path: Path
    validation_path: Path | None
    report: ValidationReport
    estimate: Estimate
    warnings: list[str] = Field(default_factory=list)
    card: ModelCard | None = None  # how the examples were made (the export's card), carried by the job
    compatibility: Compatibility | None = None  # the host can train the model; the longest example vs its limit


def _read_lines(path: Path) -> list[bytes]:
    try:
        with path.open("rb") as handle:
            return [line if line.endswith(b"\n") else line + b"\n" for line in handle if line.strip()]
    except OSError as exc:
        raise UserError(f"cannot read dataset: {exc.strerror or exc}", where=str(path)) from None


def _write_lines(path: Path, lines: list[bytes]) -> Path:
    write_bytes_atomic(path, b"".join(lines))
    return path


def make_subset(data: Path, size: int, mode: str, seed: int) -> tuple[Path, list[str]]:
    """``<stem>.subset-<N>[-sample-s<seed>].jsonl`` next to ``data``: the first N lines or a seeded sample."""
    lines = _read_lines(data)
    notes = []
    if size >= len(lines):
        notes.append(f"--subset {size} >= {len(lines)} examples: using all of them")
        return data, notes
    if mode == "sample":
        picked = sorted(random.Random(seed).sample(range(len(lines)), size))
        chosen, tag = [lines[i] for i in picked], f"subset-{size}-sample-s{seed}"
    else:
        chosen, tag = lines[:size], f"subset-{size}"
    return _write_lines(data.with_name(f"{data.stem}.{tag}.jsonl"), chosen), notes


def split_validation(data: Path, fraction: float, seed: int) -> tuple[Path, Path | None]:
    """A seeded train/validation split written as ``<stem>.train-<n>.jsonl`` / ``<stem>.valid-<m>.jsonl``."""
    if fraction <= 0:
        return data, None
    lines = _read_lines(data)
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    n_valid = max(1, round(len(lines) * fraction))
    if n_valid >= len(lines):
        raise UserError(f"a validation split of {fraction} leaves no training examples out of {len(lines)}",
                        where="--validation-split")
    valid_idx = set(order[:n_valid])
    train = [line for i, line in enumerate(lines) if i not in valid_idx]
    valid = [line for i, line in enumerate(lines) if i in valid_idx]
    train_path = _write_lines(data.with_name(f"{data.stem}.train-{len(train)}.jsonl"), train)
    valid_path = _write_lines(data.with_name(f"{data.stem}.valid-{len(valid)}.jsonl"), valid)
    return train_path, valid_path


def rejection_message(report: ValidationReport, where: str) -> str:
    total = sum(report.error_counts.values())
    shown = "; ".join(f"line {issue.line}: {issue.message}" for issue in report.errors[:MAX_ERRORS_SHOWN])
    more = f" (and {total - MAX_ERRORS_SHOWN} more)" if total > MAX_ERRORS_SHOWN else ""
    return f"{total} error(s) in the dataset, nothing was uploaded: {shown}{more}"


def estimate(backend: str, model: str, report: ValidationReport, epochs: int, n_valid: int) -> Estimate:
    total = report.billed_tokens * epochs
    cost, cost_note, seconds, time_note = None, "", None, ""
    if backend == "openai":
        cost = report.estimated_cost_usd
        cost_note = (f"OpenAI list price ({report.price_date})" if cost is not None
                     else f"no listed training price for {model}")
        time_note = "depends on OpenAI's queue (usually minutes to hours)"
    elif backend == "local":
        rate = LOCAL_TOKENS_PER_SECOND.get(model)
        cost, cost_note = 0.0, "runs on this machine"
        if rate:
            seconds = LOCAL_STARTUP_S + total / rate
            time_note = f"at ~{rate:,.0f} tokens/s on CPU, plus ~{LOCAL_STARTUP_S:.0f} s to start the worker"
        else:
            time_note = "no CPU throughput figure for this model"
    else:
        size = model_size_key(model)
        rate = GPU_TOKENS_PER_SECOND.get(size or "")
        if rate:
            seconds = total / rate
            cost = round(seconds / 3600 * GPU_PRICE_PER_HOUR, 2)
            cost_note = f"~${GPU_PRICE_PER_HOUR:.0f}/GPU-hour, LoRA on one H100 (rough)"
            time_note = f"at ~{rate:,.0f} tokens/s, plus container start and model download"
        else:
            cost_note = time_note = f"no GPU throughput figure for {model}"
    return Estimate(examples=report.examples, validation_examples=n_valid, tokens_per_epoch=report.billed_tokens,
                    epochs=epochs, total_tokens=total, cost_usd=cost, cost_note=cost_note, seconds=seconds,
                    time_note=time_note)


def prepare_dataset(request: PrepareRequest) -> PreparedData:
    """Subset, split, validate and estimate; raises ``DatasetRejected`` (with line numbers) on errors."""
    if not request.data.is_file():
        raise UserError("dataset file not found", where=str(request.data))
    check_model(request.backend, request.model).require()  # before anything is written, uploaded or started
    warnings: list[str] = []
    source = request.data
    if request.subset:
        source, notes = make_subset(source, request.subset, request.subset_mode, request.seed)
        warnings.extend(notes)
    counting_model = request.model if request.backend == "openai" else VALIDATION_MODEL_FOR_OPEN_HOSTS
    report = validate_file(source, model=counting_model, epochs=request.epochs)
    if report.errors or report.error_counts:
        raise DatasetRejected(rejection_message(report, str(source)), where=str(source))
    warnings.extend(f"line {w.line}: {w.message}" if w.line else w.message for w in report.warnings[:5])
    train_path, valid_path = split_validation(source, request.validation_split, request.seed)
    if valid_path is not None:
        report = validate_file(train_path, model=counting_model, epochs=request.epochs)
    n_valid = len(_read_lines(valid_path)) if valid_path else 0
    epochs = request.epochs or report.epochs
    card = read_card(request.data)
    if card is None:
        warnings.append(f"no model card beside {request.data.name} (not exported by crafter-tui): the model will "
                        "not know how it must be played; rollouts use their flags and defaults")
    longest = report.tokens_per_example.max
    compatibility = check_model(request.backend, request.model, longest_example=int(longest) if longest else None,
                                counted_with=report.encoding)
    if compatibility.too_long:
        warnings.append(f"the longest example has {compatibility.longest_example:,} tokens, over the "
                        f"{compatibility.context_limit:,}-token limit ({compatibility.limit_note})")
    return PreparedData(train_path=train_path, validation_path=valid_path, report=report,
                        compatibility=compatibility,
                        estimate=estimate(request.backend, request.model, report, epochs, n_valid),
                        warnings=warnings, card=card)
