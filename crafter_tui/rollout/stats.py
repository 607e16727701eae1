"""End-of-run statistics: what ``crafter-tui rollout`` prints and ``--json`` returns."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

from crafter_tui.evaluation.metrics import crafter_score, describe, progression, success_rates
from crafter_tui.traces.schema import EpisodeSummary


class RunStats(BaseModel):
    """Achievement statistics of a set of episodes (in seed order)."""

    episodes: int
    seeds: list[int]
    achievements_per_episode: list[int]
    steps_per_episode: list[int]
    turns_per_episode: list[int]
    mean_achievements: float | None
    median_achievements: float | None
    std_achievements: float | None
    crafter_score: float | None
    progression: float | None
    success_rates: dict[str, float]
    mean_reward: float | None
    mean_steps: float | None
    termination_reasons: dict[str, int]
    invalid_actions: int
    prompt_tokens: int
    completion_tokens: int


def run_stats(summaries: list[EpisodeSummary]) -> RunStats:
    ordered = sorted(summaries, key=lambda s: (s.seed, s.episode))
    counts = [s.num_achievements for s in ordered]
    ach = describe([float(c) for c in counts])
    rates = success_rates([s.achievements for s in ordered])
    rewards = describe([s.reward for s in ordered])
    steps = describe([float(s.steps) for s in ordered])
    return RunStats(
        episodes=len(ordered),
        seeds=[s.seed for s in ordered],
        achievements_per_episode=counts,
        steps_per_episode=[s.steps for s in ordered],
        turns_per_episode=[s.turns for s in ordered],
        mean_achievements=ach["mean"], median_achievements=ach["median"], std_achievements=ach["std"],
        crafter_score=crafter_score(rates) if ordered else None,
        progression=progression(counts),
        success_rates=rates,
        mean_reward=rewards["mean"], mean_steps=steps["mean"],
        termination_reasons=dict(Counter(s.termination for s in ordered)),
        invalid_actions=sum(s.invalid_actions for s in ordered),
        prompt_tokens=sum(s.prompt_tokens for s in ordered),
        completion_tokens=sum(s.completion_tokens for s in ordered),
    )
