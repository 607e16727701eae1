"""Statistics for comparing two samples of episodes honestly (see shared/reference/stats.md).

Everything here is a thin, documented layer over ``scipy.stats`` so that each number can be
checked against scipy directly. Two pieces are our own, for speed, and are tested against
scipy: a shared-statistic Boschloo test (the 22 achievements of one comparison share the
sample sizes, so the table statistic is computed once) and the smallest attainable p-value
behind the *underpowered* flag.

An empty sample never gets a statistic: functions return ``None`` (or NaN fields) instead
of dividing by zero.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from pydantic import BaseModel
from scipy import optimize, special, stats

DEFAULT_RESAMPLES = 9_999
DEFAULT_ALPHA = 0.05
#: Below this many replicates per side Mann-Whitney uses a permutation null (ties are exact too).
SMALL_SAMPLE = 20


class Interval(BaseModel):
    """A confidence interval and how it was computed."""

    low: float | None
    high: float | None
    method: str  # "BCa", "percentile", "wilson", "none"


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval of a proportion (scipy's ``binomtest(...).proportion_ci``)."""
    if n <= 0:
        return Interval(low=None, high=None, method="none")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(low=float(ci.low), high=float(ci.high), method="wilson")


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """candidate minus baseline: positive means the candidate is higher."""
    return np.mean(y, axis=axis) - np.mean(x, axis=axis)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def bootstrap_difference(baseline: Sequence[float], candidate: Sequence[float], *, paired: bool,
                         resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                         confidence: float = 0.95) -> Interval:
    """CI of mean(candidate) - mean(baseline): BCa, percentile when BCa is undefined.

    Paired samples bootstrap the per-seed differences (one sample); independent samples
    resample each side separately. BCa needs a jackknife with some spread: a constant
    sample (or a NaN BCa bound) falls back to the percentile interval, which for a
    constant sample is the point itself.
    """
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.size == 0 or b.size == 0:
        return Interval(low=None, high=None, method="none")
    if paired:
        data: tuple[np.ndarray, ...] = (b - a,)
        statistic = _mean
    else:
        data = (a, b)
        statistic = _mean_difference
    if all(np.ptp(part) == 0 for part in data):
        point = float(statistic(*data))
        return Interval(low=point, high=point, method="percentile")
    if min(part.size for part in data) < 2:  # one value cannot be resampled into a spread
        return Interval(low=None, high=None, method="none")
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = stats.bootstrap(data, statistic, n_resamples=resamples, method=method,
                                         confidence_level=confidence, vectorized=True, paired=False,
                                         rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if not (math.isnan(low) or math.isnan(high)):
            return Interval(low=low, high=high, method=method)
    return Interval(low=None, high=None, method="none")


def _score_of_rates(rates: np.ndarray) -> np.ndarray:
    """Crafter score (percent) of success fractions along the last axis (22 achievements)."""
    return np.exp(np.mean(np.log1p(100.0 * rates), axis=-1)) - 1.0


def _resampled_rates(indices: np.ndarray, unlocked: np.ndarray) -> np.ndarray:
    """Success fractions of each resample of episode indices (..., n) -> (..., 22).

    A sparse count matrix times the episodes x achievements matrix: no (resamples x n x 22)
    array is ever built.
    """
    from scipy import sparse

    idx = np.asarray(indices).astype(np.intp)
    flat = idx.reshape(-1, idx.shape[-1])
    rows, n = flat.shape
    counts = sparse.csr_matrix((np.ones(flat.size), flat.ravel(), np.arange(0, flat.size + 1, n)),
                               shape=(rows, unlocked.shape[0]))
    return np.asarray(counts @ unlocked / n).reshape(*idx.shape[:-1], unlocked.shape[1])


def bootstrap_score_difference(baseline: np.ndarray, candidate: np.ndarray, *, paired: bool,
                               resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                               confidence: float = 0.95) -> Interval:
    """CI of Crafter score(candidate) - score(baseline) by resampling episodes (rows of 0/1 or
    per-seed fractions, 22 columns). Paired rows (same seeds, same order) are resampled together.

    The statistic is nonlinear, so episodes are resampled as index vectors and the score is
    recomputed per resample; BCa, percentile when BCa is undefined.
    """
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.shape[0] < 2 or b.shape[0] < 2 or (paired and a.shape[0] != b.shape[0]):
        return Interval(low=None, high=None, method="none")
    if np.ptp(a, axis=0).max() == 0 and np.ptp(b, axis=0).max() == 0:
        point = float(_score_of_rates(b.mean(axis=0)) - _score_of_rates(a.mean(axis=0)))
        return Interval(low=point, high=point, method="percentile")

    def paired_statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return _score_of_rates(_resampled_rates(idx, b)) - _score_of_rates(_resampled_rates(idx, a))

    def independent_statistic(ia: np.ndarray, ib: np.ndarray, axis: int = -1) -> np.ndarray:
        return _score_of_rates(_resampled_rates(ib, b)) - _score_of_rates(_resampled_rates(ia, a))

    if paired:
        data: tuple[np.ndarray, ...] = (np.arange(a.shape[0]),)
        statistic = paired_statistic
    else:
        data = (np.arange(a.shape[0]), np.arange(b.shape[0]))
        statistic = independent_statistic
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.bootstrap(data, statistic, n_resamples=resamples, method=method, vectorized=True,
                                     confidence_level=confidence, rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if not (math.isnan(low) or math.isnan(high)):
            return Interval(low=low, high=high, method=method)
    return Interval(low=None, high=None, method="none")


def _two_samples(baseline: Sequence[float], candidate: Sequence[float]
                 ) -> tuple[np.ndarray, np.ndarray, float | None | bool]:
    """Both samples as arrays, and the p-value when no test is needed: None if one is empty,
    1.0 if all values are equal (nothing can differ); ``False`` when the test must run."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.size == 0 or b.size == 0:
        return a, b, None
    if np.ptp(np.concatenate([a, b])) == 0:
        return a, b, 1.0
    return a, b, False


def permutation_pvalue(baseline: Sequence[float], candidate: Sequence[float], *, paired: bool,
                       resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> float | None:
    """Two-sided permutation test of the mean difference (exact when the null is small enough).

    Paired: random sign flips of the per-seed differences; independent: relabelling episodes.
    """
    a, b, trivial = _two_samples(baseline, candidate)
    if trivial is not False:
        return trivial
    if paired and a.size < 2:
        return 1.0  # one pair: both signs are as extreme as the observed one
    if not paired and min(a.size, b.size) < 2:
        return _exact_relabelling_pvalue(a, b)
    if paired and 2 ** min(a.size, 64) > resamples:
        return sign_flip_pvalue(b - a, resamples=resamples, seed=seed)
    if paired:  # few enough seeds for scipy to enumerate every sign pattern: exact
        result = stats.permutation_test((a, b), _mean_difference, permutation_type="samples",
                                        n_resamples=resamples, vectorized=True, alternative="two-sided",
                                        rng=np.random.default_rng(seed))
    else:
        result = stats.permutation_test((a, b), _mean_difference, permutation_type="independent",
                                        n_resamples=resamples, vectorized=True, alternative="two-sided",
                                        batch=resamples, rng=np.random.default_rng(seed))
    return float(result.pvalue)


def sign_flip_pvalue(differences: np.ndarray, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                     batch: int = 2_000) -> float:
    """Monte Carlo paired permutation test: random sign flips of the per-seed differences.

    The same null and the same p-value convention as ``scipy.stats.permutation_test`` with
    ``permutation_type="samples"`` (two-sided = twice the smaller one-sided p, each
    (count + 1) / (resamples + 1), with scipy's relative tolerance for ties), written out
    because scipy's generic pairing is ~10x slower at 100 seeds and this runs per metric.
    """
    d = np.asarray(differences, dtype=float)
    observed = d.mean()
    gamma = abs(np.finfo(float).eps * 100 * observed)
    rng = np.random.default_rng(seed)
    less = greater = 0
    done = 0
    while done < resamples:
        size = min(batch, resamples - done)
        signs = rng.integers(0, 2, size=(size, d.size), dtype=np.int8) * 2 - 1
        null = (signs * d).mean(axis=1)
        less += int((null <= observed + gamma).sum())
        greater += int((null >= observed - gamma).sum())
        done += size
    p_less, p_greater = (less + 1) / (resamples + 1), (greater + 1) / (resamples + 1)
    return float(min(1.0, 2 * min(p_less, p_greater)))


def _exact_relabelling_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    """Exact two-sided permutation p of the mean difference by enumerating every relabelling
    (used when a side has a single value, which scipy's permutation_test does not take)."""
    pooled = np.concatenate([a, b])
    observed = abs(b.mean() - a.mean())
    extreme = total = 0
    for chosen in itertools.combinations(range(pooled.size), a.size):
        mask = np.zeros(pooled.size, dtype=bool)
        mask[list(chosen)] = True
        total += 1
        extreme += abs(pooled[~mask].mean() - pooled[mask].mean()) >= observed * (1 - 1e-12)
    return extreme / total


def welch_pvalue(baseline: Sequence[float], candidate: Sequence[float]) -> float | None:
    """Welch's t-test p-value; None when either side has < 2 values or both are constant."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.size < 2 or b.size < 2:
        return None
    if np.var(a) == 0 and np.var(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    with warnings.catch_warnings():  # scipy warns of precision loss for nearly constant samples
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(b, a, equal_var=False).pvalue)


def mann_whitney_pvalue(baseline: Sequence[float], candidate: Sequence[float], *,
                        resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> float | None:
    """Mann-Whitney U p-value: a permutation null for small samples, asymptotic (tie-corrected) else."""
    a, b, trivial = _two_samples(baseline, candidate)
    if trivial is not False:
        return trivial
    if min(a.size, b.size) < SMALL_SAMPLE:
        method = stats.PermutationMethod(n_resamples=resamples, rng=np.random.default_rng(seed))
        return float(stats.mannwhitneyu(b, a, alternative="two-sided", method=method).pvalue)
    return float(stats.mannwhitneyu(b, a, alternative="two-sided", method="asymptotic").pvalue)


def wilcoxon_pvalue(baseline: Sequence[float], candidate: Sequence[float]) -> float | None:
    """Wilcoxon signed-rank p-value of paired samples; 1.0 when every difference is zero."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.size == 0 or a.size != b.size:
        return None
    if np.all(b - a == 0):
        return 1.0
    return float(stats.wilcoxon(b, a, zero_method="wilcox").pvalue)


def a12(baseline: Sequence[float], candidate: Sequence[float]) -> float | None:
    """Vargha-Delaney A12 = P(candidate > baseline) + P(tie)/2 = U/(n1 n2): the probability of improvement."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.size == 0 or b.size == 0:
        return None
    greater = (b[:, None] > a[None, :]).sum()
    ties = (b[:, None] == a[None, :]).sum()
    return float((greater + 0.5 * ties) / (a.size * b.size))


def cliffs_delta(baseline: Sequence[float], candidate: Sequence[float]) -> float | None:
    """Cliff's delta = 2 A12 - 1 = P(candidate > baseline) - P(candidate < baseline)."""
    value = a12(baseline, candidate)
    return None if value is None else 2.0 * value - 1.0


def cohens_d(baseline: Sequence[float], candidate: Sequence[float]) -> float | None:
    """Cohen's d with the pooled (n-1) standard deviation; None when it is undefined."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.size < 2 or b.size < 2:
        return None
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    diff = b.mean() - a.mean()
    if pooled == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return float(diff / math.sqrt(pooled))


def min_attainable_pvalue(n_baseline: int, n_candidate: int, *, paired: bool,
                          resamples: int = DEFAULT_RESAMPLES) -> float:
    """The smallest two-sided permutation p-value these sample sizes can ever give.

    Independent: 2 / C(n1+n2, n1) (the two most extreme labellings), e.g. 0.10 for 3 vs 3
    and 0.0079 for 5 vs 5. Paired with n seeds: 2 / 2^n sign patterns. A Monte Carlo test
    cannot go below 1/(resamples+1) either.
    """
    if n_baseline <= 0 or n_candidate <= 0:
        return 1.0
    if paired:
        exact = 2.0 / 2.0 ** min(n_baseline, 1074)
    else:
        exact = 2.0 / math.comb(n_baseline + n_candidate, n_baseline)
    return float(min(1.0, max(exact, 1.0 / (resamples + 1))))


def benjamini_hochberg(pvalues: Sequence[float | None]) -> list[float | None]:
    """BH-adjusted p-values (scipy's ``false_discovery_control``); Nones stay None."""
    present = [(i, p) for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    adjusted: list[float | None] = [None] * len(pvalues)
    if not present:
        return adjusted
    values = stats.false_discovery_control([p for _, p in present], method="bh")
    for (i, _), value in zip(present, values, strict=True):
        adjusted[i] = float(value)
    return adjusted


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values (family-wise), Nones stay None."""
    present = sorted(((p, i) for i, p in enumerate(pvalues) if p is not None), key=lambda t: t[0])
    adjusted: list[float | None] = [None] * len(pvalues)
    m = len(present)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


# --- Boschloo's exact test, shared across tables with the same sample sizes -------------------

_GRID = 129


@lru_cache(maxsize=32)
def _sorted_tables(n1: int, n2: int, alternative: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every table (x1 successes of n1, x2 of n2) sorted by its Fisher statistic.

    The statistic is the one-sided Fisher p-value, as in scipy; returns the sorted
    statistics, log C(n1,x1)C(n2,x2) and x1+x2 in the same order.
    """
    x1 = np.arange(n1 + 1).reshape(-1, 1)
    x2 = np.arange(n2 + 1).reshape(1, -1)
    total = n1 + n2
    if alternative == "less":
        statistic = stats.hypergeom.cdf(x1, total, x1 + x2, n1)
    else:
        statistic = stats.hypergeom.cdf(x2, total, x1 + x2, n2)
    statistic = np.asarray(statistic, dtype=float).ravel()
    order = np.argsort(statistic, kind="stable")
    log_comb = (special.gammaln(n1 + 1) - special.gammaln(x1 + 1) - special.gammaln(n1 - x1 + 1)
                + special.gammaln(n2 + 1) - special.gammaln(x2 + 1) - special.gammaln(n2 - x2 + 1)).ravel()
    return statistic[order], log_comb[order], (x1 + x2).ravel()[order]


@lru_cache(maxsize=32)
def _cumulative_on_grid(n1: int, n2: int, alternative: str) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative probability of the sorted tables at each nuisance value of a grid (tables x grid).

    The p-value of an observed table at nuisance pi is the probability of every table whose
    statistic is <= the observed one: one row of this matrix, shared by all 22 achievements.
    """
    _, log_comb, successes = _sorted_tables(n1, n2, alternative)
    grid = np.linspace(0.0, 1.0, _GRID)
    return np.cumsum(_table_probabilities(grid, log_comb, successes, n1 + n2), axis=0), grid


def _table_probabilities(pis: np.ndarray, log_comb: np.ndarray, successes: np.ndarray, total: int) -> np.ndarray:
    """P(table) under a common success probability pi, tables x pis."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pi = np.log(pis)[None, :]
        log_rest = np.log1p(-pis)[None, :]
        s = successes[:, None]
        log_p = log_comb[:, None] + np.where(s == 0, 0.0, s * log_pi) + np.where(s == total, 0.0, (total - s) * log_rest)
    return np.exp(log_p)


def _boschloo_one_sided(x1: int, n1: int, x2: int, n2: int, alternative: str) -> float:
    statistic, log_comb, successes = _sorted_tables(n1, n2, alternative)
    cumulative, grid = _cumulative_on_grid(n1, n2, alternative)
    if alternative == "less":
        observed = float(stats.hypergeom.cdf(x1, n1 + n2, x1 + x2, n1))
    else:
        observed = float(stats.hypergeom.cdf(x2, n1 + n2, x1 + x2, n2))
    # The same 1e-13 relative tolerance as scipy, so equal statistics count as "as extreme".
    count = int(np.searchsorted(statistic, observed * (1 + 1e-13), side="right"))
    if count == 0:
        return 0.0
    curve = cumulative[count - 1]
    best = int(np.argmax(curve))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    included_log_comb, included_successes = log_comb[:count], successes[:count]

    def negative(pi: float) -> float:
        return -float(_table_probabilities(np.array([pi]), included_log_comb, included_successes, n1 + n2).sum())

    # The curve is smooth in pi: refine the grid maximum between its neighbours.
    refined = optimize.minimize_scalar(negative, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    return float(min(1.0, max(curve[best], -refined.fun)))


def boschloo_pvalue(successes_baseline: int, n_baseline: int, successes_candidate: int,
                    n_candidate: int) -> float | None:
    """Two-sided Boschloo exact test of two proportions (twice the smaller one-sided p, as scipy).

    Same definition as ``scipy.stats.boschloo_exact`` on the table
    ``[[k1, k2], [n1 - k1, n2 - k2]]``; the nuisance maximum is searched on a dense grid
    shared by all tables of these sample sizes, then refined locally.
    """
    if n_baseline <= 0 or n_candidate <= 0:
        return None
    less = _boschloo_one_sided(successes_baseline, n_baseline, successes_candidate, n_candidate, "less")
    greater = _boschloo_one_sided(successes_baseline, n_baseline, successes_candidate, n_candidate, "greater")
    return float(min(1.0, 2.0 * min(less, greater)))


def boschloo_min_pvalue(n_baseline: int, n_candidate: int) -> float:
    """The smallest two-sided Boschloo p these sample sizes allow (all vs none)."""
    if n_baseline <= 0 or n_candidate <= 0:
        return 1.0
    return boschloo_pvalue(n_baseline, n_baseline, 0, n_candidate) or 1.0
