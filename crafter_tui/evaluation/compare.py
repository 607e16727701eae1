"""The comparison model: every number a comparison report shows, computed once.

``compare_experiments(experiments, baseline=...)`` returns a ``Comparison`` (pydantic, so
``--format json`` is just its dump); the HTML and Markdown reports and the console screen
only render it. Each non-baseline experiment is compared against the baseline:

- paired when both ran exactly the same (instance, seed) keys (several episodes of one seed
  are averaged: the seed is the replicate), independent otherwise;
- per metric: bootstrap CI of the mean difference, permutation p (primary), Welch and
  Mann-Whitney (Wilcoxon when paired) p, A12, Cliff's delta, Cohen's d, the smallest
  attainable p and an explicit underpowered flag; the primary p is Holm-adjusted across pairs;
- per achievement: success counts with Wilson intervals, Boschloo's exact test,
  Benjamini-Hochberg across the 22 achievements.
An experiment with zero episodes is reported as such and never divided by.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from crafter_tui.errors import UserError
from crafter_tui.evaluation import stats
from crafter_tui.evaluation.custom_metrics import CustomMetric, evaluate_custom_metric
from crafter_tui.evaluation.experiments import Episode, Experiment
from crafter_tui.evaluation.metrics import crafter_score, describe, success_rates
from crafter_tui.traces.schema import FAILED_TERMINATIONS
from crafter_tui.world.rules import ACHIEVEMENTS

FINISHED_OK = frozenset({"max_steps", "max_turns", "agent_terminated"})


# --- metrics ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MetricDef:
    """A per-episode metric: how to read it from an episode, and which direction is better."""

    name: str
    label: str
    higher_is_better: bool | None
    value: Callable[[Episode], float | None]
    unit: str = ""


def _tokens(episode: Episode) -> float | None:
    if episode.prompt_tokens is None or episode.completion_tokens is None:
        return None
    return float(episode.prompt_tokens + episode.completion_tokens)


BUILTIN_METRICS: dict[str, MetricDef] = {
    "achievements": MetricDef("achievements", "Achievements per episode", True, lambda e: e.num_achievements),
    "reward": MetricDef("reward", "Reward per episode", True, lambda e: e.reward),
    "episode_length": MetricDef("episode_length", "Episode length", None,
                                lambda e: None if e.steps is None else float(e.steps), "steps"),
    "turns": MetricDef("turns", "Agent turns per episode", None,
                       lambda e: None if e.turns is None else float(e.turns)),
    "rule_understanding": MetricDef("rule_understanding", "Rule violations per turn (rule understanding)", False,
                                    lambda e: None, "violations / turn"),  # from the steps, see services.evaluation
    "time_efficiency": MetricDef("time_efficiency", "Wasted actions per episode (time efficiency)", False,
                                 lambda e: None, "actions"),  # filled from steps, see analyses
    "tokens": MetricDef("tokens", "Tokens per episode", None, _tokens),
    "wall_time": MetricDef("wall_time", "Wall time per episode", None, lambda e: e.wall_s, "s"),
}
DEFAULT_METRICS: tuple[str, ...] = ("achievements", "reward", "episode_length", "rule_understanding")


# --- the model -------------------------------------------------------------------------------------

class Summary(BaseModel):
    n: int
    mean: float | None
    median: float | None
    std: float | None
    min: float | None
    max: float | None
    iqm: float | None


class AchievementRate(BaseModel):
    achievement: str
    successes: int
    n: int
    rate: float | None
    ci: stats.Interval


class InstanceSummary(BaseModel):
    """One difficulty (or other condition) of one experiment."""

    instance: str
    episodes: int
    completion_rate: float | None  # ended by a limit or by the agent, not by death or error
    death_rate: float | None
    mean_achievements: float | None
    crafter_score: float | None
    mean_steps: float | None  # completion time in env steps
    mean_wall_s: float | None  # completion time in seconds


class ExperimentSummary(BaseModel):
    name: str
    version: str
    model: str
    episodes: int  # scored episodes: failed ones are counted below and left out of every figure
    failed: int = 0
    failed_by_cause: dict[str, int] = Field(default_factory=dict)
    note: str | None = None
    notes: str | None = None  # the experiment version's changelog entry (eval --notes)
    crafter_score: float | None
    progression: float | None
    achievements: Summary
    success: list[AchievementRate] | None  # None: the source has counts only
    metrics: dict[str, Summary] = Field(default_factory=dict)
    scalars: dict[str, float] = Field(default_factory=dict)  # custom scalar metrics
    instances: list[InstanceSummary] = Field(default_factory=list)
    profile: list[tuple[float, float]] = Field(default_factory=list)  # (x, fraction with >= x achievements)
    per_episode_achievements: list[float] = Field(default_factory=list)  # for box/strip plots


class MetricComparison(BaseModel):
    metric: str
    label: str
    higher_is_better: bool | None
    n_baseline: int
    n_candidate: int
    paired: bool
    mean_baseline: float | None
    mean_candidate: float | None
    difference: float | None  # candidate - baseline
    ci: stats.Interval
    p_permutation: float | None
    p_permutation_holm: float | None = None  # adjusted across the compared pairs
    p_welch: float | None
    rank_test: str  # "mann-whitney" or "wilcoxon"
    p_rank: float | None
    a12: float | None
    cliffs_delta: float | None
    cohens_d: float | None
    min_attainable_p: float
    underpowered: bool
    verdict: str
    note: str | None = None


class AchievementComparison(BaseModel):
    achievement: str
    baseline_successes: int
    baseline_n: int
    candidate_successes: int
    candidate_n: int
    difference: float | None
    p_boschloo: float | None
    p_bh: float | None
    significant: bool
    underpowered: bool


class InstanceDelta(BaseModel):
    instance: str
    baseline_episodes: int
    candidate_episodes: int
    completion_rate_delta: float | None
    mean_achievements_delta: float | None
    crafter_score_delta: float | None
    mean_steps_delta: float | None


class PairComparison(BaseModel):
    baseline: str
    candidate: str
    paired: bool
    pairing: str  # one sentence: why paired or not
    crafter_score_delta: float | None
    crafter_score_ci: stats.Interval | None = None  # bootstrap CI of the delta (episodes resampled)
    progression_delta: float | None
    metrics: list[MetricComparison]
    achievements: list[AchievementComparison] | None
    achievements_underpowered: bool
    instances: list[InstanceDelta]
    scalar_deltas: dict[str, float] = Field(default_factory=dict)


class SettingsDiff(BaseModel):
    """Only the settings that differ between experiments, with numeric deltas vs the baseline."""

    keys: list[str]
    values: dict[str, dict[str, Any]]  # experiment -> key -> value
    deltas: dict[str, dict[str, float]]  # experiment -> key -> value - baseline value


class Comparison(BaseModel):
    created_at: datetime
    baseline: str
    alpha: float
    resamples: int
    seed: int
    metrics: list[str]
    experiments: list[ExperimentSummary]
    pairs: list[PairComparison]
    settings: SettingsDiff
    probability_of_improvement: dict[str, dict[str, float | None]]  # row beats column (A12, achievements)
    warnings: list[str] = Field(default_factory=list)

    def experiment(self, name: str) -> ExperimentSummary:
        return next(e for e in self.experiments if e.name == name)


# --- computing it -----------------------------------------------------------------------------------

@dataclass(slots=True)
class CompareOptions:
    baseline: str | None = None
    metrics: Sequence[str] = DEFAULT_METRICS
    alpha: float = stats.DEFAULT_ALPHA
    resamples: int = stats.DEFAULT_RESAMPLES
    seed: int = 0
    confidence: float = 0.95


Values = dict[str, list[float | None]]  # metric -> value per episode (aligned with experiment.episodes)


def compare_experiments(experiments: Sequence[Experiment], options: CompareOptions | None = None, *,
                        custom: Sequence[CustomMetric] = (),
                        extra_values: dict[str, Values] | None = None) -> Comparison:
    """Compare experiments against a baseline (the first one unless named).

    ``extra_values`` supplies per-episode values computed elsewhere (e.g. ``time_efficiency``
    from step lines): experiment name -> metric -> values aligned with its episodes.
    """
    options = options or CompareOptions()
    if not experiments:
        raise UserError("nothing to compare: no experiments given", where="--experiments")
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise UserError(f"experiment names must be unique, got {names}", where="--experiments")
    baseline_name = options.baseline or names[0]
    if baseline_name not in names:
        raise UserError(f"baseline {baseline_name!r} is not among the experiments ({', '.join(names)})",
                        where="--baseline")
    unknown = [m for m in options.metrics if m not in BUILTIN_METRICS and m not in {c.name for c in custom}]
    if unknown:
        known = ", ".join([*BUILTIN_METRICS, *(c.name for c in custom)])
        raise UserError(f"unknown metric(s) {', '.join(unknown)}; known: {known}", where="--metrics")
    metric_defs = _metric_defs(options.metrics, custom)
    warnings: list[str] = []
    failed = {e.name: [ep for ep in e.episodes if ep.termination in FAILED_TERMINATIONS] for e in experiments}
    extra = {e.name: _scored_values((extra_values or {}).get(e.name, {}), e) for e in experiments}
    experiments = [_scored(e, failed[e.name], warnings) for e in experiments]
    values = {e.name: _episode_values(e, metric_defs, custom, extra[e.name]) for e in experiments}
    scalars = {e.name: _custom_scalars(e, custom) for e in experiments}
    summaries = [_summarise(e, metric_defs, values[e.name], scalars[e.name], warnings, failed[e.name])
                 for e in experiments]
    baseline = next(e for e in experiments if e.name == baseline_name)
    failed_keys = {name: {key for key in _keys_of(episodes) if key is not None} for name, episodes in failed.items()}
    pairs = [_compare_pair(baseline, e, metric_defs, values, scalars, summaries, options, failed_keys)
             for e in experiments if e.name != baseline_name]
    _holm_across_pairs(pairs)
    return Comparison(
        created_at=datetime.now(UTC), baseline=baseline_name, alpha=options.alpha, resamples=options.resamples,
        seed=options.seed, metrics=[m.name for m in metric_defs], experiments=summaries, pairs=pairs,
        settings=settings_diff(experiments, baseline_name),
        probability_of_improvement=_improvement_matrix(experiments), warnings=warnings,
    )


def _scored(experiment: Experiment, failed: list[Episode], warnings: list[str]) -> Experiment:
    """``experiment`` without its failed episodes (an endpoint, env or clock failure is not a score of zero),
    with a warning naming them."""
    if not failed:
        return experiment
    causes = ", ".join(f"{cause} {count}" for cause, count in sorted(Counter(e.termination for e in failed).items()))
    warnings.append(f"experiment {experiment.name!r}: {len(failed)} of {len(experiment.episodes)} episodes FAILED "
                    f"({causes}) and are left out of every figure; resume its runs to play them")
    return experiment.model_copy(update={"episodes": [e for e in experiment.episodes
                                                      if e.termination not in FAILED_TERMINATIONS]})


def _scored_values(columns: Values, experiment: Experiment) -> Values:
    """Values given per episode of ``experiment``, kept for its scored episodes only."""
    keep = [e.termination not in FAILED_TERMINATIONS for e in experiment.episodes]
    for name, column in columns.items():
        if len(column) != len(keep):
            raise ValueError(f"{name}: {len(column)} values for {len(keep)} episodes")
    return {name: [v for v, kept in zip(column, keep, strict=True) if kept] for name, column in columns.items()}


def _metric_defs(requested: Sequence[str], custom: Sequence[CustomMetric]) -> list[MetricDef]:
    by_name = {c.name: c for c in custom}
    defs: list[MetricDef] = []
    for name in dict.fromkeys(["achievements", *requested]):
        if name in BUILTIN_METRICS:
            defs.append(BUILTIN_METRICS[name])
        else:
            metric = by_name[name]
            defs.append(MetricDef(name, name, metric.higher_is_better, lambda e: None))
    for metric in custom:  # configured custom metrics always appear, like built-in ones
        if metric.name not in {d.name for d in defs}:
            defs.append(MetricDef(metric.name, metric.name, metric.higher_is_better, lambda e: None))
    return defs


def _episode_values(experiment: Experiment, defs: list[MetricDef], custom: Sequence[CustomMetric],
                    extra: Values) -> Values:
    values: Values = {d.name: [d.value(e) for e in experiment.episodes] for d in defs}
    for metric in custom:
        result = evaluate_custom_metric(metric, experiment.episodes) if experiment.episodes else None
        if result is not None and result.per_episode is not None:
            values[metric.name] = list(result.per_episode)
    for name, column in extra.items():
        if len(column) != len(experiment.episodes):
            raise ValueError(f"{name}: {len(column)} values for {len(experiment.episodes)} episodes")
        values[name] = list(column)
    return values


def _custom_scalars(experiment: Experiment, custom: Sequence[CustomMetric]) -> dict[str, float]:
    found: dict[str, float] = {}
    for metric in custom:
        if experiment.episodes:
            found.update(evaluate_custom_metric(metric, experiment.episodes).scalars)
    return found


def _present(column: list[float | None]) -> list[float]:
    return [float(v) for v in column if v is not None]


def _summary(values: Sequence[float]) -> Summary:
    return Summary(n=len(values), **describe(list(values)))


def _summarise(experiment: Experiment, defs: list[MetricDef], values: Values, scalars: dict[str, float],
               warnings: list[str], failed: Sequence[Episode] = ()) -> ExperimentSummary:
    episodes = experiment.episodes
    counts = [e.num_achievements for e in episodes]
    detailed = bool(episodes) and all(e.achievements is not None for e in episodes)
    note = f"{len(failed)} failed episode(s) left out" if failed else None
    if not episodes:
        note = "no scored episodes: every episode failed" if failed else "no episodes: nothing to measure"
        warnings.append(f"experiment {experiment.name!r} has zero {'scored ' if failed else ''}episodes; "
                        "it is listed but not measured")
    success = None
    score = None
    if detailed:
        n = len(episodes)
        unlocked = Counter(name for e in episodes for name in set(e.achievements or []))
        success = [AchievementRate(achievement=name, successes=unlocked[name], n=n, rate=unlocked[name] / n,
                                   ci=stats.wilson_interval(unlocked[name], n))
                   for name in ACHIEVEMENTS]
        score = crafter_score(success_rates([e.achievements or [] for e in episodes]))
    return ExperimentSummary(
        name=experiment.name, version=experiment.version, model=experiment.model, episodes=len(episodes),
        failed=len(failed), failed_by_cause=dict(Counter(e.termination or "" for e in failed)), note=note,
        notes=experiment.notes,
        crafter_score=score, progression=(float(np.mean(counts)) / len(ACHIEVEMENTS) if counts else None),
        achievements=_summary(counts), success=success,
        metrics={d.name: _summary(_present(values.get(d.name, []))) for d in defs},
        scalars=scalars, instances=_instances(episodes), profile=performance_profile(counts),
        per_episode_achievements=[float(c) for c in counts],
    )


def performance_profile(counts: Sequence[float]) -> list[tuple[float, float]]:
    """(x, fraction of episodes with >= x achievements) for x = 0..22 (empty for no episodes)."""
    if not counts:
        return []
    array = np.asarray(counts, dtype=float)
    return [(float(x), float(np.mean(array >= x))) for x in range(len(ACHIEVEMENTS) + 1)]


def _instances(episodes: Sequence[Episode]) -> list[InstanceSummary]:
    grouped: dict[str, list[Episode]] = defaultdict(list)
    for episode in episodes:
        grouped[episode.instance].append(episode)
    out = []
    for instance, group in sorted(grouped.items()):
        ended = [e for e in group if e.termination is not None]
        steps = [e.steps for e in group if e.steps is not None]
        walls = [e.wall_s for e in group if e.wall_s is not None]
        detailed = all(e.achievements is not None for e in group)
        out.append(InstanceSummary(
            instance=instance, episodes=len(group),
            completion_rate=(sum(e.termination in FINISHED_OK for e in ended) / len(ended)) if ended else None,
            death_rate=(sum(e.termination == "death" for e in ended) / len(ended)) if ended else None,
            mean_achievements=float(np.mean([e.num_achievements for e in group])),
            crafter_score=crafter_score(success_rates([e.achievements or [] for e in group])) if detailed else None,
            mean_steps=float(np.mean(steps)) if steps else None,
            mean_wall_s=float(np.mean(walls)) if walls else None,
        ))
    return out


# --- pairs ----------------------------------------------------------------------------------------------

def _keys(experiment: Experiment) -> list[tuple[str, int] | None]:
    return _keys_of(experiment.episodes)


def _keys_of(episodes: Sequence[Episode]) -> list[tuple[str, int] | None]:
    return [None if e.seed is None else (e.instance, e.seed) for e in episodes]


def pairing(baseline: Experiment, candidate: Experiment,
            failed: tuple[set[tuple[str, int]], set[tuple[str, int]]] = (set(), set())) -> tuple[bool, str]:
    """Whether two experiments are paired by seed, and why (one sentence for the report).

    ``failed``: the keys of each side's failed episodes (already left out of ``baseline``/``candidate``):
    experiments that played the same seeds stay paired, on the seeds both scored."""
    a, b = _keys(baseline), _keys(candidate)
    if not a or not b:
        return False, "an experiment has no episodes"
    if None in a or None in b:
        return False, "independent: seeds are not recorded for every episode"
    if set(a) != set(b):
        common = len(set(a) & set(b))
        if set(a) | failed[0] == set(b) | failed[1]:
            dropped = len(set(a) | set(b)) - common
            return True, (f"paired by (instance, seed): {common} seeds scored in both experiments "
                          f"({dropped} left out where an episode failed)")
        return False, f"independent: the (instance, seed) sets differ ({common} in common)"
    return True, f"paired by (instance, seed): {len(set(a))} seeds in both experiments"


def _paired_arrays(base: Experiment, cand: Experiment, base_values: list[float | None],
                   cand_values: list[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """Per-key means aligned by key (several episodes of one seed are one replicate)."""
    def per_key(experiment: Experiment, column: list[float | None]) -> dict[tuple[str, int], float]:
        groups: dict[tuple[str, int], list[float]] = defaultdict(list)
        for key, value in zip(_keys(experiment), column, strict=True):
            if value is not None and key is not None:
                groups[key].append(float(value))
        return {key: float(np.mean(v)) for key, v in groups.items()}

    a, b = per_key(base, base_values), per_key(cand, cand_values)
    keys = sorted(set(a) & set(b))
    return np.array([a[k] for k in keys]), np.array([b[k] for k in keys])


def _compare_pair(base: Experiment, cand: Experiment, defs: list[MetricDef], values: dict[str, Values],
                  scalars: dict[str, dict[str, float]], summaries: list[ExperimentSummary],
                  options: CompareOptions,
                  failed_keys: dict[str, set[tuple[str, int]]] | None = None) -> PairComparison:
    failed_keys = failed_keys or {}
    paired, why = pairing(base, cand, (failed_keys.get(base.name, set()), failed_keys.get(cand.name, set())))
    metrics = []
    for index, definition in enumerate(defs):
        base_col, cand_col = values[base.name][definition.name], values[cand.name][definition.name]
        if paired:
            a, b = _paired_arrays(base, cand, base_col, cand_col)
        else:
            a, b = np.array(_present(base_col)), np.array(_present(cand_col))
        metrics.append(compare_metric(definition, a, b, paired=paired, options=options,
                                      seed=options.seed + index))
    by_name = {s.name: s for s in summaries}
    base_sum, cand_sum = by_name[base.name], by_name[cand.name]
    achievements, underpowered = _compare_achievements(base_sum, cand_sum, options.alpha)
    return PairComparison(
        baseline=base.name, candidate=cand.name, paired=paired, pairing=why,
        crafter_score_delta=_delta(base_sum.crafter_score, cand_sum.crafter_score),
        crafter_score_ci=_score_ci(base, cand, paired, options),
        progression_delta=_delta(base_sum.progression, cand_sum.progression),
        metrics=metrics, achievements=achievements, achievements_underpowered=underpowered,
        instances=_instance_deltas(base_sum, cand_sum),
        scalar_deltas={k: scalars[cand.name][k] - v for k, v in scalars[base.name].items() if k in scalars[cand.name]},
    )


def unlocked_matrix(experiment: Experiment, keys: list[tuple[str, int]] | None = None) -> np.ndarray | None:
    """Episodes x 22 achievements (1 = unlocked); with ``keys``, one row per key averaging its
    episodes (the seed is the replicate). None without per-achievement detail."""
    episodes = experiment.episodes
    if not episodes or any(e.achievements is None for e in episodes):
        return None
    rows = np.array([[name in set(e.achievements or []) for name in ACHIEVEMENTS] for e in episodes], dtype=float)
    if keys is None:
        return rows
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for index, key in enumerate(_keys(experiment)):
        if key is not None:
            groups[key].append(index)
    return np.array([rows[groups[key]].mean(axis=0) for key in keys])


def _score_ci(base: Experiment, cand: Experiment, paired: bool, options: CompareOptions) -> stats.Interval | None:
    keys = sorted(set(_keys(base)) & set(_keys(cand))) if paired else None
    a, b = unlocked_matrix(base, keys), unlocked_matrix(cand, keys)  # type: ignore[arg-type]
    if a is None or b is None:
        return None
    return stats.bootstrap_score_difference(a, b, paired=paired, resamples=options.resamples, seed=options.seed,
                                            confidence=options.confidence)


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def compare_metric(definition: MetricDef, a: np.ndarray, b: np.ndarray, *, paired: bool,
                   options: CompareOptions, seed: int = 0) -> MetricComparison:
    """All the tests and effect sizes of one metric between two samples (b is the candidate)."""
    n_a, n_b = int(a.size), int(b.size)
    min_p = stats.min_attainable_pvalue(n_a, n_b, paired=paired, resamples=options.resamples)
    underpowered = min_p > options.alpha
    note = None
    if n_a == 0 or n_b == 0:
        note = "no values on one side: not compared"
    if paired:
        p_rank, rank_test = stats.wilcoxon_pvalue(a, b), "wilcoxon"
    else:
        p_rank, rank_test = stats.mann_whitney_pvalue(a, b, resamples=options.resamples, seed=seed), "mann-whitney"
    p_perm = stats.permutation_pvalue(a, b, paired=paired, resamples=options.resamples, seed=seed)
    difference = float(b.mean() - a.mean()) if n_a and n_b else None
    result = MetricComparison(
        metric=definition.name, label=definition.label, higher_is_better=definition.higher_is_better,
        n_baseline=n_a, n_candidate=n_b, paired=paired,
        mean_baseline=float(a.mean()) if n_a else None, mean_candidate=float(b.mean()) if n_b else None,
        difference=difference,
        ci=stats.bootstrap_difference(a, b, paired=paired, resamples=options.resamples, seed=seed,
                                      confidence=options.confidence),
        p_permutation=p_perm, p_welch=stats.welch_pvalue(a, b), rank_test=rank_test, p_rank=p_rank,
        a12=stats.a12(a, b), cliffs_delta=stats.cliffs_delta(a, b), cohens_d=_finite(stats.cohens_d(a, b)),
        min_attainable_p=min_p, underpowered=underpowered, verdict="", note=note,
    )
    result.verdict = verdict(result, options.alpha)
    return result


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def verdict(result: MetricComparison, alpha: float, p: float | None = None) -> str:
    """Words for the result that never over-claim: 'underpowered' instead of 'not significant'."""
    p = result.p_permutation if p is None else p
    if result.note or p is None or result.difference is None:
        return "not compared"
    if result.underpowered:
        return f"underpowered (smallest attainable p {result.min_attainable_p:.3g} > alpha {alpha:g})"
    if p > alpha:
        return "no significant difference"
    direction = "higher" if result.difference > 0 else "lower"
    if result.higher_is_better is None:
        return f"significantly {direction}"
    better = (result.difference > 0) == result.higher_is_better
    return f"significantly {'better' if better else 'worse'} ({direction})"


def _holm_across_pairs(pairs: list[PairComparison]) -> None:
    """Holm-adjust each metric's permutation p across the pairs compared with the baseline."""
    if not pairs:
        return
    for index in range(len(pairs[0].metrics)):
        column = [pair.metrics[index] for pair in pairs]
        adjusted = stats.holm([m.p_permutation for m in column])
        for metric, value in zip(column, adjusted, strict=True):
            metric.p_permutation_holm = value


def _compare_achievements(base: ExperimentSummary, cand: ExperimentSummary,
                          alpha: float) -> tuple[list[AchievementComparison] | None, bool]:
    if base.success is None or cand.success is None:
        return None, False
    n_a, n_b = base.episodes, cand.episodes
    pvalues = [stats.boschloo_pvalue(ra.successes, n_a, rb.successes, n_b)
               for ra, rb in zip(base.success, cand.success, strict=True)]
    adjusted = stats.benjamini_hochberg(pvalues)
    underpowered = stats.boschloo_min_pvalue(n_a, n_b) > alpha
    rows = [
        AchievementComparison(
            achievement=ra.achievement, baseline_successes=ra.successes, baseline_n=n_a,
            candidate_successes=rb.successes, candidate_n=n_b, difference=_delta(ra.rate, rb.rate),
            p_boschloo=p, p_bh=q, significant=(q is not None and q <= alpha), underpowered=underpowered,
        )
        for ra, rb, p, q in zip(base.success, cand.success, pvalues, adjusted, strict=True)
    ]
    return rows, underpowered


def _instance_deltas(base: ExperimentSummary, cand: ExperimentSummary) -> list[InstanceDelta]:
    a = {i.instance: i for i in base.instances}
    b = {i.instance: i for i in cand.instances}
    return [
        InstanceDelta(
            instance=name, baseline_episodes=a[name].episodes, candidate_episodes=b[name].episodes,
            completion_rate_delta=_delta(a[name].completion_rate, b[name].completion_rate),
            mean_achievements_delta=_delta(a[name].mean_achievements, b[name].mean_achievements),
            crafter_score_delta=_delta(a[name].crafter_score, b[name].crafter_score),
            mean_steps_delta=_delta(a[name].mean_steps, b[name].mean_steps),
        )
        for name in sorted(set(a) & set(b))
    ]


def settings_diff(experiments: Sequence[Experiment], baseline: str) -> SettingsDiff:
    """The settings whose values are not the same in every experiment."""
    rows = {e.name: e.settings_row() for e in experiments}
    keys = sorted({k for row in rows.values() for k in row})
    differing = [k for k in keys if len({repr(row.get(k)) for row in rows.values()}) > 1]
    values = {name: {k: row.get(k) for k in differing} for name, row in rows.items()}
    deltas: dict[str, dict[str, float]] = {}
    base_row = rows[baseline]
    for name, row in rows.items():
        if name == baseline:
            continue
        numeric = {k: float(row[k]) - float(base_row[k]) for k in differing
                   if _is_number(row.get(k)) and _is_number(base_row.get(k))}
        if numeric:
            deltas[name] = numeric
    return SettingsDiff(keys=differing, values=values, deltas=deltas)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _improvement_matrix(experiments: Sequence[Experiment]) -> dict[str, dict[str, float | None]]:
    """P(row's episode has more achievements than column's) + ties/2: A12 for every ordered pair."""
    counts = {e.name: [e.num_achievements for e in e.episodes] for e in experiments}
    return {row: {col: (None if row == col else stats.a12(counts[col], counts[row])) for col in counts}
            for row in counts}
