"""Serving what Modal trained: our own service's app over the Volume, behind Modal's HTTPS endpoint.

``modal_app.serve`` (a GPU ``asgi_app`` function that scales to zero) returns ``serve_app``: the
same FastAPI app as ``crafter-tui serve`` (``/v1/chat/completions`` with tools, ``/v1/models``),
its data folder a scratch directory whose ``models/<job-id>`` entries link the finished jobs'
``jobs/<job-id>/out/model`` folders on the Volume, each served under the name its job was given
(``served_name.txt``, written by ``train_body``). Our app and not vLLM's server: it is the code
the local loop already plays and tests (tool calls parsed the same way, the model card's
sampling), it loads LoRA adapters as the trainer saved them, and Crafter turns are short and
few at a time, where vLLM's batching buys little over a cold start that is paid on every scale-up.

The endpoint is public, so it always requires a bearer token (``CRAFTER_TUI_SERVE_TOKEN`` from the
Modal Secret ``crafter-tui-serve``); without one the app refuses to start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from crafter_tui.errors import UserError
from crafter_tui.finetune.job_files import SERVED_NAME_FILE
from crafter_tui.finetune.local_service import TOKEN_ENV_VAR
from crafter_tui.servers.ft_server import ServeSettings, create_app

SERVE_FUNCTION_NAME = "serve"
SERVE_SECRET_NAME = "crafter-tui-serve"


def link_models(volume_root: Path, work_dir: Path) -> dict[str, Path]:
    """``work_dir/models/<job-id>`` -> each succeeded job's model folder on the Volume; name -> folder."""
    models = work_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    linked: dict[str, Path] = {}
    for result_file in sorted((volume_root / "jobs").glob("*/result.json")):
        job_dir = result_file.parent
        try:
            result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a result being written; the next container sees it
        model_dir = job_dir / "out" / "model"
        if result.get("status") != "succeeded" or not model_dir.is_dir():
            continue
        link = models / job_dir.name
        if not link.exists():
            link.symlink_to(model_dir.resolve(), target_is_directory=True)
        name_file = model_dir / SERVED_NAME_FILE
        name = name_file.read_text(encoding="utf-8").strip() if name_file.is_file() else job_dir.name
        linked[name or job_dir.name] = model_dir
    return linked


def serve_app(volume_root: Path, work_dir: Path, *, token: str | None = None, inference: str | None = None) -> Any:
    """Our service's app serving every model Modal trained on the Volume at ``volume_root``."""
    token = token or os.environ.get(TOKEN_ENV_VAR)
    if not token:
        raise UserError(f"the Modal endpoint is public: set {TOKEN_ENV_VAR} in the Modal Secret "
                        f"'{SERVE_SECRET_NAME}' ('modal secret create {SERVE_SECRET_NAME} {TOKEN_ENV_VAR}=...')",
                        where=SERVE_SECRET_NAME)
    link_models(volume_root, work_dir)
    extra = {"inference": inference} if inference else {}
    settings = ServeSettings(data_dir=work_dir, host="0.0.0.0", token=SecretStr(token), **extra)  # noqa: S104
    return create_app(settings)
