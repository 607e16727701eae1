"""``crafter-tui validate FILE.jsonl``: check a chat fine-tuning file; exit 1 when it has errors."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from crafter_tui.cli.common import positive_int, print_json
from crafter_tui.dataset.validate import DEFAULT_MODEL, Distribution, ValidationReport
from crafter_tui.services.dataset import DatasetService
from crafter_tui.services.traces import TraceService

SHOWN_ISSUES = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate", help="check a chat fine-tuning JSONL file (format, tool calls, tokens, cost)",
        description="The OpenAI cookbook's data checks plus tool-call checks; every issue names its line. "
        "Exit status 1 when the file has errors.")
    parser.add_argument("file", help="the JSONL file")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="target model (token limit, encoding, price)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="epochs for the cost (default: OpenAI's rule)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    service = DatasetService(TraceService())
    report = asyncio.run(service.validate(Path(args.file), args.model, epochs=args.epochs))
    if args.json:
        print_json({"ok": report.ok, **report.model_dump(mode="json")})
    else:
        _print(report)
    return 0 if report.ok else 1


def _dist(name: str, d: Distribution) -> str:
    if not d.count:
        return f"{name}: none"
    return f"{name}: min {d.min:.0f}, max {d.max:.0f}, mean {d.mean:.1f}, median {d.median:.0f}, p5 {d.p5:.0f}, p95 {d.p95:.0f}"


def _print(report: ValidationReport) -> None:
    print(f"{report.path}: {report.examples} examples on {report.lines} lines, model {report.model}")
    for label, issues, counts in (("error", report.errors, report.error_counts),
                                  ("warning", report.warnings, report.warning_counts)):
        if counts:
            print(f"{label}s: " + ", ".join(f"{code} x{n}" for code, n in sorted(counts.items())))
        for issue in issues[:SHOWN_ISSUES]:
            where = f"line {issue.line}" if issue.line else "file"
            print(f"  {report.path}:{issue.line}: {label} {issue.code}: {issue.message}" if issue.line
                  else f"  {where}: {label} {issue.code}: {issue.message}")
        if len(issues) > SHOWN_ISSUES:
            print(f"  ... {sum(counts.values()) - SHOWN_ISSUES} more")
    print(_dist("messages/example", report.messages_per_example))
    print(_dist("tokens/example", report.tokens_per_example))
    print(_dist("assistant tokens/example", report.assistant_tokens_per_example))
    note = f" ({report.encoding_note})" if report.encoding_note else ""
    print(f"encoding: {report.encoding}{note}; limit {report.token_limit} tokens/example, "
          f"{report.examples_over_limit} over")
    cost = (f"${report.estimated_cost_usd:.2f} (prices of {report.price_date})"
            if report.estimated_cost_usd is not None else "no listed price for this model")
    print(f"training: {report.epochs} epochs x {report.billed_tokens} billed tokens -> {cost}")
    print("OK" if report.ok else f"FAILED: {sum(report.error_counts.values())} errors")
