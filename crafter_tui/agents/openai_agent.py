"""The ``openai`` agent: ReAct-style tool calling against any OpenAI-compatible endpoint.

Each turn sends the system prompt, the last ``history_turns`` turns and this observation
(``prompting.build_messages``: the one way history becomes messages, shared with the SFT
exporter) with the ``interact``/``terminate`` tools, and turns the reply into a decision with
``replies.decision_from_completion``. A malformed reply is an *invalid* decision, never an
exception: the runner records it and asks again.

Transport: a ``transport.ChatTransport``, chosen once (``agents/transport/``): by default the lean
HTTP/1.1 keep-alive client (the fast path, which mirrors the SDK's request, retry policy and error
classes), else the ``openai`` SDK (the reference: an injected ``AsyncOpenAI``, or an endpoint the
environment routes through a proxy). Either way, failures are worded by the same ``_describe_failure``.

The API key is handed to the client and nowhere else: not stored on the agent, not in
decisions, settings or error messages (errors are scrubbed of it).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from crafter_tui.agents import prompting
from crafter_tui.agents.base import AgentDecision, HistoryTurn, TurnObservation
from crafter_tui.agents.replies import decision_from_completion, truncated_reply
from crafter_tui.agents.structured import tool_request, wants_structured
from crafter_tui.agents.transport import (
    MAX_HEAD_BYTES,
    ChatResponseTooLarge,
    ChatTransport,
    as_transport,
    failure_kind,
    make_transport,
)
from crafter_tui.config import AppConfig
from crafter_tui.errors import UserError
from crafter_tui.traces.jsonl import loads_bounded

if TYPE_CHECKING:  # imported at run time only when an SDK client is used (transport/sdk.py)
    import openai

    from crafter_tui.agents.transport.lean import ChatClient

#: Servers that do not check keys (vLLM, Ollama, our own) still need *a* bearer value.
PLACEHOLDER_KEY = "EMPTY"
OPENAI_HOST = "api.openai.com"
RETRIED_STATUSES = frozenset({408, 409, 429})


class LLMCallError(RuntimeError):
    """The endpoint could not be reached or refused the call (after the client's retries).

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


class OpenAIAgent:
    """A Crafter player backed by a chat model that calls the ``interact`` tool."""

    kind = "openai"
    needs_semantic_map = False
    #: every ``act`` waits for the endpoint, so the episode loop need not yield on its own
    act_awaits_io = True

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
        tool_choice: str | dict[str, Any] | None = None,
        system_prompt: str = prompting.SYSTEM_PROMPT,
        client: ChatClient | openai.AsyncOpenAI | None = None,
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
        #: structured output asked for (see ``agents.structured``): "required" and strict tools
        self.structured = wants_structured(section.structured, base_url, config.finetune.local_url)
        self.tools, self.tool_choice = tool_request(prompting.TOOLS, tool_choice, self.structured)
        #: ``text``: the model writes its call as JSON text (trained on ``--text-actions`` data): no tools are sent
        self.reply_actions = "tools"
        self._episode_seed = 0
        self.timeout = section.timeout if timeout is None else timeout
        self.max_retries = section.max_retries if max_retries is None else max_retries
        self.max_reply_bytes = section.max_reply_bytes
        self.endpoint = redact_url(base_url)
        # OpenAI's newer models reject ``max_tokens``; other servers may not know the new name.
        self._max_tokens_field = "max_completion_tokens" if urlsplit(base_url).hostname == OPENAI_HOST else "max_tokens"
        self._owns_client = client is None
        if client is None:
            key = self._resolve_key(api_key if api_key is not None else section.api_key, base_url)
            client = make_transport(base_url, key, self.timeout, self.max_retries,
                                    self.max_reply_bytes + MAX_HEAD_BYTES)  # head + a body of max_reply_bytes
        self._client: ChatTransport = as_transport(client)

    @classmethod
    def from_config(cls, config: AppConfig, model: str, *,
                    client: ChatClient | openai.AsyncOpenAI | None = None) -> OpenAIAgent:
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
                "structured": self.structured, "reply_actions": self.reply_actions,
                "timeout": self.timeout, "max_retries": self.max_retries}

    def request_body(self, obs: TurnObservation, history: list[HistoryTurn]) -> dict[str, Any]:
        """The chat-completions request for this turn.

        A sampled turn (temperature > 0) carries a seed derived from the episode seed and the
        turn, so a server that honours ``seed`` replays the same episode on the same seed.
        """
        body: dict[str, Any] = {
            "model": self.model,
            "messages": prompting.build_messages(self.system_prompt, history, obs.text, self.history_turns),
        }
        if self.reply_actions == "tools":
            body["tools"] = self.tools
            body["tool_choice"] = self.tool_choice
        body["temperature"] = self.temperature
        body[self._max_tokens_field] = self.max_tokens
        if self.temperature > 0:
            body["seed"] = (self._episode_seed * 100_003 + obs.turn) % 2**31
        return body

    async def start_episode(self, seed: int) -> None:
        """Remember the episode seed (sampled turns derive their request seed from it)."""
        self._episode_seed = seed

    async def act(self, obs: TurnObservation, history: list[HistoryTurn]) -> AgentDecision:
        """Ask the model for this turn's actions; raises ``LLMCallError`` when the call itself fails."""
        body = self.request_body(obs, history)
        started = time.perf_counter()
        try:
            raw, attempts = await self._client.chat_completions(body)
        except ChatResponseTooLarge as exc:
            return truncated_reply(exc.prefix, self.max_reply_bytes)
        except self._client.errors as exc:
            raise LLMCallError(self._describe_failure(exc)) from None
        if len(raw) > self.max_reply_bytes:
            return truncated_reply(raw, self.max_reply_bytes)
        latency_ms = (time.perf_counter() - started) * 1000.0
        try:
            payload = loads_bounded(raw)  # a hostile endpoint's 3 KB of brackets: "not JSON", not a RecursionError
        except ValueError:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            raise LLMCallError(f"model endpoint {self.endpoint} returned a body that is not JSON: "
                               f"{self._scrub(text[:200])!r}") from None
        decision = decision_from_completion(payload, text_actions=self.reply_actions == "text")
        decision.latency_ms = latency_ms
        if attempts > 1:
            decision.extra["retries"] = attempts - 1
        return decision

    def record_result(self, decision: AgentDecision, tool_result: str) -> None:
        """Nothing to learn here: the result comes back through the history the runner keeps."""

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()

    # -- errors ---------------------------------------------------------------------
    def _describe_failure(self, exc: Exception) -> str:
        """One wording for the lean client's errors and the SDK's (``openai.APIError``)."""
        where = f"model endpoint {self.endpoint} (model {self.model!r})"
        kind = failure_kind(exc)
        if kind in ("timeout", "connection"):
            # the aiohttp transport reports refused connections as timeouts: look for the OS error
            refused = _os_error(exc)
            if kind == "timeout" and refused is None:
                text = f"{where} timed out after {self.timeout:g} s, {self.max_retries} retries"
            else:
                cause = refused or _root_cause(exc)
                text = (f"could not connect to {where}, {self.max_retries} retries: "
                        f"{type(cause).__name__}: {cause}")
        elif kind == "status":
            status = exc.status_code
            retries = getattr(exc, "retries", None)  # what was really retried (a long Retry-After: none)
            if retries is None:
                retries = self.max_retries if status in RETRIED_STATUSES or status >= 500 else 0
            text = f"{where} answered HTTP {status}" + (f" after {retries} retries" if retries else "")
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


def _error_message(exc: Any) -> str:
    """The error's ``message`` field from the body (either client's status error), else its own text."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return getattr(exc, "message", None) or str(exc)


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return " (check OPENAI_API_KEY / [openai].api_key)"
    if status == 404:
        return " (check the model name and [openai].base_url)"
    return ""
