"""``crafter-tui filter``: select episodes/turns from traces, print statistics, export SFT data.

Flags override the ``[filter]`` config section (flags left out do not hide config values).
Accepts the original ``filter_traces_sft_duckdb.py`` spellings (``--input-dir``, ``--output``,
``--min-achievements``, ``--min-reward``, ``--max-turns``, ``--require-termination``,
``--stats-only``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from crafter_tui.cli.common import add_config_flag, config_from_args, fraction, non_negative_int, positive_int, print_json
from crafter_tui.dataset.export import ExportResult
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.dataset.stats import SelectionStats
from crafter_tui.errors import UserError
from crafter_tui.services.dataset import DatasetService, ExportDone, ExportProgress
from crafter_tui.services.traces import TraceService


def _names(values: list[str] | None) -> list[str] | None:
    """``--models a,b --models c`` -> [a, b, c]; None when the flag was not given."""
    if values is None:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def add_shaping_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that shape examples for a small model (``filter`` and ``pipeline`` both take them;
    left out, the ``[filter]`` config section decides)."""
    parser.add_argument("--balance-actions", action="store_true", default=None,
                        help="cap each first action at the mean count per first action (seeded)")
    parser.add_argument("--drop-reasoning", action="store_true", default=None,
                        help="empty the reasoning of exported interact calls (shorter replies for small models)")
    parser.add_argument("--goal-reasoning", action="store_true", default=None,
                        help="write the goal each turn's agent recorded (the scripted expert's: wood, drink, table, "
                             "explore, ...) as the reasoning, before the actions: a short decision a small model "
                             "makes first and then acts on")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "filter", help="select traces, show statistics, export SFT data (OpenAI chat JSONL)",
        description="Select episodes and turns from a trace folder, print what the selection holds "
        "(episodes, examples, achievements, actions, tokens, training cost) and write it as chat JSONL.")
    parser.add_argument("--input-dir", default=None, help="trace folder (default [output] trace_dir)")
    parser.add_argument("--output", default=None, help="output file (.jsonl or .parquet)")
    parser.add_argument("--min-achievements", type=non_negative_int, default=None)
    parser.add_argument("--min-reward", type=float, default=None)
    parser.add_argument("--max-turns", type=positive_int, default=None, help="episodes with at most this many turns")
    parser.add_argument("--require-termination", action="store_true", default=None,
                        help="only completed episodes (death, max_steps, agent_terminated)")
    parser.add_argument("--stats-only", action="store_true", help="statistics only, write nothing")
    parser.add_argument("--models", action="append", default=None, help="models to keep (comma-separated)")
    parser.add_argument("--runs", action="append", default=None, help="run ids to keep (comma-separated)")
    parser.add_argument("--achievement", action="append", default=None, dest="achievements", metavar="NAME",
                        help="keep episodes that unlocked NAME (repeatable: all of them)")
    parser.add_argument("--min-progression", type=float, default=None, help="unique achievements / 22, 0..1")
    parser.add_argument("--mode", choices=["trajectory", "turn"], default=None,
                        help="turn: one example per decision (the exact prompt); trajectory: one per episode")
    parser.add_argument("--keep-before-achievement", type=positive_int, default=None, metavar="K",
                        help="only the K turns leading to each new achievement")
    parser.add_argument("--drop-invalid", action="store_true", default=None, help="drop invalid replies")
    parser.add_argument("--max-invalid-fraction", type=float, default=None, metavar="F",
                        help="only episodes whose invalid replies are at most this fraction of their turns (0..1)")
    parser.add_argument("--dedupe", action="store_true", default=None, help="drop identical prompt+reply examples")
    parser.add_argument("--max-examples", type=positive_int, default=None)
    parser.add_argument("--validation-split", type=fraction, default=None, metavar="F",
                        help="hold out this fraction of episodes in <output>.valid.jsonl")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--text-actions", action="store_true", default=None,
                        help="assistant turns as plain text instead of tool calls")
    add_shaping_flags(parser)
    parser.add_argument("--cost-model", default=None, help="provider model for the training cost estimate")
    parser.add_argument("--format", choices=["jsonl", "parquet"], default=None,
                        help="output format (default: from the output suffix)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_flag(parser)
    parser.set_defaults(handler=handle)


def spec_from_args(args: argparse.Namespace) -> tuple[FilterSpec, Any]:
    flags = {"filter": {
        "min_achievements": args.min_achievements, "min_reward": args.min_reward, "max_turns": args.max_turns,
        "require_termination": args.require_termination, "models": _names(args.models), "runs": _names(args.runs),
        "achievements": _names(args.achievements), "min_progression": args.min_progression, "mode": args.mode,
        "max_invalid_fraction": args.max_invalid_fraction,
        "keep_before_achievement": args.keep_before_achievement, "drop_invalid": args.drop_invalid,
        "dedupe": args.dedupe, "balance_actions": args.balance_actions, "max_examples": args.max_examples,
        "validation_split": args.validation_split, "seed": args.seed, "text_actions": args.text_actions,
        "drop_reasoning": args.drop_reasoning, "goal_reasoning": args.goal_reasoning, "cost_model": args.cost_model,
    }}
    config = config_from_args(args, flags=flags)
    return FilterSpec.from_section(config.filter), config


def handle(args: argparse.Namespace) -> int:
    spec, config = spec_from_args(args)
    input_dir = Path(args.input_dir) if args.input_dir else Path(config.output.trace_dir)
    output = Path(args.output) if args.output else None
    if output is None and not args.stats_only:
        raise UserError("an output file is required (or use --stats-only)", where="--output")
    fmt = args.format or ("parquet" if output is not None and output.suffix == ".parquet" else "jsonl")
    return asyncio.run(_run(config, spec, input_dir, None if args.stats_only else output, fmt, args.json))


async def _run(config: Any, spec: FilterSpec, input_dir: Path, output: Path | None, fmt: str, as_json: bool) -> int:
    traces = TraceService(config)
    try:
        report = await traces.open(input_dir, turns=True)
        dataset = DatasetService(traces)
        stats = await dataset.stats(spec, turn_level=True, tokens=True)
        exported = None
        if output is not None:
            async for event in dataset.export(spec, output, fmt=fmt):  # type: ignore[arg-type]
                if isinstance(event, ExportProgress) and not as_json and sys.stderr.isatty():
                    print(f"\rexporting {event.written}/{event.total}", end="", file=sys.stderr)
                elif isinstance(event, ExportDone):
                    exported = event.result
        problems = [str(p) for p in traces.store.problems]
        problem_count = traces.store.problem_count
    finally:
        traces.close()
    if as_json:
        out = {"input_dir": str(input_dir), "runs": report.runs, **stats.model_dump(mode="json"),
               "spec": spec.model_dump(mode="json"), "problems": problems, "problem_count": problem_count,
               "export": exported.model_dump(mode="json") if exported else None}
        print_json(out)
    else:
        _print_stats(stats, input_dir, report.runs, problem_count)
        if exported is not None:
            valid = f" + {exported.valid} validation -> {exported.valid_path}" if exported.valid_path else ""
            print(f"wrote {exported.train} examples -> {exported.path}{valid} ({exported.seconds:.2f} s)")
            _print_card(exported)
    return 0


def _print_stats(stats: SelectionStats, input_dir: Path, runs: int, problems: int) -> None:
    print(f"traces: {input_dir} ({runs} runs{f', {problems} bad lines skipped' if problems else ''})")
    print(f"episodes: {stats.episodes_selected} of {stats.episodes_total} selected")
    split = (f" (train {stats.examples_train}, validation {stats.examples_valid})"
             if stats.examples_valid else "")
    print(f"examples: {stats.examples_selected} of {stats.examples_total}{split}")
    hist = ", ".join(f"{k}: {v}" for k, v in stats.achievements_histogram.items()) or "none"
    print(f"achievements per episode: {hist}")
    rates = [f"{name} {rate:.0%}" for name, rate in stats.success_rates.items() if rate > 0]
    print(f"success in selection: {', '.join(rates) or 'none'}")
    if stats.action_distribution:
        total = sum(stats.action_distribution.values())
        top = ", ".join(f"{k} {v / total:.0%}" for k, v in list(stats.action_distribution.items())[:8])
        print(f"actions: {top}")
    if stats.tokens is not None:
        t = stats.tokens
        how = "exact" if t.method == "exact" else f"estimated from {t.examples_counted} examples"
        print(f"tokens: {t.total} ({how}, {t.encoding}); mean {t.per_example_mean:.0f}/example, max {t.per_example_max}")
    if stats.cost is not None:
        c = stats.cost
        print(f"training cost on {c.model}: ${c.usd:.2f} ({c.epochs} epochs x {c.billed_tokens} tokens at "
              f"${c.price_per_million}/1M, prices of {c.price_date})")


def _print_card(exported: ExportResult) -> None:
    """Where the card is, what it says a model trained on the data must see, or why it cannot say."""
    card = exported.card
    if card is None:
        return
    if card.format is None:
        differ = ", ".join(card.mixed) or "nothing"
        print(f"model card -> {exported.card_path}: the exported runs were played differently ({differ}); "
              "a model trained on this data has no single way to be played, so rollouts will not apply one",
              file=sys.stderr)
        return
    f = card.format
    print(f"model card -> {exported.card_path}: observation {f.observation} (revision {f.observation_revision}), "
          f"{f.history_turns} history turns, actions as {f.actions}, reasoning {f.reasoning}")
