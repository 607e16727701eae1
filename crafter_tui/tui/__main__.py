"""``python -m crafter_tui.tui [--config FILE]``: the console without building the whole CLI parser.

``crafter-tui`` (no command) opens the same console, but first builds every command's parser,
and some command modules import heavy stacks (OpenAI SDK, SciPy, DuckDB) at import time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crafter_tui.errors import UserError


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m crafter_tui.tui", description="The crafter-tui console.")
    parser.add_argument("--config", type=str, default=None, help="config file (default: ./crafter_config.toml)")
    args = parser.parse_args()
    from crafter_tui.config import load_config
    from crafter_tui.tui.app import run_console

    try:
        return run_console(load_config(Path(args.config) if args.config else None))
    except UserError as exc:
        print(f"crafter-tui: error: {exc}", file=sys.stderr)
        return 2


raise SystemExit(main())
