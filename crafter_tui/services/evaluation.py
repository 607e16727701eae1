"""Evaluation as a service both front ends call: run and register experiments, compare, export.

Blocking work (reading traces, statistics, drawing charts) runs in a worker thread, so the
console stays responsive; the CLI calls the same methods through ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from crafter_tui.config import AppConfig, Difficulty
from crafter_tui.errors import UserError
from crafter_tui.evaluation.analyses import rule_violations_per_turn, step_waste_by_episode
from crafter_tui.evaluation.compare import DEFAULT_METRICS, CompareOptions, Comparison, compare_experiments
from crafter_tui.evaluation.custom_metrics import load_custom_metrics
from crafter_tui.evaluation.episodes import read_run
from crafter_tui.evaluation.experiments import (
    Experiment,
    ExperimentRegistry,
    experiment_from_runs,
    next_version,
    resolve_experiments,
    training_data_for,
)
from crafter_tui.rollout.events import RolloutEvent
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.traces.jsonl import write_bytes_atomic
from crafter_tui.traces.schema import FAILED_TERMINATIONS

ReportFormat = Literal["html", "md", "json"]


class ExperimentInfo(BaseModel):
    """One line of the experiment list."""

    name: str
    version: str
    versions: int
    model: str
    episodes: int
    instances: list[str]
    created_at: datetime
    changelog: list[dict[str, str]] = []  # every version with notes, oldest first: {version, created_at, notes}


class EvalRequest(BaseModel):
    """``crafter-tui eval``: play a rollout per difficulty and register the runs as an experiment."""

    experiment: str
    spec: RolloutSpec  # agent, model, episodes, seed, limits, out_dir (difficulty set per instance)
    difficulties: list[Difficulty] = Field(min_length=1)
    version: str | None = None
    training_data: str | None = None
    epochs: int | None = Field(None, ge=0)
    notes: str | None = Field(None, max_length=2000, description="this version's changelog entry")


class EvalInstanceStarted(BaseModel):
    kind: Literal["instance_started"] = "instance_started"
    experiment: str
    difficulty: str
    index: int
    total: int


class EvalRolloutEvent(BaseModel):
    kind: Literal["rollout"] = "rollout"
    difficulty: str
    event: RolloutEvent


class EvalFinished(BaseModel):
    kind: Literal["eval_finished"] = "eval_finished"
    experiment: Experiment


EvalEvent = EvalInstanceStarted | EvalRolloutEvent | EvalFinished


#: Comparison metrics whose per-episode values are read from the runs' step lines.
STEP_METRICS = ("time_efficiency", "rule_understanding")


def step_metric_values(experiments: Sequence[Experiment],
                       metrics: Sequence[str]) -> dict[str, dict[str, list[float | None]]]:
    """``time_efficiency`` (wasted actions) and ``rule_understanding`` (rule violations per turn) per episode,
    from each experiment's step lines, one read per run (None where the steps are not at hand)."""
    wanted = [name for name in STEP_METRICS if name in metrics]
    out: dict[str, dict[str, list[float | None]]] = {}
    for experiment in experiments:
        run_dirs = sorted({e.run_dir for e in experiment.episodes if e.run_dir})
        waste = step_waste_by_episode(read_run(Path(path)) for path in run_dirs if Path(path).is_dir())
        columns: dict[str, list[float | None]] = {name: [] for name in wanted}
        for episode in experiment.episodes:
            key = (episode.run_dir or "", episode.episode if episode.episode is not None else -1)
            found = waste.get(key)
            if "time_efficiency" in columns:
                columns["time_efficiency"].append(float(found.wasted) if found else None)
            if "rule_understanding" in columns:
                columns["rule_understanding"].append(
                    rule_violations_per_turn(episode.invalid_actions or 0, found, episode.turns or 0)
                    if found is not None and episode.invalid_actions is not None else None)
        out[experiment.name] = columns
    return out


def build_comparison(experiments: Sequence[Experiment], config: AppConfig, *, baseline: str | None = None,
                     metrics: Sequence[str] | None = None, seed: int = 0) -> Comparison:
    """The comparison with the configured custom metrics, alpha and resamples."""
    custom = load_custom_metrics(config.evaluation.custom_metrics)
    chosen = list(metrics) if metrics else list(DEFAULT_METRICS)
    extra = step_metric_values(experiments, chosen) if set(STEP_METRICS) & set(chosen) else None
    options = CompareOptions(baseline=baseline, metrics=chosen, alpha=config.evaluation.alpha,
                             resamples=config.evaluation.resamples, seed=seed)
    return compare_experiments(experiments, options, custom=custom, extra_values=extra)


def render_report(comparison: Comparison, fmt: ReportFormat) -> str:
    """The comparison as HTML, Markdown or JSON text."""
    if fmt == "html":
        from crafter_tui.evaluation.report_html import render_html

        return render_html(comparison)
    if fmt == "md":
        from crafter_tui.evaluation.report_md import render_markdown

        return render_markdown(comparison)
    return comparison.model_dump_json(indent=2) + "\n"


def write_report(comparison: Comparison, path: Path, fmt: ReportFormat) -> Path:
    """Write the report; the folder is created, an existing file replaced whole."""
    text = render_report(comparison, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, text.encode("utf-8"))
    return path


def _resume_if_started(spec: RolloutSpec, run_id: str) -> RolloutSpec:
    """An eval interrupted before it registered left its run folder: finish that run (same
    seeds, only the unfinished episodes) instead of failing on the existing folder."""
    record_path = spec.out_dir / run_id / "run.json"
    if not record_path.is_file():
        return spec
    from crafter_tui.rollout.writer import load_run_record

    record = load_run_record(spec.out_dir / run_id)
    if record.model != spec.model or record.agent != spec.agent:
        raise UserError(f"run folder {run_id!r} already exists for {record.agent}/{record.model}, not "
                        f"{spec.agent}/{spec.model}; choose another --experiment or --version",
                        where=str(spec.out_dir / run_id))
    return spec.model_copy(update={"resume": run_id})


class EvaluationService:
    """Experiments and comparisons for the comparison screen and the CLI."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.registry = ExperimentRegistry(config.storage.data_dir)

    async def list_experiments(self) -> list[ExperimentInfo]:
        """Registered experiments (latest version of each)."""
        def collect() -> list[ExperimentInfo]:
            infos = []
            for name in self.registry.names():
                versions = self.registry.versions(name)
                latest = versions[-1]
                infos.append(ExperimentInfo(name=name, version=latest.version, versions=len(versions),
                                            model=latest.model, episodes=len(latest.episodes),
                                            instances=latest.instances, created_at=latest.created_at,
                                            changelog=[{"version": v.version, "created_at": f"{v.created_at:%Y-%m-%d}",
                                                        "notes": v.notes} for v in versions if v.notes]))
            return infos

        return await asyncio.to_thread(collect)

    async def load(self, spec: str) -> list[Experiment]:
        """Experiments named by a file, a trace folder or NAME[@VERSION][,NAME...]."""
        return await asyncio.to_thread(resolve_experiments, spec, self.registry)

    async def compare(self, names: Sequence[str] | str, baseline: str | None = None,
                      metrics: Sequence[str] | None = None, seed: int = 0) -> Comparison:
        """Compare registered (or file/folder) experiments; the first is the baseline unless named."""
        specs = [names] if isinstance(names, str) else list(names)

        def work() -> Comparison:
            experiments = [e for spec in specs for e in resolve_experiments(spec, self.registry)]
            return build_comparison(experiments, self.config, baseline=baseline, metrics=metrics, seed=seed)

        return await asyncio.to_thread(work)

    async def compare_experiments(self, experiments: Sequence[Experiment], baseline: str | None = None,
                                  metrics: Sequence[str] | None = None, seed: int = 0) -> Comparison:
        return await asyncio.to_thread(build_comparison, experiments, self.config, baseline=baseline,
                                       metrics=metrics, seed=seed)

    async def export_report(self, comparison: Comparison, path: Path, fmt: ReportFormat = "html") -> Path:
        return await asyncio.to_thread(write_report, comparison, path, fmt)

    async def register_runs(self, name: str, run_dirs: Sequence[Path], *, model: str | None = None,
                            version: str | None = None, training_data: str | None = None,
                            epochs: int | None = None, notes: str | None = None) -> Experiment:
        """Register existing run folders as an experiment (no episodes are played).

        An experiment whose every episode failed is refused: it has nothing to measure, and registered
        it would read as a model that scores nothing. Some failed episodes are kept, marked by their
        termination, and every comparison leaves them out and says so."""
        def work() -> Experiment:
            for path in run_dirs:
                if not path.is_dir():
                    raise UserError("no such run folder", where=str(path))
            experiment = experiment_from_runs(name, list(run_dirs), model=model, epochs=epochs,
                                              training_data=training_data_for(training_data), notes=notes)
            failed = [e for e in experiment.episodes if e.termination in FAILED_TERMINATIONS]
            if failed and len(failed) == len(experiment.episodes):
                causes = Counter(e.termination for e in failed)
                raise UserError(f"every episode failed ({', '.join(f'{k} {v}' for k, v in sorted(causes.items()))}); "
                                f"experiment {name!r} was not registered. Fix the cause, then resume the runs "
                                f"('crafter-tui rollout --resume RUN') and register them with 'eval --runs'",
                                where=", ".join(str(path) for path in run_dirs))
            return self.registry.save(experiment, version=version)

        return await asyncio.to_thread(work)

    async def run_eval(self, request: EvalRequest) -> AsyncIterator[EvalEvent]:
        """Play one rollout per difficulty instance, then register the experiment."""
        from crafter_tui.services.rollouts import RolloutService

        existing = await asyncio.to_thread(self.registry.versions, request.experiment)
        version = request.version or next_version([e.version for e in existing])
        if any(e.version == version for e in existing):
            raise UserError(f"experiment {request.experiment!r} already has version {version}", where="--version")
        service = RolloutService(self.config)
        run_dirs: list[Path] = []
        for index, difficulty in enumerate(request.difficulties):
            yield EvalInstanceStarted(experiment=request.experiment, difficulty=difficulty, index=index,
                                      total=len(request.difficulties))
            run_id = f"{request.experiment}-{version}-{difficulty}"
            spec = request.spec.model_copy(update={"difficulty": difficulty, "run_id": run_id,
                                                   "experiment": request.experiment, "resume": None})
            spec = _resume_if_started(spec, run_id)
            async for event in service.run(spec):
                yield EvalRolloutEvent(difficulty=difficulty, event=event)
            run_dirs.append(spec.out_dir / run_id)
        experiment = await self.register_runs(
            request.experiment, run_dirs, model=request.spec.model, version=version,
            training_data=request.training_data, epochs=request.epochs, notes=request.notes)
        yield EvalFinished(experiment=experiment)
