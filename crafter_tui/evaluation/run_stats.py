"""End-of-run statistics: what ``crafter-tui rollout`` prints and ``--json`` returns.

Evaluation, not rollout: it scores with ``evaluation.metrics``, and the rollout only records.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

from crafter_tui.evaluation.metrics import crafter_score, describe, progression, success_rates
from crafter_tui.traces.schema import FAILED_TERMINATIONS, EpisodeSummary


class RunStats(BaseModel):
    """Achievement statistics of a set of episodes (in seed order).

    Failed episodes (``FAILED_TERMINATIONS``: the endpoint, the env or the clock failed, not the play) are
    counted and named by cause but kept out of every figure: a failure is never a score of zero.
    """

    episodes: int  # scored episodes (played to an end of the game's or the agent's making)
    failed: int = 0
    failed_by_cause: dict[str, int] = {}
    first_failure: str | None = None  # the first failed episode's error, to say why
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
    everything = sorted(summaries, key=lambda s: (s.seed, s.episode))
    failed = [s for s in everything if s.termination in FAILED_TERMINATIONS]
    ordered = [s for s in everything if s.termination not in FAILED_TERMINATIONS]
    counts = [s.num_achievements for s in ordered]
    ach = describe([float(c) for c in counts])
    rates = success_rates([s.achievements for s in ordered]) if ordered else {}  # no episode, no rate
    rewards = describe([s.reward for s in ordered])
    steps = describe([float(s.steps) for s in ordered])
    return RunStats(
        episodes=len(ordered),
        failed=len(failed),
        failed_by_cause=dict(Counter(s.termination for s in failed)),
        first_failure=(f"seed {failed[0].seed}: {failed[0].error or failed[0].termination}" if failed else None),
        seeds=[s.seed for s in ordered],
        achievements_per_episode=counts,
        steps_per_episode=[s.steps for s in ordered],
        turns_per_episode=[s.turns for s in ordered],
        mean_achievements=ach["mean"], median_achievements=ach["median"], std_achievements=ach["std"],
        crafter_score=crafter_score(rates) if ordered else None,
        progression=progression(counts),
        success_rates=rates,
        mean_reward=rewards["mean"], mean_steps=steps["mean"],
        termination_reasons=dict(Counter(s.termination for s in everything)),
        invalid_actions=sum(s.invalid_actions for s in ordered),
        prompt_tokens=sum(s.prompt_tokens for s in everything),  # paid for, failed or not
        completion_tokens=sum(s.completion_tokens for s in everything),
    )


def failure_problem(total: int, failed_by_cause: dict[str, int], first_failure: str | None,
                    max_failed_fraction: float) -> str | None:
    """Why a set of ``total`` episodes with these failures could not do its job (None when few enough failed)."""
    failed = sum(failed_by_cause.values())
    if not failed:
        return None
    causes = ", ".join(f"{cause} {count}" for cause, count in sorted(failed_by_cause.items()))
    if failed == total:
        return f"every episode failed ({total}: {causes}; first, {first_failure})"
    if failed / total > max_failed_fraction:
        return (f"{failed} of {total} episodes failed ({causes}; first, {first_failure}), more than "
                f"[eval] max_failed_fraction {max_failed_fraction:g}; they are left out of every figure")
    return None
