"""The whole loop as one resumable pipeline: rollouts -> filter/export -> fine-tune -> eval -> compare.

Each stage records what it produced in ``<workdir>/pipeline.json`` as soon as it finishes, so
running the same pipeline again skips finished stages, resumes an interrupted rollout from
its unfinished episodes and re-attaches to a fine-tune job that is still running. The stages
only call the other services; nothing here plays, filters, trains or compares by itself.
``crafter-tui pipeline`` and ``crafter-tui demo`` are two front doors to this one service.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crafter_tui.config import AgentKind, AppConfig, Difficulty, ObservationFormat
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.errors import UserError
from crafter_tui.evaluation.compare import Comparison
from crafter_tui.rollout.events import EpisodeFinished, RunStarted
from crafter_tui.rollout.runner import RETRIED_ON_RESUME
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.traces.jsonl import write_json_atomic

STATE_FILE = "pipeline.json"
Baseline = Literal["random", "scripted"]


class PipelineSpec(BaseModel):
    """Everything the pipeline does, fixed up front (and stored with its state)."""

    model_config = ConfigDict(extra="forbid")

    workdir: Path
    # 1. data
    data_agent: AgentKind = "scripted"
    data_model: str = "scripted-expert"
    data_episodes: int = Field(60, ge=1)
    data_seed: int = Field(10_000, ge=0)
    max_steps: int = Field(300, ge=1)
    history_turns: int = Field(0, ge=0, le=64)
    observation: ObservationFormat = "full"
    difficulty: Difficulty = "normal"
    concurrency: int = Field(8, ge=1)
    data_workers: int = Field(1, ge=1, le=256, description="processes for the data rollouts (--workers)")
    # 2. selection
    filter: FilterSpec = Field(default_factory=FilterSpec)
    # 3. fine-tuning
    backend: Literal["openai", "synth", "modal", "local"] = "local"
    models: list[str] = Field(default_factory=lambda: ["crafter-small"], min_length=1)
    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    learning_rate: float | None = Field(None, gt=0)
    # 4. evaluation (held-out seeds: keep them away from the data seeds)
    eval_episodes: int = Field(20, ge=1)
    eval_seed: int = Field(0, ge=0)
    eval_difficulties: list[Difficulty] = Field(default_factory=lambda: ["normal"], min_length=1)
    eval_concurrency: int = Field(4, ge=1)
    eval_max_tokens: int = Field(128, ge=8, description="reply budget per turn: an interact call needs ~15-100")
    eval_temperature: float | None = Field(None, ge=0.0, le=2.0,
                                           description="sampling temperature of the tuned models (None: [eval])")
    baselines: list[Baseline] = Field(default_factory=list)
    experiment_prefix: str = Field("pipeline", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$")
    # 5. report
    report_format: Literal["html", "md", "json"] = "html"


class StageStarted(BaseModel):
    kind: Literal["stage_started"] = "stage_started"
    stage: str
    detail: str = ""


class StageProgress(BaseModel):
    kind: Literal["stage_progress"] = "stage_progress"
    stage: str
    done: float
    total: float | None = None
    message: str = ""


class StageFinished(BaseModel):
    kind: Literal["stage_finished"] = "stage_finished"
    stage: str
    skipped: bool = False  # already done by an earlier run of the pipeline
    result: dict[str, Any] = Field(default_factory=dict)
    wall_s: float = 0.0


class PipelineFinished(BaseModel):
    kind: Literal["pipeline_finished"] = "pipeline_finished"
    report: Path
    experiments: list[str]
    comparison: Comparison


PipelineEvent = StageStarted | StageProgress | StageFinished | PipelineFinished


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.split("/")[-1]).strip("-")[:40] or "model"


class PipelineState:
    """What each finished stage produced, persisted after every stage."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / STATE_FILE
        self.stages: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                self.stages = json.loads(self.path.read_text(encoding="utf-8")).get("stages", {})
            except (json.JSONDecodeError, AttributeError) as exc:
                raise UserError(f"pipeline state is corrupt ({exc}); remove it to start over",
                                where=str(self.path)) from None

    def done(self, stage: str) -> dict[str, Any] | None:
        entry = self.stages.get(stage)
        return entry if entry and entry.get("finished") else None

    def save(self, stage: str, **values: Any) -> None:
        self.stages[stage] = {**self.stages.get(stage, {}), **values}
        write_json_atomic(self.path, {"stages": self.stages})


class PipelineService:
    """Runs a ``PipelineSpec`` stage by stage, yielding typed events."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config

    async def run(self, spec: PipelineSpec) -> AsyncIterator[PipelineEvent]:
        spec.workdir.mkdir(parents=True, exist_ok=True)
        state = PipelineState(spec.workdir)
        run_dir: Path | None = None
        async for event in self._rollout(spec, state):
            yield event
        run_dir = Path(state.stages["rollout"]["run_dir"])
        async for event in self._export(spec, state, run_dir):
            yield event
        data = Path(state.stages["export"]["path"])
        experiments: list[str] = []
        for baseline in spec.baselines:
            async for event in self._eval_baseline(spec, state, baseline):
                yield event
            experiments.append(state.stages[f"eval:{baseline}"]["experiment"])
        for model in spec.models:
            async for event in self._finetune(spec, state, model, data):
                yield event
            tuned = state.stages[f"finetune:{model}"]["fine_tuned_model"]
            async for event in self._eval_tuned(spec, state, model, tuned, data):
                yield event
            experiments.append(state.stages[f"eval:{model}"]["experiment"])
        async for event in self._compare(spec, state, experiments):
            yield event

    # -- stages ----------------------------------------------------------------------------------
    async def _rollout(self, spec: PipelineSpec, state: PipelineState) -> AsyncIterator[PipelineEvent]:
        from crafter_tui.services.rollouts import RolloutService

        stage = "rollout"
        if state.done(stage):
            yield StageFinished(stage=stage, skipped=True, result=state.stages[stage])
            return
        clock = time.perf_counter()
        partial = state.stages.get(stage, {})
        rollout = RolloutSpec(
            agent=spec.data_agent, model=spec.data_model, episodes=spec.data_episodes, seed=spec.data_seed,
            max_steps=spec.max_steps, difficulty=spec.difficulty, concurrency=spec.concurrency,
            workers=spec.data_workers,
            history_turns=spec.history_turns, observation=spec.observation, out_dir=self.config.output.trace_dir,
            run_id=None if partial.get("run_id") else f"{spec.experiment_prefix}-data",
            resume=partial.get("run_id"))
        yield StageStarted(stage=stage, detail=f"{spec.data_episodes} {spec.data_agent} episodes, "
                           f"seeds {spec.data_seed}..{spec.data_seed + spec.data_episodes - 1}")
        finished, played, failures = 0, 0, []
        async for event in RolloutService(self.config).run(rollout):
            if isinstance(event, RunStarted):
                state.save(stage, run_id=event.run_id, run_dir=str(event.run_dir), finished=False)
                finished = event.episodes - event.pending
            elif isinstance(event, EpisodeFinished):
                finished, played = finished + 1, played + 1
                if event.summary.termination in RETRIED_ON_RESUME:
                    failures.append(event.summary)
                yield StageProgress(stage=stage, done=finished, total=spec.data_episodes,
                                    message=f"episode {event.summary.seed}: {event.summary.num_achievements} "
                                            "achievements")
        if played and len(failures) == played:
            first = failures[0]
            raise UserError(f"every data episode failed ({first.termination}; first, seed {first.seed}: "
                            f"{first.error}); fix the cause and run again to replay them", where="pipeline rollout")
        state.save(stage, finished=True)
        yield StageFinished(stage=stage, result=state.stages[stage], wall_s=time.perf_counter() - clock)

    async def _export(self, spec: PipelineSpec, state: PipelineState, run_dir: Path) -> AsyncIterator[PipelineEvent]:
        from crafter_tui.services.dataset import DatasetService, ExportDone, ExportProgress
        from crafter_tui.services.traces import TraceService

        stage = "export"
        if state.done(stage):
            yield StageFinished(stage=stage, skipped=True, result=state.stages[stage])
            return
        clock = time.perf_counter()
        path = spec.workdir / "data" / f"{spec.experiment_prefix}-sft.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        selection = spec.filter.model_copy(update={"runs": (run_dir.name,)})
        yield StageStarted(stage=stage, detail=f"mode {selection.mode} -> {path}")
        traces = TraceService(self.config)
        await traces.open(run_dir.parent)
        dataset = DatasetService(traces)
        examples = 0
        async for event in dataset.export(selection, path):
            if isinstance(event, ExportProgress):
                yield StageProgress(stage=stage, done=event.written, total=event.total, message="examples written")
            elif isinstance(event, ExportDone):
                examples = event.result.examples
        if examples == 0:
            raise UserError("the filter selected no examples; loosen the filter", where="pipeline export")
        state.save(stage, path=str(path), examples=examples, finished=True)
        yield StageFinished(stage=stage, result=state.stages[stage], wall_s=time.perf_counter() - clock)

    async def _finetune(self, spec: PipelineSpec, state: PipelineState, model: str,
                        data: Path) -> AsyncIterator[PipelineEvent]:
        from crafter_tui.services.finetune import FinetuneService, JobFinished, JobMetrics, LaunchRequest

        stage = f"finetune:{model}"
        if state.done(stage):
            yield StageFinished(stage=stage, skipped=True, result=state.stages[stage])
            return
        clock = time.perf_counter()
        service = FinetuneService(self.config)
        job_id = state.stages.get(stage, {}).get("job_id")
        if job_id is None:
            yield StageStarted(stage=stage, detail=f"{model} on {spec.backend}, data {data.name}")
            request = LaunchRequest(data=data, backend=spec.backend, model=model, epochs=spec.epochs,
                                    batch_size=spec.batch_size, learning_rate=spec.learning_rate,
                                    suffix=_slug(f"{spec.experiment_prefix}-{model}"))
            prepared = await service.prepare(request)
            entry = await service.launch(request, prepared)
            job_id = entry.job_id
            state.save(stage, job_id=job_id, finished=False)
        else:
            yield StageStarted(stage=stage, detail=f"following job {job_id}")
            if spec.backend == "local":
                await service.ensure_local_service()
        info = None
        async for event in service.watch(job_id, interval=1.0):
            if isinstance(event, JobMetrics):
                point = event.point
                loss = f"loss {point.train_loss:.3f}" if point.train_loss is not None else ""
                yield StageProgress(stage=stage, done=point.step, total=point.total_steps, message=loss)
            elif isinstance(event, JobFinished):
                info = event.info
        if info is None or info.status != "succeeded" or not info.fine_tuned_model:
            reason = (info.error if info else None) or (info.status if info else "no result")
            raise UserError(f"fine-tune job {job_id} did not succeed: {reason}", where=stage)
        state.save(stage, fine_tuned_model=info.fine_tuned_model, finished=True)
        yield StageFinished(stage=stage, result=state.stages[stage], wall_s=time.perf_counter() - clock)

    def _eval_config(self, model_host: str | None, max_tokens: int) -> AppConfig:
        """The config the eval agent uses: the fine-tune host's chat endpoint for tuned models, and a
        reply budget that stops a model that never closes its call from generating for seconds."""
        config = self.config.model_copy(deep=True)
        config.eval.max_tokens = max_tokens
        if model_host == "local":
            config.openai.base_url = config.finetune.local_url
            config.openai.api_key = config.finetune.local_token
        elif model_host == "synth" and config.finetune.synth_base_url:
            config.openai.base_url = config.finetune.synth_base_url
            config.openai.api_key = config.finetune.synth_api_key
        return config

    async def _evaluate(self, spec: PipelineSpec, state: PipelineState, stage: str, name: str,
                        agent: AgentKind, model: str, config: AppConfig,
                        training_data: str | None = None) -> AsyncIterator[PipelineEvent]:
        from crafter_tui.services.evaluation import EvalFinished, EvalRequest, EvaluationService

        if state.done(stage):
            yield StageFinished(stage=stage, skipped=True, result=state.stages[stage])
            return
        clock = time.perf_counter()
        yield StageStarted(stage=stage, detail=f"{agent} {model}: {spec.eval_episodes} held-out episodes "
                           f"(seeds {spec.eval_seed}..{spec.eval_seed + spec.eval_episodes - 1})")
        rollout = RolloutSpec(agent=agent, model=model, episodes=spec.eval_episodes, seed=spec.eval_seed,
                              max_steps=spec.max_steps, concurrency=spec.eval_concurrency,
                              history_turns=spec.history_turns, observation=spec.observation,
                              out_dir=config.output.trace_dir)
        request = EvalRequest(experiment=name, spec=rollout, difficulties=spec.eval_difficulties,
                              training_data=training_data, epochs=spec.epochs)
        finished, total = 0, spec.eval_episodes * len(spec.eval_difficulties)
        async for event in EvaluationService(config).run_eval(request):
            if isinstance(event, EvalFinished):
                state.save(stage, experiment=event.experiment.name, version=event.experiment.version,
                           finished=True)
            elif getattr(event, "kind", "") == "rollout" and isinstance(event.event, EpisodeFinished):
                finished += 1
                summary = event.event.summary
                yield StageProgress(stage=stage, done=finished, total=total,
                                    message=f"seed {summary.seed}: {summary.num_achievements} achievements")
        yield StageFinished(stage=stage, result=state.stages[stage], wall_s=time.perf_counter() - clock)

    async def _eval_baseline(self, spec: PipelineSpec, state: PipelineState,
                             baseline: Baseline) -> AsyncIterator[PipelineEvent]:
        model = "scripted-expert" if baseline == "scripted" else "random"
        name = f"{spec.experiment_prefix}-{'expert' if baseline == 'scripted' else 'random'}"
        async for event in self._evaluate(spec, state, f"eval:{baseline}", name, baseline, model, self.config):
            yield event

    async def _eval_tuned(self, spec: PipelineSpec, state: PipelineState, base: str, tuned: str,
                          data: Path) -> AsyncIterator[PipelineEvent]:
        name = f"{spec.experiment_prefix}-{_slug(base)}"
        config = self._eval_config(spec.backend, spec.eval_max_tokens)
        if spec.eval_temperature is not None:
            config.eval.temperature = spec.eval_temperature
        async for event in self._evaluate(spec, state, f"eval:{base}", name, "openai", tuned, config,
                                          training_data=str(data)):
            yield event

    async def _compare(self, spec: PipelineSpec, state: PipelineState,
                       experiments: list[str]) -> AsyncIterator[PipelineEvent]:
        from crafter_tui.services.evaluation import EvaluationService

        stage = "compare"
        clock = time.perf_counter()
        yield StageStarted(stage=stage, detail=", ".join(experiments))
        service = EvaluationService(self.config)
        comparison = await service.compare(experiments, baseline=experiments[0])
        suffix = {"html": "html", "md": "md", "json": "json"}[spec.report_format]
        report = await service.export_report(comparison, spec.workdir / f"comparison_report.{suffix}",
                                             spec.report_format)
        state.save(stage, report=str(report), finished=True)
        yield StageFinished(stage=stage, result={"report": str(report)}, wall_s=time.perf_counter() - clock)
        yield PipelineFinished(report=report, experiments=experiments, comparison=comparison)
