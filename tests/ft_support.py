"""Helpers for the fine-tune tests: run a real uvicorn server on a free loopback port, small datasets."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from crafter_tui.agents.prompting import SYSTEM_PROMPT, TOOLS, interact_message

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    """A uvicorn server for ``app`` on 127.0.0.1:<free port>, in a thread; ``stop()`` shuts it down."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def sft_example(observation: str, actions: list[str], reasoning: str = "go") -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": SYSTEM_PROMPT},
                         {"role": "user", "content": observation},
                         interact_message(actions, reasoning, "call_1")],
            "tools": TOOLS}


def write_dataset(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def tiny_dataset(path: Path, n: int = 12) -> Path:
    rows = [sft_example(f"Step {i}/100. A tree is 1 north.", ["move_up", "do"]) for i in range(n)]
    return write_dataset(path, rows)


def double_service(tmp_path: Path, monkeypatch: Any, steps: int) -> ServerThread:
    """Our fine-tune service on loopback with the TEST DOUBLE trainer (``steps`` steps a job), and a
    ``crafter_config.toml`` in ``tmp_path`` pointing the local backend at it (state under ``tmp_path/state``)."""
    from crafter_tui.servers.ft_server import ServeSettings, create_app
    from tests.doubles.ft_trainer_double import INFERENCE, TRAINER

    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("FT_DOUBLE_STEPS", str(steps))
    server = ServerThread(create_app(ServeSettings(data_dir=tmp_path / "svc", trainer=TRAINER, inference=INFERENCE,
                                                   poll_interval=0.05))).start()
    (tmp_path / "crafter_config.toml").write_text(
        f'[finetune]\nlocal_url = "{server.base_url}"\n[storage]\ndata_dir = "{tmp_path / "state"}"\n')
    return server
