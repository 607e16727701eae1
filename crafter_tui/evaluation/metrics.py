"""Per-run metrics every report starts from: Crafter score, progression, success rates.

Definitions (see shared/reference/stats.md):
- success rate of achievement i: fraction of episodes that unlocked it at least once;
- Crafter score: exp(mean_i ln(1 + s_i)) - 1 with s_i the success *percentage* of
  achievement i over the 22 achievements (Hafner, 2021);
- progression (BALROG): unique achievements / 22 per episode, averaged over episodes.
An empty set of episodes has no metrics: functions return ``None`` instead of dividing by 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from statistics import mean, median, pstdev

from crafter_tui.world.rules import ACHIEVEMENTS


def success_rates(unlocked_per_episode: Sequence[Iterable[str]]) -> dict[str, float]:
    """Achievement -> fraction of episodes that unlocked it (all 22 keys, Crafter's order)."""
    n = len(unlocked_per_episode)
    counts: Counter[str] = Counter()
    for unlocked in unlocked_per_episode:
        counts.update(set(unlocked))
    return {name: (counts[name] / n if n else 0.0) for name in ACHIEVEMENTS}


def crafter_score(rates: dict[str, float]) -> float:
    """The Crafter score in percent from success fractions of the 22 achievements."""
    percents = [100.0 * rates.get(name, 0.0) for name in ACHIEVEMENTS]
    return math.exp(sum(math.log(1.0 + p) for p in percents) / len(percents)) - 1.0


def progression(num_unlocked: Sequence[int]) -> float | None:
    """BALROG progression: mean of unique achievements / 22 (None for no episodes)."""
    if not num_unlocked:
        return None
    return mean(n / len(ACHIEVEMENTS) for n in num_unlocked)


def describe(values: Sequence[float]) -> dict[str, float | None]:
    """mean, median, std (population), min, max and IQM of a sample; Nones when empty."""
    if not values:
        return {"mean": None, "median": None, "std": None, "min": None, "max": None, "iqm": None}
    return {
        "mean": float(mean(values)),
        "median": float(median(values)),
        "std": float(pstdev(values)),
        "min": float(min(values)),
        "max": float(max(values)),
        "iqm": interquartile_mean(values),
    }


def interquartile_mean(values: Sequence[float]) -> float | None:
    """Mean of the middle 50%: int(0.25 n) values cut from each end, as ``scipy.stats.trim_mean``.

    Written out because importing scipy.stats costs seconds, and this runs at the end of every rollout.
    """
    if not values:
        return None
    ordered = sorted(values)
    cut = int(0.25 * len(ordered))
    kept = ordered[cut: len(ordered) - cut]
    return float(sum(kept) / len(kept))
