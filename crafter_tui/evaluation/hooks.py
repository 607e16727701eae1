"""``analyze hooks --enhancements FILE``: did each change help? (The guide's ``analyze_enhanced_hooks.py``.)

The enhancements file names the runs before and after a change and the hooks to measure, each a
trace metric (``achievements``, ``reward``, ``invalid_actions``, ...) or a user function
``file.py:function`` (a path relative to the file) returning one number per episode::

    {"before": {"model": "gpt-4o-mini"}, "after": {"runs": ["run-after-1"]},
     "hooks": {"wood": "hooks.py:wood_collected",
               "invalid": {"metric": "invalid_actions", "higher_is_better": false}}}

Each hook gets the statistics of ``compare`` (``compare_metric``: permutation and rank tests,
bootstrap CI of the difference, A12, Cliff's delta, Cohen's d, the smallest attainable p), its
p-values Holm-adjusted across the hooks, and a recommendation that never over-claims. Failed
episodes are not scores, so they are left out and counted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crafter_tui.errors import UserError, first_validation_error
from crafter_tui.evaluation import stats
from crafter_tui.evaluation.compare import BUILTIN_METRICS, CompareOptions, MetricComparison, MetricDef, compare_metric
from crafter_tui.evaluation.custom_metrics import evaluate_custom_metric, load_custom_metric
from crafter_tui.evaluation.episodes import RunEpisodes
from crafter_tui.evaluation.experiments import Episode, episodes_from_run
from crafter_tui.traces.schema import FAILED_TERMINATIONS

#: Trace metrics a hook may name (those read straight from an episode; the step-based ones need ``compare``).
TRACE_METRICS: dict[str, MetricDef] = {
    **{name: BUILTIN_METRICS[name] for name in ("achievements", "reward", "episode_length", "turns", "tokens",
                                                "wall_time")},
    "invalid_actions": MetricDef("invalid_actions", "Invalid actions per episode", False,
                                 lambda e: None if e.invalid_actions is None else float(e.invalid_actions)),
}


class Side(BaseModel):
    """Which runs under ``--traces`` are one side: by run folder name, or by the model that played."""

    model_config = ConfigDict(extra="forbid")

    runs: list[str] = Field(default_factory=list)
    model: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Side:
        if not self.runs and self.model is None:
            raise ValueError("name the side's 'runs' (folder names) or its 'model'")
        return self

    def picks(self, run: RunEpisodes) -> bool:
        if self.runs:
            return run.run_dir.name in self.runs
        return run.record is not None and run.record.model == self.model


class Hook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str  # a trace metric name or file.py:function
    higher_is_better: bool | None = True


class Enhancements(BaseModel):
    model_config = ConfigDict(extra="forbid")

    before: Side
    after: Side
    hooks: dict[str, Hook | str] = Field(min_length=1)

    def hook(self, name: str) -> Hook:
        value = self.hooks[name]
        return Hook(metric=value) if isinstance(value, str) else value


class HookEffect(BaseModel):
    hook: str
    metric: str
    comparison: MetricComparison
    recommendation: str


class HooksReport(BaseModel):
    before_runs: list[str]
    after_runs: list[str]
    failed_left_out: dict[str, int]
    effects: list[HookEffect]


def load_enhancements(path: Path) -> Enhancements:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc}", where=str(path)) from None
    except ValueError as exc:
        raise UserError(f"not JSON: {exc}", where=str(path)) from None
    try:
        return Enhancements.model_validate(data)
    except ValidationError as exc:
        field, message = first_validation_error(exc, default_field="enhancements")
        raise UserError(f"{field}: {message}", where=str(path)) from None


def analyze_hooks(runs: list[RunEpisodes], spec: Enhancements, base_dir: Path,
                  options: CompareOptions | None = None) -> HooksReport:
    """Each hook's before/after comparison (unpaired), Holm-adjusted across the hooks."""
    options = options or CompareOptions()
    sides: dict[str, tuple[list[str], list[Episode], int]] = {}
    for label, side in (("before", spec.before), ("after", spec.after)):
        chosen = [run for run in runs if side.picks(run)]
        if not chosen:
            raise UserError(f"no run under --traces matches the '{label}' side ({side.model_dump(exclude_none=True)})",
                            where="--enhancements")
        episodes = [e for run in chosen for e in episodes_from_run(run)]
        scored = [e for e in episodes if e.termination not in FAILED_TERMINATIONS]
        sides[label] = ([run.run_dir.name for run in chosen], scored, len(episodes) - len(scored))
    effects = []
    for index, name in enumerate(spec.hooks):
        hook = spec.hook(name)
        definition = MetricDef(name, f"{name} ({hook.metric})", hook.higher_is_better, lambda e: None)
        before = _values(hook.metric, sides["before"][1], base_dir)
        after = _values(hook.metric, sides["after"][1], base_dir)
        result = compare_metric(definition, before, after, paired=False, options=options, seed=options.seed + index)
        effects.append(HookEffect(hook=name, metric=hook.metric, comparison=result, recommendation=""))
    adjusted = stats.holm([e.comparison.p_permutation for e in effects])
    for effect, p in zip(effects, adjusted):
        effect.comparison.p_permutation_holm = p
        effect.recommendation = _recommend(effect.comparison, p, options.alpha)
    return HooksReport(before_runs=sides["before"][0], after_runs=sides["after"][0],
                       failed_left_out={"before": sides["before"][2], "after": sides["after"][2]}, effects=effects)


def _values(metric: str, episodes: list[Episode], base_dir: Path) -> np.ndarray:
    if metric in TRACE_METRICS:
        values: list[Any] = [TRACE_METRICS[metric].value(e) for e in episodes]
    elif ":" in metric and metric.split(":", 1)[0].endswith(".py"):
        file_name, _, function = metric.rpartition(":")
        path = Path(file_name) if Path(file_name).is_absolute() else base_dir / file_name
        result = evaluate_custom_metric(load_custom_metric(f"{path}:{function}"), episodes)
        if result.per_episode is None:
            raise UserError("a hook must return one number per episode", where=metric)
        values = list(result.per_episode)
    else:
        raise UserError(f"unknown hook metric {metric!r}; use one of {', '.join(TRACE_METRICS)} or file.py:function",
                        where="--enhancements")
    return np.array([float(v) for v in values if v is not None], dtype=float)


def _recommend(result: MetricComparison, p_holm: float | None, alpha: float) -> str:
    """Words that never over-claim (judged on the Holm-adjusted p)."""
    if result.note or result.difference is None or p_holm is None:
        return "not compared: " + (result.note or "no values")
    if result.underpowered:
        return f"undecided: too few episodes for any p below {alpha:g}; play more"
    if p_holm > alpha:
        return "no evidence of an effect (after Holm across hooks)"
    if result.higher_is_better is None:
        return f"changes the metric ({'up' if result.difference > 0 else 'down'}); judge whether that is wanted"
    better = (result.difference > 0) == result.higher_is_better
    return "keep: it helps" if better else "revert or rework: it hurts"
