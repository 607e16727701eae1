"""The reference chat transport: the ``openai`` SDK's ``AsyncOpenAI``.

The lean client (``transport/lean.py``) is the fast copy of this path and keeps its observable
behaviour (request, retry policy, error wording); the equivalence tests run both
(``tests/test_agents_openai.py``, ``test_lean_client_and_sdk_fail_with_the_same_words``). The SDK is
used when a caller injects an ``AsyncOpenAI`` and when the environment routes the endpoint through a
proxy, which the lean client does not speak. ``openai`` is imported only here, and only then (it
costs about a second and a half to import).
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from crafter_tui.agents.transport.tls import shared_ssl_context

if TYPE_CHECKING:
    import openai

#: Attempts made by the current call on an SDK client (counted by an HTTP request hook).
_attempts: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("sdk_transport_attempts", default=None)


async def _count_attempt(_request: Any) -> None:
    counter = _attempts.get()
    if counter is not None:
        counter[0] += 1


def make_sdk_client(base_url: str, api_key: str, timeout: float, max_retries: int) -> openai.AsyncOpenAI:
    """An ``AsyncOpenAI`` on the SDK's httpx transport, which honours the proxy settings, counting its attempts."""
    import openai

    hooks = {"request": [_count_attempt], "response": []}
    http_client = openai.DefaultAsyncHttpxClient(timeout=timeout, event_hooks=hooks, verify=shared_ssl_context())
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout,
                              max_retries=max_retries, http_client=http_client)


class SdkTransport:
    """A ``ChatTransport`` over an ``openai.AsyncOpenAI`` (ours from ``make_sdk_client``, or injected)."""

    def __init__(self, sdk: openai.AsyncOpenAI) -> None:
        import openai

        self.sdk = sdk
        self.errors: tuple[type[BaseException], ...] = (openai.APIError,)

    @property
    def api_key(self) -> str:
        return self.sdk.api_key

    async def chat_completions(self, body: dict[str, Any]) -> tuple[str, int]:
        """The generic ``post`` returns the body text without building the typed response models
        (work per call the agent does not need). Attempts are counted on our own client's request
        hook; an injected client reports 0, and its errors carry no ``retries``."""
        import openai

        counter = [0]
        token = _attempts.set(counter)
        try:
            text = await self.sdk.post("/chat/completions", cast_to=str, body=body)
        except openai.APIError as exc:
            if counter[0]:
                exc.retries = counter[0] - 1  # type: ignore[attr-defined]
            raise
        finally:
            _attempts.reset(token)
        return text, counter[0]

    async def close(self) -> None:
        await self.sdk.close()
