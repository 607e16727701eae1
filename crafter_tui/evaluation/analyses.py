"""Trace analyses: actions, achievements, seeds, quality, rules, efficiency, training progress.

Each analysis reads run folders through ``evaluation.episodes`` and returns a pydantic
report (JSON-ready); the charts and HTML are drawn from those reports. The step-level
classification of wasted and rule-breaking actions lives here once and is shared by the
``rules`` and ``efficiency`` analyses and by the ``time_efficiency`` comparison metric.

What can be derived from a step line (state *after* the action) and the previous one:
- a ``move_*`` that changed neither position nor facing did nothing (walking into a wall
  the player already faces); a move that only turned the player is useful (it aims ``do``);
- a ``make_*``/``place_*`` that changed no non-vital inventory item failed (missing
  materials, no table/furnace nearby, or no free target cell); a failure of the same action
  again with no inventory change since is a *repeated* failed craft;
- ``noop`` is idle. A ``do`` that hit nothing cannot be told apart from an attack on a mob,
  so it is never counted as wasted.
The first step of an episode has no previous state, so only a noop can be judged there.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from crafter_tui.errors import UserError
from crafter_tui.evaluation import stats
from crafter_tui.evaluation.episodes import RunEpisodes
from crafter_tui.evaluation.metrics import crafter_score, success_rates
from crafter_tui.traces.jsonl import iter_jsonl
from crafter_tui.traces.schema import StepRecord, TurnRecord
from crafter_tui.world.rules import ACHIEVEMENTS, ITEMS, VITALS

_VITAL_INDEX = {ITEMS.index(name) for name in VITALS if name in ITEMS}
TRUNCATING_ENDS = frozenset({"max_steps", "max_turns", "timeout"})
LOOP_MIN_STEPS = 8


# --- step classification ------------------------------------------------------------------------------

class StepWaste(BaseModel):
    """Counts of actions that achieved nothing in one episode (or summed over many)."""

    steps: int = 0
    noops: int = 0
    blocked_moves: int = 0  # moves that changed neither position nor facing
    turn_only_moves: int = 0  # moves that only turned the player (not wasted)
    failed_crafts: int = 0  # make_* with no inventory change
    failed_places: int = 0  # place_* with no inventory change
    repeated_failed_crafts: int = 0  # a failed make_/place_ repeated with nothing changed in between
    sleeping_steps: int = 0

    @property
    def wasted(self) -> int:
        """Time-efficiency waste: noops, moves that did not move, repeated failed crafts."""
        return self.noops + self.blocked_moves + self.repeated_failed_crafts

    @property
    def refused(self) -> int:
        """Actions the game's rules refused: crafts and places that changed nothing, moves into walls."""
        return self.failed_crafts + self.failed_places + self.blocked_moves

    def add(self, other: StepWaste) -> None:
        for name in StepWaste.model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _materials(inventory: Sequence[int]) -> tuple[int, ...]:
    return tuple(count for index, count in enumerate(inventory) if index not in _VITAL_INDEX)


def classify_steps(steps: Sequence[StepRecord]) -> StepWaste:
    """Waste counts of one episode's steps (in step order)."""
    waste = StepWaste(steps=len(steps))
    previous: StepRecord | None = None
    last_failed: str | None = None
    for step in steps:
        name = step.action_name
        if step.sleeping:
            waste.sleeping_steps += 1
        if name == "noop":
            waste.noops += 1
        elif previous is not None and name.startswith("move_"):
            if tuple(step.pos) == tuple(previous.pos):
                if tuple(step.facing) == tuple(previous.facing):
                    waste.blocked_moves += 1
                else:
                    waste.turn_only_moves += 1
        elif previous is not None and (name.startswith("make_") or name.startswith("place_")):
            if _materials(step.inventory) == _materials(previous.inventory):
                if name.startswith("make_"):
                    waste.failed_crafts += 1
                else:
                    waste.failed_places += 1
                if last_failed == name:
                    waste.repeated_failed_crafts += 1
                last_failed = name
        if previous is not None and _materials(step.inventory) != _materials(previous.inventory):
            last_failed = None
        previous = step
    return waste


def step_waste_by_episode(runs: Iterable[RunEpisodes]) -> dict[tuple[str, int], StepWaste]:
    """(run_dir, episode) -> its step classification, for the ``time_efficiency`` and ``rule_understanding``
    comparison metrics."""
    out: dict[tuple[str, int], StepWaste] = {}
    for run in runs:
        steps = run.steps()
        for summary in run.summaries:
            out[(str(run.run_dir), summary.episode)] = classify_steps(steps.get(summary.episode, []))
    return out


def rule_violations_per_turn(invalid_replies: int, waste: StepWaste, turns: int) -> float | None:
    """Rule understanding as ``analyze rules`` counts it: replies that broke the protocol plus actions the
    game refused, per turn (None for an episode without turns)."""
    return (invalid_replies + waste.refused) / turns if turns else None


# --- invalid replies by kind -----------------------------------------------------------------------------

INVALID_KINDS = ("too_many_actions", "unknown_action", "parse_failure", "bad_tool_call", "other")
_KIND_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("too_many_actions", ("too many", "at most", "max actions", "more than")),
    ("unknown_action", ("unknown action", "not a valid action", "invalid action", "no such action")),
    ("parse_failure", ("json", "parse", "decode", "malformed")),
    ("bad_tool_call", ("tool", "function", "argument", "missing field", "must be", "is empty", "empty reply")),
)


def invalid_kind(turn: TurnRecord) -> str:
    """The kind of an invalid reply, from its error text (first matching keyword group)."""
    text = (turn.error or "").lower()
    for kind, words in _KIND_WORDS:
        if any(word in text for word in words):
            return kind
    return "other"


def tool_names(turn: TurnRecord) -> list[str]:
    """The functions the assistant message called ('(no tool call)' when none)."""
    calls = turn.assistant.get("tool_calls") or []
    names = [str((call.get("function") or {}).get("name", "?")) for call in calls if isinstance(call, dict)]
    return names or ["(no tool call)"]


# --- actions ------------------------------------------------------------------------------------------------

class ActionsReport(BaseModel):
    episodes: int
    steps: int
    turns: int
    actions: dict[str, int]  # executed env actions
    tool_calls: dict[str, int]
    actions_per_turn: dict[int, int]
    ngrams: dict[int, list[tuple[str, int]]]  # n -> most common action n-grams


def analyze_actions(runs: Sequence[RunEpisodes], *, top: int = 15, sizes: Sequence[int] = (2, 3)) -> ActionsReport:
    """Action and tool-call frequencies and the most common action n-grams within episodes."""
    actions: Counter[str] = Counter()
    tools: Counter[str] = Counter()
    per_turn: Counter[int] = Counter()
    grams: dict[int, Counter[str]] = {n: Counter() for n in sizes}
    episodes = steps_total = turns_total = 0
    for run in runs:
        steps, turns = run.steps(), run.turns()
        for summary in run.summaries:
            episodes += 1
            names = [s.action_name for s in steps.get(summary.episode, [])]
            steps_total += len(names)
            actions.update(names)
            for n in sizes:
                grams[n].update(" > ".join(names[i:i + n]) for i in range(len(names) - n + 1))
            for turn in turns.get(summary.episode, []):
                turns_total += 1
                tools.update(tool_names(turn))
                per_turn[len(turn.actions)] += 1
    return ActionsReport(
        episodes=episodes, steps=steps_total, turns=turns_total, actions=dict(actions.most_common()),
        tool_calls=dict(tools.most_common()), actions_per_turn=dict(sorted(per_turn.items())),
        ngrams={n: grams[n].most_common(top) for n in sizes},
    )


def actions_figure(report: ActionsReport):  # -> Figure
    """Action frequency, tool-call frequency and top n-grams in one figure."""
    from crafter_tui.evaluation.charts import Figure

    fig = Figure(figsize=(12, 9))
    grid = fig.add_gridspec(2, 2)
    ax_actions = fig.add_subplot(grid[0, 0])
    items = list(report.actions.items())
    ax_actions.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#1f77b4")
    ax_actions.set_title(f"Actions ({report.steps} steps, {report.episodes} episodes)", fontsize=10)
    ax_tools = fig.add_subplot(grid[0, 1])
    tools = list(report.tool_calls.items())
    ax_tools.bar([k for k, _ in tools], [v for _, v in tools], color="#ff7f0e")
    ax_tools.set_title(f"Tool calls ({report.turns} turns)", fontsize=10)
    ax_tools.tick_params(axis="x", labelrotation=20)
    ax_grams = fig.add_subplot(grid[1, :])
    size = max(report.ngrams) if report.ngrams else 0
    grams = report.ngrams.get(size, [])
    ax_grams.barh([g for g, _ in grams][::-1], [c for _, c in grams][::-1], color="#2ca02c")
    ax_grams.set_title(f"Most common action {size}-grams", fontsize=10)
    ax_grams.tick_params(axis="y", labelsize=7)
    if not items:
        ax_actions.text(0.5, 0.5, "no steps recorded", ha="center", transform=ax_actions.transAxes)
    fig.tight_layout()
    return fig


# --- achievements -------------------------------------------------------------------------------------

class AchievementRow(BaseModel):
    achievement: str
    successes: int
    episodes: int
    rate: float
    ci_low: float | None
    ci_high: float | None
    median_first_step: float | None  # step of the first unlock, over episodes that unlocked it


class AchievementsReport(BaseModel):
    group: str  # the model (runs are grouped by model)
    episodes: int
    crafter_score: float | None
    mean_achievements: float | None
    rows: list[AchievementRow]


def analyze_achievements(runs: Sequence[RunEpisodes]) -> list[AchievementsReport]:
    """Per model: success rate with a Wilson interval and the median first-unlock step per achievement."""
    by_model: dict[str, list[tuple[RunEpisodes, Any]]] = defaultdict(list)
    for run in runs:
        for summary in run.summaries:
            by_model[summary.model].append((run, summary))
    reports = []
    for model, items in sorted(by_model.items()):
        first_steps: dict[str, list[int]] = defaultdict(list)
        for run, summary in items:
            for step in run.steps().get(summary.episode, []):
                for name in step.new_achievements:
                    first_steps[name].append(step.step)
        unlocked = [summary.achievements for _, summary in items]
        n = len(items)
        counts = Counter(name for names in unlocked for name in set(names))
        rows = []
        for name in ACHIEVEMENTS:
            ci = stats.wilson_interval(counts[name], n)
            firsts = first_steps.get(name, [])
            rows.append(AchievementRow(achievement=name, successes=counts[name], episodes=n,
                                       rate=counts[name] / n if n else 0.0, ci_low=ci.low, ci_high=ci.high,
                                       median_first_step=float(statistics.median(firsts)) if firsts else None))
        reports.append(AchievementsReport(
            group=model, episodes=n, crafter_score=crafter_score(success_rates(unlocked)) if n else None,
            mean_achievements=float(np.mean([len(u) for u in unlocked])) if n else None, rows=rows))
    return reports


def achievements_html(reports: Sequence[AchievementsReport]) -> str:
    """A self-contained HTML page: per-model table and the achievement spectrum chart."""
    import base64
    import html

    from crafter_tui.evaluation.charts import render, spectrum_figure

    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Achievement analysis</title>",
             "<style>body{font-family:Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:3px 7px;"
             "text-align:right}td:first-child{text-align:left}img{max-width:100%}</style></head><body>",
             "<h1>Achievement analysis</h1>"]
    if reports:
        chart = render(spectrum_figure({r.group: [row.rate for row in r.rows] for r in reports}))
        parts.append(f'<img alt="achievement spectrum" src="data:image/png;base64,'
                     f'{base64.b64encode(chart).decode("ascii")}">')
    for report in reports:
        parts.append(f"<h2>{html.escape(report.group)}</h2><p>{report.episodes} episodes · Crafter score "
                     f"{_f(report.crafter_score)} · mean achievements {_f(report.mean_achievements)}</p>")
        parts.append("<table><tr><th>achievement</th><th>unlocked</th><th>rate</th><th>Wilson 95%</th>"
                     "<th>median first step</th></tr>")
        for row in report.rows:
            parts.append(f"<tr><td>{row.achievement}</td><td>{row.successes}/{row.episodes}</td>"
                         f"<td>{100 * row.rate:.1f}%</td><td>[{_pct(row.ci_low)}, {_pct(row.ci_high)}]</td>"
                         f"<td>{_f(row.median_first_step)}</td></tr>")
        parts.append("</table>")
    if not reports:
        parts.append("<p>No finished episodes.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


# --- seeds ----------------------------------------------------------------------------------------------

class SeedRow(BaseModel):
    seed: int
    episodes: int
    models: list[str]
    mean_achievements: float
    std_achievements: float
    min_achievements: float
    max_achievements: float
    mean_reward: float
    mean_steps: float
    achievements_always: list[str]  # unlocked in every episode of this seed
    achievements_sometimes: list[str]  # unlocked in some but not all


class SeedsReport(BaseModel):
    seeds: list[SeedRow]
    missing_seeds: list[int]
    between_seed_std: float | None  # std of the per-seed means: how much the world matters
    within_seed_std: float | None  # mean std inside a seed: how much the agent's luck matters
    coefficient_of_variation: float | None
    seed_dependent_achievements: dict[str, float]  # achievement -> spread (max - min) of per-seed rates


class SeedsByModel(BaseModel):
    """Seed stability per model: mixing models would mistake model differences for seed effects."""

    models: dict[str, SeedsReport]


def analyze_seeds(runs: Sequence[RunEpisodes], seeds: Sequence[int] | None = None) -> SeedsByModel:
    """Performance and stability across seeds (optionally only the given seeds), per model."""
    by_model: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        for summary in run.summaries:
            by_model[summary.model].append(summary)
    return SeedsByModel(models={model: _seed_report(items, seeds) for model, items in sorted(by_model.items())})


def _seed_report(summaries: Sequence[Any], seeds: Sequence[int] | None) -> SeedsReport:
    wanted = set(seeds) if seeds else None
    grouped: dict[int, list[Any]] = defaultdict(list)
    for summary in summaries:
        if wanted is None or summary.seed in wanted:
            grouped[summary.seed].append(summary)
    rows = []
    for seed, items in sorted(grouped.items()):
        counts = np.array([s.num_achievements for s in items], dtype=float)
        sets = [set(s.achievements) for s in items]
        always = set.intersection(*sets) if sets else set()
        ever = set.union(*sets) if sets else set()
        rows.append(SeedRow(
            seed=seed, episodes=len(items), models=sorted({s.model for s in items}),
            mean_achievements=float(counts.mean()), std_achievements=float(counts.std()),
            min_achievements=float(counts.min()), max_achievements=float(counts.max()),
            mean_reward=float(np.mean([s.reward for s in items])), mean_steps=float(np.mean([s.steps for s in items])),
            achievements_always=[a for a in ACHIEVEMENTS if a in always],
            achievements_sometimes=[a for a in ACHIEVEMENTS if a in ever - always],
        ))
    means = np.array([r.mean_achievements for r in rows])
    spread: dict[str, float] = {}
    if len(rows) >= 2:
        for name in ACHIEVEMENTS:
            rates = [np.mean([name in s.achievements for s in grouped[r.seed]]) for r in rows]
            if max(rates) - min(rates) > 0:
                spread[name] = float(max(rates) - min(rates))
    return SeedsReport(
        seeds=rows, missing_seeds=sorted(wanted - set(grouped)) if wanted else [],
        between_seed_std=float(means.std()) if len(rows) >= 2 else None,
        within_seed_std=float(np.mean([r.std_achievements for r in rows])) if rows else None,
        coefficient_of_variation=(float(means.std() / means.mean()) if len(rows) >= 2 and means.mean() else None),
        seed_dependent_achievements=dict(sorted(spread.items(), key=lambda kv: -kv[1])),
    )


# --- trace quality, rules, efficiency ---------------------------------------------------------------------

class QualityReport(BaseModel):
    runs: int
    episodes: int
    turns: int
    invalid_turns: int
    invalid_rate: float | None
    parse_failures: int
    invalid_by_kind: dict[str, int]
    loops: int  # stretches of >= 8 moves within <= 2 cells
    steps_in_loops: int
    truncated_episodes: int  # ended by a step/turn/time limit
    truncated_replies: int  # assistant replies cut by max_tokens (finish_reason 'length')
    errored_episodes: int
    terminations: dict[str, int]
    line_problems: list[str] = Field(default_factory=list)


def find_loops(steps: Sequence[StepRecord], min_steps: int = LOOP_MIN_STEPS) -> list[int]:
    """Lengths of the stretches of >= ``min_steps`` consecutive moves that stay within 2 cells
    (walking back and forth, or pushing against a wall)."""
    loops: list[int] = []
    stretch: list[tuple[int, int]] = []
    for step in steps:
        position = (int(step.pos[0]), int(step.pos[1]))
        if step.action_name.startswith("move_") and len({*stretch, position}) <= 2:
            stretch.append(position)
            continue
        if len(stretch) >= min_steps:
            loops.append(len(stretch))
        stretch = [position] if step.action_name.startswith("move_") else []
    if len(stretch) >= min_steps:
        loops.append(len(stretch))
    return loops


def _cut_off(turn: TurnRecord) -> bool:
    """A reply cut at max_tokens (finish_reason 'length', recorded on the turn or in its error)."""
    extra = turn.model_extra or {}
    return (extra.get("finish_reason") == "length" or turn.assistant.get("finish_reason") == "length"
            or "finish_reason=length" in (turn.error or ""))


def analyze_quality(runs: Sequence[RunEpisodes]) -> QualityReport:
    """Invalid replies, parse failures, loops, truncations and unreadable lines of the traces."""
    kinds: Counter[str] = Counter()
    terminations: Counter[str] = Counter()
    turns_total = invalid = parse = loops = loop_steps = truncated_replies = episodes = 0
    for run in runs:
        steps, turns = run.steps(), run.turns()
        for summary in run.summaries:
            episodes += 1
            terminations[summary.termination] += 1
            found = find_loops(steps.get(summary.episode, []))
            loops += len(found)
            loop_steps += sum(found)
            for turn in turns.get(summary.episode, []):
                turns_total += 1
                if _cut_off(turn):
                    truncated_replies += 1
                if not turn.valid:
                    invalid += 1
                    kind = invalid_kind(turn)
                    kinds[kind] += 1
                    parse += kind == "parse_failure"
    return QualityReport(
        runs=len(runs), episodes=episodes, turns=turns_total, invalid_turns=invalid,
        invalid_rate=invalid / turns_total if turns_total else None, parse_failures=parse,
        invalid_by_kind={k: kinds[k] for k in INVALID_KINDS}, loops=loops, steps_in_loops=loop_steps,
        truncated_episodes=sum(terminations[t] for t in TRUNCATING_ENDS),
        truncated_replies=truncated_replies,
        errored_episodes=sum(terminations[t] for t in ("agent_error", "env_error")),
        terminations=dict(terminations.most_common()),
        line_problems=[str(p) for run in runs for p in run.problems],
    )


class RulesReport(BaseModel):
    episodes: int
    turns: int
    invalid_turns: int
    invalid_rate: float | None  # invalid replies per turn
    invalid_by_kind: dict[str, int]
    invalid_rate_by_kind: dict[str, float]
    steps: int
    in_game_noops: dict[str, int]  # failed crafts/places, moves into walls
    in_game_noop_rate: float | None  # per step


def analyze_rules(runs: Sequence[RunEpisodes]) -> RulesReport:
    """Rule understanding: invalid replies by kind, and actions the game rules made no-ops."""
    kinds: Counter[str] = Counter()
    waste = StepWaste()
    turns_total = invalid = episodes = 0
    for run in runs:
        steps, turns = run.steps(), run.turns()
        for summary in run.summaries:
            episodes += 1
            waste.add(classify_steps(steps.get(summary.episode, [])))
            for turn in turns.get(summary.episode, []):
                turns_total += 1
                if not turn.valid:
                    invalid += 1
                    kinds[invalid_kind(turn)] += 1
    noops = {"failed_crafts": waste.failed_crafts, "failed_places": waste.failed_places,
             "moves_into_walls": waste.blocked_moves}  # together: ``StepWaste.refused``
    return RulesReport(
        episodes=episodes, turns=turns_total, invalid_turns=invalid,
        invalid_rate=invalid / turns_total if turns_total else None,
        invalid_by_kind={k: kinds[k] for k in INVALID_KINDS},
        invalid_rate_by_kind={k: kinds[k] / turns_total for k in INVALID_KINDS} if turns_total else {},
        steps=waste.steps, in_game_noops=noops,
        in_game_noop_rate=sum(noops.values()) / waste.steps if waste.steps else None,
    )


class EfficiencyReport(BaseModel):
    episodes: int
    steps: int
    totals: StepWaste
    wasted: int
    wasted_fraction: float | None
    wasted_per_episode: float | None
    per_episode: list[dict[str, Any]]  # run, episode, seed, steps, wasted


def analyze_efficiency(runs: Sequence[RunEpisodes]) -> EfficiencyReport:
    """Time efficiency: noops, moves that did not move and repeated failed crafts, per episode and in total."""
    totals = StepWaste()
    rows = []
    for run in runs:
        steps = run.steps()
        for summary in run.summaries:
            waste = classify_steps(steps.get(summary.episode, []))
            totals.add(waste)
            rows.append({"run": run.run_dir.name, "episode": summary.episode, "seed": summary.seed,
                         "steps": waste.steps, "wasted": waste.wasted})
    return EfficiencyReport(
        episodes=len(rows), steps=totals.steps, totals=totals, wasted=totals.wasted,
        wasted_fraction=totals.wasted / totals.steps if totals.steps else None,
        wasted_per_episode=totals.wasted / len(rows) if rows else None, per_episode=rows,
    )


# --- training progress ------------------------------------------------------------------------------------

class TrainingPoint(BaseModel):
    step: int
    train_loss: float | None = None
    valid_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_mean_token_accuracy: float | None = None


class JobProgress(BaseModel):
    job_id: str
    points: list[TrainingPoint]
    first_train_loss: float | None
    last_train_loss: float | None
    best_valid_loss: float | None
    best_valid_step: int | None
    steps: int


def read_metrics_file(path: Path) -> dict[str, list[TrainingPoint]]:
    """Job id -> points from a JSONL of metrics events.

    Accepted lines: the fine-tuning API's event shape with a job id
    (``{"job_id": ..., "type": "metrics", "data": {"step": ..., "train_loss": ...}}``) or a flat
    point (``{"job_id": ..., "step": ..., "train_loss": ...}``). A step logged twice keeps the last.
    """
    if not path.is_file():
        raise UserError("no such metrics file", where=str(path))
    found: dict[str, dict[int, TrainingPoint]] = defaultdict(dict)
    for number, raw in enumerate(iter_jsonl(path), start=1):
        job_id = raw.get("job_id") or raw.get("fine_tuning_job_id") or raw.get("object_id")
        data = raw.get("data") if isinstance(raw.get("data"), dict) else raw
        if raw.get("type", "metrics") != "metrics" or job_id is None or "step" not in data:
            continue
        try:
            point = TrainingPoint.model_validate({k: data[k] for k in TrainingPoint.model_fields if k in data})
        except ValueError as exc:
            raise UserError(f"bad metrics record: {exc.errors()[0]['msg']}",  # type: ignore[attr-defined]
                            where=f"{path}: record {number}") from None
        found[str(job_id)][point.step] = point
    return {job: [points[s] for s in sorted(points)] for job, points in found.items()}


def job_progress(job_id: str, points: Sequence[TrainingPoint]) -> JobProgress:
    train = [p.train_loss for p in points if p.train_loss is not None]
    valid = [(p.valid_loss, p.step) for p in points if p.valid_loss is not None]
    best = min(valid) if valid else None
    return JobProgress(job_id=job_id, points=list(points), first_train_loss=train[0] if train else None,
                       last_train_loss=train[-1] if train else None, best_valid_loss=best[0] if best else None,
                       best_valid_step=best[1] if best else None, steps=max((p.step for p in points), default=0))


def training_figure(progress: Sequence[JobProgress]):  # -> Figure
    """Train (solid) and validation (dashed) loss per step, one colour per job."""
    from crafter_tui.evaluation.charts import PALETTE, Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for index, job in enumerate(progress):
        color = PALETTE[index % len(PALETTE)]
        train = [(p.step, p.train_loss) for p in job.points if p.train_loss is not None]
        valid = [(p.step, p.valid_loss) for p in job.points if p.valid_loss is not None]
        if train:
            ax.plot(*zip(*train, strict=True), color=color, label=f"{job.job_id} train")
        if valid:
            ax.plot(*zip(*valid, strict=True), color=color, linestyle="--", label=f"{job.job_id} valid")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Training progress", fontsize=10)
    if any(job.points for job in progress):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
