"""``crafter-tui models``: the models each fine-tune host offers, and the ones our jobs made."""

from __future__ import annotations

import argparse
import asyncio

from crafter_tui.cli.common import add_config_flag, config_from_args, print_json
from crafter_tui.finetune.hosts import HOST_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list models on the fine-tune hosts (and which job made each)",
        description="List the models of the local service (and of every host a registered job lives on), "
        "marking fine-tuned models with the job that produced them. Names are shown whole.")
    parser.add_argument("--backend", choices=HOST_NAMES, default=None, help="only this host")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_flag(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from crafter_tui.services.finetune import FinetuneService

    service = FinetuneService(config_from_args(args))
    listing = asyncio.run(service.models(args.backend))
    if args.json:
        print_json(listing)
        return 0
    for host, names in listing.items():
        if isinstance(names, str):
            print(f"{host}: {names}")
            continue
        print(f"{host}: {len(names)} model(s)")
        for name in names:
            entry = service.registry.find_model(name)
            print(f"  {name}" + (f"    (job {entry.job_id})" if entry else ""))
    return 0
