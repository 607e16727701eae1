"""``crafter-tui rollout``: play episodes with an agent and record every step."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from crafter_tui.cli.common import add_config_flag, config_from_args, positive_int, print_json
from crafter_tui.cli.progress import RolloutProgress
from crafter_tui.config import NON_LLM_MODELS, AgentKind, AppConfig, ObservationFormat
from crafter_tui.errors import UserError, first_validation_error
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.evaluation.run_stats import failure_problem
from crafter_tui.services.model_cards import Binding, bind_model, bind_resume, serving
from crafter_tui.services.rollouts import RunResult, run_rollout
from crafter_tui.world.difficulty import PRESETS



def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollout", help="play episodes with an agent and record traces",
        description="Play Crafter episodes (seeds seed, seed+1, ...) and write a run folder of traces. "
        "Giving only --model (the original guide's spelling) selects the openai agent.")
    add_rollout_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object with the results")
    parser.set_defaults(handler=handle)


def add_rollout_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``rollout`` and ``eval``."""
    parser.add_argument("--agent", choices=get_args(AgentKind), default=None,
                        help="dagger: the --model at --base-url plays while the scripted expert labels every turn "
                        "(it executes a turn with probability [eval] expert_beta)")
    parser.add_argument("--model", default=None, help="model name (opaque; sent as is to the endpoint)")
    parser.add_argument("--episodes", type=positive_int, default=None)
    parser.add_argument("--max-turns", type=positive_int, default=None, help="agent decisions per episode")
    parser.add_argument("--max-steps", type=positive_int, default=None, help="env steps per episode")
    parser.add_argument("--difficulty", choices=list(PRESETS), default=None)
    parser.add_argument("--seed", type=int, default=None, help="first seed (episode i plays seed+i)")
    parser.add_argument("--concurrency", type=positive_int, default=None, help="episodes played at once")
    parser.add_argument("--episode-timeout", type=float, default=None, help="seconds per episode")
    parser.add_argument("--history-turns", type=int, default=None, help="past turns shown to an LLM")
    parser.add_argument("--observation", choices=get_args(ObservationFormat), default=None,
                        help="text observation format (compact, brief: for small models)")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--max-tokens", type=positive_int, default=None)
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint for the openai agent")
    parser.add_argument("--out", "--output-dir", dest="out", default=None, help="trace folder (default [output] trace_dir)")
    parser.add_argument("--run-id", default=None, help="name of the run folder (default: generated)")
    parser.add_argument("--resume", default=None, metavar="RUN", help="finish the unfinished episodes of RUN")
    parser.add_argument("--env", choices=["local", "remote"], default="local")
    parser.add_argument("--env-url", default=None, help="Crafter env service URL for --env remote")
    parser.add_argument("--workers", type=positive_int, default=1, help="local worker processes")
    parser.add_argument("--on", choices=["local", "modal"], default="local", help="where episodes run")
    parser.add_argument("--experiment", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="play a model trained here with flags that contradict its model card "
                        "(recorded in the run)")
    parser.add_argument("--max-failed-fraction", type=float, default=None, metavar="F",
                        help="exit non-zero when more than this fraction of episodes failed (default [eval] "
                        "max_failed_fraction, 0.1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--yes", "-y", action="store_true",
                        help="start without asking when the estimated cost is above [openai] confirm_above_usd")
    add_config_flag(parser)


def _agent_for(args: argparse.Namespace) -> str | None:
    if args.agent is not None or args.model is None:
        return args.agent
    return NON_LLM_MODELS.get(args.model, "openai")


def spec_from_args(args: argparse.Namespace) -> tuple[RolloutSpec, Any]:
    """The config (file < env < flags) and the rollout spec the flags describe."""
    agent = _agent_for(args)
    flags = {
        "eval": {"agent": agent, "model_name": args.model, "episodes": args.episodes,
                 "max_steps": args.max_steps, "max_turns": args.max_turns, "difficulty": args.difficulty,
                 "seed": args.seed, "concurrency": args.concurrency, "episode_timeout": args.episode_timeout,
                 "history_turns": args.history_turns, "observation": args.observation,
                 "temperature": args.temperature, "max_tokens": args.max_tokens,
                 "max_failed_fraction": args.max_failed_fraction},
        "openai": {"base_url": args.base_url},
        "output": {"trace_dir": args.out},
        "service": {"base_url": args.env_url},
    }
    config = config_from_args(args, flags)
    if config.eval.agent == "openai" and config.eval.model_name == "scripted-expert":
        raise UserError("the openai agent needs a model name", where="--model")
    if config.eval.agent == "dagger" and config.eval.model_name in NON_LLM_MODELS:
        raise UserError("the dagger agent needs the served model that plays (the scripted expert labels its "
                        "turns)", where="--model")
    try:
        spec = RolloutSpec.from_config(
            config, run_id=args.run_id, resume=args.resume, env=args.env,
            env_url=config.service.base_url if args.env == "remote" else None,
            workers=args.workers, on=args.on, experiment=args.experiment)
    except ValidationError as exc:
        raise _flag_error(exc) from None
    if spec.resume is None and spec.out_dir.exists() and not spec.out_dir.is_dir():
        raise UserError("exists and is not a folder", where=str(spec.out_dir))
    return spec, config


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user gave on the command line (what a model card or a resumed run is checked against)."""
    return {"agent": args.agent, "model": args.model, "episodes": args.episodes, "seed": args.seed,
            "max_steps": args.max_steps, "max_turns": args.max_turns, "difficulty": args.difficulty,
            "concurrency": args.concurrency, "episode_timeout": args.episode_timeout,
            "history_turns": args.history_turns, "observation": args.observation, "temperature": args.temperature,
            "max_tokens": args.max_tokens, "base_url": args.base_url}


def binding_from_args(args: argparse.Namespace) -> Binding:
    """The rollout the flags describe, with the model card of a model trained here applied (or, for
    ``--resume``, the recorded run's settings, any contradicting flag refused)."""
    spec, config = spec_from_args(args)
    if spec.resume:
        return bind_resume(spec, config, given_flags(args))
    return bind_model(spec, config, given_flags(args), allow_mismatch=args.allow_mismatch)


def _flag_error(exc: ValidationError) -> UserError:
    """A spec validation error, named by the flag that carries the field."""
    field, message = first_validation_error(exc, default_field="")
    return UserError(message, where="--" + field.replace("_", "-") if field else "rollout")


def handle(args: argparse.Namespace) -> int:
    binding = binding_from_args(args)
    print_notes(binding, quiet=args.quiet)
    estimate = cost_gate(binding, args.yes)
    progress = RolloutProgress(enabled=not (args.quiet or args.json) and sys.stderr.isatty())

    async def play() -> RunResult:
        async with serving(binding):
            return await run_rollout(binding.spec, binding.config, progress.on_event)

    with progress:
        result = asyncio.run(play())
    record_cost(result, estimate)
    if args.json:
        print_json(result_json(result))
    else:
        print_summary(result)
    stats = result.stats
    return failure_exit(stats.episodes + stats.failed, stats.failed_by_cause, stats.first_failure, binding.config)


def cost_gate(binding: Binding, yes: bool, episodes: int | None = None):  # noqa: ANN201 - RunCostEstimate | None
    """A priced model's estimated tokens and dollars, on stderr; above ``[openai] confirm_above_usd`` the user
    is asked first (``--yes`` skips)."""
    from crafter_tui.cli.finetune import confirm
    from crafter_tui.services.cost import estimate_run_cost, usd_text

    estimate = estimate_run_cost(binding.spec, episodes)
    if estimate is None:
        return None
    print(estimate.line(), file=sys.stderr)
    limit = binding.config.openai.confirm_above_usd
    if estimate.usd > limit:
        confirm(yes, question=f"That is above [openai] confirm_above_usd ({usd_text(limit)}). Start?",
                doing="starting", done="started")
    return estimate


def record_cost(result: RunResult, estimate) -> None:  # noqa: ANN001
    """``cost.json`` in the run folder: the estimate made before the run next to what it really used."""
    if estimate is not None:
        write_cost(result.run_dir, estimate, result.stats.prompt_tokens, result.stats.completion_tokens)


def write_cost(run_dir: Path, estimate, prompt_tokens: int, completion_tokens: int) -> None:  # noqa: ANN001
    from crafter_tui.services.cost import dollars
    from crafter_tui.traces.jsonl import write_json_atomic

    actual = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
              "usd": dollars(estimate.model, prompt_tokens, completion_tokens)}
    write_json_atomic(run_dir / "cost.json", {"estimate": estimate.model_dump(mode="json"), "actual": actual})


def print_notes(binding: Binding, *, quiet: bool) -> None:
    """What the model card changed, on stderr (where the model is played, how)."""
    if not quiet:
        for note in binding.notes:
            print(note, file=sys.stderr)


def failure_exit(total: int, failed_by_cause: dict[str, int], first_failure: str | None, config: AppConfig) -> int:
    """1, with the failures by cause on stderr, when the episodes could not do their job; else 0."""
    problem = failure_problem(total, failed_by_cause, first_failure, config.eval.max_failed_fraction)
    if problem is None:
        return 0
    print(f"crafter-tui: error: {problem}", file=sys.stderr)
    return 1


def result_json(result: RunResult) -> dict[str, Any]:
    stats = result.stats
    return {
        "run_id": result.run_id,
        "run_dir": str(result.run_dir),
        "agent": result.record.agent,
        "model": result.record.model,
        "difficulty": result.record.difficulty,
        **stats.model_dump(),
        "wall_s": result.wall_s,
    }


def print_summary(result: RunResult) -> None:
    from crafter_tui.cli.progress import render_run_summary

    render_run_summary(result)

