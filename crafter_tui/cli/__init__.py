"""``crafter-tui <command>``: the scripting front end.

Each command lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``handler``. Handlers return an exit code. Errors the user can fix
(``UserError``) print as one line on stderr and exit 2; nothing is written before the input
has been validated.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from typing import Any

from crafter_tui.cli.common import OneLineErrorParser, config_from_args
from crafter_tui.errors import UserError
from crafter_tui.version import __version__

#: Command name -> module under ``crafter_tui.cli``, in the order ``--help`` lists them.
COMMANDS: dict[str, str] = {
    "rollout": "rollout",
    "pipeline": "pipeline",
    "demo": "demo",
    "serve-env": "serve_env",
    "eval": "eval",
    "compare": "compare",
    "analyze": "analyze",
    "filter": "filter",
    "validate": "validate",
    "traces": "traces",
    "finetune": "finetune",
    "jobs": "jobs",
    "models": "models",
    "serve": "serve",
}


def _command_in(argv: Sequence[str]) -> tuple[str | None, bool]:
    """(the known command word of ``argv``, whether ``argv`` names any command at all).

    The global ``--config FILE`` is skipped; anything else left over counts as a command word.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    _, rest = pre.parse_known_args(list(argv))
    words = [word for word in rest if not word.startswith("-")]
    known = words[0] if words and words[0] in COMMANDS else None
    return known, bool(words)


def build_parser(only: str | None = None, *, commands: bool = True) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that command's module is imported (fast start-up);
    without ``commands``, none is (the console needs no subcommand parsers)."""
    parser = OneLineErrorParser(
        prog="crafter-tui",
        description="Play Crafter with agents, turn traces into SFT data, fine-tune, evaluate, compare. "
        "With no command, opens the console.",
    )
    parser.add_argument("--version", action="version", version=f"crafter-tui {__version__}")
    parser.add_argument("--config", type=str, default=None, help="config file (default: ./crafter_config.toml)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineErrorParser)
    for name, module in COMMANDS.items():
        if commands and (only is None or name == only):
            importlib.import_module(f"crafter_tui.cli.{module}").register(subparsers)
    return parser


def os_error_line(exc: OSError) -> str:
    """``path: reason`` of an OSError, on one line (``path -> other: reason`` for a rename)."""
    reason = exc.strerror or exc.__class__.__name__
    if exc.filename is None:
        return f"{reason}" if not str(exc) else str(exc).splitlines()[0]
    where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{where}: {reason}"


def _sigterm_interrupts() -> Any:
    """SIGTERM ends a command as Ctrl-C does: whatever handles SIGINT now (``asyncio.run`` cancels its
    main task, so a rollout's ``run.json`` says ``interrupted``) handles it, instead of the process dying
    with ``running`` in ``run.json`` for good. Returns the handler it replaced."""
    def interrupt(_signum: int, frame: Any) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (a test calling main from a worker): nothing to install
        return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command, names_one = _command_in(argv)
    wants_help = any(flag in argv for flag in ("-h", "--help"))
    parser = build_parser(only=command, commands=names_one or wants_help)
    args = parser.parse_args(argv)
    previous = _sigterm_interrupts() if args.command is not None else None
    try:
        if args.command is None:
            from crafter_tui.tui.app import run_console  # imported lazily: Textual only for the console

            return run_console(config_from_args(args))
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"crafter-tui: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the command could not use (--out /proc/nope, a full disk): named, no traceback
        print(f"crafter-tui: error: {os_error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("crafter-tui: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
