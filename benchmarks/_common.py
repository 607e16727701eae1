"""Helpers for benchmarks: JSON-line output and peak memory."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks import tests.doubles and run from a checkout
    sys.path.insert(0, str(ROOT))


def report(metric: str, value: float, unit: str, goal: str | None = None, **extra: object) -> None:
    """One benchmark figure as a JSON line: {"metric", "value", "unit", "goal", ...extra}."""
    print(json.dumps({"metric": metric, "value": round(value, 4), "unit": unit, "goal": goal, **extra}), flush=True)


emit = report  # the name most benchmarks use


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size of this process (or of its waited-for children), in MB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024
