"""``crafter-tui eval``: evaluate a model on one or more difficulty instances and register the experiment.

    crafter-tui eval --model M --episodes N --difficulty easy,normal,hard --seed K --experiment NAME

plays one rollout per difficulty (the same seeds on each, so later comparisons are paired)
and stores the experiment (version v1.0, then v1.1, ... unless ``--version`` is given) under
``[storage] data_dir``/experiments. ``--runs DIR,DIR`` registers existing run folders instead
of playing. ``--list`` shows the registered experiments.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path

from crafter_tui.cli.common import config_from_args, non_negative_int, print_json
from crafter_tui.cli.progress import RolloutProgress
from crafter_tui.cli.rollout import add_rollout_arguments, binding_from_args, cost_gate, failure_exit, print_notes
from crafter_tui.errors import UserError
from crafter_tui.evaluation.experiments import NAME_PATTERN, Experiment
from crafter_tui.rollout.events import RunFinished
from crafter_tui.services.evaluation import EvalFinished, EvalInstanceStarted, EvalRequest, EvalRolloutEvent, \
    EvaluationService
from crafter_tui.services.model_cards import serving
from crafter_tui.traces.schema import FAILED_TERMINATIONS
from crafter_tui.world.difficulty import PRESETS


def difficulty_list(text: str) -> list[str]:
    """argparse type: comma-separated difficulty presets, each once."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in PRESETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown difficulty {', '.join(unknown) or repr(text)}; choose from {', '.join(PRESETS)}")
    return list(dict.fromkeys(names))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a model on difficulty instances and register an experiment",
        description="Play one rollout per difficulty instance (same seeds) and register the runs as a named, "
        "versioned experiment for 'crafter-tui compare'.", conflict_handler="resolve")
    add_rollout_arguments(parser)
    parser.add_argument("--difficulty", "--instances", dest="difficulty", type=difficulty_list, default=None,
                        help="comma-separated difficulty instances, e.g. easy,normal,hard (default [eval] difficulty)")
    parser.add_argument("--experiment", default=None, help="experiment name (letters, digits, '.', '_', '-')")
    parser.add_argument("--version", dest="exp_version", default=None, metavar="VERSION",
                        help="version label (default: next of v1.0, v1.1, ...)")
    parser.add_argument("--training-data", default=None, help="the SFT file the model was trained on (hashed)")
    parser.add_argument("--notes", default=None, metavar="TEXT",
                        help="this version's changelog entry: what changed since the last version (shown by "
                        "--list and in compare reports)")
    parser.add_argument("--epochs", type=non_negative_int, default=None, help="training epochs of the model")
    parser.add_argument("--runs", default=None, metavar="DIR[,DIR]",
                        help="register existing run folders instead of playing episodes")
    parser.add_argument("--list", action="store_true", help="list registered experiments and exit")
    parser.add_argument("--json", action="store_true", help="print the registered experiment as JSON")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args)
    if not args.experiment:
        raise UserError("name the experiment", where="--experiment")
    import re

    if not re.match(NAME_PATTERN, args.experiment):
        raise UserError("use letters, digits, '.', '_' or '-' (at most 100)", where="--experiment")
    if args.resume or args.run_id:
        raise UserError("eval names its runs itself (EXPERIMENT-VERSION-DIFFICULTY); resume with "
                        "'crafter-tui rollout --resume RUN' and register with 'eval --runs'", where="--resume/--run-id")
    if args.runs:
        return _register_runs(args)
    difficulties = args.difficulty
    args.difficulty = None  # the shared rollout flags take one difficulty; eval sets it per instance
    binding = binding_from_args(args)
    print_notes(binding, quiet=args.quiet or args.json)
    spec, config = binding.spec, binding.config
    cost_gate(binding, args.yes, spec.episodes * len(difficulties or [spec.difficulty]))
    request = EvalRequest(experiment=args.experiment, spec=spec, difficulties=difficulties or [spec.difficulty],
                          version=args.exp_version, training_data=args.training_data, epochs=args.epochs,
                          notes=args.notes)

    async def play() -> Experiment:
        async with serving(binding):
            return await _run(EvaluationService(config), request, quiet=args.quiet or args.json)

    experiment = asyncio.run(play())
    _record_costs(experiment, spec)
    _report(experiment, args.json)
    failed = [e for e in experiment.episodes if e.termination in FAILED_TERMINATIONS]
    first = f"seed {failed[0].seed}: {failed[0].termination}" if failed else None
    return failure_exit(len(experiment.episodes), dict(Counter(e.termination for e in failed)), first, config)


def _record_costs(experiment: Experiment, spec) -> None:  # noqa: ANN001
    """Each instance's run folder gets ``cost.json``: its estimate next to its actual tokens (priced models)."""
    from crafter_tui.cli.rollout import write_cost
    from crafter_tui.services.cost import estimate_run_cost

    for run_dir in experiment.runs:
        episodes = [e for e in experiment.episodes if e.run_dir == run_dir]
        instance = episodes[0].instance if episodes else spec.difficulty
        estimate = estimate_run_cost(spec.model_copy(update={"difficulty": instance}))
        if estimate is not None:
            write_cost(Path(run_dir), estimate, sum(e.prompt_tokens or 0 for e in episodes),
                       sum(e.completion_tokens or 0 for e in episodes))


async def _run(service: EvaluationService, request: EvalRequest, *, quiet: bool) -> Experiment:
    progress: RolloutProgress | None = None
    experiment: Experiment | None = None
    enabled = not quiet and sys.stderr.isatty()
    async for event in service.run_eval(request):
        if isinstance(event, EvalInstanceStarted):
            if not quiet:
                print(f"[{event.index + 1}/{event.total}] {event.experiment}: difficulty {event.difficulty}",
                      file=sys.stderr)
            progress = RolloutProgress(enabled=enabled)
            progress.__enter__()
        elif isinstance(event, EvalRolloutEvent) and progress is not None:
            progress.on_event(event.event)
            if isinstance(event.event, RunFinished):
                progress.__exit__(None, None, None)
                progress = None
        elif isinstance(event, EvalFinished):
            experiment = event.experiment
    if progress is not None:
        progress.__exit__(None, None, None)
    if experiment is None:
        raise UserError("the evaluation ended without registering an experiment", where="eval")
    return experiment


def _register_runs(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    run_dirs = [Path(part.strip()) for part in args.runs.split(",") if part.strip()]
    service = EvaluationService(config)
    experiment = asyncio.run(service.register_runs(args.experiment, run_dirs, model=args.model,
                                                   version=args.exp_version, training_data=args.training_data,
                                                   epochs=args.epochs, notes=args.notes))
    _report(experiment, args.json)
    return 0


def _report(experiment: Experiment, as_json: bool) -> None:
    failed = [e for e in experiment.episodes if e.termination in FAILED_TERMINATIONS]
    scored = [e for e in experiment.episodes if e.termination not in FAILED_TERMINATIONS]
    if as_json:
        print_json(experiment.model_dump(mode="json", exclude={"episodes"})
                   | {"episode_count": len(experiment.episodes), "failed_episodes": len(failed)})
        return
    counts = [e.num_achievements for e in scored]
    mean = sum(counts) / len(counts) if counts else None
    print(f"registered experiment {experiment.name} {experiment.version}: model {experiment.model}, "
          f"{len(counts)} episodes on {', '.join(experiment.instances) or 'no instances'}"
          + (f", {mean:.2f} achievements/episode" if mean is not None else " (no finished episodes)")
          + (f"; {len(failed)} failed episode(s) left out" if failed else "")
          + f" -> {experiment.source}")


def _list(args: argparse.Namespace) -> int:
    service = EvaluationService(config_from_args(args))
    infos = asyncio.run(service.list_experiments())
    if args.json:
        print_json([info.model_dump(mode="json") for info in infos])
        return 0
    if not infos:
        print(f"no experiments registered under {service.registry.root}")
    for info in infos:
        print(f"{info.name:30} {info.version:8} {info.model:30} {info.episodes:6} episodes  "
              f"{','.join(info.instances)}")
        for entry in info.changelog:
            print(f"    {entry['version']:8} {entry['created_at']}  {entry['notes']}")
    return 0
