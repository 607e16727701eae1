"""The lean step path of the env service: the common step body served without FastAPI's machinery.

Why: a step's world update costs ~0.1 ms, and the generic path (Starlette ``Request``, routing,
pydantic validation of the body) added several times that. Nearly every step body has one
shape — ``{"env_id", "request_id"?, "action": {"tool_calls": [{"tool": "interact", "args":
{"action": <id>}}]}}`` — which ``parse_fast_step`` checks by hand with the same rules as
``StepRequest`` (strict ints in range, the same length limits, extra keys allowed). Anything
else (action names, ``actions`` lists, bad values, malformed JSON) returns ``None`` and goes on,
body intact, to the validated route, which answers exactly as before (same errors and messages).
``tests/test_envservice_fast.py`` checks both paths give the same responses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crafter_tui.world.rules import ACTIONS

MAX_ID_CHARS = 200  # StepRequest.env_id / request_id max_length
MAX_TOOL_CALLS = 64  # StepAction.tool_calls max_length
ACTION_COUNT = len(ACTIONS)
JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(slots=True, frozen=True)
class FastStep:
    """A step body the lean path accepted: what ``StepRequest`` would have yielded."""

    env_id: str
    request_id: str | None
    action_ids: list[int]


def _action_ids(action: Any) -> list[int] | None:
    """Ids of ``action.tool_calls`` when each is ``interact`` with one in-range int ``action``; else None."""
    if type(action) is not dict:
        return None
    calls = action.get("tool_calls")
    if type(calls) is not list or not 1 <= len(calls) <= MAX_TOOL_CALLS:
        return None
    ids: list[int] = []
    for call in calls:
        if type(call) is not dict or call.get("tool", "interact") != "interact":
            return None
        args = call.get("args")
        if type(args) is not dict or args.get("actions") is not None:
            return None
        value = args.get("action")
        if type(value) is not int or not 0 <= value < ACTION_COUNT:  # bool is not int here, as StrictInt
            return None
        ids.append(value)
    return ids


def parse_fast_step(body: bytes) -> FastStep | None:
    """The step body when it has the common shape and is valid; ``None`` sends it to the validated route."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    env_id, request_id = data.get("env_id"), data.get("request_id")
    if type(env_id) is not str or not 1 <= len(env_id) <= MAX_ID_CHARS:
        return None
    if request_id is not None and (type(request_id) is not str or len(request_id) > MAX_ID_CHARS):
        return None
    ids = _action_ids(data.get("action"))
    return None if ids is None else FastStep(env_id, request_id, ids)


StepHandler = Callable[[FastStep, bytes], Awaitable[tuple[int, bytes]]]


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or ``None`` if the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class LeanStepMiddleware:
    """Pure ASGI: ``POST <path>`` with a common-shape body goes to ``handler``; all else to the app."""

    def __init__(self, app: ASGIApp, path: str, handler: StepHandler) -> None:
        self.app = app
        self.path = path
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return
        parsed = parse_fast_step(body)
        if parsed is None:
            await self.app(scope, _replay(body, receive), send)
            return
        status, payload = await self.handler(parsed, scope.get("query_string", b""))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(payload)).encode()), *JSON_HEADERS]})
        await send({"type": "http.response.body", "body": payload})
