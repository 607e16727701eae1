"""``crafter-tui traces list|show RUN|compact``: look at a trace folder through the store."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from crafter_tui.cli.common import add_config_flag, config_from_args, print_json
from crafter_tui.services.traces import TraceService


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("traces", help="list, show and compact trace runs",
                                   description="Inspect the runs of a trace folder (read-only except compact).")
    actions = parser.add_subparsers(dest="traces_command", metavar="ACTION", required=True,
                                    parser_class=type(parser))
    for name, text in (("list", "one line per run"), ("show", "one run: episodes, terminations, achievements"),
                       ("compact", "write Parquet snapshots that make opening a big folder fast")):
        sub = actions.add_parser(name, help=text, description=text)
        if name == "show":
            sub.add_argument("run", help="run id")
        sub.add_argument("--input-dir", "--dir", dest="input_dir", default=None,
                         help="trace folder (default [output] trace_dir)")
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        add_config_flag(sub)
        sub.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    folder = Path(args.input_dir) if args.input_dir else Path(config.output.trace_dir)
    return asyncio.run(_run(TraceService(config), folder, args))


async def _run(service: TraceService, folder: Path, args: argparse.Namespace) -> int:
    try:
        report = await service.open(folder)
        if args.traces_command == "list":
            rows = await service.list_runs()
            if args.json:
                print_json({"runs": [r.model_dump() for r in rows], "problems": report.problems})
            else:
                _print_list([r.model_dump() for r in rows])
        elif args.traces_command == "show":
            detail = await service.show_run(args.run)
            if args.json:
                print_json(detail.model_dump())
            else:
                _print_show(detail.model_dump())
        else:
            written = await service.compact()
            if args.json:
                print_json({"compacted": [str(p) for p in written]})
            else:
                for path in written:
                    print(f"compacted {path}")
    finally:
        service.close()
    return 0


def _print_list(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no runs")
        return
    print(f"{'run':<32} {'status':<11} {'agent':<9} {'model':<24} {'episodes':>9} {'ach/ep':>7} {'reward':>7}")
    for r in rows:
        ach = f"{r['mean_achievements']:.2f}" if r["mean_achievements"] is not None else "-"
        reward = f"{r['mean_reward']:.2f}" if r["mean_reward"] is not None else "-"
        episodes = f"{r['episodes_finished']}/{r['episodes_planned']}"
        print(f"{r['run_id']:<32} {r['status']:<11} {r['agent']:<9} {r['model'][:24]:<24} {episodes:>9} "
              f"{ach:>7} {reward:>7}")


def _print_show(d: dict[str, Any]) -> None:
    print(f"run {d['run_id']} ({d['status']}) at {d['path']}")
    print(f"agent {d['agent']}, model {d['model']}, difficulty {d['difficulty']}, history_turns {d['history_turns']}")
    print(f"episodes finished: {d['episodes_finished']}/{d['episodes_planned']}")
    print("terminations: " + (", ".join(f"{k} {v}" for k, v in d["terminations"].items()) or "none"))
    print("achievements: " + (", ".join(f"{k} {v}" for k, v in d["achievements"].items()) or "none"))
    for e in d["episodes"][:50]:
        print(f"  ep {e['episode']:>4} seed {e['seed']:>6} steps {e['steps']:>5} turns {e['turns']:>4} "
              f"ach {e['num_achievements']:>2} reward {e['reward']:>6.2f} {e['termination']}")
    if len(d["episodes"]) > 50:
        print(f"  ... {len(d['episodes']) - 50} more")
