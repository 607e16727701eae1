"""``crafter-tui serve-env`` as a process, and ``rollout --env remote`` / ``--workers`` from the command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx

from crafter_tui.cli import main
from crafter_tui.servers.env_server import BackgroundEnvService, EnvServiceSettings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_env_command_serves_with_token_and_stops():
    port = _free_port()
    env = {**os.environ, "CRAFTER_ENV_TOKEN": "s3cr3t-xyz"}  # the token from the environment, not argv
    proc = subprocess.Popen([sys.executable, "-m", "crafter_tui", "serve-env", "--port", str(port),
                             "--max-envs", "3", "--idle-timeout", "30"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "serve-env did not start"
                time.sleep(0.1)
        assert health.json()["max_envs"] == 3
        assert httpx.post(url + "/env/CrafterClassic/initialize", json={}).status_code == 401
        authorised = httpx.post(url + "/env/CrafterClassic/initialize", json={"config": {"seed": 1}},
                                headers={"Authorization": "Bearer s3cr3t-xyz"}, timeout=30)
        assert authorised.status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "s3cr3t-xyz" not in err, "the token is never printed"
    assert f"127.0.0.1:{port}" in err


def test_serve_env_rejects_bad_flags(capsys):
    assert main(["serve-env", "--idle-timeout", "0"]) == 2
    assert "--idle-timeout" in capsys.readouterr().err


def _rollout_json(capsys, *flags: str) -> dict:
    assert main(["rollout", "--agent", "random", "--episodes", "2", "--max-steps", "30", "--seed", "5",
                 "--json", "--quiet", *flags]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_rollout_flags_remote_and_workers_match_local(capsys, tmp_path):
    local = _rollout_json(capsys, "--out", str(tmp_path), "--run-id", "local")
    with BackgroundEnvService(EnvServiceSettings(port=0)) as svc:
        remote = _rollout_json(capsys, "--out", str(tmp_path), "--run-id", "remote", "--env", "remote",
                               "--env-url", svc.base_url)
    pooled = _rollout_json(capsys, "--out", str(tmp_path), "--run-id", "pooled", "--workers", "2")
    steps = {name: (tmp_path / name / "steps.jsonl").read_text().splitlines() for name in ("local", "remote", "pooled")}
    # the same step lines; episodes played side by side may interleave differently
    assert sorted(steps["remote"]) == sorted(steps["local"])
    assert sorted(steps["pooled"]) == sorted(steps["local"])
    for result in (remote, pooled):
        assert {k: result[k] for k in ("agent", "difficulty")} == {k: local[k] for k in ("agent", "difficulty")}
