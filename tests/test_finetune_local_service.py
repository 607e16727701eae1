"""``--backend local`` starts ``crafter-tui serve`` detached when nothing answers, and reuses it after."""

from __future__ import annotations

import os
import signal
import time

import httpx

from crafter_tui.config import AppConfig
from crafter_tui.finetune.local_service import ensure_local_service, is_up, service_dir
from tests.ft_support import free_port


def test_service_is_started_once_then_reused(tmp_path):
    config = AppConfig()
    config.finetune.local_url = f"http://127.0.0.1:{free_port()}/v1"
    config.storage.data_dir = tmp_path / "state"
    url, started = ensure_local_service(config)
    pid = int((service_dir(config) / "serve.pid").read_text())
    try:
        assert started and is_up(url)
        assert ensure_local_service(config) == (url, False)
        assert httpx.get(url + "/fine_tuning/jobs").json()["data"] == []
        assert (service_dir(config) / "jobs").is_dir()
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while is_up(url) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not is_up(url)
