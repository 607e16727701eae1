"""How the ``openai`` agent reaches a chat-completions endpoint: one interface, two implementations.

- ``lean.ChatClient``: the fast path (raw asyncio HTTP/1.1 with the SDK's retry policy), the default;
- ``sdk.SdkTransport``: the reference, the ``openai`` SDK, for injected clients and proxied endpoints.

The agent calls ``make_transport`` / ``as_transport`` once and then only the ``ChatTransport``
methods; which one runs is decided here. The equivalence tests run both
(``tests/test_agents_openai.py``); the speed is ``benchmarks/bench_llm_concurrency.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from crafter_tui.agents.transport.lean import (
    MAX_HEAD_BYTES,
    ChatClient,
    ChatClientError,
    ChatConnectionError,
    ChatResponseTooLarge,
    ChatStatusError,
    ChatTimeoutError,
    uses_proxy,
)
from crafter_tui.agents.transport.tls import shared_ssl_context

if TYPE_CHECKING:
    import openai

__all__ = ["MAX_HEAD_BYTES", "ChatResponseTooLarge", "ChatTransport", "as_transport", "failure_kind",
           "make_transport", "shared_ssl_context"]


class ChatTransport(Protocol):
    """POSTs a chat-completions body with the transport's retries."""

    api_key: str
    #: what a failed call raises (after the retries): the agent words these as one ``LLMCallError``
    errors: tuple[type[BaseException], ...]

    async def chat_completions(self, body: dict[str, Any]) -> tuple[str | bytes, int]:
        """(the response body, attempts made). Raises ``ChatResponseTooLarge`` past the byte cap, else ``errors``."""
        ...

    async def close(self) -> None: ...


def make_transport(base_url: str, api_key: str, timeout: float, max_retries: int,
                   max_response_bytes: int | None = None) -> ChatTransport:
    """The lean client, or the SDK when the environment names a proxy for ``base_url``."""
    if uses_proxy(base_url):
        from crafter_tui.agents.transport.sdk import SdkTransport, make_sdk_client

        return SdkTransport(make_sdk_client(base_url, api_key, timeout, max_retries))
    return ChatClient(base_url, api_key, timeout=timeout, max_retries=max_retries, ssl_context=shared_ssl_context,
                      max_response_bytes=max_response_bytes)


def as_transport(client: ChatClient | openai.AsyncOpenAI | ChatTransport) -> ChatTransport:
    """An injected client as a transport: a lean client (or any transport) as it is, an SDK client wrapped."""
    if hasattr(client, "chat_completions"):
        return client  # type: ignore[return-value]
    from crafter_tui.agents.transport.sdk import SdkTransport

    return SdkTransport(client)  # type: ignore[arg-type]


def failure_kind(exc: BaseException) -> str:
    """``timeout``, ``connection``, ``status`` or ``other``, for either transport's errors."""
    if isinstance(exc, ChatTimeoutError):
        return "timeout"
    if isinstance(exc, ChatConnectionError):
        return "connection"
    if isinstance(exc, ChatStatusError):
        return "status"
    if isinstance(exc, ChatClientError):
        return "other"
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError):
        return "status"
    return "other"
