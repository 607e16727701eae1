"""``crafter-tui serve``: the self-hosted OpenAI-compatible fine-tune + inference service."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import SecretStr, ValidationError

from crafter_tui.cli.common import add_config_flag, add_server_flags, config_from_args, positive_int
from crafter_tui.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the OpenAI-compatible fine-tune + inference service",
        description="Serve /v1/files, /v1/fine_tuning/jobs (events, checkpoints, cancel), /v1/models and "
        "/v1/chat/completions (with tools). Jobs train in worker processes; state lives in --data-dir and "
        "survives restarts (interrupted jobs resume from their last checkpoint).")
    add_server_flags(parser, port=8000,
                     token_help="require 'Authorization: Bearer TOKEN' (or set CRAFTER_TUI_SERVE_TOKEN)")
    parser.add_argument("--data-dir", default=None,
                        help="where files, jobs and models live (default <storage.data_dir>/service)")
    parser.add_argument("--max-upload-bytes", type=positive_int, default=None,
                        help="largest training file POST /v1/files accepts, streamed to disk "
                        "(default 1 GiB; 413 above)")
    parser.add_argument("--models-dir", default=None,
                        help="folder a job may name base-model weights in (default <data-dir>/models)")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads per training worker")
    parser.add_argument("--stop", action="store_true",
                        help="stop the service crafter-tui started for you (at [finetune] local_url) and exit")
    add_config_flag(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from crafter_tui.servers.ft_server import TOKEN_ENV_VAR, ServeSettings, run_server, warn_if_exposed

    config = config_from_args(args, {"finetune": {"threads": args.threads}})
    if args.stop:
        return _stop(config, Path(args.data_dir) if args.data_dir else None)
    token = args.token or os.environ.get(TOKEN_ENV_VAR) or None
    data_dir = Path(args.data_dir) if args.data_dir else config.storage.data_dir / "service"
    try:
        extra = {"max_upload_bytes": args.max_upload_bytes} if args.max_upload_bytes else {}
        settings = ServeSettings(data_dir=data_dir.resolve(), host=args.host, port=args.port,
                                 token=SecretStr(token) if token else None, threads=config.finetune.threads,
                                 models_dir=Path(args.models_dir).resolve() if args.models_dir else None, **extra)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(first["msg"], where=f"--{str(first['loc'][0]).replace('_', '-')}") from None
    warning = warn_if_exposed(settings)
    if warning:
        print(f"crafter-tui: {warning}", file=sys.stderr)
    auth = "token required" if settings.token else "no token"
    print(f"crafter-tui: fine-tune service on http://{settings.host}:{settings.port}/v1 ({auth}, "
          f"data in {settings.data_dir})", file=sys.stderr)
    run_server(settings)
    return 0


def _stop(config, data_dir: Path | None) -> int:  # noqa: ANN001
    """Stop a service started in the background for the user (its pid is in <data dir>/serve.pid)."""
    from crafter_tui.finetune.local_service import is_up, service_dir, stop_service

    url = config.finetune.local_url
    pid_file = (data_dir or service_dir(config)) / "serve.pid"
    if not is_up(url):
        print(f"no fine-tune service answers at {url}")
        return 0
    if not pid_file.is_file():
        raise UserError(f"a service answers at {url} but crafter-tui did not start it (no {pid_file}); "
                        "stop it where it runs", where="--stop")
    stop_service(pid_file, url)
    if is_up(url):
        raise UserError(f"the service at {url} still answers", where="--stop")
    pid_file.unlink(missing_ok=True)
    print(f"stopped the fine-tune service at {url}")
    return 0
