"""TEST DOUBLE: a scripted OpenAI-compatible chat-completions server on 127.0.0.1.

This is not a model and not part of the product. It exists so that the real ``openai`` SDK
(and everything our ``openai`` agent does with it: retries, ``Retry-After``, timeouts, tool-call
parsing, token accounting) is exercised over real HTTP/1.1 on loopback, with replies chosen by
the test:

- a *script*: a list of ``ScriptedReply`` answered in order (tool calls, plain text, bad JSON
  arguments, unknown actions, HTTP errors with ``Retry-After``, delays), or a callable that
  picks the reply for each request;
- a *policy* (``PolicyResponder``): a plausible ``interact`` call for every request after a
  fixed latency, used by the concurrency benchmark.

Every request is recorded (method, path, headers, JSON body, arrival time) so tests can assert
exactly what the client sent. The server is a plain asyncio HTTP/1.1 protocol with keep-alive
(no framework, no task per request: each answer is a timer), so it answers hundreds of requests
per second while costing the machine that the client under test shares as little as possible.
It runs in a background thread (``OpenAIDouble``, for tests) or in its own process
(``DoubleProcess`` / ``python tests/doubles/openai_double.py --policy``, for benchmarks, so it
does not share the GIL with the client under test).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import http
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

CHAT_PATH_SUFFIX = "/chat/completions"
#: What the policy double cycles through: moves in all four directions and ``do``.
POLICY_ACTIONS: tuple[str, ...] = ("move_left", "do", "move_up", "do", "move_right", "do", "move_down", "do")


# --------------------------------------------------------------------------- script items
@dataclass(frozen=True, slots=True)
class ToolCallSpec:
    """One tool call as the double will return it; ``arguments`` is sent verbatim (may be bad JSON)."""

    name: str
    arguments: str
    call_id: str | None = None  # None: the double makes one up ("call_<request>_<index>")


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """One scripted answer to one chat-completions request."""

    tool_calls: tuple[ToolCallSpec, ...] = ()
    content: str | None = None
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    error_message: str | None = None  # for status >= 400
    delay_ms: float = 0.0
    usage: tuple[int, int] | None = None  # (prompt, completion); None: estimated from sizes
    finish_reason: str | None = None  # None: "tool_calls" when there are calls, else "stop"
    raw_body: bytes | None = None  # sent verbatim instead of a generated body


def tool_call(name: str, arguments: str | dict[str, Any], *, call_id: str | None = None,
              **kwargs: Any) -> ScriptedReply:
    """A reply with one tool call; ``arguments`` as a dict is JSON-encoded, as a str sent as is."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ScriptedReply(tool_calls=(ToolCallSpec(name, args, call_id),), **kwargs)


def interact(*actions: str, reasoning: str = "scripted reply", call_id: str | None = None,
             **kwargs: Any) -> ScriptedReply:
    """A well-formed ``interact`` call (the action names are not checked: unknown ones are allowed)."""
    return tool_call("interact", {"actions": list(actions), "reasoning": reasoning}, call_id=call_id, **kwargs)


def terminate(reason: str = "done", **kwargs: Any) -> ScriptedReply:
    """A ``terminate`` call."""
    return tool_call("terminate", {"reason": reason}, **kwargs)


def many_calls(*calls: ScriptedReply, **kwargs: Any) -> ScriptedReply:
    """One reply carrying the tool calls of several single-call replies, in order."""
    specs = tuple(spec for reply in calls for spec in reply.tool_calls)
    return ScriptedReply(tool_calls=specs, **kwargs)


def text(content: str, **kwargs: Any) -> ScriptedReply:
    """A plain text reply without any tool call."""
    return ScriptedReply(content=content, **kwargs)


def bad_json(arguments: str = '{"actions": ["noop"', name: str = "interact", **kwargs: Any) -> ScriptedReply:
    """A tool call whose arguments are not valid JSON."""
    return tool_call(name, arguments, **kwargs)


def http_error(status: int, *, retry_after: str | None = None, message: str | None = None,
               **kwargs: Any) -> ScriptedReply:
    """An HTTP error response in OpenAI's error shape, optionally with a ``Retry-After`` header."""
    headers = (("retry-after", retry_after),) if retry_after is not None else ()
    return ScriptedReply(status=status, headers=headers, error_message=message or http.HTTPStatus(status).phrase,
                         **kwargs)


def delayed(delay_ms: float, reply: ScriptedReply) -> ScriptedReply:
    """``reply``, sent after ``delay_ms`` milliseconds (e.g. to trigger client timeouts)."""
    return replace(reply, delay_ms=delay_ms)


# --------------------------------------------------------------------------- requests
@dataclass(slots=True)
class RecordedRequest:
    """One request as the double received it."""

    index: int
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    received_at: float  # time.monotonic()
    json: Any = None
    connection: int = -1  # which client connection carried it (numbered in accept order)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages sent (empty when the body had none)."""
        return list((self.json or {}).get("messages") or [])

    def raw_text(self) -> str:
        """Everything the client sent (request line, headers, body) as text, for leak checks."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}\n{head}\n\n{self.body.decode('utf-8', 'replace')}"


Responder = Callable[[RecordedRequest], ScriptedReply]


class PolicyResponder:
    """Answers every request with a plausible ``interact`` call after a fixed latency.

    Cycles through ``POLICY_ACTIONS`` (moves and ``do``), ``actions_per_turn`` at a time, so
    a rollout against it walks around and collects things like a weak but valid player.
    """

    def __init__(self, latency_ms: float = 100.0, actions_per_turn: int = 1,
                 actions: Sequence[str] = POLICY_ACTIONS) -> None:
        self.latency_ms = latency_ms
        self.actions_per_turn = actions_per_turn
        self._cycle = itertools.cycle(actions)

    def __call__(self, request: RecordedRequest) -> ScriptedReply:
        chosen = [next(self._cycle) for _ in range(self.actions_per_turn)]
        return interact(*chosen, reasoning="policy double", delay_ms=self.latency_ms)


class WoodcutterResponder:
    """A deterministic, competent-enough player for trace-producing tests: reads the *full* text
    observation (``world.text_obs``'s sentences), walks to the nearest tree, collects three wood, then
    places a table and makes a wood pickaxe and a wood sword (four achievements in ~30 steps when a tree
    is near). Its reply depends only on the request (the call id too), so a replayed prompt gets the
    same reply: what resume tests need.
    """

    _STEP = {"north": "move_up", "south": "move_down", "west": "move_left", "east": "move_right"}

    def __call__(self, request: RecordedRequest) -> ScriptedReply:
        observation = str(request.messages[-1].get("content") or "")
        digest = hashlib.sha256(request.body).hexdigest()[:12]
        return interact(*self.actions(observation), reasoning="woodcutter", call_id=f"call_{digest}")

    def actions(self, text: str) -> list[str]:
        wood = _count(text, r"Inventory:[^\n]*\bwood (\d+)")
        if "place_table" not in text and wood < 3:
            if re.search(r"You face tree\b", text):
                return ["do"]
            where = re.search(r"tree ((?:\d+ (?:north|south|west|east)(?: and )?)+)", text)
            if where is None:
                return ["move_left"]
            parts = re.findall(r"(\d+) (north|south|west|east)", where.group(1))
            distance, direction = max((int(n), d) for n, d in parts)
            return [self._STEP[direction]]
        if re.search(r"You face (grass|sand|path)\b", text) and wood >= 3:
            return ["place_table", "make_wood_pickaxe", "make_wood_sword"]
        return ["move_left", "noop"] if wood >= 3 else ["noop"]


def _count(text: str, pattern: str) -> int:
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0


# --------------------------------------------------------------------------- bodies
def _estimate_tokens(text_value: str) -> int:
    """A deterministic stand-in for a tokenizer: about four characters per token."""
    return max(1, len(text_value) // 4)


def completion_body(reply: ScriptedReply, request: RecordedRequest) -> dict[str, Any]:
    """The ``chat.completion`` JSON object for a successful scripted reply."""
    calls = [
        {"id": spec.call_id or f"call_{request.index}_{i}", "type": "function",
         "function": {"name": spec.name, "arguments": spec.arguments}}
        for i, spec in enumerate(reply.tool_calls)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if reply.usage is not None:
        prompt_tokens, completion_tokens = reply.usage
    else:
        prompt_tokens = _estimate_tokens(request.body.decode("utf-8", "replace"))  # the whole request: cheap
        completion_tokens = _estimate_tokens((reply.content or "") + "".join(s.arguments for s in reply.tool_calls))
    body = request.json if isinstance(request.json, dict) else {}
    return {
        "id": f"chatcmpl-double-{request.index}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "double")),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": reply.finish_reason or ("tool_calls" if calls else "stop"),
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
        "system_fingerprint": "test-double",
    }


def error_body(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error envelope."""
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
            429: "rate_limit_error"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


# --------------------------------------------------------------------------- server
class _Http:
    """Minimal HTTP/1.1 framing: enough for any client (Content-Length or chunked bodies, keep-alive)."""

    @staticmethod
    def parse_request(buffer: bytearray) -> tuple[str, str, dict[str, str], bytes, int] | None:
        """The first complete request in ``buffer`` and its size in bytes, or None while incomplete.

        Raises ``ValueError`` for bytes that are not an HTTP/1.1 request.
        """
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        lines = bytes(buffer[:head_end]).decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        start = head_end + 4
        if headers.get("transfer-encoding", "").lower() == "chunked":
            framed = _Http.chunked_body(buffer, start)
            if framed is None:
                return None
            body, end = framed
        else:
            end = start + int(headers.get("content-length", "0") or 0)
            if len(buffer) < end:
                return None
            body = bytes(buffer[start:end])
        return method, target, headers, body, end

    @staticmethod
    def chunked_body(buffer: bytearray, position: int) -> tuple[bytes, int] | None:
        parts: list[bytes] = []
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(buffer[position:line_end]).split(b";")[0].strip() or b"0", 16)
            position = line_end + 2
            if size == 0:
                line_end = buffer.find(b"\r\n", position)  # no trailers: the blank line
                return (b"".join(parts), line_end + 2) if line_end >= 0 else None
            if len(buffer) < position + size + 2:
                return None
            parts.append(bytes(buffer[position:position + size]))
            position += size + 2

    @staticmethod
    def response(status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> bytes:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
                 f"content-length: {len(body)}", "connection: keep-alive"]
        lines += [f"{name}: {value}" for name, value in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _DoubleCore:
    """The request handling shared by the thread and the process front ends."""

    def __init__(self, script: Iterable[ScriptedReply] | Responder | None, record: bool) -> None:
        self._lock = threading.Lock()
        self._queue: collections.deque[ScriptedReply] = collections.deque()
        self._responder: Responder | None = None
        self._record = record
        self._requests: list[RecordedRequest] = []
        self._counter = itertools.count()
        self.connections: set[_DoubleConnection] = set()
        self.accepted = itertools.count()
        self.served = 0
        self.set_script(script)

    def set_script(self, script: Iterable[ScriptedReply] | Responder | None) -> None:
        with self._lock:
            self._queue.clear()
            self._responder = None
            if callable(script):
                self._responder = script
            elif script is not None:
                self._queue.extend(script)

    def push(self, *replies: ScriptedReply) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def _next_reply(self, request: RecordedRequest) -> ScriptedReply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            responder = self._responder
        if responder is not None:
            return responder(request)
        return ScriptedReply(status=500, headers=(("x-should-retry", "false"),),
                             error_message=f"test double: script exhausted at request #{request.index}")

    def protocol(self) -> _DoubleConnection:
        """A protocol instance for one accepted connection (the server's protocol factory)."""
        return _DoubleConnection(self)

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes,
               connection: int = -1) -> tuple[float, bytes]:
        """Record the request and return (seconds to wait, response bytes) for it."""
        request = RecordedRequest(next(self._counter), method, path, headers, body, time.monotonic(),
                                  connection=connection)
        try:
            request.json = json.loads(body) if body else None
        except ValueError:
            request.json = None
        if self._record:
            with self._lock:
                self._requests.append(request)
        if method == "GET" and path.rstrip("/").endswith("/models"):
            return 0.0, _Http.response(200, json.dumps({"object": "list", "data": [
                {"id": "double", "object": "model", "created": 0, "owned_by": "test-double"}]}).encode())
        if method != "POST" or not path.split("?")[0].endswith(CHAT_PATH_SUFFIX):
            return 0.0, _Http.response(404, json.dumps(error_body(404, f"no route {method} {path}")).encode())
        if not isinstance(request.json, dict):
            return 0.0, _Http.response(400, json.dumps(error_body(400, "request body is not a JSON object")).encode())
        reply = self._next_reply(request)
        if reply.raw_body is not None:
            payload = reply.raw_body
        elif reply.status >= 400:
            payload = json.dumps(error_body(reply.status, reply.error_message or "error")).encode()
        else:
            payload = json.dumps(completion_body(reply, request)).encode()
        return max(0.0, reply.delay_ms / 1000.0), _Http.response(reply.status, payload, reply.headers)


class _DoubleConnection(asyncio.Protocol):
    """One client connection: frames requests as bytes arrive and answers each after its delay.

    A protocol with timers rather than a stream-reading task: the double must answer hundreds of
    requests per second while costing the machine (which the client under test shares) little.
    Answers on one connection leave in request order.
    """

    def __init__(self, core: _DoubleCore) -> None:
        self.core = core
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.last_due = 0.0
        self.number = next(core.accepted)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.core.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        loop = asyncio.get_running_loop()
        while self.transport is not None and not self.transport.is_closing():
            try:
                parsed = _Http.parse_request(self.buffer)
            except ValueError:
                self.transport.write(_Http.response(400, json.dumps(error_body(400, "malformed request")).encode()))
                self.transport.close()
                return
            if parsed is None:
                return
            method, path, headers, body, used = parsed
            del self.buffer[:used]
            delay, payload = self.core.answer(method, path, headers, body, self.number)
            close = headers.get("connection", "").lower() == "close"
            due = max(loop.time() + delay, self.last_due + 1e-6)  # strictly later: answers keep their order
            self.last_due = due
            loop.call_at(due, self._send, payload, close)  # after the connection is lost, _send does nothing

    def _send(self, payload: bytes, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.core.served += 1
        self.transport.write(payload)
        if close:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.core.connections.discard(self)
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class OpenAIDouble:
    """TEST DOUBLE: the scripted server in a background thread with its own event loop.

    Use as a context manager (or the ``openai_double`` fixture); ``base_url`` ends in ``/v1``.
    """

    def __init__(self, script: Iterable[ScriptedReply] | Responder | None = None, *, record: bool = True) -> None:
        self._core = _DoubleCore(script, record)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order."""
        return self._core.requests

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Only the chat-completions requests."""
        return [r for r in self._core.requests if r.path.split("?")[0].endswith(CHAT_PATH_SUFFIX)]

    def set_script(self, script: Iterable[ScriptedReply] | Responder | None) -> None:
        """Replace the pending replies (a list) or install a responder (a callable)."""
        self._core.set_script(script)

    def push(self, *replies: ScriptedReply) -> None:
        """Append replies to the script."""
        self._core.push(*replies)

    def drop_connections(self) -> None:
        """Close every open client connection now (as a server does with idle keep-alive ones)."""
        if self._loop is None:
            return
        done = threading.Event()

        def close_all() -> None:
            for connection in list(self._core.connections):
                connection.close()
            self._loop.call_soon(done.set)  # after the transports' own close callbacks: the sockets are shut

        self._loop.call_soon_threadsafe(close_all)
        done.wait(10)

    def start(self) -> OpenAIDouble:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(self._core.protocol, "127.0.0.1", 0))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            self._server.close()
            for connection in list(self._core.connections):
                connection.close()
            loop.run_until_complete(self._server.wait_closed())
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="openai-test-double", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> OpenAIDouble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class DoubleProcess:
    """TEST DOUBLE in its own process (policy mode), so it never competes for the client's GIL."""

    def __init__(self, latency_ms: float = 100.0, actions_per_turn: int = 1) -> None:
        self.latency_ms = latency_ms
        self.actions_per_turn = actions_per_turn
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> DoubleProcess:
        cmd = [sys.executable, os.path.abspath(__file__), "--policy",
               "--latency-ms", str(self.latency_ms), "--actions-per-turn", str(self.actions_per_turn)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline() if self._proc.stdout else ""
        if not line:
            self.stop()
            raise RuntimeError("openai test double process did not start")
        self.port = int(json.loads(line)["port"])
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the double process has used so far; None where /proc is missing."""
        if self._proc is None:
            return None
        try:
            fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.stdin:
            self._proc.stdin.close()  # the child exits when its stdin closes
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            self._proc.wait(10)
        if self._proc.stdout:
            self._proc.stdout.close()
        self._proc = None

    def __enter__(self) -> DoubleProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def _serve_policy(latency_ms: float, actions_per_turn: int) -> None:
    core = _DoubleCore(PolicyResponder(latency_ms, actions_per_turn), record=False)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(core.protocol, "127.0.0.1", 0, backlog=1024)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    stopped = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: stopped.set() if not sys.stdin.readline() else None)
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    await stopped.wait()
    server.close()
    for connection in list(core.connections):
        connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="TEST DOUBLE: OpenAI-compatible policy server on 127.0.0.1")
    parser.add_argument("--policy", action="store_true", required=True, help="answer every request with a move/do")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--actions-per-turn", type=int, default=1)
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=_fast_loop_factory()) as runner:
        runner.run(_serve_policy(args.latency_ms, args.actions_per_turn))
    return 0


def _fast_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when installed (about half the CPU per request on loopback), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


if __name__ != "__main__":  # the fixture, for test modules; the script mode does not pay for importing pytest
    import pytest

    @pytest.fixture
    def openai_double() -> Iterator[OpenAIDouble]:
        """A started ``OpenAIDouble`` with an empty script (``push``/``set_script`` to load it)."""
        double = OpenAIDouble().start()
        try:
            yield double
        finally:
            double.stop()


if __name__ == "__main__":
    sys.exit(main())
