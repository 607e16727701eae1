"""``crafter-tui <command>``: the scripting front end.

Each command lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``handler``. Handlers return an exit code. Errors the user can fix
(``UserError``) print as one line on stderr and exit 2; nothing is written before the input
has been validated.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from crafter_tui import __version__
from crafter_tui.cli.common import OneLineErrorParser
from crafter_tui.errors import UserError

#: Command modules under ``crafter_tui.cli``, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "rollout",
    "serve_env",
    "eval",
    "compare",
    "analyze",
    "filter",
    "validate",
    "traces",
    "finetune",
    "jobs",
    "models",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="crafter-tui",
        description="Play Crafter with agents, turn traces into SFT data, fine-tune, evaluate, compare. "
        "With no command, opens the console.",
    )
    parser.add_argument("--version", action="version", version=f"crafter-tui {__version__}")
    parser.add_argument("--config", type=str, default=None, help="config file (default: ./crafter_config.toml)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineErrorParser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"crafter_tui.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            from crafter_tui.tui.app import run_console  # imported lazily: Textual only for the console

            return run_console(args)
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"crafter-tui: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("crafter-tui: interrupted", file=sys.stderr)
        return 130
