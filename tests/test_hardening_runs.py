"""Issue 23, one writer per run: a second rollout/resume on a live run is refused, a dead writer's lock
is taken over, and SIGTERM and SIGINT both leave an honest ``run.json``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crafter_tui.cli import main
from crafter_tui.errors import UserError
from crafter_tui.rollout.lock import LOCK_FILE, RunLock, acquire_unchanged
from crafter_tui.traces.schema import RunRecord

SLOW_ROLLOUT = [sys.executable, "-m", "crafter_tui", "rollout", "--agent", "random", "--episodes", "400",
                "--max-steps", "10000", "--concurrency", "1"]
DEAD_PID = 2 ** 22 + 4321  # above the default pid_max: never a live process


def _start(tmp_path: Path, run_id: str) -> subprocess.Popen:
    proc = subprocess.Popen([*SLOW_ROLLOUT, "--out", str(tmp_path), "--run-id", run_id],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    steps = tmp_path / run_id / "steps.jsonl"
    deadline = time.monotonic() + 60
    while not (steps.exists() and steps.stat().st_size > 0):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    return proc


def _status(run_dir: Path) -> str:
    return json.loads((run_dir / "run.json").read_text())["status"]


def test_a_second_writer_is_refused_while_the_first_lives(tmp_path, capsys):
    proc = _start(tmp_path, "live")
    try:
        assert main(["rollout", "--out", str(tmp_path), "--resume", "live"]) == 2
        err = capsys.readouterr().err
        assert f"being written by pid {proc.pid} on {socket.gethostname()}" in err
        assert len(err.strip().splitlines()) == 1
        holder = json.loads((tmp_path / "live" / LOCK_FILE).read_text())
        assert holder["pid"] == proc.pid and holder["host"] == socket.gethostname()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert _status(tmp_path / "live") == "interrupted"
    assert not (tmp_path / "live" / LOCK_FILE).exists()  # released on the way out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_leave_an_honest_status(tmp_path, sig):
    proc = _start(tmp_path, "r")
    proc.send_signal(sig)
    assert proc.wait(60) != 0
    assert _status(tmp_path / "r") == "interrupted"
    assert not (tmp_path / "r" / LOCK_FILE).exists()


def test_a_dead_writers_lock_is_taken_over_and_a_foreign_hosts_is_not(tmp_path, capsys):
    assert main(["rollout", "--agent", "random", "--episodes", "2", "--max-steps", "10", "--out", str(tmp_path),
                 "--run-id", "r"]) == 0
    lock = tmp_path / "r" / LOCK_FILE
    assert not lock.exists()
    lock.write_text(json.dumps({"pid": DEAD_PID, "host": socket.gethostname(), "token": "x"}))
    assert main(["rollout", "--out", str(tmp_path), "--resume", "r"]) == 0  # stale: taken over
    assert not lock.exists()
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "token": "x"}))
    capsys.readouterr()
    assert main(["rollout", "--out", str(tmp_path), "--resume", "r"]) == 2
    assert "on elsewhere.example" in capsys.readouterr().err


def test_lock_refuses_in_process_and_a_resume_prepared_before_another_writer_finished(tmp_path):
    held = RunLock.acquire(tmp_path / "x")
    with pytest.raises(UserError, match=f"pid {os.getpid()}"):
        RunLock.acquire(tmp_path / "x")
    held.release()
    RunLock.acquire(tmp_path / "x").release()
    assert main(["rollout", "--agent", "random", "--episodes", "1", "--max-steps", "5", "--out", str(tmp_path),
                 "--run-id", "y"]) == 0
    before = RunRecord.model_validate_json((tmp_path / "y" / "run.json").read_text())
    changed = before.model_copy(update={"episodes_finished": before.episodes_finished + 1})
    (tmp_path / "y" / "run.json").write_text(changed.model_dump_json())
    with pytest.raises(UserError, match="changed this run while the resume was being prepared"):
        acquire_unchanged(tmp_path / "y", before)
    assert not (tmp_path / "y" / LOCK_FILE).exists()
