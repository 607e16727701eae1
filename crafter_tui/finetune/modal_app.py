"""The Modal app that trains on GPUs: the same ``run_training`` as the local service, in a container.

Deploy once with ``modal deploy crafter_tui/finetune/modal_app.py``; ``crafter-tui finetune
--backend modal`` then uploads the data to the Volume, ``spawn``s ``train`` and keeps the
call id in the job registry (see ``modal_host``). The job's events (metrics included) are
appended to ``jobs/<job-id>/events.jsonl`` on the Volume and committed every few seconds, so
the client reads live progress while the call runs. ``modal.Retries`` restarts a preempted
container; the body then resumes from the last checkpoint on the Volume.

The body is a plain function (``train_body``) so it is tested in-process through
``train.local(...)`` without Modal servers (volumes are not mounted then: the root comes from
``$CRAFTER_TUI_MODAL_ROOT``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import modal

from crafter_tui.finetune.job_files import (
    DEFAULT_TRAINER,
    append_event,
    build_train_job,
    checkpoint_dirs,
    fine_tuned_name,
    plain_dict,
    resolve_trainer,
)
from crafter_tui.finetune.job_files import SERVED_NAME_FILE
from crafter_tui.traces.jsonl import write_json_atomic

APP_NAME = os.environ.get("CRAFTER_TUI_MODAL_APP", "crafter-tui-finetune")
FUNCTION_NAME = "train"
VOLUME_NAME = os.environ.get("CRAFTER_TUI_MODAL_VOLUME", "crafter-tui-finetune")
VOLUME_MOUNT = "/vol"
DEFAULT_GPU = os.environ.get("CRAFTER_TUI_MODAL_GPU", "H100")
TIMEOUT_S = 24 * 3600
COMMIT_EVERY_S = 5.0
SERVE_IDLE_S = 300  # a serving container stays this long after its last request, then scales to zero

app = modal.App(APP_NAME)
image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install("torch==2.13.0", "transformers>=5.0", "trl>=1.16", "peft>=0.21", "tokenizers>=0.20",
                 "datasets>=3.0", "accelerate>=1.0", "pydantic>=2.7", "numpy>=1.26")
    .add_local_python_source("crafter_tui")
)
volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)


def volume_root() -> Path:
    """Where the Volume is: mounted at /vol in a container, a local folder under ``.local()``."""
    return Path(os.environ.get("CRAFTER_TUI_MODAL_ROOT", VOLUME_MOUNT))


def job_paths(job_id: str) -> dict[str, str]:
    """Paths of a job's files relative to the Volume root (shared by the body and the client)."""
    base = f"jobs/{job_id}"
    return {"dir": base, "train": f"{base}/train.jsonl", "valid": f"{base}/valid.jsonl",
            "events": f"{base}/events.jsonl", "result": f"{base}/result.json", "out": f"{base}/out",
            "model": f"{base}/out/model"}


def train_body(payload: dict[str, Any], *, root: Path, commit: Callable[[], None]) -> dict[str, Any]:
    """Run one job's trainer against files under ``root``; returns (and writes) the outcome.

    Training errors are returned as ``{"status": "failed"}`` rather than raised, so Modal's
    retries only repeat work lost to a crashed or preempted container, never a bad dataset.
    """
    job_id = payload["job_id"]
    paths = job_paths(job_id)
    events = root / paths["events"]
    out = root / paths["out"]
    train_job = dict(payload["train_job"])
    train_job["training_file"] = str(root / paths["train"])
    if payload.get("has_validation"):
        train_job["validation_file"] = str(root / paths["valid"])
    train_job["output_dir"] = str(out)
    train_job["resume"] = bool(checkpoint_dirs(out))  # a retried container picks up where it stopped
    last_commit = [time.monotonic()]

    def emit(event: Any) -> None:
        data = plain_dict(event)
        append_event(events, str(data.get("message", "")), level=data.get("level", "info"),
                     type_=data.get("type", "message"), data=data.get("data"))
        if time.monotonic() - last_commit[0] >= COMMIT_EVERY_S:
            commit()
            last_commit[0] = time.monotonic()

    append_event(events, "Modal container started" + (" (resuming)" if train_job["resume"] else "") + ".")
    try:
        run_training, train_job_cls = resolve_trainer(payload.get("trainer") or DEFAULT_TRAINER)
        job = build_train_job(train_job_cls, train_job)
        result = plain_dict(run_training(job, emit, lambda: False) or {})
        served = fine_tuned_name(str(train_job.get("model")), train_job.get("suffix"), job_id)
        (root / paths["model"]).mkdir(parents=True, exist_ok=True)
        (root / paths["model"] / SERVED_NAME_FILE).write_text(served + "\n", encoding="utf-8")  # for ``serve``
        outcome = {"status": "succeeded", "model_dir": paths["model"], "fine_tuned_model": served,
                   "trained_tokens": result.get("trained_tokens")}
        append_event(events, "The job has successfully completed.")
    except Exception as exc:  # noqa: BLE001 - the reason is the job's result
        outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        append_event(events, f"Fine-tuning job failed: {outcome['error']}", level="error")
    write_json_atomic(root / paths["result"], outcome)
    commit()
    return outcome


def _commit() -> None:
    if not modal.is_local():  # inside a container: make the writes visible to readers
        volume.commit()


@app.function(image=image, gpu=DEFAULT_GPU, timeout=TIMEOUT_S, volumes={VOLUME_MOUNT: volume},
              retries=modal.Retries(max_retries=2, backoff_coefficient=2.0, initial_delay=10.0))
def train(payload: dict[str, Any]) -> dict[str, Any]:
    """The GPU entry point (``spawn``ed by ``modal_host``)."""
    if not modal.is_local():
        volume.reload()  # see the data the client uploaded just before spawning
    return train_body(payload, root=volume_root(), commit=_commit)


@app.function(image=image, gpu=DEFAULT_GPU, volumes={VOLUME_MOUNT: volume}, scaledown_window=SERVE_IDLE_S,
              timeout=3600, secrets=[modal.Secret.from_name("crafter-tui-serve")])
@modal.concurrent(max_inputs=8)
@modal.asgi_app()
def serve() -> Any:
    """The trained models behind an OpenAI-compatible HTTPS endpoint (``servers/modal_serve.py``); scales to zero."""
    from crafter_tui.servers.modal_serve import serve_app  # the one upward import: see [tool.importlinter]

    if not modal.is_local():
        volume.reload()  # the models finished since the image was built
    return serve_app(volume_root(), Path(os.environ.get("CRAFTER_TUI_SERVE_WORK", "/tmp/crafter-tui-serve")))
