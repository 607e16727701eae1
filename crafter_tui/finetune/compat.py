"""Can this host fine-tune that base model? (The original guide's ``check_model_compatibility.py``.)

Asked by ``crafter-tui models check MODEL --backend B`` and before every launch, so a model the host
cannot train is refused before anything is uploaded or started, instead of failing when the job runs:

- ``openai``: the fine-tunable snapshots (aliases such as ``gpt-4o-mini`` resolved by ``resolve_model``),
  or a model OpenAI fine-tuned (``ft:...``, trained further);
- ``synth``: the service's list in the original guide (Qwen2.5 Instruct, 0.5B to 32B);
- ``local``: the trainer's built-in sizes, or weights on this disk (a folder with ``config.json``, or the
  Hugging Face cache) because the local trainer never downloads;
- ``modal``: the built-in sizes or a Hugging Face id (``org/name``), downloaded in the container.

The context limit is the host's most tokens per example (OpenAI's per-model limit; our trainer's
``max_length``, beyond which it skips an example); the dataset's longest example is compared with it.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from crafter_tui.dataset.tokens import fine_tunable_openai_models, resolve_model, token_limit
from crafter_tui.errors import UserError

#: The Synth/Modal unified service's models (original guide, "Supported Models") -> their context window
#: (Qwen2.5's 32,768 tokens; the guide names no lower cap of the service).
SYNTH_MODELS: dict[str, int] = {
    "Qwen/Qwen2.5-0.5B-Instruct": 32_768,
    "Qwen/Qwen2.5-7B-Instruct": 32_768,
    "Qwen/Qwen2.5-14B-Instruct": 32_768,
    "Qwen/Qwen2.5-32B-Instruct": 32_768,
}
HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class Compatibility(BaseModel):
    """The answer for one (host, base model), with the dataset's longest example when one was given."""

    backend: str
    model: str
    resolved: str  # the snapshot an alias stands for (else the name itself)
    ok: bool
    reason: str
    context_limit: int | None = None
    limit_note: str = ""
    longest_example: int | None = None  # tokens, counted as the dataset report says
    counted_with: str | None = None

    @property
    def too_long(self) -> bool:
        return bool(self.context_limit and self.longest_example and self.longest_example > self.context_limit)

    def lines(self) -> list[str]:
        """What ``models check`` prints (and the launch plan shows)."""
        verdict = "yes" if self.ok else "NO"
        alias = f" (= {self.resolved})" if self.resolved != self.model else ""
        out = [f"{self.backend} can fine-tune {self.model}{alias}: {verdict} - {self.reason}"]
        if self.context_limit:
            out.append(f"context limit: {self.context_limit:,} tokens per example ({self.limit_note})")
        if self.longest_example is not None:
            fits = "too long" if self.too_long else "fits"
            counted = f", counted with {self.counted_with}" if self.counted_with else ""
            out.append(f"longest example: {self.longest_example:,} tokens ({fits}{counted})")
        return out

    def require(self) -> None:
        if not self.ok:
            raise UserError(f"{self.backend} cannot fine-tune {self.model}: {self.reason} "
                            f"(see 'crafter-tui models check {self.model} --backend {self.backend}')", where="--model")


def check_model(backend: str, model: str, *, longest_example: int | None = None,
                counted_with: str | None = None) -> Compatibility:
    """Whether ``backend`` can fine-tune ``model``; no network (lists are the hosts' published ones)."""
    resolved = resolve_model(model) if backend == "openai" else model
    checker = {"openai": _openai, "synth": _synth, "local": _local, "modal": _modal}.get(backend)
    if checker is None:
        raise UserError(f"unknown fine-tune host {backend!r}", where="--backend")
    ok, reason, limit, note = checker(resolved)
    return Compatibility(backend=backend, model=model, resolved=resolved, ok=ok, reason=reason, context_limit=limit,
                         limit_note=note, longest_example=longest_example, counted_with=counted_with)


def _openai(model: str) -> tuple[bool, str, int | None, str]:
    tunable = fine_tunable_openai_models()
    if model in tunable:
        return True, "on OpenAI's fine-tunable list", token_limit(model), "OpenAI's limit for this snapshot"
    if model.startswith("ft:"):
        base = resolve_model(model.split(":")[1]) if model.count(":") >= 2 else ""
        return True, "a model OpenAI fine-tuned, trained further", token_limit(base), f"the limit of {base or '?'}"
    return False, f"not on OpenAI's fine-tunable list ({', '.join(tunable)})", None, ""


def _synth(model: str) -> tuple[bool, str, int | None, str]:
    if model in SYNTH_MODELS:
        return True, "on the Synth service's model list", SYNTH_MODELS[model], "Qwen2.5's context window"
    return False, f"not on the Synth service's model list ({', '.join(SYNTH_MODELS)})", None, ""


def _trainer_limit() -> tuple[int, str]:
    from crafter_tui.finetune.trainer.train import TrainJob  # torch: only for the hosts that run our trainer

    return int(TrainJob.model_fields["max_length"].default), "crafter-tui's trainer max_length; longer are skipped"


def _builtins() -> list[str]:
    from crafter_tui.finetune.job_files import builtin_base_models

    return list(builtin_base_models())


def _local(model: str) -> tuple[bool, str, int | None, str]:
    if model in _builtins():
        return True, "a built-in size (trained from scratch, no weights needed)", *_trainer_limit()
    where = weights_on_disk(model)
    if where:
        return True, f"weights on this disk ({where})", *_trainer_limit()
    return False, (f"no weights on this disk (the local trainer never downloads): use a built-in size "
                   f"({', '.join(_builtins())}), a folder with config.json, a model in the Hugging Face cache "
                   "('hf download MODEL'), or --backend modal / synth"), None, ""


def _modal(model: str) -> tuple[bool, str, int | None, str]:
    if model in _builtins():
        return True, "a built-in size", *_trainer_limit()
    if HF_ID.match(model):
        return True, "a Hugging Face id (downloaded in the Modal container)", *_trainer_limit()
    return False, "not a built-in size nor a Hugging Face id (org/name)", None, ""


def weights_on_disk(model: str) -> str | None:
    """Where the local trainer would find ``model``'s weights: a folder, or the Hugging Face cache."""
    path = Path(model).expanduser()
    if (path / "config.json").is_file():
        return str(path)
    if not HF_ID.match(model):
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json")
    return "the Hugging Face cache" if isinstance(cached, str) else None
