"""Modal as a job host: launch by ``spawn``, poll by function-call id, live metrics from the Volume.

Modal has no fine-tuning API, so this host speaks to ``modal_app`` directly and reports in the
same ``JobInfo``/``JobEvent`` types as the OpenAI-protocol client. The call id is kept in the
job registry, so any later process (``jobs watch``, the console) can poll the job.

Polling facts (modal 1.6): ``FunctionCall.get(timeout=0)`` raises ``modal.exception.TimeoutError``
(not Python's built-in) while the call runs; ``OutputExpiredError`` (result gone after a day)
and ``FunctionTimeoutError`` (the function hit its timeout) subclass it, so they are caught
first. The Modal handles are injectable so tests fake them without Modal servers.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import modal
import modal.exception

from crafter_tui.config import AppConfig
from crafter_tui.errors import UserError
from crafter_tui.finetune.client import CheckpointInfo, JobEvent, JobInfo, JobSpec
from crafter_tui.finetune.modal_app import APP_NAME, FUNCTION_NAME, VOLUME_NAME, job_paths
from crafter_tui.finetune.registry import JobEntry
from crafter_tui.finetune.job_files import fine_tuned_name


def _default_call_from_id(call_id: str) -> Any:
    return modal.FunctionCall.from_id(call_id)


def modal_model_name(entry: JobEntry) -> str:
    """The name a Modal job's model goes by (built like the service's; never parsed)."""
    return fine_tuned_name(entry.model, entry.suffix, entry.job_id)


class ModalHost:
    """Jobs on Modal GPUs."""

    def __init__(self, config: AppConfig, *, call_from_id: Callable[[str], Any] | None = None,
                 function: Any = None, volume: Any = None) -> None:
        self.app_name = config.finetune.modal_app or APP_NAME
        self.gpu = config.finetune.modal_gpu
        self._call_from_id = call_from_id or _default_call_from_id
        self._function = function
        self._volume = volume

    @property
    def volume(self) -> Any:
        if self._volume is None:
            self._volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
        return self._volume

    def _train_function(self) -> Any:
        if self._function is None:
            self._function = modal.Function.from_name(self.app_name, FUNCTION_NAME).with_options(gpu=self.gpu)
        return self._function

    # -- launch -----------------------------------------------------------------------------
    def launch(self, train_path: Path, spec: JobSpec, validation_path: Path | None = None) -> JobEntry:
        """Upload the data to the Volume and spawn the training call; returns the registry entry."""
        job_id = f"modaljob-{secrets.token_hex(8)}"
        paths = job_paths(job_id)
        train_job = {"model": spec.model, "n_epochs": spec.n_epochs, "batch_size": spec.batch_size,
                     "learning_rate": spec.learning_rate, "seed": spec.seed, "suffix": spec.suffix,
                     "lora_r": spec.lora_r, "lora_alpha": spec.lora_alpha, "lora_dropout": spec.lora_dropout,
                     "use_qlora": spec.use_qlora}
        payload = {"job_id": job_id, "has_validation": validation_path is not None,
                   "train_job": {k: v for k, v in train_job.items() if v is not None}}
        try:
            with self.volume.batch_upload(force=True) as batch:
                batch.put_file(str(train_path), "/" + paths["train"])
                if validation_path is not None:
                    batch.put_file(str(validation_path), "/" + paths["valid"])
            call = self._train_function().spawn(payload)
        except modal.exception.AuthError:
            raise UserError("Modal rejected the credentials; run 'modal setup' or set MODAL_TOKEN_ID/"
                            "MODAL_TOKEN_SECRET", where="modal") from None
        except modal.exception.NotFoundError:
            raise UserError(f"the Modal app '{self.app_name}' is not deployed; run 'modal deploy "
                            "crafter_tui/finetune/modal_app.py'", where="modal") from None
        return JobEntry(job_id=job_id, host="modal", model=spec.model, status="queued",
                        training_path=str(train_path), suffix=spec.suffix, modal_call_id=call.object_id,
                        hyperparameters=payload["train_job"])

    # -- poll -------------------------------------------------------------------------------
    def poll(self, entry: JobEntry) -> JobInfo:
        """The job's state from its function call; never blocks."""
        if not entry.modal_call_id:
            raise UserError(f"job {entry.job_id} has no Modal call id in the registry", where="registry")
        call = self._call_from_id(entry.modal_call_id)
        status, error, result = "running", None, None
        try:
            result = call.get(timeout=0)
        except modal.exception.OutputExpiredError:
            result = self._read_result(entry.job_id)  # Modal forgot the output; the Volume did not
            if result is None:
                status, error = "failed", "the Modal call's output expired and no result is on the Volume"
        except modal.exception.FunctionTimeoutError:
            status, error = "failed", "the Modal function hit its timeout"
        except modal.exception.TimeoutError:
            status = "running" if self.events(entry) else "queued"
        except modal.exception.Error as exc:  # cancelled, or the container kept crashing
            status, error = ("cancelled", None) if entry.status == "cancelled" else (
                "failed", f"the Modal call failed: {type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - get() re-raises whatever the remote body raised
            status, error = "failed", f"the Modal function raised {type(exc).__name__}: {exc}"
        if result is not None:
            status = result.get("status", "failed")
            error = result.get("error")
        fine_tuned = modal_model_name(entry) if status == "succeeded" else None
        return JobInfo(id=entry.job_id, host="modal", status=status, model=entry.model,
                       fine_tuned_model=fine_tuned, created_at=int(entry.created_at), error=error,
                       trained_tokens=(result or {}).get("trained_tokens"),
                       hyperparameters=entry.hyperparameters, suffix=entry.suffix)

    def cancel(self, entry: JobEntry) -> JobInfo:
        self._call_from_id(entry.modal_call_id).cancel()
        return JobInfo(id=entry.job_id, host="modal", status="cancelled", model=entry.model,
                       created_at=int(entry.created_at), hyperparameters=entry.hyperparameters)

    # -- the Volume -------------------------------------------------------------------------
    def _read(self, path: str) -> bytes | None:
        try:
            return b"".join(self.volume.read_file(path))
        except (modal.exception.NotFoundError, FileNotFoundError):
            return None

    def _read_result(self, job_id: str) -> dict[str, Any] | None:
        raw = self._read(job_paths(job_id)["result"])
        return json.loads(raw) if raw else None

    def events(self, entry: JobEntry) -> list[JobEvent]:
        """Events oldest first, read from the Volume (a torn last line is skipped)."""
        raw = self._read(job_paths(entry.job_id)["events"])
        if not raw:
            return []
        events = []
        for line in raw.decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                events.append(JobEvent.model_validate({k: v for k, v in row.items() if k != "ns"}))
            except ValueError:
                continue
        return events

    def checkpoints(self, entry: JobEntry) -> list[CheckpointInfo]:
        try:
            listing = self.volume.listdir(job_paths(entry.job_id)["out"])
        except (modal.exception.NotFoundError, FileNotFoundError):
            return []
        base = modal_model_name(entry)
        steps = []
        for item in listing:
            name = Path(item.path).name
            if name.startswith("checkpoint-") and name.split("-", 1)[1].isdigit():
                steps.append(int(name.split("-", 1)[1]))
        return [CheckpointInfo(model=f"{base}:ckpt-step-{s}", step=s) for s in sorted(steps)]
