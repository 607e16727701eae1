"""The gate in front of both HTTP services: body size, cross-site requests, the bearer token.

One pure-ASGI layer, outermost, so every path (the env service's lean step path included) is
covered before anything buffers a body or runs a handler:

- **Body size.** A ``Content-Length`` over the limit is refused with 413 before a byte is read;
  a body sent without one (chunked) is counted as it streams in and refused the moment it passes
  the limit. Nothing bigger than the limit is ever held in memory (a 256 MiB body to the env
  service used to cost 1.5 GB of RSS).
- **Cross-site requests.** A browser page on another site can send "simple" POSTs (no preflight)
  to a service on 127.0.0.1; without a token nothing stopped it from filling the env cap or
  uploading files. Browsers always name the page's ``Origin`` on such requests (and
  ``Sec-Fetch-Site``), so a tokenless service refuses any request from an origin that is not
  loopback. Clients that are not browsers send neither header and are unaffected.
- **Token.** With a token, every route but ``/health`` needs it (FastAPI's ``/docs`` and
  ``/openapi.json`` included).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: (status, message, code) -> JSON body: each service words its errors its own way.
Render = Callable[[int, str, str], bytes]
OPEN_PATHS = frozenset({"/health"})


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit (an HTTPException, so a FastAPI
    route reading its body answers 413, not a 400 'error parsing the body')."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")
        self.limit = limit


def loopback_origin(origin: str) -> bool:
    """Whether a browser ``Origin`` is a page served from this machine's loopback."""
    try:
        host = urlsplit(origin).hostname or ""
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):  # browsers resolve *.localhost to loopback
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # not a prefix test: 127.0.0.1.evil.com is a name
    except ValueError:
        return False


class RequestGuard:
    """See the module docstring. ``limit_for(path)``: the body limit of a path in bytes."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int], render: Render,
                 token: str | None = None) -> None:
        self.app = app
        self.limit_for = limit_for
        self.render = render
        self._expected = f"Bearer {token}".encode() if token else None

    async def _refuse(self, send: Send, status: int, message: str, code: str) -> None:
        body = self.render(status, message, code)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        if status == 413:
            headers.append((b"connection", b"close"))  # the rest of the body is not read
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        path = scope["path"]
        if self._expected is not None:
            if path not in OPEN_PATHS and not secrets.compare_digest(headers.get(b"authorization", b""),
                                                                     self._expected):
                await self._refuse(send, 401, "missing or wrong bearer token (Authorization: Bearer ...)",
                                   "invalid_api_key")
                return
        else:
            origin = headers.get(b"origin")
            cross_site = headers.get(b"sec-fetch-site") == b"cross-site"
            if cross_site or (origin is not None and not loopback_origin(origin.decode("latin-1"))):
                await self._refuse(send, 403, "cross-site request refused: this service has no token, so only "
                                   "pages served from loopback may call it", "cross_site_refused")
                return
        limit = self.limit_for(path)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._refuse(send, 413, f"request body larger than {limit} bytes", "body_too_large")
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge as exc:  # raised where no route turned it into a response (the lean path)
            if started:
                raise
            await self._refuse(send, 413, str(exc.detail), "body_too_large")
