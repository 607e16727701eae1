"""The lean chat-completions client: HTTP/1.1 framing, the SDK's retry policy, and real HTTP
against the scripted test double (keep-alive, concurrency, retries, timeouts, stale connections)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import time

import pytest

from crafter_tui.agents.transport.lean import (
    ChatClient,
    ChatConnectionError,
    ChatStatusError,
    ChatTimeoutError,
    MalformedResponse,
    parse_response,
    parse_retry_after,
    retry_delay,
    should_retry,
    uses_proxy,
)
from tests.doubles.openai_double import (
    ScriptedReply,
    delayed,
    http_error,
    interact,
    openai_double,  # noqa: F401 - pytest fixture
)

KEY = "sk-test-chat-client-0a1b2c3d"
BODY = {"model": "m", "messages": [{"role": "user", "content": "héllo"}]}


def client_for(base_url: str, **kwargs) -> ChatClient:
    kwargs.setdefault("timeout", 5.0)
    kwargs.setdefault("max_retries", 2)
    return ChatClient(base_url, KEY, **kwargs)


# --------------------------------------------------------------------------- framing (pure)
def test_content_length_response_is_framed_only_once_complete():
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
    for cut in (10, len(raw) - 3):
        assert parse_response(bytearray(raw[:cut]), eof=False) is None
    response, used = parse_response(bytearray(raw + b"HTTP/1.1"), eof=False)
    assert (response.status, response.body, response.keep_alive, used) == (200, b'{"a":1}', True, len(raw))
    assert response.headers["content-type"] == "application/json"


def test_chunked_body_with_extensions_and_trailers():
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n")
    assert parse_response(bytearray(raw[:-2]), eof=False) is None
    response, used = parse_response(bytearray(raw), eof=False)
    assert response.body == b"Wikipedia" and used == len(raw)


def test_interim_responses_are_skipped_and_unframed_bodies_run_to_close():
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nall of it"
    assert parse_response(bytearray(raw), eof=False) is None
    response, _ = parse_response(bytearray(raw), eof=True)
    assert response.body == b"all of it" and response.keep_alive is False


@pytest.mark.parametrize(("head", "keep_alive"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0", True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 0", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0", True),
])
def test_keep_alive_follows_the_version_and_connection_header(head, keep_alive):
    response, _ = parse_response(bytearray(head + b"\r\n\r\n"), eof=False)
    assert response.keep_alive is keep_alive


@pytest.mark.parametrize("raw", [
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 2xx OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
def test_malformed_responses_are_rejected(raw):
    with pytest.raises(MalformedResponse):
        parse_response(bytearray(raw), eof=False)


# --------------------------------------------------------------------------- retry policy (pure)
def test_retry_after_forms():
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after({"retry-after": date}) <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "1e999"}) > 120  # overflow: too long, not "no header"


@pytest.mark.parametrize(("status", "headers", "expected"), [
    (429, {}, True), (408, {}, True), (409, {}, True), (500, {}, True), (503, {}, True),
    (400, {}, False), (401, {}, False), (404, {}, False),
    (500, {"x-should-retry": "false"}, False), (400, {"x-should-retry": "true"}, True),
    (429, {"retry-after": "121"}, False),  # a server-directed wait over two minutes is not retried
    (429, {"retry-after": "120"}, True),
])
def test_which_errors_are_retried(status, headers, expected):
    assert should_retry(status, headers) is expected


def test_retry_delay_honours_retry_after_then_backs_off_exponentially_with_jitter():
    assert retry_delay(3, {"retry-after": "0.2"}) == 0.2
    no_jitter = [retry_delay(n, None, jitter=lambda: 0.0) for n in range(6)]
    assert no_jitter == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert retry_delay(0, {"retry-after": "0"}, jitter=lambda: 1.0) == 0.375  # 0 s is not a usable wait
    assert retry_delay(1, {"retry-after": "500"}, jitter=lambda: 1.0) == 0.75


def test_proxy_settings_are_detected(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert not uses_proxy("https://api.openai.com/v1")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert uses_proxy("https://api.openai.com/v1")
    assert not uses_proxy("http://127.0.0.1:8000/v1")
    monkeypatch.setenv("NO_PROXY", "api.openai.com")
    assert not uses_proxy("https://api.openai.com/v1")


def test_bad_base_urls_are_refused():
    with pytest.raises(ValueError, match="http"):
        ChatClient("ftp://host/v1", KEY, timeout=1, max_retries=0)
    with pytest.raises(ValueError, match="max_retries"):
        ChatClient("http://host/v1", KEY, timeout=1, max_retries=-1)


# --------------------------------------------------------------------------- over HTTP
async def test_request_shape_and_keep_alive(openai_double, monkeypatch):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-test")
    monkeypatch.delenv("OPENAI_PROJECT_ID", raising=False)
    openai_double.push(interact("do"), interact("noop"), interact("do"))
    client = client_for(openai_double.base_url)
    try:
        results = [await client.chat_completions(BODY) for _ in range(3)]
    finally:
        await client.close()
    assert [attempts for _, attempts in results] == [1, 1, 1]
    first = json.loads(results[0][0])
    assert first["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "interact"
    requests = openai_double.chat_requests
    assert len({r.connection for r in requests}) == 1  # one keep-alive connection for all three
    request = requests[0]
    assert request.method == "POST" and request.path == "/v1/chat/completions"
    assert request.json == BODY
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert request.headers["openai-organization"] == "org-test"
    assert "openai-project" not in request.headers
    assert request.headers["host"] == f"127.0.0.1:{openai_double.port}"


async def test_concurrent_requests_each_get_a_connection_and_reuse_it(openai_double):
    openai_double.set_script(lambda request: interact("do", delay_ms=250))
    client = client_for(openai_double.base_url)
    try:
        started = time.perf_counter()
        await asyncio.gather(*(client.chat_completions(BODY) for _ in range(8)))
        elapsed = time.perf_counter() - started
        await asyncio.gather(*(client.chat_completions(BODY) for _ in range(8)))
    finally:
        await client.close()
    assert elapsed < 1.0  # concurrent, not 8 x 250 ms one after another (room for a loaded machine)
    connections = [r.connection for r in openai_double.chat_requests]
    assert len(set(connections[:8])) == 8 and set(connections[8:]) == set(connections[:8])


async def test_429_then_success_waits_for_retry_after(openai_double):
    openai_double.push(http_error(429, retry_after="0.2", message="slow down"), interact("do"))
    client = client_for(openai_double.base_url)
    try:
        _, attempts = await client.chat_completions(BODY)
    finally:
        await client.close()
    assert attempts == 2
    first, second = openai_double.chat_requests
    assert second.received_at - first.received_at >= 0.19
    assert second.body == first.body


async def test_exhausted_retries_raise_the_last_status_with_its_body(openai_double):
    openai_double.push(*[http_error(503, retry_after="0.01", message="overloaded")] * 3)
    client = client_for(openai_double.base_url, max_retries=2)
    try:
        with pytest.raises(ChatStatusError) as caught:
            await client.chat_completions(BODY)
    finally:
        await client.close()
    assert caught.value.status_code == 503
    assert caught.value.body["error"]["message"] == "overloaded"
    assert str(caught.value) == "Error code: 503 - overloaded"
    assert len(openai_double.chat_requests) == 3


@pytest.mark.parametrize("reply", [
    http_error(400, message="bad request"),
    ScriptedReply(status=500, headers=(("x-should-retry", "false"),), error_message="do not retry"),
    http_error(429, retry_after="3600", message="come back in an hour"),
])
async def test_errors_that_are_not_retried_fail_at_once(openai_double, reply):
    openai_double.push(reply, interact("do"))
    client = client_for(openai_double.base_url, max_retries=3)
    try:
        with pytest.raises(ChatStatusError) as caught:
            await client.chat_completions(BODY)
    finally:
        await client.close()
    assert caught.value.status_code == reply.status
    assert len(openai_double.chat_requests) == 1


async def test_an_error_body_that_is_not_json_is_kept_as_text(openai_double):
    openai_double.push(ScriptedReply(status=502, raw_body=b"<html>bad gateway</html>",
                                     headers=(("x-should-retry", "false"),)))
    client = client_for(openai_double.base_url)
    try:
        with pytest.raises(ChatStatusError) as caught:
            await client.chat_completions(BODY)
    finally:
        await client.close()
    assert caught.value.body == "<html>bad gateway</html>" and str(caught.value) == "Error code: 502"


async def test_timeout_is_retried_then_raised(openai_double):
    openai_double.push(delayed(2000, interact("do")), delayed(2000, interact("do")))
    client = client_for(openai_double.base_url, timeout=0.2, max_retries=1)
    started = time.perf_counter()
    try:
        with pytest.raises(ChatTimeoutError):
            await client.chat_completions(BODY)
    finally:
        await client.close()
    elapsed = time.perf_counter() - started
    assert len(openai_double.chat_requests) == 2
    assert 0.2 * 2 + 0.375 <= elapsed < 1.5  # two attempts and one backoff (0.5 s minus jitter)


async def test_timeout_then_success_uses_a_fresh_connection(openai_double):
    openai_double.push(delayed(1000, interact("do")), interact("noop"))
    client = client_for(openai_double.base_url, timeout=0.2, max_retries=1)
    try:
        raw, attempts = await client.chat_completions(BODY)
    finally:
        await client.close()
    assert attempts == 2 and b"noop" in raw
    first, second = openai_double.chat_requests
    assert first.connection != second.connection  # the timed-out connection is not reused


async def test_refused_connection_is_a_connection_error_with_the_os_cause():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = client_for(f"http://127.0.0.1:{port}/v1", max_retries=0)
    with pytest.raises(ChatConnectionError) as caught:
        await client.chat_completions(BODY)
    await client.close()
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert not isinstance(caught.value, ChatTimeoutError)


async def test_idle_connection_closed_by_the_server_is_replaced_without_a_retry(openai_double):
    openai_double.push(interact("do"), interact("noop"), interact("do"))
    client = client_for(openai_double.base_url, max_retries=0)
    try:
        await client.chat_completions(BODY)
        openai_double.drop_connections()  # closed while idle; our loop has not noticed yet
        raw, attempts = await client.chat_completions(BODY)
        openai_double.drop_connections()
        await asyncio.sleep(0.05)  # this time the client sees the close while the connection is idle
        raw2, attempts2 = await client.chat_completions(BODY)
    finally:
        await client.close()
    assert (attempts, attempts2) == (1, 1) and b"noop" in raw and b"do" in raw2
    connections = [r.connection for r in openai_double.chat_requests]
    assert len(set(connections)) == 3


async def _raw_server(answer: bytes, *, close: bool = True):
    """A TCP server that answers any request with ``answer`` verbatim (then closes, if asked)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        if close:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_chunked_and_close_delimited_responses_over_a_socket():
    body = json.dumps({"ok": True}).encode()
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    unframed = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body
    for answer in (chunked, unframed):
        server = await _raw_server(answer)
        client = client_for(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", max_retries=0)
        try:
            raw, attempts = await client.chat_completions(BODY)
        finally:
            await client.close()
            server.close()
        assert (raw, attempts) == (body, 1)


@pytest.mark.parametrize("answer", [b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"cut"])
async def test_malformed_or_truncated_responses_are_connection_errors(answer):
    server = await _raw_server(answer)
    client = client_for(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", max_retries=0)
    try:
        with pytest.raises(ChatConnectionError) as caught:
            await client.chat_completions(BODY)
    finally:
        await client.close()
        server.close()
    assert KEY not in str(caught.value)


async def test_closed_client_refuses_new_requests(openai_double):
    openai_double.push(interact("do"))
    client = client_for(openai_double.base_url, max_retries=0)
    await client.chat_completions(BODY)
    await client.close()
    with pytest.raises(ChatConnectionError, match="closed"):
        await client.chat_completions(BODY)


@pytest.fixture
def tls_files(tmp_path):
    """A throwaway self-signed certificate for 127.0.0.1 (needs the openssl command line)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


async def test_https_endpoint_with_certificate_verification(tls_files):
    import ssl

    cert, key = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    body = b'{"choices": []}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := (await reader.readuntil(b"\r\n\r\n")).decode().lower():
                await reader.readexactly(int(head.split("content-length:")[1].split("\r\n")[0]))
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    trusting = client_for(url, ssl_context=lambda: ssl.create_default_context(cafile=str(cert)))
    untrusting = client_for(url, max_retries=0, ssl_context=ssl.create_default_context())
    try:
        assert [await trusting.chat_completions(BODY) for _ in range(2)] == [(body, 1), (body, 1)]
        assert len(trusting._idle) == 1  # kept alive over TLS
        with pytest.raises(ChatConnectionError) as caught:
            await untrusting.chat_completions(BODY)
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    finally:
        await trusting.close()
        await untrusting.close()
        server.close()
