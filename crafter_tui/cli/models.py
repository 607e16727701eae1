"""``crafter-tui models``: the models each fine-tune host offers, and the ones our jobs made;
``crafter-tui models check MODEL --backend B``: can that host fine-tune that base model."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from crafter_tui.cli.common import add_config_flag, config_from_args, print_json
from crafter_tui.errors import UserError
from crafter_tui.finetune.hosts import HOST_NAMES

STOP_HINT = "stop it with 'crafter-tui serve --stop'"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list models on the fine-tune hosts, or check one: 'models check MODEL --backend B'",
        description="List the models of the local service (and of every host a registered job lives on), "
        "marking fine-tuned models with the job that produced them. Names are shown whole. A local service "
        "started for the listing is stopped afterwards (--keep-service leaves it running). "
        "'models check MODEL --backend B [--data FILE]' says whether host B can fine-tune MODEL, its context "
        "limit, and what the dataset's longest example needs.")
    parser.add_argument("action", nargs="?", choices=["list", "check"], default="list")
    parser.add_argument("model", nargs="?", default=None, help="base model to check (with 'check')")
    parser.add_argument("--backend", choices=HOST_NAMES, default=None, help="only this host (check: default "
                        "[finetune] backend)")
    parser.add_argument("--data", default=None, help="check: the SFT data whose longest example must fit")
    parser.add_argument("--keep-service", action="store_true",
                        help="leave a local service started for the listing running")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_flag(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check(args)
    if args.model is not None:
        raise UserError(f"unexpected argument {args.model!r}; did you mean 'models check {args.model}'?",
                        where="models")
    return asyncio.run(_list(args))


def _check(args: argparse.Namespace) -> int:
    from crafter_tui.dataset.validate import validate_file
    from crafter_tui.finetune.compat import check_model
    from crafter_tui.finetune.prepare import VALIDATION_MODEL_FOR_OPEN_HOSTS

    if not args.model:
        raise UserError("name the base model: crafter-tui models check MODEL --backend B", where="MODEL")
    config = config_from_args(args)
    backend = args.backend or config.finetune.backend
    longest, encoding = None, None
    if args.data:
        data = Path(args.data)
        if not data.is_file():
            raise UserError("dataset file not found", where=args.data)
        counting = args.model if backend == "openai" else VALIDATION_MODEL_FOR_OPEN_HOSTS
        report = validate_file(data, model=counting)
        longest = int(report.tokens_per_example.max) if report.tokens_per_example.max else None
        encoding = report.encoding
    result = check_model(backend, args.model, longest_example=longest, counted_with=encoding)
    if args.json:
        print_json(result.model_dump() | {"too_long": result.too_long})
    else:
        print("\n".join(result.lines()))
    return 0 if result.ok and not result.too_long else 1


async def _list(args: argparse.Namespace) -> int:
    from crafter_tui.finetune.local_service import is_up, running_local_service
    from crafter_tui.services.finetune import FinetuneService

    config = config_from_args(args)
    service = FinetuneService(config, autostart_local=False)
    wants_local = args.backend in (None, "local")
    if not wants_local or is_up(config.finetune.local_url):
        return _print_listing(args, service, await service.models(args.backend))
    if args.keep_service:
        url, _ = await service.ensure_local_service()
        print(f"started the local fine-tune service at {url} to list its models; it keeps running: {STOP_HINT}",
              file=sys.stderr)
        return _print_listing(args, service, await service.models(args.backend))
    async with running_local_service(config) as (url, started):
        if started:
            print(f"started the local fine-tune service at {url} to list its models; it is stopped afterwards "
                  "(--keep-service leaves it running)", file=sys.stderr)
        listing = await service.models(args.backend)
    return _print_listing(args, service, listing)


def _print_listing(args: argparse.Namespace, service, listing: dict) -> int:  # noqa: ANN001
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
