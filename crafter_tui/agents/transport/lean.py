"""The fast path of the chat transport: a lean OpenAI-compatible client, HTTP/1.1 keep-alive on asyncio.

Its reference is the ``openai`` SDK (``transport/sdk.py``); the agent reaches either through
``transport.ChatTransport``. Equivalence: ``tests/test_agents_openai.py``
(``test_lean_client_and_sdk_fail_with_the_same_words``, the ``transport`` parametrisations) and the
policy pinned in ``tests/test_agents_chat_client.py``; speed: ``benchmarks/bench_llm_concurrency.py``.

Why not the ``openai`` SDK: at 64 concurrent episodes the client's CPU per call is the
ceiling of one event loop. Through the SDK (option models, header merging, URL parsing, the
httpx request/response objects, the transport adapter) a whole rollout turn cost ~2.8 ms of
CPU (``benchmarks/bench_llm_concurrency.py``); with this client it costs ~1 ms, of which the
world step and observation are most. This client does only what a chat-completions POST needs
and keeps the SDK's observable behaviour, so the agent's errors, retries and records do not
change:

- the same request: ``POST {base_url}/chat/completions`` with ``Authorization: Bearer``,
  JSON content type and accept headers, ``OpenAI-Organization`` / ``OpenAI-Project`` from
  ``OPENAI_ORG_ID`` / ``OPENAI_PROJECT_ID`` as the SDK reads them;
- the same retry policy (``should_retry``/``retry_delay``, mirroring the SDK's): 408, 409,
  429 and 5xx, connection errors and timeouts are retried up to ``max_retries`` times;
  ``x-should-retry`` overrides; ``Retry-After-Ms`` / ``Retry-After`` (seconds or an HTTP
  date) is honoured when 0 < delay <= 120 s and a longer one is not retried at all; otherwise
  exponential backoff 0.5 s x 2^n capped at 8 s, minus up to 25 % jitter;
- errors as three classes the agent words exactly like the SDK's (``ChatStatusError`` with
  the status and decoded body, ``ChatConnectionError`` with the OS error as its cause,
  ``ChatTimeoutError``).

HTTP/1.1 framing (``parse_response``) covers ``Content-Length``, chunked and read-to-close
bodies and interim 1xx responses. One deliberate simplification: ``timeout`` bounds each
attempt as a whole (connect, send and the complete response), not each socket read. Redirects are not followed (an OpenAI-compatible
endpoint does not redirect POSTs). Proxies are not spoken: ``uses_proxy`` tells the agent
to fall back to the SDK when the environment names one for the endpoint.

The client is safe for concurrent use: a request takes an idle keep-alive connection or
opens a new one, and gives it back when the response is complete. A connection the server
closed while idle is detected on reuse and the request is re-sent once on a fresh one (not a
retry: nothing reached the server).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crafter_tui.version import __version__
from crafter_tui.traces.jsonl import loads_bounded

CHAT_COMPLETIONS = "chat/completions"
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER_DELAY = 120.0
RETRIED_STATUSES = frozenset({408, 409, 429})
MAX_HEAD_BYTES = 64 * 1024


class ChatClientError(Exception):
    """A chat-completions call failed (after the retries it was allowed)."""

    #: Retries made before this error was raised (set by ``ChatClient.post``; None when not known).
    retries: int | None = None


class ChatConnectionError(ChatClientError):
    """The endpoint could not be reached or dropped the connection; ``__cause__`` is the OS error."""


class ChatTimeoutError(ChatConnectionError):
    """An attempt did not complete within the client's ``timeout``."""


class ChatResponseTooLarge(ChatClientError):
    """The response body passed ``max_response_bytes``: reading stopped there (``prefix`` is what came).

    Not retried: the same request would get the same reply. The agent records it as an invalid,
    truncated turn (``[openai] max_reply_bytes``), so a 100 MB reply is never stored or re-sent."""

    def __init__(self, limit: int, prefix: bytes) -> None:
        super().__init__(f"response larger than {limit} bytes")
        self.limit = limit
        self.prefix = prefix


class ChatStatusError(ChatClientError):
    """The endpoint answered with an HTTP error status (4xx/5xx)."""

    def __init__(self, status: int, headers: dict[str, str], body: Any) -> None:
        self.status_code = status
        self.headers = headers
        self.body = body  # the decoded JSON body, or its text when it is not JSON
        super().__init__(error_message(status, body))


def error_message(status: int, body: Any) -> str:
    """``Error code: N`` plus the error's ``message`` field when the body has one (as the SDK words it)."""
    text = f"Error code: {status}"
    inner = body.get("error", body) if isinstance(body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    if isinstance(message, str) and message:
        text += f" - {message}"
    return text


# --------------------------------------------------------------------------- retry policy
def parse_retry_after(headers: dict[str, str]) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms``, then ``retry-after``), or None."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if delay == math.inf and value.strip().lower() not in ("inf", "+inf", "infinity", "+infinity"):
            return MAX_RETRY_AFTER_DELAY + 1  # a numeric overflow is an excessive delay, not "no header"
        return delay / divisor
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return float(email.utils.mktime_tz(parsed) - time.time())
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def should_retry(status: int, headers: dict[str, str]) -> bool:
    """Whether an error response is worth another attempt (the SDK's rules)."""
    retry_after = parse_retry_after(headers)
    if retry_after is not None and math.isfinite(retry_after) and retry_after > MAX_RETRY_AFTER_DELAY:
        return False
    verdict = headers.get("x-should-retry")
    if verdict == "true":
        return True
    if verdict == "false":
        return False
    return status in RETRIED_STATUSES or status >= 500


def retry_delay(retries_taken: int, headers: dict[str, str] | None,
                jitter: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``retries_taken + 1``."""
    retry_after = parse_retry_after(headers) if headers else None
    if retry_after is not None and math.isfinite(retry_after) and 0 < retry_after <= MAX_RETRY_AFTER_DELAY:
        return retry_after
    backoff = min(INITIAL_RETRY_DELAY * 2.0 ** min(retries_taken, 1000), MAX_RETRY_DELAY)
    return max(0.0, backoff * (1 - 0.25 * jitter()))


# --------------------------------------------------------------------------- HTTP/1.1
@dataclass(slots=True)
class Response:
    """A complete HTTP response."""

    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    keep_alive: bool


class _StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before it answered (nothing was processed)."""


class MalformedResponse(ValueError):
    """The bytes the server sent are not an HTTP/1.x response we can frame."""


def _parse_head(head: bytes) -> tuple[int, dict[str, str], bool]:
    """Status, headers and whether the connection may be reused, from the bytes before the blank line."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise MalformedResponse(f"malformed HTTP status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise MalformedResponse(f"malformed header line {line[:80]!r}")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    connection = headers.get("connection", "").lower()
    keep_alive = ("close" not in connection) if version == "HTTP/1.1" else ("keep-alive" in connection)
    return int(rest[:3]), headers, keep_alive


def _chunked_body(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """The decoded chunked body starting at ``start`` and where it ends, or None while incomplete."""
    parts: list[bytes] = []
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size_text = bytes(buffer[position:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise MalformedResponse(f"malformed chunk size {size_text[:20]!r}") from None
        position = line_end + 2
        if size == 0:
            while True:  # trailers, up to the blank line
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    return None
                blank, position = line_end == position, line_end + 2
                if blank:
                    return b"".join(parts), position
        if len(buffer) < position + size + 2:
            return None
        parts.append(bytes(buffer[position:position + size]))
        position += size + 2


def parse_response(buffer: bytearray, eof: bool) -> tuple[Response, int] | None:
    """The first complete response in ``buffer`` and how many bytes it took, or None while incomplete.

    Frames by ``Content-Length``, ``Transfer-Encoding: chunked``, or (neither) the end of the
    connection. Interim 1xx responses are skipped.
    """
    start = 0
    while True:
        head_end = buffer.find(b"\r\n\r\n", start)
        if head_end < 0:
            if len(buffer) - start > MAX_HEAD_BYTES:
                raise MalformedResponse(f"response headers exceed {MAX_HEAD_BYTES} bytes")
            return None
        status, headers, keep_alive = _parse_head(bytes(buffer[start:head_end]))
        body_start = head_end + 4
        if 100 <= status < 200:
            start = body_start
            continue
        break
    if status in (204, 304):
        return Response(status, headers, b"", keep_alive), body_start
    if "chunked" in headers.get("transfer-encoding", "").lower():
        framed = _chunked_body(buffer, body_start)
        if framed is None:
            return None
        body, end = framed
        return Response(status, headers, body, keep_alive), end
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise MalformedResponse(f"malformed content-length {headers['content-length'][:20]!r}") from None
        if len(buffer) < body_start + length:
            return None
        return Response(status, headers, bytes(buffer[body_start:body_start + length]), keep_alive), \
            body_start + length
    if not eof:  # the body runs to the end of the connection
        return None
    return Response(status, headers, bytes(buffer[body_start:]), False), len(buffer)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection as a protocol: write a request, resolve a future with the response.

    A protocol rather than asyncio streams: it parses the response in ``data_received`` and wakes
    the waiting request once, instead of resuming a coroutine for every read.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.max_bytes = max_bytes  # the most a response may take in the buffer (head and body)
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._eof = False
        self._reused = False
        self.used = False

    @property
    def usable(self) -> bool:
        """Still open and idle (not closed by the server while it waited in the pool)."""
        return not self._eof and self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self.max_bytes is not None and len(self._buffer) > self.max_bytes:
            self._overflow()
            return
        self._settle()

    def _overflow(self) -> None:
        """Stop reading a response past ``max_bytes``: the waiter gets what came, the connection closes."""
        waiter = self._waiter
        head_end = self._buffer.find(b"\r\n\r\n")
        prefix = bytes(self._buffer[head_end + 4 if head_end >= 0 else 0:])
        self._buffer.clear()
        self._eof = True
        if self.transport is not None:
            self.transport.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(ChatResponseTooLarge(self.max_bytes or 0, prefix))

    def eof_received(self) -> bool:
        self._eof = True
        self._settle()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._settle(exc)

    async def exchange(self, request: bytes) -> Response:
        """Send ``request`` and wait for the complete response."""
        assert self.transport is not None and self._waiter is None
        self._reused, self.used = self.used, True
        self._buffer.clear()
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def _settle(self, lost: Exception | None = None) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            parsed = parse_response(self._buffer, self._eof)
        except MalformedResponse as exc:
            waiter.set_exception(ConnectionError(str(exc)))
            return
        if parsed is not None:
            response, used = parsed
            del self._buffer[:used]
            if self._buffer:  # bytes beyond the response: the connection cannot be trusted again
                response.keep_alive = False
            waiter.set_result(response)
        elif self._eof:
            if self._reused and not self._buffer:
                waiter.set_exception(_StaleConnection())
            elif lost is not None:
                waiter.set_exception(lost)
            else:
                waiter.set_exception(ConnectionResetError("the server closed the connection before the "
                                                          "response was complete"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# --------------------------------------------------------------------------- the client
def uses_proxy(base_url: str) -> bool:
    """Whether the environment routes ``base_url`` through a proxy (which this client does not speak)."""
    parts = urlsplit(base_url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


class ChatClient:
    """POSTs chat-completions requests to one OpenAI-compatible endpoint (see module docstring).

    ``api_key`` is used for the ``Authorization`` header and nothing else; ``api_key`` and
    ``max_retries`` are public attributes, as on ``openai.AsyncOpenAI``.
    """

    #: what a failed call raises, after the retries (``transport.ChatTransport``)
    errors: tuple[type[BaseException], ...] = (ChatClientError,)

    def __init__(self, base_url: str, api_key: str, *, timeout: float, max_retries: int,
                 ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
                 default_headers: dict[str, str] | None = None, max_response_bytes: int | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
        if max_retries < 0:
            raise ValueError("max_retries must be a non-negative integer")
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self._host = parts.hostname
        self._tls = parts.scheme == "https"
        self._port = parts.port or (443 if self._tls else 80)
        self._ssl = ssl_context
        self._path = parts.path.rstrip("/") + "/"
        default_port = self._port == (443 if self._tls else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._head = self._request_head(host if default_port else f"{host}:{self._port}", default_headers)
        self._idle: list[_Connection] = []
        self._closed = False
        #: Bytes a response may take (head and body); past it, ``ChatResponseTooLarge`` (None: no limit).
        self.max_response_bytes = max_response_bytes

    def _request_head(self, host: str, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Host": host, "Accept": "application/json", "Content-Type": "application/json",
                   "User-Agent": f"crafter-tui/{__version__}", "Authorization": f"Bearer {self.api_key}"}
        for env, name in (("OPENAI_ORG_ID", "OpenAI-Organization"), ("OPENAI_PROJECT_ID", "OpenAI-Project")):
            if os.environ.get(env):
                headers[name] = os.environ[env]
        headers.update(extra or {})
        return headers

    def _encode(self, path: str, body: bytes) -> bytes:
        lines = [f"POST {self._path}{path} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in self._head.items()]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def chat_completions(self, body: dict[str, Any]) -> tuple[bytes, int]:
        """The response body of a successful call and the number of attempts it took.

        Raises ``ChatStatusError``, ``ChatTimeoutError`` or ``ChatConnectionError`` once the
        retries are spent (or at once for errors that are not retried).
        """
        return await self.post(CHAT_COMPLETIONS, json.dumps(body).encode("ascii"))  # ASCII: \u escapes

    async def post(self, path: str, body: bytes) -> tuple[bytes, int]:
        """POST ``body`` (JSON) to ``{base_url}/{path}`` with retries; see ``chat_completions``."""
        request = self._encode(path, body)
        retries = 0
        while True:
            try:
                response = await self._attempt(request)
            except ChatConnectionError as exc:
                if retries >= self.max_retries:
                    exc.retries = retries
                    raise
                await asyncio.sleep(retry_delay(retries, None))
            else:
                if response.status < 400:
                    return response.body, retries + 1
                if retries >= self.max_retries or not should_retry(response.status, response.headers):
                    error = ChatStatusError(response.status, response.headers, _decode_error_body(response.body))
                    error.retries = retries  # what was really retried: a too-long Retry-After is not
                    raise error
                await asyncio.sleep(retry_delay(retries, response.headers))
            retries += 1

    async def _attempt(self, request: bytes) -> Response:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(request)
        except TimeoutError:
            raise ChatTimeoutError(f"no complete response within {self.timeout:g} s") from None
        except OSError as exc:
            raise ChatConnectionError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, request: bytes) -> Response:
        connection = self._idle_connection() or await self._connect()
        try:
            try:
                response = await connection.exchange(request)
            except _StaleConnection:
                connection.close()
                connection = await self._connect()
                response = await connection.exchange(request)
        except BaseException:
            connection.close()
            raise
        if response.keep_alive and not self._closed:
            self._idle.append(connection)
        else:
            connection.close()
        return response

    def _idle_connection(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable:
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        if self._closed:
            raise ConnectionError("the client is closed")
        context = None
        if self._tls:
            context = self._ssl() if callable(self._ssl) else self._ssl
            context = context or ssl.create_default_context()
        _, connection = await asyncio.get_running_loop().create_connection(
            lambda: _Connection(self.max_response_bytes), self._host, self._port, ssl=context,
            server_hostname=self._host if self._tls else None)
        return connection

    async def close(self) -> None:
        """Close every idle connection; requests in flight close theirs when they end."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        if idle:
            await asyncio.sleep(0)  # let the transports finish closing


def _decode_error_body(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace").strip()
    try:
        return loads_bounded(text)
    except ValueError:
        return text
