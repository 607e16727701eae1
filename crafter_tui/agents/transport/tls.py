"""One TLS context per process, shared by every chat transport (lean or SDK)."""

from __future__ import annotations

import functools
import ssl


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context per process, shared by every agent's client.

    Building one loads the CA bundle (0.05-0.4 s of CPU); the runner builds one agent per
    episode, so without sharing, starting 64 episodes would block the event loop for seconds.
    """
    try:  # the SDK's HTTP library and default context (certifi; honours SSL_CERT_FILE and friends)
        import httpx2 as http_library  # openai >= 3
    except ImportError:  # pragma: no cover - older SDKs use httpx
        import httpx as http_library
    return http_library.create_ssl_context()
