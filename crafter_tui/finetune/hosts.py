"""Where fine-tune jobs run: OpenAI, the Synth/Modal unified service, Modal, or our own service.

A host is a name, a base URL, an optional key and the dialect its create-job call takes.
Keys come from the one config (``[openai]``, ``[finetune]``, their environment overrides) and
stay ``SecretStr`` until the moment a client is built.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from crafter_tui.config import AppConfig
from crafter_tui.errors import UserError
from crafter_tui.finetune.job_files import QLORA_REFUSED

HostName = Literal["openai", "synth", "modal", "local"]
HOST_NAMES: tuple[str, ...] = ("openai", "synth", "modal", "local")
#: How a host wants hyperparameters in ``POST /fine_tuning/jobs``.
Dialect = Literal["openai", "synth", "local", "modal"]

#: GPU training throughput (tokens/s, LoRA r=16 on all linear layers, bf16, activation checkpointing,
#: batch 8 of ~840-token rows) for time/cost estimates: 0.5b and 7b measured on one H200 with
#: ``benchmarks/bench_trainer.py --shape`` (16.9k and 6.6k; batch 32 doubles the 0.5b figure), the rest
#: interpolated by parameter count.
GPU_TOKENS_PER_SECOND: dict[str, float] = {"0.5b": 17_000, "1.5b": 12_000, "3b": 9_000, "7b": 6_500,
                                           "14b": 3_500, "32b": 1_600}
GPU_PRICE_PER_HOUR = 4.0  # an H100 on Modal, roughly
#: Built-in models on one CPU thread of a 2-core machine (``benchmarks/bench_trainer.py``).
LOCAL_TOKENS_PER_SECOND: dict[str, float] = {"crafter-tiny": 10_000, "crafter-small": 500}


class Host(BaseModel):
    """One place jobs can run."""

    model_config = ConfigDict(frozen=True)

    name: HostName
    base_url: str | None
    api_key: SecretStr | None = None
    dialect: Dialect
    takes_learning_rate: bool
    takes_lora: bool
    takes_qlora: bool = False  # 4-bit QLoRA: the Synth service; our trainer (local, Modal) has no 4-bit mode

    def refuse_qlora(self, use_qlora: bool | None) -> None:
        """QLoRA where the host cannot train it is an error, never plain LoRA in its place."""
        if use_qlora and not self.takes_qlora:
            raise UserError(f"the {self.name} host cannot train QLoRA: {QLORA_REFUSED}", where="--qlora")

    @field_validator("base_url")
    @classmethod
    def _one_form(cls, value: str | None) -> str | None:
        return normalise_base_url(value) if value else value

    def require_url(self) -> str:
        if not self.base_url:
            raise UserError(f"no base URL configured for the '{self.name}' host", where=_url_hint(self.name))
        return self.base_url


    def require_key(self) -> SecretStr | None:
        """The key, or a one-line error naming the variable to set when this host cannot work without one
        (OpenAI answers every call without a key with 401, so fail before anything is uploaded)."""
        if self.api_key is None and self.name == "openai":
            raise UserError("no OpenAI API key: set OPENAI_API_KEY (or [openai] api_key in the config)",
                            where="OPENAI_API_KEY")
        return self.api_key


def normalise_base_url(url: str) -> str:
    """The one form of an OpenAI-protocol base URL: ending in ``/v1``, no trailing slash.

    The original guide's ``MODAL_BASE_URL`` names the service root (no ``/v1``), OpenAI's and ours
    name the API root (with it); the SDK appends ``/files`` etc. to whatever it is given, so every
    host's URL goes through here once (``Host`` does it on construction)."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path = f"{path}/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def _url_hint(name: str) -> str:
    return {"synth": "[finetune] synth_base_url or SYNTH_BASE_URL/MODAL_BASE_URL",
            "openai": "[openai] base_url or OPENAI_BASE_URL",
            "local": "[finetune] local_url"}.get(name, "config")


def host_from_config(name: str, config: AppConfig) -> Host:
    """The host called ``name`` with URL and key taken from ``config``."""
    ft = config.finetune
    if name == "openai":
        return Host(name="openai", base_url=config.openai.base_url, api_key=config.openai.api_key,
                    dialect="openai", takes_learning_rate=False, takes_lora=False)
    if name == "synth":
        return Host(name="synth", base_url=ft.synth_base_url, api_key=ft.synth_api_key, dialect="synth",
                    takes_learning_rate=True, takes_lora=True, takes_qlora=True)
    if name == "local":
        return Host(name="local", base_url=ft.local_url, api_key=ft.local_token, dialect="local",
                    takes_learning_rate=True, takes_lora=True)
    if name == "modal":
        # jobs go through the Modal SDK; base_url is where its 'serve' function plays the trained models
        return Host(name="modal", base_url=ft.modal_serve_url, api_key=ft.modal_serve_token, dialect="modal",
                    takes_learning_rate=True, takes_lora=True)
    raise UserError(f"unknown fine-tune host {name!r}; choose one of {', '.join(HOST_NAMES)}", where="--backend")


def model_size_key(model: str) -> str | None:
    """The parameter-count key ('7b', '0.5b', ...) found in a model name, for GPU estimates."""
    lowered = model.lower()
    for key in sorted(GPU_TOKENS_PER_SECOND, key=len, reverse=True):
        if f"-{key}" in lowered or f"{key}-" in lowered:
            return key
    return None

