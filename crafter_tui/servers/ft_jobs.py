"""The service's file store, job store and trainer workers.

Files are the truth, so a restart loses nothing:

    <data_dir>/files/<file-id>.jsonl + <file-id>.json        uploaded data and its metadata
    <data_dir>/jobs/<job-id>/job.json                         job state (written by the server only)
    <data_dir>/jobs/<job-id>/events.jsonl                     events, appended by server and worker
    <data_dir>/jobs/<job-id>/worker.json                      what the worker runs (trainer + TrainJob)
    <data_dir>/jobs/<job-id>/result.json                      the worker's outcome (written once)
    <data_dir>/jobs/<job-id>/out/checkpoint-<step>, out/model the trainer's output

Each job trains in its own process (``python -m crafter_tui.servers.ft_jobs <job-dir>``), so
a crash or a hung trainer never takes the HTTP service down, and the service can be restarted
while a job trains. A job found ``running`` at start-up whose worker is gone is resumed from
its last checkpoint (the trainer's ``resume``); one whose worker still runs is adopted.
One job trains at a time (this is a laptop-sized service); the others wait ``queued``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, Field

from crafter_tui.dataset.tokens import default_epochs
from crafter_tui.finetune.job_files import (
    CHECKPOINT_DIR,
    DEFAULT_TRAINER,
    QLORA_REFUSED,
    SERVED_NAME_FILE,
    append_event,
    build_train_job,
    builtin_base_models,
    checkpoint_dirs,
    fine_tuned_name,
    latest_checkpoint,
    plain_dict,
    resolve_trainer,
)
from crafter_tui.servers.ft_models import (
    TERMINAL_STATUSES,
    CheckpointObject,
    CreateJobRequest,
    EventObject,
    FileObject,
    Hyperparameters,
    JobError,
    JobObject,
)
from crafter_tui.traces.jsonl import iter_jsonl, loads_bounded, write_json_atomic

log = logging.getLogger(__name__)

MAX_RESUMES = 3
UPLOAD_CHUNK = 1 << 20  # bytes an upload is copied to disk in
_ID_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


class ServiceError(Exception):
    """A request the service refuses; rendered as OpenAI's error envelope with ``status``."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type_


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def _now() -> int:
    return int(time.time())


def safe_id(value: str, what: str) -> str:
    """Reject ids that could escape the data dir before they touch a path."""
    if not _ID_SAFE.match(value):
        raise ServiceError(404, f"No such {what}: {value!r}", param=what, code="not_found")
    return value


# -- files --------------------------------------------------------------------------------
class FileStore:
    """Uploaded files: the bytes and a JSON sidecar with OpenAI's file metadata."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def data_path(self, file_id: str) -> Path:
        return self.root / f"{safe_id(file_id, 'file')}.jsonl"

    def _meta_path(self, file_id: str) -> Path:
        return self.root / f"{safe_id(file_id, 'file')}.json"

    def save(self, filename: str, purpose: str, content: bytes) -> FileObject:
        file_id = new_id("file")
        self.data_path(file_id).write_bytes(content)
        meta = FileObject(id=file_id, bytes=len(content), created_at=_now(),
                          filename=Path(filename or "upload.jsonl").name, purpose=purpose)
        write_json_atomic(self._meta_path(file_id), meta.model_dump())
        return meta

    def save_stream(self, filename: str, purpose: str, source: BinaryIO, limit: int) -> FileObject:
        """Store an upload read from ``source`` in chunks: a 413 past ``limit`` bytes, a 400 when it
        holds only whitespace. Nothing is kept of a refused upload."""
        file_id = new_id("file")
        target = self.data_path(file_id)
        size, blank = 0, True
        try:
            with target.open("wb") as out:
                while chunk := source.read(UPLOAD_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise ServiceError(413, f"File too large (limit {limit} bytes).", param="file",
                                           code="file_too_large")
                    blank = blank and not chunk.strip()
                    out.write(chunk)
            if blank:
                raise ServiceError(400, "The uploaded file is empty.", param="file", code="invalid_value")
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        meta = FileObject(id=file_id, bytes=size, created_at=_now(),
                          filename=Path(filename or "upload.jsonl").name, purpose=purpose)
        write_json_atomic(self._meta_path(file_id), meta.model_dump())
        return meta

    def get(self, file_id: str) -> FileObject:
        path = self._meta_path(file_id)
        if not path.is_file():
            raise ServiceError(404, f"No such file: {file_id}", param="file_id", code="file_not_found")
        return FileObject.model_validate_json(path.read_text(encoding="utf-8"))

    def list(self) -> list[FileObject]:
        metas = [FileObject.model_validate_json(p.read_text(encoding="utf-8"))
                 for p in self.root.glob("*.json")]
        return sorted(metas, key=lambda m: m.created_at, reverse=True)

    def delete(self, file_id: str) -> bool:
        self.get(file_id)
        self._meta_path(file_id).unlink(missing_ok=True)
        self.data_path(file_id).unlink(missing_ok=True)
        return True


def check_training_file(path: Path) -> list[str]:
    """Cheap server-side checks (the client validates fully before upload): problems with line numbers."""
    problems: list[str] = []
    count = 0
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = loads_bounded(line)
            except ValueError as exc:  # JSONDecodeError, or too deep (JsonLimitError)
                problems.append(f"line {number}: not valid JSON ({getattr(exc, 'msg', exc)})")
                continue
            messages = row.get("messages") if isinstance(row, dict) else None
            if not isinstance(messages, list) or not messages:
                problems.append(f"line {number}: missing a non-empty 'messages' list")
            elif not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
                problems.append(f"line {number}: no assistant message to learn from")
            count += 1
            if len(problems) >= 20:
                break
    if count == 0 and not problems:
        problems.append("the file has no examples")
    return problems


# -- jobs ---------------------------------------------------------------------------------
class JobRecord(BaseModel):
    """What ``job.json`` holds: the public job plus the server's private bookkeeping."""

    job: JobObject
    planned_model: str
    train_job: dict[str, Any]
    pid: int | None = None
    attempts: int = 0
    cancel_requested: bool = False


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


class JobManager:
    """Creates jobs, runs their workers one at a time, and answers from the job folders."""

    def __init__(self, data_dir: Path, *, trainer: str = DEFAULT_TRAINER, threads: int | None = None,
                 poll_interval: float = 0.25, worker_env: dict[str, str] | None = None,
                 models_dir: Path | None = None) -> None:
        self.data_dir = data_dir
        #: The one folder a job may name a base model's weights in (``model: "/etc"`` is refused).
        self.models_dir = models_dir if models_dir is not None else data_dir / "models"
        self.files = FileStore(data_dir / "files")
        self.jobs_dir = data_dir / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.trainer = trainer
        self.threads = threads
        self.poll_interval = poll_interval
        self.worker_env = worker_env or {}
        self._lock = threading.RLock()
        self._records: dict[str, JobRecord] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._load()

    # -- persistence ------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / safe_id(job_id, "job")

    def _save(self, record: JobRecord) -> None:
        self._records[record.job.id] = record
        write_json_atomic(self.job_dir(record.job.id) / "job.json", record.model_dump(mode="json"))

    def _load(self) -> None:
        for path in sorted(self.jobs_dir.glob("*/job.json")):
            try:
                record = JobRecord.model_validate_json(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                log.error("unreadable job state %s: %s", path, exc)
                continue
            self._records[record.job.id] = record

    def add_event(self, job_id: str, message: str, *, level: str = "info", type_: str = "message",
                  data: dict[str, Any] | None = None) -> None:
        append_event(self.job_dir(job_id) / "events.jsonl", message, level=level, type_=type_, data=data)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Recover jobs interrupted by a restart, then start the monitor thread."""
        with self._lock:
            for record in list(self._records.values()):
                if record.job.status in TERMINAL_STATUSES:
                    continue
                if record.job.status == "running" and _worker_alive(record.pid, self.job_dir(record.job.id)):
                    self.add_event(record.job.id, "Service restarted; the training worker is still running.")
                    continue
                if record.job.status == "running":
                    self._requeue_after_restart(record)
                elif record.job.status == "validating_files":
                    self._validate(record)  # interrupted between create and queue
        self._thread = threading.Thread(target=self._monitor, name="ft-jobs-monitor", daemon=True)
        self._thread.start()

    def stop(self, *, stop_workers: bool = True, timeout: float = 20.0) -> None:
        """Stop the monitor; interrupt our workers so a later start resumes them from a checkpoint."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if not stop_workers:
            return
        with self._lock:
            procs = list(self._procs.items())
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _requeue_after_restart(self, record: JobRecord) -> None:
        checkpoint = latest_checkpoint(self.job_dir(record.job.id) / "out")
        if record.attempts >= MAX_RESUMES:
            self._finish(record, "failed", JobError(code="interrupted", message=(
                f"The training worker was interrupted {record.attempts} times; giving up.")))
            return
        where = f"from {checkpoint.name}" if checkpoint else "from the start (no checkpoint yet)"
        self.add_event(record.job.id, f"Service restarted while the job was running; resuming {where}.",
                       level="warn")
        record.job.status = "queued"
        record.train_job["resume"] = True
        record.pid = None
        self._save(record)

    def _monitor(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the monitor must outlive one bad job folder
                log.exception("job monitor tick failed")

    def tick(self) -> None:
        """One pass: notice finished workers, then start the oldest queued job if none runs."""
        with self._lock:
            running = [r for r in self._records.values() if r.job.status == "running"]
            for record in running:
                self._check_worker(record)
            for job_id, proc in list(self._procs.items()):  # reap workers of cancelled jobs
                if self._records[job_id].job.status != "running" and proc.poll() is not None:
                    self._procs.pop(job_id)
            busy = any(r.job.status == "running" for r in self._records.values())
            if busy or any(proc.poll() is None for proc in self._procs.values()):
                return
            queued = sorted((r for r in self._records.values() if r.job.status == "queued"),
                            key=lambda r: r.job.created_at)
            if queued:
                self._launch(queued[0])

    # -- workers -----------------------------------------------------------------------------
    def _launch(self, record: JobRecord) -> None:
        job_dir = self.job_dir(record.job.id)
        write_json_atomic(job_dir / "worker.json", {"trainer": self.trainer, "train_job": record.train_job})
        (job_dir / "result.json").unlink(missing_ok=True)
        env = {**os.environ, **self.worker_env}
        for secret_var in ("OPENAI_API_KEY", "SYNTH_API_KEY", "MODAL_API_KEY", "CRAFTER_TUI_SERVE_TOKEN"):
            env.pop(secret_var, None)  # the trainer needs no keys; keep them out of its logs
        with (job_dir / "worker.log").open("ab") as log_file:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own module
                [sys.executable, "-m", "crafter_tui.servers.ft_jobs", str(job_dir)],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True)
        self._procs[record.job.id] = proc
        record.pid = proc.pid
        record.attempts += 1
        record.job.status = "running"
        self._save(record)
        self.add_event(record.job.id, "Fine-tuning job started.")

    def _check_worker(self, record: JobRecord) -> None:
        job_dir = self.job_dir(record.job.id)
        proc = self._procs.get(record.job.id)
        alive = proc.poll() is None if proc else _worker_alive(record.pid, job_dir)
        if alive:
            return
        self._procs.pop(record.job.id, None)
        result_path = job_dir / "result.json"
        if not result_path.is_file():
            code = proc.returncode if proc else None
            if code == INTERRUPTED_EXIT:
                self._requeue_after_restart(record)
                return
            tail = _log_tail(job_dir / "worker.log")
            self._finish(record, "failed", JobError(
                code="worker_crashed", message=f"The training worker exited (code {code}) without a result. {tail}"))
            return
        result = json.loads(result_path.read_text(encoding="utf-8"))
        status = result.get("status", "failed")
        if record.cancel_requested:
            status = "cancelled"
        error = JobError(code=result.get("code", "training_failed"), message=result["error"]) \
            if status == "failed" else None
        record.job.trained_tokens = result.get("trained_tokens")
        self._finish(record, status, error)

    def _finish(self, record: JobRecord, status: str, error: JobError | None) -> None:
        record.job.status = status  # type: ignore[assignment]
        record.job.finished_at = _now()
        record.job.error = error
        record.pid = None
        if status == "succeeded":
            record.job.fine_tuned_model = record.planned_model
        self._save(record)
        if status == "failed" and error:
            self.add_event(record.job.id, f"Fine-tuning job failed: {error.message}", level="error")
        elif status == "succeeded":
            self.add_event(record.job.id, f"New fine-tuned model created: {record.planned_model}")
            self.add_event(record.job.id, "The job has successfully completed.")
        elif status == "cancelled":
            self.add_event(record.job.id, "Fine-tuning job cancelled.")

    # -- API operations --------------------------------------------------------------------
    def create(self, request: CreateJobRequest) -> JobObject:
        training = self.files.get(request.training_file)
        if request.validation_file:
            self.files.get(request.validation_file)
        base = self.resolve_base_model(request.model)
        job_id = new_id("ftjob")
        hyper = request.effective_hyperparameters()
        train_path = self.files.data_path(training.id)
        planned = fine_tuned_name(request.model, request.suffix, job_id)
        train_job = self._train_job(request, hyper, job_id, train_path)
        train_job["model"] = base
        job = JobObject(
            id=job_id, created_at=_now(), model=request.model, status="validating_files",
            hyperparameters={k: train_job.get(k, "auto") for k in ("n_epochs", "batch_size", "learning_rate")},
            training_file=training.id, validation_file=request.validation_file,
            seed=train_job["seed"], suffix=request.suffix, metadata=request.metadata,
            method={"type": "supervised", "supervised": {"hyperparameters": hyper.model_dump(exclude_none=True)}},
        )
        record = JobRecord(job=job, planned_model=planned, train_job=train_job)
        self.job_dir(job_id).mkdir(parents=True)
        with self._lock:
            self._save(record)
            self.add_event(job_id, f"Validating training file: {training.id}")
            self._validate(record)
        return record.job

    def _validate(self, record: JobRecord) -> None:
        """``validating_files`` -> ``queued``, or ``failed`` with the problems and their line numbers."""
        problems = check_training_file(Path(record.train_job["training_file"]))
        if problems:
            self._finish(record, "failed", JobError(
                code="invalid_training_file", param="training_file",
                message=f"The training file {record.job.training_file} has problems: " + "; ".join(problems)))
            return
        record.job.status = "queued"
        self._save(record)
        self.add_event(record.job.id, "Files validated, moving job to queued state.")

    def _train_job(self, request: CreateJobRequest, hyper: Hyperparameters, job_id: str,
                   train_path: Path) -> dict[str, Any]:
        n_examples = _count_lines(train_path)
        epochs = hyper.n_epochs if isinstance(hyper.n_epochs, int) else default_epochs(n_examples)
        batch = hyper.batch_size if isinstance(hyper.batch_size, int) else None
        learning_rate = hyper.learning_rate
        multiplier = hyper.learning_rate_multiplier
        if learning_rate is None and isinstance(multiplier, (int, float)):
            base_rate = self._base_learning_rates().get(request.model)
            if base_rate is None:
                raise ServiceError(400, f"learning_rate_multiplier needs a known default learning rate; "
                                   f"'{request.model}' has none here. Send learning_rate instead.",
                                   param="learning_rate_multiplier", code="invalid_value")
            learning_rate = base_rate * multiplier
        job: dict[str, Any] = {
            "model": request.model,
            "training_file": str(train_path),
            "validation_file": str(self.files.data_path(request.validation_file))
            if request.validation_file else None,
            "output_dir": str(self.job_dir(job_id) / "out"),
            "n_epochs": epochs, "batch_size": batch, "learning_rate": learning_rate,
            "seed": request.seed if request.seed is not None else 42,
            "suffix": request.suffix, "threads": self.threads, "resume": False,
        }
        lora = {k: v for k, v in hyper.model_dump(include={"use_lora", "use_qlora", "lora_r", "lora_alpha",
                                                            "lora_dropout", "max_length"}).items()
                if v is not None}
        if lora.pop("use_qlora", None):
            raise ServiceError(400, QLORA_REFUSED, param="use_qlora", code="invalid_value")
        job.update(lora)
        return {k: v for k, v in job.items() if v is not None}

    def resolve_base_model(self, name: str) -> str:
        """What the trainer loads for the base model ``name``; a 400 naming ``model`` when it is none of:
        a built-in model, a model this service has (a finished job's, an imported one), a model in the
        local Hugging Face cache, or a folder under ``models_dir``. Checked when the job is created, so
        the worker is never started on a path like ``/etc``."""
        if name in self.base_models():
            return name
        served = self.model_paths()
        if name in served:
            return str(served[name])
        if _in_hf_cache(name):
            return name
        root = self.models_dir.resolve()
        try:
            folder = Path(name).expanduser().resolve()
        except (OSError, RuntimeError, ValueError):
            folder = None
        if folder is not None and folder.is_relative_to(root) and folder != root and folder.is_dir():
            return str(folder)
        builtin = ", ".join(self.base_models()) or "none"
        raise ServiceError(400, f"Unknown base model {name!r}: use a built-in model ({builtin}), a model this "
                           f"service has (GET /v1/models), one in the local Hugging Face cache, or a folder "
                           f"under {root}.", param="model", code="model_not_found")

    def _base_learning_rates(self) -> dict[str, float | None]:
        try:
            return builtin_base_models(self.trainer)
        except Exception:  # noqa: BLE001 - a broken trainer fails the job in its worker, with the reason
            return {}

    def base_models(self) -> list[str]:
        """The trainer's built-in base models (trained from a config, no weights needed)."""
        return list(self._base_learning_rates())

    def get_record(self, job_id: str) -> JobRecord:
        with self._lock:
            record = self._records.get(safe_id(job_id, "job"))
        if record is None:
            raise ServiceError(404, f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id",
                               code="job_not_found")
        return record

    def get(self, job_id: str) -> JobObject:
        return self.get_record(job_id).job

    def list(self) -> list[JobObject]:
        with self._lock:
            jobs = [r.job for r in self._records.values()]
        return sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)

    def cancel(self, job_id: str) -> JobObject:
        with self._lock:
            record = self.get_record(job_id)
            if record.job.status in TERMINAL_STATUSES:
                raise ServiceError(400, f"Job {job_id} has already {record.job.status}; it cannot be cancelled.",
                                   param="fine_tuning_job_id", code="job_not_cancellable")
            record.cancel_requested = True
            (self.job_dir(job_id) / "cancel").touch()
            if record.job.status == "running":
                self._save(record)
                self.add_event(job_id, "Cancellation requested; stopping the trainer.")
            self._finish(record, "cancelled", None)
            return record.job

    def events(self, job_id: str) -> list[EventObject]:
        """All events, newest first."""
        self.get_record(job_id)
        rows = list(iter_jsonl(self.job_dir(job_id) / "events.jsonl"))
        rows.sort(key=lambda r: (r.get("ns", 0), r.get("id", "")), reverse=True)
        return [EventObject.model_validate({k: v for k, v in r.items() if k != "ns"}) for r in rows]

    def checkpoints(self, job_id: str) -> list[CheckpointObject]:
        """Saved checkpoints, newest first, with the metrics logged at (or just before) their step."""
        record = self.get_record(job_id)
        metrics = {int(e.data["step"]): e.data for e in self.events(job_id)
                   if e.type == "metrics" and e.data and "step" in e.data}
        out = []
        for path in checkpoint_dirs(self.job_dir(job_id) / "out"):
            step = int(CHECKPOINT_DIR.match(path.name).group(1))  # type: ignore[union-attr]
            near = max((s for s in metrics if s <= step), default=None)
            out.append(CheckpointObject(
                id=f"ftckpt-{job_id}-{step}", created_at=int(path.stat().st_mtime),
                fine_tuned_model_checkpoint=f"{record.planned_model}:ckpt-step-{step}",
                fine_tuning_job_id=job_id, step_number=step,
                metrics=metrics.get(near, {}) if near is not None else {}))
        return sorted(out, key=lambda c: c.step_number, reverse=True)

    def imported_models(self) -> dict[str, Path]:
        """Model folders dropped into ``<data_dir>/models/<folder>`` (e.g. weights a Modal job left on
        its Volume), served under the name in ``served_name.txt`` or else the folder name."""
        root = self.data_dir / "models"
        found: dict[str, Path] = {}
        if not root.is_dir():
            return found
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            name_file = folder / SERVED_NAME_FILE
            name = name_file.read_text(encoding="utf-8").strip() if name_file.is_file() else folder.name
            found[name or folder.name] = folder
        return found

    def model_paths(self) -> dict[str, Path]:
        """Servable model names -> weights folders (finished models, their checkpoints, imported ones)."""
        paths: dict[str, Path] = self.imported_models()
        with self._lock:
            records = list(self._records.values())
        for record in records:
            out = self.job_dir(record.job.id) / "out"
            if record.job.status == "succeeded" and record.job.fine_tuned_model:
                paths[record.job.fine_tuned_model] = out / "model"
            for ckpt in checkpoint_dirs(out):
                paths[f"{record.planned_model}:ckpt-step-{ckpt.name.split('-', 1)[1]}"] = ckpt
        return paths


def _in_hf_cache(name: str) -> bool:
    """Whether ``name`` is a Hugging Face repo id (``org/model``) whose config is in the local cache."""
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        return False
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # noqa: BLE001 - an invalid repo id or no hub library: not a cached model
        return False


def _worker_alive(pid: int | None, job_dir: Path) -> bool:
    """True when ``pid`` is a live worker of this job (not a recycled pid of something else)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if str(job_dir).encode() not in cmdline:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


# -- the worker process ---------------------------------------------------------------------
INTERRUPTED_EXIT = 75  # EX_TEMPFAIL: stopped by a signal, resume later


def run_worker(job_dir: Path) -> int:
    """Run one job's trainer, streaming its events into the job folder; the exit code tells how it ended."""
    spec = json.loads((job_dir / "worker.json").read_text(encoding="utf-8"))
    events_path = job_dir / "events.jsonl"
    interrupted = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        interrupted.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def emit(event: Any) -> None:
        data = plain_dict(event)
        append_event(events_path, str(data.get("message", "")), level=data.get("level", "info"),
                     type_=data.get("type", "message"), data=data.get("data"))

    def should_stop() -> bool:
        return interrupted.is_set() or (job_dir / "cancel").exists()

    try:
        run_training, train_job_cls = resolve_trainer(spec["trainer"])
        job = build_train_job(train_job_cls, spec["train_job"])
        result = run_training(job, emit, should_stop)
    except Exception as exc:  # noqa: BLE001 - every failure becomes the job's reason
        if interrupted.is_set():
            return INTERRUPTED_EXIT
        log.exception("training failed")
        write_json_atomic(job_dir / "result.json", {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    if (job_dir / "cancel").exists():
        write_json_atomic(job_dir / "result.json", {"status": "cancelled"})
        return 0
    if interrupted.is_set():
        return INTERRUPTED_EXIT
    outcome = plain_dict(result) if result is not None else {}
    write_json_atomic(job_dir / "result.json", {
        "status": "succeeded", "trained_tokens": outcome.get("trained_tokens"),
        "steps": outcome.get("steps") or outcome.get("global_step")})
    return 0


class _WorkerArgs(BaseModel):
    job_dir: Path = Field(description="the job folder")


def main(argv: list[str] | None = None) -> int:
    args = _WorkerArgs(job_dir=Path((argv or sys.argv[1:])[0]))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_worker(args.job_dir)


if __name__ == "__main__":
    sys.exit(main())
