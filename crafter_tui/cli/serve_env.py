"""``crafter-tui serve-env``: the Crafter environment service (synth CrafterClassic routes, :8901)."""

from __future__ import annotations

import argparse
import os
import sys

from pydantic import SecretStr, ValidationError

from crafter_tui.cli.common import add_server_flags, positive_int
from crafter_tui.errors import UserError

TOKEN_ENV_VAR = "CRAFTER_ENV_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve-env", help="serve Crafter environments over HTTP (synth CrafterClassic compatible)",
        description="Run the Crafter environment service: /health, /env/CrafterClassic/initialize|step|"
        "terminate|metadata. Other machines and languages drive episodes through it; "
        "`crafter-tui rollout --env remote --env-url URL` plays through it.")
    add_server_flags(parser, port=8901,
                     token_help="require 'Authorization: Bearer TOKEN' on every route but /health "
                     f"(default: ${TOKEN_ENV_VAR}, which keeps it out of the process list)")
    parser.add_argument("--max-envs", type=positive_int, default=1000, help="live environments at most (429 above)")
    parser.add_argument("--idle-timeout", type=float, default=600.0,
                        help="seconds without a request before an environment is dropped (default 600)")
    parser.add_argument("--max-body-bytes", type=positive_int, default=None,
                        help="request bodies larger than this are refused with 413 before they are read "
                        "(default 1048576)")
    parser.add_argument("--threadpool", action="store_true",
                        help="step in the threadpool instead of on the event loop (slower; see the benchmark)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from crafter_tui.servers.env_server import EnvServiceSettings, bind_warning, serve

    token = args.token or os.environ.get(TOKEN_ENV_VAR) or None
    try:
        settings = EnvServiceSettings(
            host=args.host, port=args.port, token=SecretStr(token) if token else None,
            max_envs=args.max_envs, idle_timeout=args.idle_timeout, step_in_threadpool=args.threadpool,
            **({"max_body_bytes": args.max_body_bytes} if args.max_body_bytes else {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(first["msg"], where=f"--{str(first['loc'][0]).replace('_', '-')}") from None
    warning = bind_warning(settings)
    if warning:
        print(f"crafter-tui: {warning}", file=sys.stderr)

    def ready() -> None:
        auth = "token required" if settings.token else "no token"
        print(f"crafter-tui: env service on http://{settings.host}:{settings.port} ({auth}, "
              f"max {settings.max_envs} envs, idle timeout {settings.idle_timeout:g} s)", file=sys.stderr)

    serve(settings, on_ready=ready)
    return 0
