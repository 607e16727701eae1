"""``crafter-tui demo``: the closed loop offline, from nothing, with the recipe that works.

The demo is the pipeline with a fixed recipe and a private work folder: scripted-expert
rollouts on training seeds, every turn exported as a chat example, a built-in model trained
through our own fine-tune service (started here on a free loopback port and stopped after),
that model played through the same OpenAI-compatible agent any model uses, on held-out seeds,
next to the random baseline and the expert, and the comparison report. The recipe's numbers
are in docs/recipe.md (the README shows its headline).
"""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import BaseModel

from crafter_tui.config import AppConfig, ObservationFormat
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.evaluation.compare import Comparison
from crafter_tui.finetune.local_service import running_local_service
from crafter_tui.services.pipeline import (
    PipelineEvent, PipelineFinished, PipelineService, PipelineSpec, PipelineState, final_model,
)

PREFIX = "demo"


class Recipe(BaseModel):
    """The knobs of the data recipe that docs/recipe.md documents."""

    data_episodes: int
    model: str
    epochs: int
    learning_rate: float | None = None
    batch_size: int | None = None
    eval_episodes: int
    history_turns: int = 0
    max_steps: int = 300
    observation: ObservationFormat = "brief"
    drop_reasoning: bool = True
    eval_max_tokens: int = 64  # an interact call without reasoning is ~15 tokens
    balance_actions: bool = True  # cap over-represented first actions (waiting out nights dominates)
    keep_before_achievement: int | None = None  # every turn: exploring and surviving are worth copying too
    eval_temperature: float = 0.7  # sample the learned distribution (0.85 and 1.0 did no better on validation seeds)
    dagger_rounds: int = 0  # student plays, the expert labels its turns, retrain on the aggregate
    dagger_episodes: int = 20
    dagger_beta: float = 0.0
    dagger_epochs: int | None = None
    eval_seed: int = 0  # held-out seeds 0..; the recipe is chosen on validation seeds 100..139
    #: Torch threads of the trainer. The demo has the machine to itself while it trains, and two threads
    #: at batch 16 process more tokens per second than one at batch 8 (benchmarks/README.md); fixed
    #: rather than taken from the machine so a demo replays alike on any number of cores.
    trainer_threads: int | None = None


#: Sized so the whole demo fits in ten minutes on a 2-core CPU (benchmarks/README.md has its wall
#: time); a brief observation without reasoning keeps an example short.
#: Why sampling: greedy decoding of a behaviour-cloned tiny model collapses onto its most
#: frequent reply (walking one way, ``do`` forever); sampling its own distribution keeps what it
#: learned and explores.
#: Why DAgger at beta 0.7: the expert executes most turns, so the student's states stay near the
#: expert's path (tables, tools) while its mistakes get labelled; at beta 0 the labels are mostly
#: thirsty, hungry and besieged states. The first model only drives the student's episodes (one
#: epoch); the final one trains on both sets (two). The held-out figure is played on 40 seeds, not
#: 20: one trained model's figure moves several points on the sampling draw alone, so variants are
#: compared on validation seeds 100..139 with several sets of expert episodes. Every part of the
#: recipe (the observation's ``can`` line, its order, the first steps in ``near``) and every variant
#: tried, with its figures: docs/recipe.md.
FULL = Recipe(data_episodes=150, model="crafter-tiny", epochs=1, batch_size=16, learning_rate=4e-4,
              eval_episodes=40, dagger_rounds=1, dagger_episodes=75, dagger_beta=0.7, dagger_epochs=2,
              trainer_threads=2)
#: 16 evaluation episodes, not 8: 8 paired episodes cannot show a significant gain over random
#: unless every one of them improves, and an 8-episode figure swings with the sampling draw.
QUICK = Recipe(data_episodes=60, model="crafter-tiny", epochs=2, eval_episodes=16, max_steps=150)


class Headline(BaseModel):
    """What the demo ends with (and ``--json`` prints)."""

    trained_model: str
    trained_progression: float | None
    random_progression: float | None
    expert_progression: float | None
    trained_crafter_score: float | None
    p_value_vs_random: float | None
    underpowered_vs_random: bool | None
    report: Path
    workdir: Path


#: The student's DAgger episodes play seeds 20000.. (data 10000.., validation 100..139, held-out 0..).
DAGGER_SEED = 20_000


def demo_spec(workdir: Path, recipe: Recipe) -> PipelineSpec:
    return PipelineSpec(
        workdir=workdir, data_agent="scripted", data_model="scripted-expert", data_episodes=recipe.data_episodes,
        # data_workers stays at its default of one process: its episodes interleave in the same order every
        # run, so the exported examples (in trace-file order) and the trained model replay; two workers
        # saved ~5 s but shuffled them
        data_seed=10_000, max_steps=recipe.max_steps,
        history_turns=recipe.history_turns,
        observation=recipe.observation,
        filter=FilterSpec(mode="turn", drop_reasoning=recipe.drop_reasoning, balance_actions=recipe.balance_actions,
                          keep_before_achievement=recipe.keep_before_achievement),
        backend="local", models=[recipe.model], epochs=recipe.epochs,
        batch_size=recipe.batch_size, learning_rate=recipe.learning_rate, eval_episodes=recipe.eval_episodes,
        eval_max_tokens=recipe.eval_max_tokens, eval_temperature=recipe.eval_temperature,
        dagger_rounds=recipe.dagger_rounds, dagger_episodes=recipe.dagger_episodes, dagger_seed=DAGGER_SEED,
        dagger_beta=recipe.dagger_beta, dagger_epochs=recipe.dagger_epochs,
        eval_seed=recipe.eval_seed, baselines=["random", "scripted"], experiment_prefix=PREFIX)


def demo_config(config: AppConfig, workdir: Path, port: int, *, trainer_threads: int | None = None) -> AppConfig:
    """The user's settings, with every file and the service kept inside the demo's folder (and the
    recipe's trainer threads, when it names them)."""
    config = config.model_copy(deep=True)
    if trainer_threads is not None:
        config.finetune.threads = trainer_threads
    config.storage.data_dir = workdir / ".crafter_tui"
    config.output.trace_dir = workdir / "traces"
    config.finetune.local_url = f"http://127.0.0.1:{port}/v1"
    config.finetune.local_token = None
    return config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _saved_port(workdir: Path) -> int | None:
    path = workdir / "service.port"
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def headline(result: PipelineFinished, trained_model: str, workdir: Path) -> Headline:
    comparison: Comparison = result.comparison
    by_name = {e.name: e for e in comparison.experiments}
    random_name, expert_name = f"{PREFIX}-random", f"{PREFIX}-expert"
    trained_name = next(name for name in result.experiments if name not in (random_name, expert_name))
    pair = next((p for p in comparison.pairs if p.baseline == random_name and p.candidate == trained_name), None)
    metric = next((m for m in pair.metrics if m.metric == "achievements"), None) if pair else None
    return Headline(
        trained_model=trained_model,
        trained_progression=by_name[trained_name].progression,
        random_progression=by_name[random_name].progression,
        expert_progression=by_name[expert_name].progression,
        trained_crafter_score=by_name[trained_name].crafter_score,
        p_value_vs_random=metric.p_permutation if metric else None,
        underpowered_vs_random=metric.underpowered if metric else None,
        report=result.report, workdir=workdir)


async def run_demo(config: AppConfig, workdir: Path, recipe: Recipe,
                   on_event=lambda event: None) -> Headline:
    """Run (or resume) the demo in ``workdir`` and return its headline numbers."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = demo_spec(workdir, recipe)
    PipelineState(workdir).adopt(spec)  # a folder of other settings is refused before anything starts
    port = _saved_port(workdir) or free_port()
    (workdir / "service.port").write_text(str(port))
    user_data_dir = config.storage.data_dir
    config = demo_config(config, workdir, port, trainer_threads=recipe.trainer_threads)
    final: PipelineFinished | None = None
    async with running_local_service(config):
        event: PipelineEvent
        async for event in PipelineService(config).run(spec):
            on_event(event)
            if isinstance(event, PipelineFinished):
                final = event
    if final is None:
        raise RuntimeError("the demo pipeline ended without a result")
    share_models(config.storage.data_dir, user_data_dir)
    stages = PipelineState(workdir).stages
    return headline(final, final_model(spec, stages, recipe.model), workdir)


def share_models(demo_data_dir: Path, user_data_dir: Path) -> None:
    """Register the demo's models in the user's job registry too (with the folder of the service that serves
    them), so ``crafter-tui rollout --model ft:...`` from where the demo was started plays them as their cards
    say, starting the demo's service when needed."""
    from crafter_tui.finetune.registry import JobRegistry

    if demo_data_dir.resolve() == user_data_dir.resolve():
        return
    user = JobRegistry.from_data_dir(user_data_dir)
    for entry in JobRegistry.from_data_dir(demo_data_dir).all():
        if entry.fine_tuned_model:
            user.save(entry)
