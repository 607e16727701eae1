"""Files a training job leaves behind, shared by the service's workers and the Modal body.

Both hosts run the same trainer the same way: events appended one line per write to
``events.jsonl`` (so a server and a worker can share the file and readers can tail it),
checkpoints in ``checkpoint-<step>`` folders, the trainer named by a ``module:function`` path.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_TRAINER = "crafter_tui.finetune.trainer:run_training"
CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
#: The name a finished model is served under, written next to its weights (by either host's trainer body).
SERVED_NAME_FILE = "served_name.txt"


def fine_tuned_name(base: str, suffix: str | None, job_id: str) -> str:
    """``ft:<base>:<suffix>:<job-id>``. A name, not a format: nothing ever splits it."""
    return f"ft:{base}:{suffix or 'crafter'}:{job_id}"


def resolve_trainer(spec: str) -> tuple[Callable[..., Any], type]:
    module_name, _, func_name = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, func_name or "run_training"), module.TrainJob


def checkpoint_dirs(out: Path) -> list[Path]:
    if not out.is_dir():
        return []
    return sorted((p for p in out.iterdir() if p.is_dir() and CHECKPOINT_DIR.match(p.name)),
                  key=lambda p: int(p.name.split("-", 1)[1]))


def latest_checkpoint(out: Path) -> Path | None:
    found = checkpoint_dirs(out)
    return found[-1] if found else None


def append_event(path: Path, message: str, *, level: str = "info", type_: str = "message",
                 data: dict[str, Any] | None = None) -> None:
    """Append one event line in a single write (O_APPEND), so server and worker can share the file."""
    ns = time.time_ns()
    record = {"id": f"ftevent-{ns:x}{os.getpid():x}{secrets.token_hex(2)}", "ns": ns,
              "created_at": ns // 1_000_000_000, "level": level, "message": message,
              "type": type_, "data": data}
    line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def plain_dict(event: Any) -> dict[str, Any]:
    """A trainer event/result as a dict, whether pydantic, a dataclass or a mapping."""
    if hasattr(event, "model_dump"):
        return event.model_dump()
    if dataclasses.is_dataclass(event) and not isinstance(event, type):
        return dataclasses.asdict(event)
    if isinstance(event, dict):
        return dict(event)
    return dict(vars(event))


LORA_KEYS = ("use_lora", "lora_r", "lora_alpha", "lora_dropout")
#: Why ``use_qlora`` is refused by our trainer (local service and Modal): it has no 4-bit (bitsandbytes) mode.
QLORA_REFUSED = ("QLoRA (use_qlora) is not available: crafter-tui's trainer has no 4-bit (bitsandbytes) mode; "
                 "train LoRA without --qlora, or use --backend synth")


def build_train_job(train_job_cls: type, values: dict[str, Any]) -> Any:
    """The trainer's ``TrainJob`` from flat job values (LoRA keys go to its ``lora`` section).

    ``use_qlora`` (the Synth service's knob) is refused when the trainer has no 4-bit mode (no
    ``use_qlora`` field): a QLoRA job silently trained as plain LoRA would use a different amount of GPU
    memory and give a different model than asked for. Keys the trainer does not know are dropped.
    """
    fields = train_job_cls.model_fields
    flat = dict(values)
    if flat.pop("use_qlora", None):
        if "use_qlora" not in fields:
            raise ValueError(QLORA_REFUSED)
        flat["use_qlora"] = True
    lora = {k: flat.pop(k) for k in LORA_KEYS if k in flat}
    kwargs = {k: v for k, v in flat.items() if k in fields}
    if "lora" in fields and lora:
        kwargs["lora"] = lora
    elif lora:
        kwargs.update({k: v for k, v in lora.items() if k in fields})
    return train_job_cls(**kwargs)


def builtin_base_models(trainer: str = DEFAULT_TRAINER) -> dict[str, float | None]:
    """Built-in base model names of ``trainer`` -> their default learning rate ({} if unknown)."""
    module = importlib.import_module(trainer.partition(":")[0])
    sizes = getattr(module, "BUILTIN_SIZES", {}) or {}
    return {name: getattr(size, "default_learning_rate", None) for name, size in sizes.items()}
