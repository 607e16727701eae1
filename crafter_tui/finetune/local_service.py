"""Start ``crafter-tui serve`` for the user when the ``local`` backend finds none running.

The service is spawned detached (its own session, output to a log file), with its data
under ``<storage.data_dir>/service``, so it outlives the command that started it and later
commands (``jobs watch``, the console) reuse it. A token, if configured, is passed through
the environment, never on the command line (which other users can read in ``ps``).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from crafter_tui.config import AppConfig
from crafter_tui.errors import UserError

START_TIMEOUT_S = 90.0
#: The bearer token ``crafter-tui serve`` requires, passed through the environment (never argv).
#: Defined here, where the service is started, and read by ``servers/ft_server.py``.
TOKEN_ENV_VAR = "CRAFTER_TUI_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine's loopback (``localhost`` and an empty host count as such)."""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def health_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/health"


def is_up(base_url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(health_url(base_url), timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def service_dir(config: AppConfig) -> Path:
    return config.storage.data_dir / "service"


def ensure_local_service(config: AppConfig, *, timeout: float = START_TIMEOUT_S,
                         data_dir: Path | None = None) -> tuple[str, bool]:
    """(base URL, started_now). Starts a detached service on the configured loopback port if none answers
    (its data under ``data_dir``, default ``<storage.data_dir>/service``)."""
    base_url = config.finetune.local_url
    if is_up(base_url):
        return base_url, False
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if not is_loopback(host):
        raise UserError(f"no fine-tune service answers at {base_url}, and it is not on this machine, "
                        "so it cannot be started here", where="[finetune] local_url")
    data_dir = data_dir or service_dir(config)
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if config.finetune.local_token:
        env[TOKEN_ENV_VAR] = config.finetune.local_token.get_secret_value()
    command = [sys.executable, "-m", "crafter_tui", "serve", "--host", host, "--port", str(port),
               "--data-dir", str(data_dir.resolve())]
    if config.finetune.threads:
        command += ["--threads", str(config.finetune.threads)]
    with (data_dir / "serve.log").open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603 - our own CLI
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    (data_dir / "serve.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"the fine-tune service exited at start (code {proc.returncode}); "
                            f"see {data_dir / 'serve.log'}", where="--backend local")
        if is_up(base_url, timeout=0.5):
            return base_url, True
        time.sleep(0.25)
    raise UserError(f"the fine-tune service did not answer within {timeout:.0f}s; see {data_dir / 'serve.log'}",
                    where="--backend local")


@asynccontextmanager
async def running_local_service(config: AppConfig, *, data_dir: Path | None = None) -> AsyncIterator[tuple[str, bool]]:
    """The service at ``[finetune] local_url`` for the duration of a block: started if none answers
    (data under ``data_dir``), and then stopped again afterwards; one that already ran is left running."""
    import asyncio

    directory = data_dir or service_dir(config)
    url, started = await asyncio.to_thread(ensure_local_service, config, data_dir=directory)
    try:
        yield url, started
    finally:
        if started:
            await asyncio.to_thread(stop_service, directory / "serve.pid", url)


def stop_service(pid_file: Path, url: str, grace_s: float = 15.0) -> None:
    """SIGTERM the service's process group, wait until it no longer answers, then SIGKILL."""
    try:
        group = int(pid_file.read_text())
        os.killpg(group, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and is_up(url, timeout=0.5):
        time.sleep(0.1)
    try:
        os.killpg(group, signal.SIGKILL)  # whatever is left of the group (job workers included)
    except OSError:
        pass
