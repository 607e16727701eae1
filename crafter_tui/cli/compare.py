"""``crafter-tui compare``: compare experiments with honest statistics and write a report.

    crafter-tui compare --experiments experiments.json --output comparison_report.html
    crafter-tui compare --experiments base,improved --baseline base --format md --output summary.md
    crafter-tui compare --baseline baseline_results.json --improved improved_results.json \\
        --metrics achievements,time_efficiency,rule_understanding --output comparison_summary.md

The last form is the original guide's ``efficient_compare``: ``--baseline`` names a file (or
folder) and ``--improved`` the experiment(s) to compare with it. The format follows the
output's extension unless ``--format`` is given; without ``--output`` the report goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from crafter_tui.cli.common import config_from_args, non_negative_int
from crafter_tui.errors import UserError
from crafter_tui.evaluation.compare import BUILTIN_METRICS, Comparison
from crafter_tui.evaluation.experiments import Experiment, resolve_experiments
from crafter_tui.services.evaluation import EvaluationService, ReportFormat, render_report

EXTENSIONS: dict[str, ReportFormat] = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md",
                                       ".json": "json"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="compare experiments: tests, intervals, effect sizes, charts",
        description="Compare experiments against a baseline: Crafter score, per-achievement success "
        "(Wilson, Boschloo + Benjamini-Hochberg), bootstrap CIs, permutation/Welch/rank tests, effect sizes, "
        "underpowered flags. Inputs: experiments.json files, trace folders or registered names.")
    parser.add_argument("--experiments", default=None, metavar="FILE|DIR|NAME[,NAME]",
                        help="experiments.json, a trace folder, or registered experiment names (NAME@VERSION)")
    parser.add_argument("--baseline", default=None,
                        help="the baseline: an experiment name, or a results file/folder (with --improved)")
    parser.add_argument("--improved", default=None, metavar="FILE|DIR|NAME[,NAME]",
                        help="experiment(s) compared with --baseline (the original efficient_compare)")
    parser.add_argument("--metrics", default=None,
                        help=f"comma list; built in: {', '.join(BUILTIN_METRICS)}; plus [evaluation] custom_metrics")
    parser.add_argument("--output", "-o", default=None, help="report file (default: stdout)")
    parser.add_argument("--format", choices=["html", "md", "json"], default=None,
                        help="report format (default: from the output's extension, else md)")
    parser.add_argument("--resamples", type=non_negative_int, default=None,
                        help="bootstrap/permutation resamples (default [evaluation] resamples = 9999)")
    parser.add_argument("--alpha", type=float, default=None, help="significance level (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (reports are reproducible)")
    parser.add_argument("--config", type=str, default=argparse.SUPPRESS, help="config file")
    parser.set_defaults(handler=handle)


def output_format(args: argparse.Namespace) -> ReportFormat:
    if args.format:
        return args.format
    if args.output:
        suffix = Path(args.output).suffix.lower()
        if suffix not in EXTENSIONS:
            raise UserError(f"cannot tell the format from {suffix or 'no extension'!r}; give --format html|md|json",
                            where="--output")
        return EXTENSIONS[suffix]
    return "md"


def gather(args: argparse.Namespace, service: EvaluationService) -> tuple[list[Experiment], str | None]:
    """The experiments to compare and the baseline's name, from either calling convention."""
    registry = service.registry
    if args.improved:
        if not args.baseline:
            raise UserError("--improved needs --baseline (the results to compare against)", where="--baseline")
        base = resolve_experiments(args.baseline, registry)
        if len(base) != 1:
            raise UserError(f"expected one baseline experiment, found {len(base)}", where="--baseline")
        experiments = base + resolve_experiments(args.improved, registry)
        if args.experiments:
            experiments += resolve_experiments(args.experiments, registry)
        return experiments, base[0].name
    if not args.experiments:
        raise UserError("give --experiments (or --baseline with --improved)", where="--experiments")
    return resolve_experiments(args.experiments, registry), args.baseline


def handle(args: argparse.Namespace) -> int:
    flags = {"evaluation": {"resamples": args.resamples, "alpha": args.alpha}}
    config = config_from_args(args, flags)
    fmt = output_format(args)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    service = EvaluationService(config)
    experiments, baseline = gather(args, service)
    comparison = asyncio.run(service.compare_experiments(experiments, baseline=baseline, metrics=metrics,
                                                         seed=args.seed))
    if args.output:
        path = asyncio.run(service.export_report(comparison, Path(args.output), fmt))
        print(summary_line(comparison, path), file=sys.stderr)
    else:
        sys.stdout.write(render_report(comparison, fmt))
    for warning in comparison.warnings:  # failed episodes, empty experiments: said on the terminal too
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def summary_line(comparison: Comparison, path: Path) -> str:
    parts = []
    for pair in comparison.pairs:
        primary = pair.metrics[0]
        parts.append(f"{pair.candidate} vs {pair.baseline}: achievements {primary.difference:+.2f} "
                     f"({primary.verdict})" if primary.difference is not None else
                     f"{pair.candidate} vs {pair.baseline}: {primary.verdict}")
    return f"wrote {path}" + ("; " + "; ".join(parts) if parts else "")
