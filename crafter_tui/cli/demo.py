"""``crafter-tui demo``: watch the whole loop make an agent better, offline, in one command."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from crafter_tui.cli.common import add_config_flag, config_from_args, print_json
from crafter_tui.cli.pipeline_view import PipelineView
from crafter_tui.services.demo import FULL, QUICK, Headline, run_demo


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="the closed loop offline: expert rollouts -> SFT data -> local fine-tune -> eval -> report",
        description="Plays scripted-expert episodes, exports them as chat SFT data, trains a built-in model "
        "through the local fine-tune service, lets that model play while the expert labels the states it reaches "
        "(DAgger) and trains again on both, evaluates it on held-out seeds next to the random baseline and "
        "the expert, and writes the comparison report. Resumes if run again in the same folder.")
    parser.add_argument("--quick", action="store_true", help="a ~2-minute version (fewer data episodes, 16 shorter evaluation episodes)")
    parser.add_argument("--workdir", default=None, help="folder for everything (default: demo or demo-quick)")
    parser.add_argument("--json", action="store_true", help="print the headline as one JSON object")
    add_config_flag(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    recipe = QUICK if args.quick else FULL
    workdir = Path(args.workdir or ("demo-quick" if args.quick else "demo"))
    view = PipelineView(enabled=True)
    clock = time.perf_counter()
    result = asyncio.run(run_demo(config, workdir, recipe, view.on_event))
    elapsed = time.perf_counter() - clock
    if args.json:
        print_json({**result.model_dump(mode="json"), "wall_s": round(elapsed, 1)})
    else:
        _print_headline(result, elapsed)
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _print_headline(result: Headline, elapsed: float) -> None:
    p = "n/a" if result.p_value_vs_random is None else f"{result.p_value_vs_random:.4g}"
    note = " (underpowered: too few episodes to call)" if result.underpowered_vs_random else ""
    sys.stdout.write(
        f"\nTrained model {result.trained_model}\n"
        f"  progression: trained {_pct(result.trained_progression)}, random {_pct(result.random_progression)}, "
        f"expert {_pct(result.expert_progression)}\n"
        f"  trained vs random: permutation p = {p}{note}\n"
        f"  report: {result.report}\n  finished in {elapsed:.0f} s\n")
