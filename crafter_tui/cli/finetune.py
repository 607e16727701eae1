"""``crafter-tui finetune DATA.jsonl``: validate, estimate, launch, follow and test a fine-tune job.

Accepts the original guide's ``kick_off_ft_modal.py`` / ``kick_off_ft_oai.py`` spellings
(positional data file, ``--model``, ``--epochs``, ``--batch-size``, ``--learning-rate``,
``--suffix``, ``--subset``) on every backend.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError

from crafter_tui.cli.common import add_config_flag, config_from_args, fraction, positive_int
from crafter_tui.errors import UserError
from crafter_tui.finetune.hosts import HOST_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune", help="fine-tune a model on SFT data (OpenAI, Synth, Modal or the local service)",
        description="Validate DATA (errors are refused before upload, with line numbers), show a token/cost/"
        "time estimate, launch the job, and with --watch follow its loss, then test the model on a few "
        "Crafter observations and print how to call it.")
    parser.add_argument("data", metavar="DATA.jsonl", help="chat-format SFT data (one example per line)")
    parser.add_argument("--backend", choices=HOST_NAMES, default=None, help="where to train (default [finetune])")
    parser.add_argument("--model", default=None, help="base model (crafter-tiny, crafter-small, a HF name, gpt-4o-mini...)")
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument("--batch-size", type=positive_int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None, help="absolute (synth, modal, local)")
    parser.add_argument("--learning-rate-multiplier", type=float, default=None, help="OpenAI's form")
    parser.add_argument("--suffix", default=None, help="added to the model name (<= 64 chars)")
    parser.add_argument("--subset", type=positive_int, default=None, help="train on N examples only")
    parser.add_argument("--subset-mode", choices=["first", "sample"], default="first",
                        help="first N lines, or a seeded random sample")
    parser.add_argument("--validation-split", type=fraction, default=None, help="hold out this fraction")
    parser.add_argument("--seed", type=int, default=0, help="subset/split/training seed")
    parser.add_argument("--lora-r", type=positive_int, default=None)
    parser.add_argument("--lora-alpha", type=positive_int, default=None)
    parser.add_argument("--lora-dropout", type=float, default=None)
    parser.add_argument("--qlora", action="store_true", default=None,
                        help="4-bit QLoRA (Synth; refused on the hosts that cannot train it)")
    parser.add_argument("--watch", action="store_true", help="follow the job, then test the model")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between polls with --watch")
    parser.add_argument("--test-observations", type=positive_int, default=3, help="Crafter turns in the model test")
    parser.add_argument("--no-test", action="store_true", help="skip the model test after --watch")
    parser.add_argument("--yes", "-y", action="store_true", help="launch without asking")
    parser.add_argument("--keep-service", action="store_true", help="local backend with --watch: leave the "
                        "service this command started running afterwards (it is stopped by default)")
    add_config_flag(parser)
    parser.set_defaults(handler=handle)


def _request(args: argparse.Namespace):  # noqa: ANN202 - imported lazily
    from pathlib import Path

    from crafter_tui.services.finetune import LaunchRequest

    # Only what the user set (a flag, or a key in the config file/environment) is sent: the [finetune]
    # defaults would override the host's own choice (OpenAI picks epochs and batch size from the data).
    config = config_from_args(args, {"finetune": {
        "backend": args.backend, "model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "suffix": args.suffix, "validation_split": args.validation_split}})
    ft = config.finetune
    epochs, batch_size = (getattr(ft, key) if key in ft.model_fields_set else None for key in ("epochs", "batch_size"))
    try:
        request = LaunchRequest(
            data=Path(args.data), backend=ft.backend, model=ft.model, epochs=epochs, batch_size=batch_size,
            learning_rate=ft.learning_rate, learning_rate_multiplier=args.learning_rate_multiplier,
            suffix=ft.suffix, subset=args.subset, subset_mode=args.subset_mode,
            validation_split=ft.validation_split, seed=args.seed, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout, use_qlora=args.qlora)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(first["msg"], where=f"--{str(first['loc'][0]).replace('_', '-')}") from None
    return config, request


def _print_plan(request, prepared) -> None:  # noqa: ANN001
    est = prepared.estimate
    print(f"data:       {prepared.train_path} ({est.examples} examples)")
    if prepared.validation_path:
        print(f"validation: {prepared.validation_path} ({est.validation_examples} examples)")
    for warning in prepared.warnings:
        print(f"warning:    {warning}")
    print(f"backend:    {request.backend}   model: {request.model}   epochs: {est.epochs}")
    if prepared.compatibility is not None:
        print("check:      " + "; ".join(prepared.compatibility.lines()))
    print(f"tokens:     {est.tokens_per_epoch:,} per epoch, {est.total_tokens:,} in all "
          f"(counted with {prepared.report.encoding})")
    cost = f"${est.cost_usd:,.2f}" if est.cost_usd is not None else "unknown"
    print(f"cost:       {cost} ({est.cost_note})")
    if est.seconds is not None:
        print(f"time:       ~{_duration(est.seconds)} ({est.time_note})")
    else:
        print(f"time:       {est.time_note}")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def confirm(yes: bool, stdin=None, *, question: str = "Launch this job?", doing: str = "launching",  # noqa: ANN001
            done: str = "launched") -> None:
    """Ask before spending money or hours; refuse rather than guess when nobody can answer
    (``stdin``: the current ``sys.stdin`` unless given)."""
    if yes:
        return
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        raise UserError(f"not {doing} without confirmation: stdin is not a terminal; pass --yes to go ahead",
                        where="--yes")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UserError(f"not {done}", where="confirmation")


async def _run(args: argparse.Namespace) -> int:
    from crafter_tui.services.finetune import FinetuneService

    config, request = _request(args)
    service = FinetuneService(config)
    prepared = await service.prepare(request)
    _print_plan(request, prepared)
    confirm(args.yes)
    started = False
    if request.backend == "local":
        url, started = await service.ensure_local_service()
        if started:
            stays = ("until the job is done" if args.watch and not args.keep_service
                     else "and keeps running (the job trains there): stop it with 'crafter-tui serve --stop'")
            print(f"started the local fine-tune service at {url} {stays} (log: "
                  f"{config.storage.data_dir / 'service' / 'serve.log'})")
    try:
        return await _launch_and_follow(service, request, prepared, args)
    finally:
        if started and args.watch and not args.keep_service:
            from crafter_tui.finetune.local_service import service_dir, stop_service

            await asyncio.to_thread(stop_service, service_dir(config) / "serve.pid", config.finetune.local_url)
            print("stopped the local fine-tune service this command started (rollout/eval start it again to "
                  "play the model; 'crafter-tui serve' runs it for the call above)")


async def _launch_and_follow(service, request, prepared, args: argparse.Namespace) -> int:  # noqa: ANN001
    from crafter_tui.cli.jobs import follow, print_info

    entry = await service.launch(request, prepared)
    print(f"launched:   {entry.job_id} on {entry.host}")
    if not args.watch:
        print(f"follow it:  crafter-tui jobs watch {entry.job_id}")
        return 0
    final = await follow(service, entry.job_id, args.interval)
    print_info(final)
    if final.status != "succeeded" or not final.fine_tuned_model:
        return 1
    return await _test_and_explain(service, final.fine_tuned_model, entry.host, args)


async def _test_and_explain(service, model: str, host: str, args: argparse.Namespace) -> int:  # noqa: ANN001
    code = 0
    servable = host != "modal" or service.config.finetune.modal_serve_url  # Modal: its serve function
    if not args.no_test and servable:
        report = await service.test_model(model, backend=host, count=args.test_observations, seed=args.seed)
        print(f"model test: {report.passed}/{len(report.checks)} Crafter observations answered with a valid "
              "interact call")
        for check in report.checks:
            mark = "PASS" if check.passed else "FAIL"
            what = ", ".join(check.actions) if check.passed else check.detail
            print(f"  {mark} seed {check.seed} step {check.step}: {what}")
        code = 0 if report.ok else 1
    elif not servable:
        from crafter_tui.services.finetune import MODAL_SERVING_HINT

        print("model test skipped: " + MODAL_SERVING_HINT.format(model=model))
    print()
    print(service.usage(model, host))
    return code


def handle(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
