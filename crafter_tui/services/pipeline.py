"""The whole loop as one resumable pipeline: rollouts -> filter/export -> fine-tune -> eval -> compare.

With ``dagger_rounds`` each tuned model then goes through DAgger rounds before its evaluation:
the model plays ``dagger_episodes`` episodes on seeds of its own (``agents.dagger``: the scripted
expert labels every state the model reaches), the expert's runs and every labelled run so far are
exported together, and the base model is trained again from scratch on that aggregate.

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

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from crafter_tui.config import AgentKind, AppConfig, Difficulty, ObservationFormat
from crafter_tui.dataset.card import Sampling
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.errors import UserError
from crafter_tui.evaluation.compare import Comparison
from crafter_tui.rollout.events import EpisodeFinished, RunStarted
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.traces.jsonl import write_json_atomic
from crafter_tui.traces.schema import FAILED_TERMINATIONS
from crafter_tui.world.text_obs import OBSERVATION_REVISIONS

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
    # 3b. DAgger: play the tuned model, the scripted expert labels the states it reaches, train again
    dagger_rounds: int = Field(0, ge=0, le=10, description="rounds of student play + relabel + retrain "
                               "after the first fine-tune (0: plain behaviour cloning)")
    dagger_episodes: int = Field(20, ge=1, description="student episodes per DAgger round")
    dagger_seed: int = Field(20_000, ge=0, description="first seed of the student episodes (round r plays "
                             "the next dagger_episodes seeds): keep them away from the data and eval seeds")
    dagger_beta: float = Field(0.0, ge=0.0, le=1.0, description="chance per turn of executing the expert's "
                               "decision instead of the student's during DAgger rounds")
    dagger_epochs: int | None = Field(None, ge=1, description="epochs of each retraining (None: epochs)")
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

    @model_validator(mode="after")
    def _dagger_seeds_apart(self) -> "PipelineSpec":
        """Student episodes on a data or held-out seed would leak those seeds into training."""
        if self.dagger_rounds:
            dagger = range(self.dagger_seed, self.dagger_seed + self.dagger_rounds * self.dagger_episodes)
            for name, seeds in (("data", range(self.data_seed, self.data_seed + self.data_episodes)),
                                ("eval", range(self.eval_seed, self.eval_seed + self.eval_episodes))):
                if dagger.start < seeds.stop and seeds.start < dagger.stop:
                    raise ValueError(f"the DAgger seeds {dagger.start}..{dagger.stop - 1} overlap the {name} seeds "
                                     f"{seeds.start}..{seeds.stop - 1}; choose another dagger_seed")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def observation_revision(self) -> int:
        """The wording of ``observation`` this code writes: stored with the settings, so a folder whose
        traces and models hold an earlier wording is refused rather than resumed into a mix of two."""
        return OBSERVATION_REVISIONS[self.observation]

    def dagger_round_seed(self, round_: int) -> int:
        """First seed of DAgger round ``round_`` (1-based)."""
        return self.dagger_seed + (round_ - 1) * self.dagger_episodes


def finetune_stage(model: str, round_: int = 0) -> str:
    """The state key of ``model``'s fine-tune after DAgger round ``round_`` (0: on the expert data alone)."""
    return f"finetune:{model}" if round_ == 0 else f"finetune:{model}:dagger{round_}"


def final_model(spec: PipelineSpec, stages: dict[str, dict[str, Any]], model: str) -> str:
    """The fine-tuned model the pipeline evaluates for base ``model`` (after its last DAgger round)."""
    return stages[finetune_stage(model, spec.dagger_rounds)]["fine_tuned_model"]


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
    """What each finished stage produced and the settings that produced it, persisted after every stage."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / STATE_FILE
        self.stages: dict[str, dict[str, Any]] = {}
        self.settings: dict[str, Any] | None = None
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.stages = data.get("stages", {})
                self.settings = data.get("spec")
            except (ValueError, AttributeError, RecursionError) as exc:  # bad JSON or UTF-8, the wrong shape
                raise UserError(f"pipeline state is corrupt ({exc}); remove it to start over",
                                where=str(self.path)) from None

    def adopt(self, spec: PipelineSpec) -> None:
        """Resume only what these settings made: finished stages of other settings would be reported as
        this spec's results, so a folder holding them is refused, naming what differs."""
        settings = spec.model_dump(mode="json", exclude={"workdir"})
        if self.stages:
            if self.settings is None:
                raise UserError("this folder holds a pipeline run from an earlier version that did not record its "
                                "settings, so it cannot be resumed safely; use another --workdir, or remove the "
                                "folder to start over", where=str(self.path))
            changes = settings_changes(self.settings, settings)
            if changes:
                named = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
                raise UserError(f"this folder holds a pipeline run with other settings ({named}); "
                                "run it with the same settings to resume, or use another --workdir (or remove the "
                                "folder) to start over", where=str(self.path))
        if settings != self.settings:  # a resume with the same settings has nothing to write
            self.settings = settings
            self._write()

    def done(self, stage: str) -> dict[str, Any] | None:
        entry = self.stages.get(stage)
        return entry if entry and entry.get("finished") else None

    def save(self, stage: str, **values: Any) -> None:
        self.stages[stage] = {**self.stages.get(stage, {}), **values}
        self._write()

    def _write(self) -> None:
        write_json_atomic(self.path, {"spec": self.settings, "stages": self.stages})


def settings_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``name: old -> new`` for every setting that differs (nested settings as ``filter.name``)."""
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            changes += settings_changes(before, after, f"{prefix}{key}.")
        elif before != after:
            changes.append(f"{prefix}{key}: {before!r} -> {after!r}")
    return changes


class PipelineService:
    """Runs a ``PipelineSpec`` stage by stage, yielding typed events."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config

    async def run(self, spec: PipelineSpec) -> AsyncIterator[PipelineEvent]:
        spec.workdir.mkdir(parents=True, exist_ok=True)
        state = PipelineState(spec.workdir)
        state.adopt(spec)
        async for event in self._rollout(spec, state):
            yield event
        run_dir = Path(state.stages["rollout"]["run_dir"])
        path = spec.workdir / "data" / f"{spec.experiment_prefix}-sft.jsonl"
        async for event in self._export(spec, state, "export", [run_dir], path):
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
            tuned = state.stages[finetune_stage(model)]["fine_tuned_model"]
            runs = [run_dir]
            for round_ in range(1, spec.dagger_rounds + 1):
                async for event in self._dagger_round(spec, state, model, tuned, round_, runs):
                    yield event
                tuned = state.stages[finetune_stage(model, round_)]["fine_tuned_model"]
                data = Path(state.stages[f"export:{model}:dagger{round_}"]["path"])
            async for event in self._eval_tuned(spec, state, model, tuned, data):
                yield event
            experiments.append(state.stages[f"eval:{model}"]["experiment"])
        async for event in self._compare(spec, state, experiments):
            yield event

    # -- stages ----------------------------------------------------------------------------------
    async def _rollout(self, spec: PipelineSpec, state: PipelineState) -> AsyncIterator[PipelineEvent]:
        rollout = RolloutSpec(
            agent=spec.data_agent, model=spec.data_model, episodes=spec.data_episodes, seed=spec.data_seed,
            max_steps=spec.max_steps, difficulty=spec.difficulty, concurrency=spec.concurrency,
            workers=spec.data_workers,
            history_turns=spec.history_turns, observation=spec.observation, out_dir=self.config.output.trace_dir)
        detail = (f"{spec.data_episodes} {spec.data_agent} episodes, "
                  f"seeds {spec.data_seed}..{spec.data_seed + spec.data_episodes - 1}")
        async for event in self._play(state, "rollout", rollout, f"{spec.experiment_prefix}-data", self.config,
                                      detail, "data"):
            yield event

    async def _play(self, state: PipelineState, stage: str, rollout: RolloutSpec, run_id: str, config: AppConfig,
                    detail: str, what: str) -> AsyncIterator[PipelineEvent]:
        """Play ``rollout`` as the resumable stage ``stage`` (an interrupted run resumes its unfinished episodes)."""
        from crafter_tui.services.rollouts import RolloutService

        if state.done(stage):
            yield StageFinished(stage=stage, skipped=True, result=state.stages[stage])
            return
        clock = time.perf_counter()
        partial = state.stages.get(stage, {})
        rollout = rollout.model_copy(update={"run_id": None if partial.get("run_id") else run_id,
                                             "resume": partial.get("run_id")})
        yield StageStarted(stage=stage, detail=detail)
        finished, played, failures = 0, 0, []
        async for event in RolloutService(config).run(rollout):
            if isinstance(event, RunStarted):
                state.save(stage, run_id=event.run_id, run_dir=str(event.run_dir), finished=False)
                finished = event.episodes - event.pending
            elif isinstance(event, EpisodeFinished):
                finished, played = finished + 1, played + 1
                if event.summary.termination in FAILED_TERMINATIONS:
                    failures.append(event.summary)
                yield StageProgress(stage=stage, done=finished, total=rollout.episodes,
                                    message=f"episode {event.summary.seed}: {event.summary.num_achievements} "
                                            "achievements")
        if played and len(failures) == played:
            first = failures[0]
            raise UserError(f"every {what} episode failed ({first.termination}; first, seed {first.seed}: "
                            f"{first.error}); fix the cause and run again to replay them", where=f"pipeline {stage}")
        state.save(stage, finished=True)
        yield StageFinished(stage=stage, result=state.stages[stage], wall_s=time.perf_counter() - clock)

    async def _dagger_round(self, spec: PipelineSpec, state: PipelineState, model: str, tuned: str, round_: int,
                            runs: list[Path]) -> AsyncIterator[PipelineEvent]:
        """The student ``tuned`` plays, the expert labels its turns; retrain on every run so far (``runs`` grows)."""
        stage = f"dagger:{model}:{round_}"
        seed = spec.dagger_round_seed(round_)
        if not state.done(stage) and spec.backend == "local":
            from crafter_tui.services.finetune import FinetuneService

            await FinetuneService(self.config).ensure_local_service()
        config = self._tuned_config(spec)
        config.eval.expert_beta = spec.dagger_beta
        rollout = RolloutSpec(
            agent="dagger", model=tuned, episodes=spec.dagger_episodes, seed=seed, max_steps=spec.max_steps,
            difficulty=spec.difficulty, concurrency=spec.eval_concurrency, history_turns=spec.history_turns,
            observation=spec.observation, out_dir=config.output.trace_dir)
        detail = (f"{tuned} plays {spec.dagger_episodes} episodes (seeds {seed}..{seed + spec.dagger_episodes - 1}), "
                  f"the expert labels every turn" + (f", beta {spec.dagger_beta:g}" if spec.dagger_beta else ""))
        async for event in self._play(state, stage, rollout, f"{spec.experiment_prefix}-dagger-{_slug(model)}-{round_}",
                                      config, detail, "DAgger"):
            yield event
        runs.append(Path(state.stages[stage]["run_dir"]))
        export = f"export:{model}:dagger{round_}"
        path = spec.workdir / "data" / f"{spec.experiment_prefix}-{_slug(model)}-dagger{round_}-sft.jsonl"
        async for event in self._export(spec, state, export, runs, path):
            yield event
        data = Path(state.stages[export]["path"])
        async for event in self._finetune(spec, state, model, data, round_):
            yield event

    async def _export(self, spec: PipelineSpec, state: PipelineState, stage: str, run_dirs: list[Path],
                      path: Path) -> AsyncIterator[PipelineEvent]:
        """Export the turns of ``run_dirs`` (one trace folder) with the spec's filter, as one data set."""
        from crafter_tui.services.dataset import DatasetService, ExportDone, ExportProgress
        from crafter_tui.services.traces import TraceService

        if state.done(stage):
            yield StageFinished(stage=stage, skipped=True, result=state.stages[stage])
            return
        clock = time.perf_counter()
        folders = {run_dir.parent for run_dir in run_dirs}
        if len(folders) > 1:  # a run outside the opened folder would be silently missing from the data
            raise UserError(f"the runs to export lie in {len(folders)} trace folders ({', '.join(map(str, folders))}); "
                            "the pipeline's runs must share one", where=f"pipeline {stage}")
        path.parent.mkdir(parents=True, exist_ok=True)
        selection = spec.filter.model_copy(update={"runs": tuple(run_dir.name for run_dir in run_dirs)})
        yield StageStarted(stage=stage, detail=f"mode {selection.mode}, {len(run_dirs)} run(s) -> {path}")
        traces = TraceService(self.config)
        await traces.open(run_dirs[0].parent)
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
                        data: Path, round_: int = 0) -> AsyncIterator[PipelineEvent]:
        """Train ``model`` from its base weights on ``data`` (round > 0: the aggregate after DAgger round ``round_``)."""
        from crafter_tui.services.finetune import FinetuneService, JobFinished, JobMetrics, LaunchRequest

        stage = finetune_stage(model, round_)
        epochs = (spec.dagger_epochs or spec.epochs) if round_ else spec.epochs
        suffix = f"{spec.experiment_prefix}-{model}" + (f"-d{round_}" if round_ else "")
        if state.done(stage):
            yield StageFinished(stage=stage, skipped=True, result=state.stages[stage])
            return
        clock = time.perf_counter()
        service = FinetuneService(self.config)
        job_id = state.stages.get(stage, {}).get("job_id")
        if job_id is None:
            yield StageStarted(stage=stage, detail=f"{model} on {spec.backend}, data {data.name}")
            request = LaunchRequest(data=data, backend=spec.backend, model=model, epochs=epochs,
                                    batch_size=spec.batch_size, learning_rate=spec.learning_rate,
                                    suffix=_slug(suffix), sampling=self._eval_sampling(spec))
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

    def _eval_sampling(self, spec: PipelineSpec) -> Sampling:
        """The sampling the tuned models are evaluated with: recorded on their cards, so a later
        ``crafter-tui rollout --model`` plays them the same way."""
        temperature = spec.eval_temperature if spec.eval_temperature is not None else self.config.eval.temperature
        return Sampling(temperature=temperature, max_tokens=spec.eval_max_tokens)

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

    def _tuned_config(self, spec: PipelineSpec) -> AppConfig:
        """The config a tuned model plays with (evaluation and DAgger rounds alike)."""
        config = self._eval_config(spec.backend, spec.eval_max_tokens)
        if spec.eval_temperature is not None:
            config.eval.temperature = spec.eval_temperature
        return config

    async def _evaluate(self, spec: PipelineSpec, state: PipelineState, stage: str, name: str,
                        agent: AgentKind, model: str, config: AppConfig,
                        training_data: str | None = None) -> AsyncIterator[PipelineEvent]:
        from crafter_tui.services.evaluation import EvalFinished, EvalRequest, EvaluationService
        from crafter_tui.services.model_cards import bind_model, serving

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
        # a tuned model is played as its card says (the card came from this pipeline's export, so the
        # pipeline's own settings never contradict it) and where its host serves it
        binding = bind_model(rollout, config, {"observation": spec.observation, "history_turns": spec.history_turns,
                                               "temperature": config.eval.temperature,
                                               "max_tokens": config.eval.max_tokens}, where=f"pipeline {stage}")
        request = EvalRequest(experiment=name, spec=binding.spec, difficulties=spec.eval_difficulties,
                              training_data=training_data, epochs=spec.epochs)
        finished, total = 0, spec.eval_episodes * len(spec.eval_difficulties)
        async with serving(binding):
            async for event in EvaluationService(binding.config).run_eval(request):
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
        config = self._tuned_config(spec)
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
