"""The ``openai`` agent: ReAct-style tool calling against any OpenAI-compatible endpoint.

Each turn sends the system prompt, the last ``history_turns`` turns and this observation
(``prompting.build_messages``: the one way history becomes messages, shared with the SFT
exporter) with the ``interact``/``terminate`` tools, and turns the reply into a decision with
``replies.decision_from_completion``. A malformed reply is an *invalid* decision, never an
exception: the runner records it and asks again.

Transport: ``openai.AsyncOpenAI`` with its own retries (``max_retries``: 429, 408, 409, 5xx,
timeouts and connection errors, exponential backoff honouring ``Retry-After``). Two choices
are made for throughput, because at 64 concurrent episodes the client's CPU per call is the
ceiling on one event loop:

- the SDK's aiohttp transport (``DefaultAioHttpClient``, the SDK's own option for concurrent
  use) when aiohttp is installed; it costs about half of the default httpx transport per call;
- the request is sent with the client's generic ``post`` and the body is decoded with
  ``json.loads`` instead of ``chat.completions.create``: the typed method spends ~2 ms per
  call transforming our plain-dict parameters and building pydantic models we do not need.
  Retries, auth, timeouts and error mapping are the same SDK code either way.

The API key is handed to the client and nowhere else: not stored on the agent, not in
decisions, settings or error messages (errors are scrubbed of it).
"""

from __future__ import annotations

import contextvars
import functools
import json
import ssl
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai
from pydantic import SecretStr

from crafter_tui.agents import prompting
from crafter_tui.agents.base import AgentDecision, HistoryTurn, TurnObservation
from crafter_tui.agents.replies import decision_from_completion
from crafter_tui.config import AppConfig
from crafter_tui.errors import UserError

#: Servers that do not check keys (vLLM, Ollama, our own) still need *a* bearer value.
PLACEHOLDER_KEY = "EMPTY"
OPENAI_HOST = "api.openai.com"
RETRIED_STATUSES = frozenset({408, 409, 429})

#: Attempts made by the current ``act`` call (counted by an HTTP request hook on our own client).
_attempts: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("openai_agent_attempts", default=None)


class LLMCallError(RuntimeError):
    """The endpoint could not be reached or refused the call (after the SDK's retries).

    The runner records the episode as ``agent_error`` with this message, so it says what
    failed and where, and it never contains the API key.
    """


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment: what may be written into run records."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _secret_value(api_key: str | SecretStr | None) -> str | None:
    if isinstance(api_key, SecretStr):
        api_key = api_key.get_secret_value()
    return api_key or None


async def _count_attempt(_request: Any) -> None:
    counter = _attempts.get()
    if counter is not None:
        counter[0] += 1


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context per process, shared by every agent's client.

    Building one loads the CA bundle (0.05-0.4 s of CPU); the runner builds one agent per
    episode, so without sharing, starting 64 episodes would block the event loop for seconds.
    """
    try:  # the SDK's own HTTP library and default context (honours SSL_CERT_FILE and friends)
        import httpx2 as http_library  # openai >= 3
    except ImportError:  # pragma: no cover - older SDKs use httpx
        import httpx as http_library
    return http_library.create_ssl_context()


def make_client(base_url: str, api_key: str, timeout: float, max_retries: int) -> openai.AsyncOpenAI:
    """An ``AsyncOpenAI`` on the aiohttp transport when available (see module docstring)."""
    hooks = {"request": [_count_attempt], "response": []}
    options: dict[str, Any] = {"timeout": timeout, "event_hooks": hooks, "verify": shared_ssl_context()}
    aiohttp_client = getattr(openai, "DefaultAioHttpClient", None)
    try:
        if aiohttp_client is None:
            raise RuntimeError("this openai SDK has no aiohttp transport")
        http_client = aiohttp_client(**options)
    except RuntimeError:  # aiohttp extra not installed: the SDK's default transport
        http_client = openai.DefaultAsyncHttpxClient(**options)
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout,
                              max_retries=max_retries, http_client=http_client)


class OpenAIAgent:
    """A Crafter player backed by a chat model that calls the ``interact`` tool."""

    kind = "openai"
    needs_semantic_map = False

    def __init__(
        self,
        model: str | None,
        *,
        config: AppConfig | None = None,
        base_url: str | None = None,
        api_key: str | SecretStr | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        history_turns: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        tool_choice: str | dict[str, Any] = "auto",
        system_prompt: str = prompting.SYSTEM_PROMPT,
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        """Explicit arguments win; the rest come from ``config`` (``[openai]``, ``[eval]``) or its defaults."""
        if not model or not model.strip():
            raise UserError("the openai agent needs a model name", where="--model")
        config = config or AppConfig()
        section, run = config.openai, config.eval
        base_url = base_url or section.base_url
        self.model = model
        self.system_prompt = system_prompt
        self.history_turns = run.history_turns if history_turns is None else history_turns
        self.temperature = run.temperature if temperature is None else temperature
        self.max_tokens = run.max_tokens if max_tokens is None else max_tokens
        self.tool_choice = tool_choice
        self.timeout = section.timeout if timeout is None else timeout
        self.max_retries = section.max_retries if max_retries is None else max_retries
        self.endpoint = redact_url(base_url)
        # OpenAI's newer models reject ``max_tokens``; other servers may not know the new name.
        self._max_tokens_field = "max_completion_tokens" if urlsplit(base_url).hostname == OPENAI_HOST else "max_tokens"
        self._owns_client = client is None
        if client is None:
            key = self._resolve_key(api_key if api_key is not None else section.api_key, base_url)
            client = make_client(base_url, key, self.timeout, self.max_retries)
        self._client = client

    @classmethod
    def from_config(cls, config: AppConfig, model: str, *, client: openai.AsyncOpenAI | None = None) -> OpenAIAgent:
        """The agent the ``[openai]`` and ``[eval]`` config sections describe."""
        return cls(model, config=config, client=client)

    @staticmethod
    def _resolve_key(api_key: str | SecretStr | None, base_url: str) -> str:
        key = _secret_value(api_key)
        if key is not None:
            return key
        if urlsplit(base_url).hostname == OPENAI_HOST:
            raise UserError("no API key for api.openai.com: set OPENAI_API_KEY or [openai].api_key",
                            where="[openai].api_key")
        return PLACEHOLDER_KEY

    @property
    def settings(self) -> dict[str, Any]:
        """What shaped the calls, for the run record (no secrets)."""
        return {"endpoint": self.endpoint, "temperature": self.temperature, "max_tokens": self.max_tokens,
                "history_turns": self.history_turns, "tool_choice": self.tool_choice,
                "timeout": self.timeout, "max_retries": self.max_retries}

    def request_body(self, obs: TurnObservation, history: list[HistoryTurn]) -> dict[str, Any]:
        """The chat-completions request for this turn."""
        return {
            "model": self.model,
            "messages": prompting.build_messages(self.system_prompt, history, obs.text, self.history_turns),
            "tools": prompting.TOOLS,
            "tool_choice": self.tool_choice,
            "temperature": self.temperature,
            self._max_tokens_field: self.max_tokens,
        }

    async def start_episode(self, seed: int) -> None:
        """Nothing to reset: the runner passes the history in each turn."""

    async def act(self, obs: TurnObservation, history: list[HistoryTurn]) -> AgentDecision:
        """Ask the model for this turn's actions; raises ``LLMCallError`` when the call itself fails."""
        body = self.request_body(obs, history)
        counter = [0]
        token = _attempts.set(counter)
        started = time.perf_counter()
        try:
            text = await self._client.post("/chat/completions", cast_to=str, body=body)
        except openai.APIError as exc:
            raise LLMCallError(self._describe_failure(exc)) from None
        finally:
            _attempts.reset(token)
        latency_ms = (time.perf_counter() - started) * 1000.0
        try:
            payload = json.loads(text)
        except ValueError:
            raise LLMCallError(f"model endpoint {self.endpoint} returned a body that is not JSON: "
                               f"{self._scrub(text[:200])!r}") from None
        decision = decision_from_completion(payload)
        decision.latency_ms = latency_ms
        if counter[0] > 1:
            decision.extra["retries"] = counter[0] - 1
        return decision

    def record_result(self, decision: AgentDecision, tool_result: str) -> None:
        """Nothing to learn here: the result comes back through the history the runner keeps."""

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()

    # -- errors ---------------------------------------------------------------------
    def _describe_failure(self, exc: openai.APIError) -> str:
        where = f"model endpoint {self.endpoint} (model {self.model!r})"
        if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
            # the aiohttp transport reports refused connections as timeouts: look for the OS error
            refused = _os_error(exc)
            if isinstance(exc, openai.APITimeoutError) and refused is None:
                text = f"{where} timed out after {self.timeout:g} s, {self.max_retries} retries"
            else:
                cause = refused or _root_cause(exc)
                text = (f"could not connect to {where}, {self.max_retries} retries: "
                        f"{type(cause).__name__}: {cause}")
        elif isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            retried = status in RETRIED_STATUSES or status >= 500
            text = f"{where} answered HTTP {status}" + (f" after {self.max_retries} retries" if retried else "")
            text += f": {_error_message(exc)}" + _status_hint(status)
        else:
            text = f"{where} failed: {exc}"
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        key = getattr(self._client, "api_key", None)
        if isinstance(key, str) and len(key) >= 4 and key != PLACEHOLDER_KEY:
            text = text.replace(key, "***")
        return text


def _os_error(exc: BaseException) -> OSError | None:
    """The OS-level connection error (refused, unreachable, DNS) behind ``exc``, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and not isinstance(current, TimeoutError):
            return current
        current = current.__cause__ or current.__context__
    return None


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception behind ``exc`` (the OS or transport error that started it)."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return exc


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return exc.message


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return " (check OPENAI_API_KEY / [openai].api_key)"
    if status == 404:
        return " (check the model name and [openai].base_url)"
    return ""
