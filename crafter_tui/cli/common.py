"""Pieces every command shares: one-line parse errors, config loading, JSON output, progress."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from crafter_tui.config import AppConfig, load_config


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=str, default=argparse.SUPPRESS,
                        help="config file (default: ./crafter_config.toml)")


def config_from_args(args: argparse.Namespace, flags: dict[str, dict[str, Any]] | None = None) -> AppConfig:
    """Load the configuration with the flags the user gave on top (CLI > env > file > default)."""
    path = getattr(args, "config", None)
    return load_config(Path(path) if path else None, flags=flags)


def print_json(value: Any) -> None:
    """One JSON object on stdout (for ``--json``)."""
    sys.stdout.write(json.dumps(value, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


def _int_at_least(text: str, minimum: int, kind: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "positive")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0, "non-negative")


def add_server_flags(parser: argparse.ArgumentParser, *, port: int, token_help: str) -> None:
    """--host/--port/--token, the same for every service we run (loopback unless asked)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    parser.add_argument("--token", default=None, help=token_help)


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value
