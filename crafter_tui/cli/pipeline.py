"""``crafter-tui pipeline``: the original guide's complete pipeline in one resumable command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import get_args

from pydantic import ValidationError

from crafter_tui.cli.common import add_config_flag, config_from_args, positive_int, print_json
from crafter_tui.cli.filter import add_shaping_flags
from crafter_tui.cli.pipeline_view import PipelineView
from crafter_tui.config import ObservationFormat
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.errors import UserError, first_validation_error
from crafter_tui.services.pipeline import PipelineFinished, PipelineService, PipelineSpec
from crafter_tui.world.difficulty import PRESETS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pipeline", help="rollouts -> filter -> fine-tune (one or more models) -> eval -> compare",
        description="Run the whole loop. Each finished stage is recorded in WORKDIR/pipeline.json; running the "
        "same command again resumes where it stopped (with other settings it is refused, naming what differs: "
        "the folder's results belong to the settings that made them).")
    parser.add_argument("--workdir", default="pipeline", help="folder for data, state and the report")
    parser.add_argument("--agent", choices=["scripted", "random", "openai"], default="scripted",
                        help="agent that plays the training episodes")
    parser.add_argument("--data-model", default=None, help="model for --agent openai")
    parser.add_argument("--episodes", type=positive_int, default=60, help="training episodes to play")
    parser.add_argument("--seed", type=int, default=10_000, help="first training seed")
    parser.add_argument("--max-steps", type=positive_int, default=300)
    parser.add_argument("--history-turns", type=int, default=0)
    parser.add_argument("--difficulty", choices=list(PRESETS), default="normal")
    parser.add_argument("--observation", choices=get_args(ObservationFormat), default=None,
                        help="text observation format of every rollout (default: full; brief for small models)")
    parser.add_argument("--min-achievements", type=int, default=None)
    parser.add_argument("--mode", choices=["turn", "trajectory"], default=None)
    add_shaping_flags(parser)
    parser.add_argument("--backend", choices=["openai", "synth", "modal", "local"], default="local")
    parser.add_argument("--models", default="crafter-small", help="base models to fine-tune, comma-separated")
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument("--batch-size", type=positive_int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--dagger-rounds", type=int, default=0,
                        help="after the first fine-tune: rounds of the tuned model playing while the scripted expert "
                        "labels its turns, then retraining on the expert and labelled turns together")
    parser.add_argument("--dagger-episodes", type=positive_int, default=20, help="student episodes per DAgger round")
    parser.add_argument("--dagger-seed", type=int, default=20_000,
                        help="first seed of the student episodes (kept away from the data and eval seeds)")
    parser.add_argument("--dagger-beta", type=float, default=0.0,
                        help="chance per turn of executing the expert's decision instead of the student's")
    parser.add_argument("--dagger-epochs", type=positive_int, default=None,
                        help="epochs of each retraining (default: --epochs)")
    parser.add_argument("--eval-episodes", type=positive_int, default=20)
    parser.add_argument("--eval-seed", type=int, default=0, help="first held-out seed")
    parser.add_argument("--eval-difficulty", default="normal", help="comma-separated difficulty instances")
    parser.add_argument("--eval-temperature", type=float, default=None,
                        help="sampling temperature of the tuned models (default: [eval] temperature)")
    parser.add_argument("--eval-max-tokens", type=positive_int, default=None, help="reply budget per turn")
    parser.add_argument("--baselines", default="random", help="comma-separated: random, scripted (or none)")
    parser.add_argument("--name", default="pipeline", help="prefix of run, job and experiment names")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-service", action="store_true",
                        help="--backend local: leave the fine-tune service the pipeline started running afterwards")
    parser.add_argument("--yes", "-y", action="store_true",
                        help="start without asking when the estimated LLM cost is above [openai] confirm_above_usd")
    add_config_flag(parser)
    parser.set_defaults(handler=handle)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def handle(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    baselines = [] if args.baselines.strip() in ("", "none") else _csv(args.baselines)
    selection = FilterSpec.from_section(config.filter, min_achievements=args.min_achievements, mode=args.mode,
                                        balance_actions=args.balance_actions, drop_reasoning=args.drop_reasoning,
                                        goal_reasoning=args.goal_reasoning)
    given = {name: value for name, value in (("observation", args.observation),
                                             ("eval_temperature", args.eval_temperature),
                                             ("eval_max_tokens", args.eval_max_tokens)) if value is not None}
    try:
        spec = PipelineSpec(**given,
            workdir=Path(args.workdir), data_agent=args.agent,
            data_model=args.data_model or {"scripted": "scripted-expert", "random": "random"}.get(args.agent, ""),
            data_episodes=args.episodes, data_seed=args.seed, max_steps=args.max_steps,
            history_turns=args.history_turns, difficulty=args.difficulty,
            filter=selection,
            backend=args.backend, models=_csv(args.models), epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, dagger_rounds=args.dagger_rounds, dagger_episodes=args.dagger_episodes,
            dagger_seed=args.dagger_seed, dagger_beta=args.dagger_beta, dagger_epochs=args.dagger_epochs,
            eval_episodes=args.eval_episodes, eval_seed=args.eval_seed,
            eval_difficulties=_csv(args.eval_difficulty), baselines=baselines, experiment_prefix=args.name)
    except ValidationError as exc:
        field, message = first_validation_error(exc, default_field="dagger_seed")  # the one whole-spec check
        raise UserError(message, where="--" + field.replace("_", "-").replace(".", "-")) from None
    _cost_gate(spec, config, args.yes)
    view = PipelineView(enabled=not args.json)
    result = asyncio.run(_with_service(PipelineService(config), spec, view, args.keep_service))
    if args.json:
        print_json({"report": str(result.report), "experiments": result.experiments,
                    "progression": {e.name: e.progression for e in result.comparison.experiments}})
    else:
        sys.stdout.write(f"Report: {result.report}\n")
    return 0


def _cost_gate(spec: PipelineSpec, config, yes: bool) -> None:  # noqa: ANN001
    """The priced LLM runs of the pipeline (an OpenAI model playing the training episodes; OpenAI-fine-tuned
    models playing the evaluation) estimated before anything starts, asked above the limit."""
    from crafter_tui.cli.finetune import confirm
    from crafter_tui.dataset.tokens import resolve_model
    from crafter_tui.services.cost import estimate_run_cost, usd_text
    from crafter_tui.rollout.spec import RolloutSpec

    runs = []
    common = {"max_steps": spec.max_steps, "observation": spec.observation, "difficulty": spec.difficulty}
    if spec.data_agent == "openai":
        runs.append(RolloutSpec(agent="openai", model=spec.data_model, episodes=spec.data_episodes,
                                seed=spec.data_seed, history_turns=spec.history_turns, **common))
    if spec.backend == "openai":  # the tuned models are billed at their base's fine-tuned rate
        episodes = spec.eval_episodes * len(spec.eval_difficulties)
        runs += [RolloutSpec(agent="openai", model=f"ft:{resolve_model(base)}:estimate", seed=spec.eval_seed,
                             episodes=episodes, history_turns=spec.history_turns, **common) for base in spec.models]
    estimates = [e for e in (estimate_run_cost(run) for run in runs) if e is not None]
    for estimate in estimates:
        print(estimate.line(), file=sys.stderr)
    total = sum(e.usd for e in estimates)
    if estimates and total > config.openai.confirm_above_usd:
        confirm(yes, question=f"{usd_text(total)} in all is above [openai] confirm_above_usd "
                f"({usd_text(config.openai.confirm_above_usd)}). Start?", doing="starting", done="started")


async def _with_service(service: PipelineService, spec: PipelineSpec, view: PipelineView,
                        keep: bool) -> PipelineFinished:
    """The pipeline; with ``--backend local`` inside the local service, started (and said so) when none runs and
    stopped afterwards unless ``keep``."""
    if spec.backend != "local":
        return await _run(service, spec, view)
    from crafter_tui.finetune.local_service import ensure_local_service, running_local_service

    if keep:
        url, started = await asyncio.to_thread(ensure_local_service, service.config)
        if started:
            print(f"started the local fine-tune service at {url}; it keeps running: stop it with "
                  "'crafter-tui serve --stop'", file=sys.stderr)
        return await _run(service, spec, view)
    async with running_local_service(service.config) as (url, started):
        if started:
            print(f"started the local fine-tune service at {url} for the pipeline; it is stopped when the pipeline "
                  "ends (--keep-service leaves it running)", file=sys.stderr)
        return await _run(service, spec, view)


async def _run(service: PipelineService, spec: PipelineSpec, view: PipelineView) -> PipelineFinished:
    final = None
    async for event in service.run(spec):
        view.on_event(event)
        if isinstance(event, PipelineFinished):
            final = event
    if final is None:
        raise RuntimeError("the pipeline ended without a result")
    return final
