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


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value
