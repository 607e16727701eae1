"""One writer per run folder: a lock file naming the writer (pid, host), taken over when stale.

Why: two ``rollout --resume R`` at once both played the remaining episodes, so every one was
written twice, ``analyze`` double-counted and ``run.json`` ended wrong. The lock is a file created
with ``O_EXCL`` (atomic on every local filesystem), holding the writer's pid and host. A lock whose
pid is dead on this host is stale (a ``kill -9``, a power cut) and is taken over; a lock from
another host cannot be checked from here and is refused, naming the host, for the user to judge.

The ``TraceWriter`` takes the lock before it writes anything and gives it back when the run
finishes; a resume also checks that ``run.json`` did not change between reading it and locking
(another writer finished in between), so no episode is ever played twice.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from crafter_tui.errors import UserError
from crafter_tui.traces.jsonl import pid_alive
from crafter_tui.traces.schema import RUN_FILE, RunRecord

LOCK_FILE = ".writer.lock"
#: A lock file that names no writer is someone's lock being written unless it is older than this.
TORN_LOCK_AGE_S = 10.0


class RunLock:
    """The held lock of one run folder (``acquire``); ``release`` removes it if it is still ours."""

    def __init__(self, path: Path, token: str) -> None:
        self.path = path
        self._token = token

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Take the lock of ``run_dir`` or raise ``UserError`` naming the live writer."""
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / LOCK_FILE
        token = f"{os.getpid()}-{time.time_ns()}"
        body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": token,
                           "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode()
        for _ in range(3):  # a stale lock removed by us (or by a racing writer) is retried
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read(path)
                if holder is not None and not _stale(holder, path):
                    raise UserError(_busy_message(holder), where=str(run_dir)) from None
                _remove_if_same(path, holder)
                continue
            try:
                os.write(fd, body)
            finally:
                os.close(fd)
            return cls(path, token)
        raise UserError("could not take the writer lock (another writer keeps replacing it)", where=str(path))

    def release(self) -> None:
        holder = _read(self.path)
        if holder is not None and holder.get("token") == self._token:
            self.path.unlink(missing_ok=True)


def acquire_unchanged(run_dir: Path, record: RunRecord) -> RunLock:
    """The lock of ``run_dir``, refused when ``run.json`` changed since ``record`` was read from it.

    A resume reads what is left to play before it can lock; if another writer finished in between,
    that list is stale and playing it would repeat episodes.
    """
    lock = RunLock.acquire(run_dir)
    try:
        on_disk = RunRecord.model_validate_json((run_dir / RUN_FILE).read_bytes())
    except (OSError, ValueError):
        return lock  # a new run (or an unreadable record the caller already judged)
    if (on_disk.finished_at, on_disk.wall_s, on_disk.episodes_finished) != \
            (record.finished_at, record.wall_s, record.episodes_finished):
        lock.release()
        raise UserError("another writer changed this run while the resume was being prepared; run --resume "
                        "again", where=str(run_dir / RUN_FILE))
    return lock


def _read(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_bytes()[:4096])
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # torn or foreign: judged by its age below
    return value if isinstance(value, dict) else {}


def _stale(holder: dict, path: Path) -> bool:
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int) or not isinstance(host, str):
        # names no writer: torn by a crash while written, or being written right now (give that a moment)
        try:
            return time.time() - path.stat().st_mtime > TORN_LOCK_AGE_S
        except OSError:
            return True
    return host == socket.gethostname() and not pid_alive(pid)


def _remove_if_same(path: Path, holder: dict | None) -> None:
    """Remove the stale lock we judged, not one a racing writer has just put in its place."""
    if holder is None:
        return
    if _read(path) == holder:
        path.unlink(missing_ok=True)


def _busy_message(holder: dict) -> str:
    return (f"the run is being written by pid {holder.get('pid')} on {holder.get('host')} since "
            f"{holder.get('since', '?')}: one writer per run (wait for it to end, or stop it; a lock left by "
            f"a dead process on this host is taken over by itself)")
