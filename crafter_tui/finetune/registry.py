"""The local job registry: which host each job we launched lives on.

Hosts only list their own jobs, so ``jobs list`` asks the registry what exists and each
host for its current state. One JSON file per job under ``<data_dir>/jobs``; written
atomically, never containing a key. Model names are stored as opaque strings.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from crafter_tui.dataset.card import ModelCard
from crafter_tui.errors import UserError
from crafter_tui.traces.jsonl import write_json_atomic


class JobNotFound(UserError):
    """No registered job has that id (an ambiguous prefix is a plain ``UserError``)."""


class JobEntry(BaseModel):
    """What we remember about a job; ``status`` etc. are the last seen values (refreshed on demand)."""

    job_id: str
    host: str
    base_url: str | None = None
    model: str
    fine_tuned_model: str | None = None
    status: str = "validating_files"
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    training_path: str | None = None
    training_file_id: str | None = None
    validation_file_id: str | None = None
    suffix: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    modal_call_id: str | None = None
    error: str | None = None
    card: ModelCard | None = None  # how the model must be played (the training data's card, host, sampling)
    service_dir: str | None = None  # local host: the data folder of the service that trained (and serves) the model
    #: A job crafter-tui did not launch (found on its host by id or in the host's own list): shown and
    #: followed like ours, never written to the registry.
    external: bool = False


def _filename(host: str, job_id: str) -> str:
    """A file name safe for any id (ids are opaque; they may hold ':' or '/')."""
    digest = hashlib.sha256(f"{host}\0{job_id}".encode()).hexdigest()[:20]
    return f"{host}-{digest}.json"


class JobRegistry:
    """Job entries as files; safe for several processes (each write replaces one whole file)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> JobRegistry:
        return cls(data_dir / "jobs")

    def save(self, entry: JobEntry) -> JobEntry:
        self.root.mkdir(parents=True, exist_ok=True)
        entry.updated_at = time.time()
        write_json_atomic(self.root / _filename(entry.host, entry.job_id), entry.model_dump(mode="json"))
        return entry

    def all(self) -> list[JobEntry]:
        """Every entry, newest first; an unreadable file is skipped (and named in ``problems``)."""
        entries, _ = self.all_with_problems()
        return entries

    def all_with_problems(self) -> tuple[list[JobEntry], list[str]]:
        entries: list[JobEntry] = []
        problems: list[str] = []
        if not self.root.is_dir():
            return entries, problems
        for path in self.root.glob("*.json"):
            try:
                entries.append(JobEntry.model_validate_json(path.read_text(encoding="utf-8")))
            except (ValidationError, ValueError, OSError) as exc:
                problems.append(f"{path}: unreadable job entry ({type(exc).__name__})")
        entries.sort(key=lambda e: e.created_at, reverse=True)
        return entries, problems

    def find(self, job_id: str) -> JobEntry:
        """The entry for ``job_id`` (exact match; a unique prefix also works)."""
        entries, problems = self.all_with_problems()
        exact = [e for e in entries if e.job_id == job_id]
        if exact:
            return exact[0]
        matches = [e for e in entries if e.job_id.startswith(job_id)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            unreadable = f"; {len(problems)} unreadable: {'; '.join(problems[:3])}" if problems else ""
            raise JobNotFound(f"no job {job_id!r} in the job registry ({self.root}{unreadable}); "
                            "see 'crafter-tui jobs list'", where="JOB_ID")
        raise UserError(f"{job_id!r} matches {len(matches)} jobs; give more of the id", where="JOB_ID")

    def find_model(self, model: str) -> JobEntry | None:
        """The job that produced ``model`` (compared as a whole string)."""
        for entry in self.all():
            if entry.fine_tuned_model == model:
                return entry
        return None
