"""``crafter-tui analyze KIND``: the original guide's analysis scripts as one command.

    analyze actions      --traces DIR --output action_patterns.png   (plot_hook_frequency / analyze_action_patterns)
    analyze achievements --traces DIR --output achievement_analysis.html
    analyze seeds        --traces DIR --seeds 42,43,44 --output seed_report.json
    analyze quality      --traces DIR [--output quality.json]        (analyze_trace_quality)
    analyze rules        --traces DIR [--output rules.json]          (rule understanding)
    analyze efficiency   --traces DIR [--output efficiency.json]     (time efficiency)
    analyze training     --job-ids a,b --output training_analysis.json [--metrics-file events.jsonl]
    analyze hooks        --traces DIR --enhancements enhanced_hooks.json [--output hooks.json]
                         (analyze_enhanced_hooks: each hook's before/after effect, compare's statistics)

JSON reports go to stdout when there is no ``--output``; image and HTML outputs need one.
``training`` also writes a PNG next to the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from crafter_tui.cli.common import config_from_args
from crafter_tui.errors import UserError
from crafter_tui.evaluation import analyses
from crafter_tui.evaluation.episodes import read_runs

KINDS = ("actions", "achievements", "seeds", "quality", "training", "rules", "efficiency", "hooks")
DEFAULT_OUTPUTS = {"actions": "action_patterns.png", "achievements": "achievement_analysis.html"}


def int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze", help="analyses of traces: actions, achievements, seeds, quality, rules, efficiency, hooks, "
        "training",
        description="Analyse trace folders (or fine-tune jobs for 'training') and write JSON, PNG or HTML.")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--traces", "--input-dir", dest="traces", default=None,
                        help="a run folder or a folder of runs (default [output] trace_dir); comma list allowed")
    parser.add_argument("--output", "-o", default=None, help="output file")
    parser.add_argument("--seeds", type=int_list, default=None, help="seeds to analyse (seeds), e.g. 42,43")
    parser.add_argument("--job-ids", default=None, help="fine-tune job ids (training), comma-separated")
    parser.add_argument("--metrics-file", default=None,
                        help="JSONL of metrics events with job_id (training; instead of asking the hosts)")
    parser.add_argument("--enhancements", default=None,
                        help="hooks: JSON naming the before/after runs and the hooks (trace metrics or "
                        "file.py:function) to compare")
    parser.add_argument("--top", type=int, default=15, help="n-grams to list (actions)")
    parser.add_argument("--config", type=str, default=argparse.SUPPRESS, help="config file")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.kind == "training":
        return _training(args, config)
    roots = [Path(p.strip()) for p in (args.traces or str(config.output.trace_dir)).split(",") if p.strip()]
    runs = read_runs(roots)
    for run in runs:
        for problem in run.problems:
            print(f"crafter-tui: warning: {problem}", file=sys.stderr)
    if args.kind == "hooks":
        return _hooks(args, runs, config)
    if args.kind == "actions":
        report = analyses.analyze_actions(runs, top=args.top)
        _write_figure(analyses.actions_figure(report), _output(args))
        _emit_json(report.model_dump(mode="json"), None)
    elif args.kind == "achievements":
        path = _output(args)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(analyses.achievements_html(analyses.analyze_achievements(runs)), encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    elif args.kind == "seeds":
        _emit_json(analyses.analyze_seeds(runs, args.seeds).model_dump(mode="json"), args.output)
    elif args.kind == "quality":
        _emit_json(analyses.analyze_quality(runs).model_dump(mode="json"), args.output)
    elif args.kind == "rules":
        _emit_json(analyses.analyze_rules(runs).model_dump(mode="json"), args.output)
    else:
        report = analyses.analyze_efficiency(runs)
        _emit_json(report.model_dump(mode="json") | {"wasted": report.wasted}, args.output)
    return 0


def _output(args: argparse.Namespace) -> Path:
    return Path(args.output or DEFAULT_OUTPUTS[args.kind])


def _write_figure(fig: Any, path: Path) -> None:
    from crafter_tui.evaluation.charts import render

    fmt = "svg" if path.suffix.lower() == ".svg" else "png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render(fig, fmt))
    print(f"wrote {path}", file=sys.stderr)


def _emit_json(value: Any, output: str | None) -> None:
    text = json.dumps(value, indent=2, default=str) + "\n"
    if output:
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _hooks(args: argparse.Namespace, runs: list, config: Any) -> int:
    from crafter_tui.evaluation.compare import CompareOptions
    from crafter_tui.evaluation.hooks import analyze_hooks, load_enhancements

    if not args.enhancements:
        raise UserError("name the enhancements file", where="--enhancements")
    path = Path(args.enhancements)
    options = CompareOptions(alpha=config.evaluation.alpha, resamples=config.evaluation.resamples)
    report = analyze_hooks(runs, load_enhancements(path), path.parent, options)
    for effect in report.effects:
        c = effect.comparison
        diff = f"{c.difference:+.3g}" if c.difference is not None else "-"
        holm = f"{c.p_permutation_holm:.3g}" if c.p_permutation_holm is not None else "-"
        print(f"{effect.hook}: {diff} (before {c.n_baseline}, after {c.n_candidate} episodes; p={holm} Holm; "
              f"A12={c.a12 if c.a12 is None else round(c.a12, 2)}) - {effect.recommendation}", file=sys.stderr)
    _emit_json(report.model_dump(mode="json"), args.output)
    return 0


def _training(args: argparse.Namespace, config: Any) -> int:
    if not args.job_ids:
        raise UserError("name the fine-tune jobs", where="--job-ids")
    job_ids = [j.strip() for j in args.job_ids.split(",") if j.strip()]
    if args.metrics_file:
        found = analyses.read_metrics_file(Path(args.metrics_file))
        missing = [j for j in job_ids if j not in found]
        if missing:
            raise UserError(f"no metrics events for job(s) {', '.join(missing)}", where=args.metrics_file)
        points = {j: found[j] for j in job_ids}
    else:
        points = {j: job_metrics_from_hosts(j, config) for j in job_ids}
    progress = [analyses.job_progress(j, points[j]) for j in job_ids]
    output = Path(args.output or "training_analysis.json")
    _emit_json({"jobs": [p.model_dump(mode="json") for p in progress]}, str(output))
    _write_figure(analyses.training_figure(progress), output.with_suffix(".png"))
    return 0


def job_metrics_from_hosts(job_id: str, config: Any) -> list[analyses.TrainingPoint]:
    """A job's metrics events from the host that ran it (``FinetuneService.metrics``)."""
    from crafter_tui.services.finetune import FinetuneService

    points = asyncio.run(FinetuneService(config, autostart_local=False).metrics(job_id))
    return [analyses.TrainingPoint.model_validate(point.model_dump()) for point in points]
