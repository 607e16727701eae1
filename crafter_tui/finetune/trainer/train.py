"""Run one fine-tuning job with TRL: built-in models fully, pretrained weights with LoRA.

The service runs this in a worker process; ``emit`` carries events out and
``should_stop`` is polled after every step so a cancel takes effect within one step.

Threads: ``TrainJob.threads`` defaults to 1. On the 2-core machine this project targets,
other work (the service, rollouts, tests) shares the CPU, and oversubscribed torch threads
are slower than one pinned thread. On an idle machine two threads pay off with larger batches
(``bench_trainer.py --threads 2 --batch-size 16``; figures in benchmarks/README.md), which is what
the demo, alone on the machine, uses.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from pydantic import BaseModel, Field
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from crafter_tui.errors import UserError
from crafter_tui.finetune.trainer.data import ChatExample, TokenRow, load_chat_jsonl, tokenize_examples
from crafter_tui.finetune.trainer.lean_loss import LeanLossSFTTrainer
from crafter_tui.finetune.trainer.metrics import EventCallback, TrainEvent, TrainResult
from crafter_tui.finetune.trainer.models import BUILTIN_SIZES, build_model, is_builtin, parameter_count
from crafter_tui.finetune.trainer.tokenizer import message_texts, train_tokenizer

#: Conversations used to fit the built-in tokenizer: enough for the vocabulary, bounded time.
TOKENIZER_SAMPLE = 4000
LORA_DEFAULT_LEARNING_RATE = 2e-4
PRETRAINED_DEFAULT_FULL_LEARNING_RATE = 2e-5
TOKENIZER_DIR = "tokenizer"
MODEL_DIR = "model"


class LoraSettings(BaseModel):
    """LoRA choice; ``use_lora=None`` means LoRA for pretrained weights, full FT for built-ins."""

    use_lora: bool | None = None
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)


class TrainJob(BaseModel):
    """Everything one training run needs; the service builds it from a fine-tuning job."""

    model: str
    training_file: Path
    validation_file: Path | None = None
    output_dir: Path
    n_epochs: int = Field(3, ge=1)
    batch_size: int = Field(8, ge=1)
    learning_rate: float | None = Field(None, gt=0)
    seed: int = 0
    suffix: str | None = None
    lora: LoraSettings = Field(default_factory=LoraSettings)
    max_length: int = Field(1024, ge=32)
    threads: int | None = Field(None, ge=1)
    resume: bool = False
    save_steps: int | None = Field(None, ge=1, description="checkpoint every N steps; None: every epoch")
    logging_steps: int | None = Field(None, ge=1, description="None: about 20 points per run, at most every 10 steps")
    eval_steps: int | None = Field(None, ge=1, description="None: about 5 validation points per run")
    save_total_limit: int | None = Field(3, ge=1)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _emit_message(emit: Callable[[TrainEvent], None], message: str, level: str = "info", **data: object) -> None:
    emit(TrainEvent(level=level, message=message, data=data or None))  # type: ignore[arg-type]


def _load_builtin_tokenizer(job: TrainJob, examples: list[ChatExample]) -> PreTrainedTokenizerBase:
    """Reuse the tokenizer saved by an earlier attempt of this job, or train it on the data."""
    saved = job.output_dir / TOKENIZER_DIR
    if saved.is_dir():
        return AutoTokenizer.from_pretrained(saved)
    size = BUILTIN_SIZES[job.model]
    texts = [text for example in examples[:TOKENIZER_SAMPLE] for text in message_texts(example.messages)]
    tokenizer = train_tokenizer(texts, size.vocab_size)
    tokenizer.save_pretrained(saved)
    return tokenizer


def _load_pretrained(job: TrainJob) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """Weights from a local path or the HF cache (never the network)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(job.model, local_files_only=True)
        dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
        model = AutoModelForCausalLM.from_pretrained(job.model, local_files_only=True, dtype=dtype)
    except OSError as exc:
        raise UserError(f"no weights found locally for model {job.model!r} (built-in sizes: "
                        f"{', '.join(BUILTIN_SIZES)}; or give a local path / a model in the HF cache): {exc}",
                        where="model") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise UserError(f"model {job.model!r} has no chat template", where="model")
    return model, tokenizer


def _lora_config(job: TrainJob):  # noqa: ANN202 - peft type imported lazily
    from peft import LoraConfig

    return LoraConfig(r=job.lora.lora_r, lora_alpha=job.lora.lora_alpha, lora_dropout=job.lora.lora_dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def _dataset(rows: list[TokenRow]) -> Dataset:
    return Dataset.from_dict({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]})


def _rows(tokenizer: PreTrainedTokenizerBase, examples: list[ChatExample], job: TrainJob,
          emit: Callable[[TrainEvent], None], label: str) -> tuple[list[TokenRow], int]:
    rows, skipped = tokenize_examples(tokenizer, examples, job.max_length)
    if skipped:
        _emit_message(emit, f"{len(skipped)} {label} conversation(s) longer than max_length={job.max_length} "
                      f"even without history were skipped (first: {skipped[0]})", level="warn")
    if not rows:
        raise UserError(f"no {label} conversation fits max_length={job.max_length}", where=label)
    return rows, len(skipped)


def _config(job: TrainJob, use_lora: bool, builtin: bool, n_rows: int, has_eval: bool) -> SFTConfig:
    steps_per_epoch = math.ceil(n_rows / job.batch_size)
    total_steps = steps_per_epoch * job.n_epochs
    logging_steps = job.logging_steps or max(1, min(10, total_steps // 20))
    eval_steps = job.eval_steps or max(logging_steps, total_steps // 5)
    if job.learning_rate is not None:
        learning_rate = job.learning_rate
    elif builtin:
        learning_rate = BUILTIN_SIZES[job.model].default_learning_rate
    else:
        learning_rate = LORA_DEFAULT_LEARNING_RATE if use_lora else PRETRAINED_DEFAULT_FULL_LEARNING_RATE
    cuda = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(job.output_dir),
        num_train_epochs=job.n_epochs,
        per_device_train_batch_size=job.batch_size,
        per_device_eval_batch_size=job.batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, total_steps // 20),
        weight_decay=0.0 if use_lora else 0.01,
        max_length=job.max_length,
        packing=False,  # padding waste is small with similar-length turns; packing was 3.6x slower on CPU
        dataset_kwargs={"skip_prepare_dataset": True},  # rows are tokenized with left truncation in data.py
        logging_steps=logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_steps if has_eval else None,
        save_strategy="steps" if job.save_steps else "epoch",
        save_steps=job.save_steps or 500,
        save_total_limit=job.save_total_limit,
        seed=job.seed,
        data_seed=job.seed,
        report_to="none",
        disable_tqdm=True,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported() and not builtin,
        dataloader_num_workers=0,
        # TRL turns activation checkpointing on by default; it trades ~30% more compute for
        # memory, which only pays for big pretrained models (a built-in model's activations are MBs)
        activation_checkpointing=not builtin,
    )


def _prepare(job: TrainJob, emit: Callable[[TrainEvent], None]):  # noqa: ANN202 - internal tuple
    examples = load_chat_jsonl(job.training_file)
    valid_examples = load_chat_jsonl(job.validation_file) if job.validation_file else []
    builtin = is_builtin(job.model)
    use_lora = job.lora.use_lora if job.lora.use_lora is not None else not builtin
    if builtin:
        tokenizer = _load_builtin_tokenizer(job, examples)
        model = build_model(BUILTIN_SIZES[job.model], tokenizer, job.seed)
        if use_lora:
            _emit_message(emit, "LoRA on a randomly initialised model barely learns (frozen random weights); "
                          "full fine-tuning is the usual choice for built-in models", level="warn")
    else:
        model, tokenizer = _load_pretrained(job)
    _emit_message(emit, f"Tokenizer ready: {len(tokenizer)} tokens", vocab_size=len(tokenizer))
    rows, skipped = _rows(tokenizer, examples, job, emit, "training")
    valid_rows = _rows(tokenizer, valid_examples, job, emit, "validation")[0] if valid_examples else []
    return skipped, builtin, use_lora, tokenizer, model, rows, valid_rows


def run_training(job: TrainJob, emit: Callable[[TrainEvent], None],
                 should_stop: Callable[[], bool] = lambda: False) -> TrainResult:
    """Train, emitting events; return the final model folder (``output_dir/model``) and checkpoints."""
    started = time.perf_counter()
    torch.set_num_threads(job.threads or 1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    job.output_dir.mkdir(parents=True, exist_ok=True)
    _seed_everything(job.seed)
    skipped, builtin, use_lora, tokenizer, model, rows, valid_rows = _prepare(job, emit)
    config = _config(job, use_lora, builtin, len(rows), bool(valid_rows))
    callback = EventCallback(emit, should_stop, threads=job.threads or 1)
    trainer_class = LeanLossSFTTrainer if builtin else SFTTrainer
    trainer = trainer_class(
        model=model,
        args=config,
        train_dataset=_dataset(rows),
        eval_dataset=_dataset(valid_rows) if valid_rows else None,
        processing_class=tokenizer,
        peft_config=_lora_config(job) if use_lora else None,
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)  # events carry the logs; keep the worker's stdout quiet
    total = parameter_count(trainer.model)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    resume_from = get_last_checkpoint(str(job.output_dir)) if job.resume and job.output_dir.is_dir() else None
    _emit_message(emit, f"Training {'with LoRA' if use_lora else 'all weights'}: {len(rows)} rows, "
                  f"{trainable:,}/{total:,} trainable parameters"
                  + (f", resuming from {Path(resume_from).name}" if resume_from else ""),
                  rows=len(rows), parameters=total, trainable_parameters=trainable)
    trainer.train(resume_from_checkpoint=resume_from)
    result = TrainResult(model_path=None, cancelled=callback.cancelled, final_metrics=callback.latest,
                         checkpoints=callback.checkpoints, trained_tokens=callback.total_tokens,
                         train_rows=len(rows), skipped_rows=skipped, parameters=total, trainable_parameters=trainable)
    if callback.cancelled:
        _emit_message(emit, f"Training stopped at step {trainer.state.global_step}", level="warn")
    else:
        result.model_path = _save_final(trainer, tokenizer, job.output_dir / MODEL_DIR, use_lora)
        _write_training_info(job, result.model_path)
        _emit_message(emit, "Training finished; model saved", path=str(result.model_path))
    result.seconds = time.perf_counter() - started
    return result


def _save_final(trainer: SFTTrainer, tokenizer: PreTrainedTokenizerBase, path: Path, use_lora: bool) -> Path:
    """A self-contained model folder (LoRA merged) that ``inference.load_model`` reads."""
    model = trainer.model
    if use_lora:
        model.save_pretrained(path.parent / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _write_training_info(job: TrainJob, path: Path) -> None:
    """Facts inference needs that the HF files do not carry (the context the model was trained on)."""
    info = {"base_model": job.model, "max_length": job.max_length, "seed": job.seed, "suffix": job.suffix}
    (path / "crafter_tui_training.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
