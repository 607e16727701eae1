"""``crafter-tui jobs list|show|watch|events|cancel``: fine-tune jobs on every host, one view."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from crafter_tui.cli.common import add_config_flag, config_from_args, print_json
from crafter_tui.finetune.client import JobInfo, MetricPoint

SPARK = "▁▂▃▄▅▆▇█"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "jobs", help="list, show, follow and cancel fine-tune jobs on every host",
        description="Jobs launched with 'crafter-tui finetune' on OpenAI, Synth, Modal or the local service, "
        "as recorded in the job registry, each refreshed from its host, and the jobs each configured host "
        "lists itself. show/watch/events/cancel take any job id a configured host knows.")
    sub = parser.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="all jobs, newest first: ours and each configured host's own list",
                             description="The jobs crafter-tui launched (from its registry, refreshed from their "
                             "hosts) and the jobs each configured host lists itself (OpenAI with a key, the Synth "
                             "service with a URL, our service when it runs); '*' marks the ones crafter-tui "
                             "launched.")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--ours", action="store_true", help="only the jobs crafter-tui launched (no host lists)")
    add_config_flag(listing)
    listing.set_defaults(handler=_saying_started(handle_list))
    for name, handler, text in (("show", handle_show, "status, hyperparameters, metrics, checkpoints"),
                                ("watch", handle_watch, "follow a job until it ends, with its loss"),
                                ("events", handle_events, "every event of a job, oldest first"),
                                ("cancel", handle_cancel, "cancel a job")):
        command = sub.add_parser(name, help=text)
        command.add_argument("job_id", metavar="JOB_ID", help="job id (a unique prefix is enough)")
        command.add_argument("--json", action="store_true")
        if name == "watch":
            command.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
        add_config_flag(command)
        command.set_defaults(handler=_saying_started(handler))


def _service(args: argparse.Namespace):  # noqa: ANN202 - imported lazily
    from crafter_tui.services.finetune import FinetuneService

    service = FinetuneService(config_from_args(args))
    args.finetune_service = service  # for _saying_started
    return service


def _saying_started(handler):  # noqa: ANN001, ANN202
    """The handler, then a word on stderr when it started the local service to reach its jobs: it keeps running
    (its jobs train there), and how to stop it."""
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        finally:
            service = getattr(args, "finetune_service", None)
            if service is not None and service.started_service:
                print(f"started the local fine-tune service at {service.started_service}; it keeps running so "
                      "its jobs go on: stop it with 'crafter-tui serve --stop'", file=sys.stderr)
    return run


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def handle_list(args: argparse.Namespace) -> int:
    service = _service(args)
    rows = asyncio.run(service.list_jobs(hosts=not args.ours))
    for host, problem in service.host_problems.items():
        print(f"warning: the {host} host's job list could not be read: {problem}", file=sys.stderr)
    if args.json:
        print_json([{"job_id": r.entry.job_id, "host": r.entry.host, "status": r.status,
                     "launched_by_crafter_tui": r.launched_here,
                     "model": r.entry.model, "fine_tuned_model": r.info.fine_tuned_model if r.info else None,
                     "error": (r.info.error if r.info else None), "problem": r.problem} for r in rows])
        return 0
    if not rows:
        print("no fine-tune jobs yet (start one with 'crafter-tui finetune DATA.jsonl')")
        return 0
    for row in rows:
        info = row.info
        made = info.fine_tuned_model if info and info.fine_tuned_model else ""
        mark = "*" if row.launched_here else " "
        print(f"{mark} {row.entry.job_id}  {row.entry.host:<6} {row.status:<16} {_when(row.entry.created_at)}  "
              f"{row.entry.model}  {made}")
        if info and info.error:
            print(f"    reason: {info.error}")
        if row.problem:
            print(f"    (last known state; {row.problem})")
    if any(not row.launched_here for row in rows):
        print("* launched by crafter-tui; the others are on their host's own list")
    return 0


def print_info(info: JobInfo) -> None:
    print(f"job:        {info.id} on {info.host}")
    print(f"status:     {info.status}")
    print(f"base model: {info.model}")
    if info.fine_tuned_model:
        print(f"model:      {info.fine_tuned_model}")
    if info.hyperparameters:
        print("hyperparameters: " + ", ".join(f"{k}={v}" for k, v in info.hyperparameters.items()))
    if info.trained_tokens:
        print(f"trained tokens: {info.trained_tokens:,}")
    if info.error:
        print(f"reason:     {info.error}")


def sparkline(values: list[float], width: int = 40) -> str:
    if not values:
        return ""
    values = values[-width:]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1)))] for v in values)


def metric_line(point: MetricPoint) -> str:
    total = f"/{point.total_steps}" if point.total_steps else ""
    parts = [f"step {point.step}{total}"]
    if point.train_loss is not None:
        parts.append(f"loss {point.train_loss:.4f}")
    if point.train_mean_token_accuracy is not None:
        parts.append(f"acc {point.train_mean_token_accuracy:.3f}")
    if point.valid_loss is not None:
        parts.append(f"valid loss {point.valid_loss:.4f}")
    return "  ".join(parts)


def handle_show(args: argparse.Namespace) -> int:
    detail = asyncio.run(_service(args).detail(args.job_id))
    if args.json:
        print_json(detail.model_dump(mode="json"))
        return 0
    print_info(detail.info)
    if detail.entry.card is not None:
        from crafter_tui.services.model_cards import describe_card

        print(f"played as:  {describe_card(detail.entry.card)} (its model card)")
    losses = [p.train_loss for p in detail.metrics if p.train_loss is not None]
    if detail.metrics:
        print(f"metrics:    {len(detail.metrics)} points; last: {metric_line(detail.metrics[-1])}")
        print(f"loss:       {sparkline(losses)}")
    for ckpt in detail.checkpoints:
        print(f"checkpoint: step {ckpt.step}  {ckpt.model}")
    return 0


async def follow(service, job_id: str, interval: float, *, out=None) -> JobInfo:  # noqa: ANN001
    """Print a job's progress until it ends; returns its final state (shared with ``finetune --watch``).

    ``out``: the stream to print to, the current ``sys.stdout`` unless given (looked up at the call,
    not at import: a stream bound at import outlives a redirected or closed one)."""
    out = out or sys.stdout
    losses: list[float] = []
    final: JobInfo | None = None
    async for event in service.watch(job_id, interval=interval):
        if event.kind == "metrics":
            if event.point.train_loss is not None:
                losses.append(event.point.train_loss)
            print(f"  {metric_line(event.point)}  {sparkline(losses, 30)}", file=out, flush=True)
        elif event.kind == "message":
            level = "" if event.event.level == "info" else f"[{event.event.level}] "
            print(f"  {level}{event.event.message}", file=out, flush=True)
        elif event.kind == "status":
            print(f"status: {event.status}", file=out, flush=True)
        elif event.kind == "finished":
            final = event.info
    assert final is not None
    return final


def handle_watch(args: argparse.Namespace) -> int:
    service = _service(args)
    final = asyncio.run(follow(service, args.job_id, args.interval))
    if args.json:
        print_json(final.model_dump(mode="json"))
    elif final.error:
        print(f"reason: {final.error}")
    if final.fine_tuned_model:
        print(f"model: {final.fine_tuned_model}")
    return 0 if final.status == "succeeded" else 1


def handle_events(args: argparse.Namespace) -> int:
    events = asyncio.run(_service(args).events(args.job_id))
    if args.json:
        print_json([e.model_dump(mode="json") for e in events])
        return 0
    for event in events:
        print(f"{_when(event.created_at)}  {event.level:<5} {event.message}")
    return 0


def handle_cancel(args: argparse.Namespace) -> int:
    info = asyncio.run(_service(args).cancel(args.job_id))
    if args.json:
        print_json(info.model_dump(mode="json"))
    else:
        print(f"{info.id}: {info.status}")
    return 0
