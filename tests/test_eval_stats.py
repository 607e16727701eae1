"""The statistics, checked against scipy called directly and against hand-worked small cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from crafter_tui.evaluation import stats
from crafter_tui.evaluation.metrics import crafter_score
from crafter_tui.world.rules import ACHIEVEMENTS

BASE = [2, 3, 3, 4, 5, 1, 2, 4, 3, 3, 2, 5]
CAND = [4, 5, 3, 6, 5, 4, 3, 6, 5, 4, 4, 7]


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (47, 100)])
def test_wilson_interval_matches_the_formula_and_scipy(k, n):
    ci = stats.wilson_interval(k, n)
    low, high = wilson_by_hand(k, n)
    assert ci.low == pytest.approx(max(low, 0.0), abs=1e-12)
    assert ci.high == pytest.approx(min(high, 1.0), abs=1e-12)
    ref = sps.binomtest(k, n).proportion_ci(method="wilson")
    assert (ci.low, ci.high) == pytest.approx((ref.low, ref.high))


def test_wilson_of_no_episodes_is_empty_not_a_division_by_zero():
    ci = stats.wilson_interval(0, 0)
    assert ci.low is None and ci.high is None and ci.method == "none"


def test_bootstrap_independent_equals_scipy_bca_with_the_same_seed():
    ci = stats.bootstrap_difference(BASE, CAND, paired=False, resamples=9999, seed=7)
    ref = sps.bootstrap((np.array(BASE, float), np.array(CAND, float)),
                        lambda x, y, axis: np.mean(y, axis=axis) - np.mean(x, axis=axis),
                        n_resamples=9999, method="BCa", vectorized=True, rng=np.random.default_rng(7))
    assert ci.method == "BCa"
    assert (ci.low, ci.high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert ci.low < np.mean(CAND) - np.mean(BASE) < ci.high


def test_bootstrap_paired_resamples_the_differences():
    ci = stats.bootstrap_difference(BASE, CAND, paired=True, resamples=9999, seed=3)
    diffs = np.array(CAND, float) - np.array(BASE, float)
    ref = sps.bootstrap((diffs,), np.mean, n_resamples=9999, method="BCa", rng=np.random.default_rng(3))
    assert (ci.low, ci.high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))


def test_bootstrap_of_constant_samples_falls_back_to_percentile():
    ci = stats.bootstrap_difference([2, 2, 2], [3, 3, 3], paired=False, resamples=999)
    assert ci.method == "percentile" and ci.low == ci.high == 1.0
    # constant differences when paired: BCa is undefined there too
    ci = stats.bootstrap_difference([1, 2, 3], [2, 3, 4], paired=True, resamples=999)
    assert ci.method == "percentile" and ci.low == ci.high == 1.0


def test_bootstrap_bca_nan_falls_back_to_percentile():
    # one differing value in 20: BCa's acceleration is degenerate on some seeds; result must be finite
    ci = stats.bootstrap_difference([0] * 19 + [1], [0] * 20, paired=False, resamples=999)
    assert ci.low is not None and ci.high is not None and not math.isnan(ci.low)


def test_permutation_exact_small_cases_by_hand():
    # 3 vs 3 completely separated: 2 of the C(6,3)=20 labellings are as extreme -> p = 0.10
    assert stats.permutation_pvalue([1, 2, 3], [4, 5, 6], paired=False) == pytest.approx(0.10)
    # 5 paired seeds all improving (distinct sizes): 2 of 2^5 sign patterns -> p = 0.0625
    assert stats.permutation_pvalue([0, 0, 0, 0, 0], [1, 2, 3, 4, 5], paired=True) == pytest.approx(2 / 32)


def test_permutation_matches_scipy_at_realistic_size():
    p = stats.permutation_pvalue(BASE, CAND, paired=False, resamples=9999, seed=11)
    ref = sps.permutation_test((np.array(BASE, float), np.array(CAND, float)),
                               lambda x, y, axis: np.mean(y, axis=axis) - np.mean(x, axis=axis),
                               n_resamples=9999, vectorized=True, rng=np.random.default_rng(11))
    assert p == pytest.approx(ref.pvalue)
    assert p < 0.01


def test_welch_mann_whitney_wilcoxon_match_scipy():
    assert stats.welch_pvalue(BASE, CAND) == pytest.approx(sps.ttest_ind(CAND, BASE, equal_var=False).pvalue)
    big_a = list(np.random.default_rng(0).poisson(4, 40))
    big_b = list(np.random.default_rng(1).poisson(5, 40))
    assert stats.mann_whitney_pvalue(big_a, big_b) == pytest.approx(
        sps.mannwhitneyu(big_b, big_a, method="asymptotic").pvalue)
    small = stats.mann_whitney_pvalue([1, 2, 3], [4, 5, 6], resamples=9999)
    assert small == pytest.approx(0.10)  # permutation null at small n: exact
    assert stats.wilcoxon_pvalue(BASE, CAND) == pytest.approx(sps.wilcoxon(CAND, BASE).pvalue)


def test_effect_sizes_by_hand():
    # pairs (cand > base): (2>1)=1, (2=2)=0.5, (3>1)=1, (3>2)=1 -> 3.5/4
    assert stats.a12([1, 2], [2, 3]) == pytest.approx(0.875)
    assert stats.cliffs_delta([1, 2], [2, 3]) == pytest.approx(0.75)
    u = sps.mannwhitneyu(CAND, BASE).statistic
    assert stats.a12(BASE, CAND) == pytest.approx(u / (len(BASE) * len(CAND)))
    # d = (mean diff) / pooled sd: [1,2,3] vs [3,4,5]: diff 2, both sd 1 -> d = 2
    assert stats.cohens_d([1, 2, 3], [3, 4, 5]) == pytest.approx(2.0)
    assert stats.a12([], [1]) is None and stats.cohens_d([1], [2]) is None


def test_smallest_attainable_p_and_underpowered_threshold():
    assert stats.min_attainable_pvalue(3, 3, paired=False) == pytest.approx(0.10)
    assert stats.min_attainable_pvalue(5, 5, paired=False) == pytest.approx(2 / 252)
    assert stats.min_attainable_pvalue(4, 4, paired=True) == pytest.approx(2 / 16)
    assert stats.min_attainable_pvalue(100, 100, paired=False) == pytest.approx(1 / 10000)
    assert stats.min_attainable_pvalue(3, 3, paired=False) > 0.05  # -> underpowered at alpha 0.05


@pytest.mark.parametrize("table", [(3, 5, 0, 5), (0, 3, 3, 3), (7, 10, 2, 10), (30, 100, 45, 100),
                                   (1, 4, 2, 7), (50, 100, 50, 100), (100, 100, 90, 100), (0, 40, 0, 40),
                                   (12, 40, 25, 60)])
def test_boschloo_matches_scipy(table):
    k1, n1, k2, n2 = table
    ours = stats.boschloo_pvalue(k1, n1, k2, n2)
    ref = sps.boschloo_exact([[k1, k2], [n1 - k1, n2 - k2]]).pvalue
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-9)


def test_boschloo_smallest_p_flags_tiny_samples():
    assert stats.boschloo_min_pvalue(2, 2) > 0.05  # two episodes each can never show a difference
    assert stats.boschloo_min_pvalue(10, 10) < 0.05


def test_benjamini_hochberg_matches_scipy_and_keeps_gaps():
    p = [0.01, 0.04, 0.03, 0.2, None]
    adjusted = stats.benjamini_hochberg(p)
    ref = sps.false_discovery_control([0.01, 0.04, 0.03, 0.2], method="bh")
    assert adjusted[:4] == pytest.approx(list(ref)) and adjusted[4] is None


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04 -> 3*0.01=0.03, 2*0.02=0.04, 1*0.04=0.04 (monotone)
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])


def test_crafter_score_matches_the_published_formula():
    assert crafter_score({name: 1.0 for name in ACHIEVEMENTS}) == pytest.approx(100.0)
    assert crafter_score({name: 0.0 for name in ACHIEVEMENTS}) == pytest.approx(0.0)
    rates = {name: 0.0 for name in ACHIEVEMENTS} | {"collect_wood": 0.5, "place_table": 0.2}
    by_hand = math.exp((math.log(1 + 50) + math.log(1 + 20)) / 22) - 1
    assert crafter_score(rates) == pytest.approx(by_hand)


def test_paired_sign_flip_agrees_with_scipy_within_monte_carlo_error():
    rng = np.random.default_rng(2)
    base = rng.poisson(5, 60).astype(float)
    cand = base + rng.normal(0.3, 1.5, 60)
    ours = stats.permutation_pvalue(base, cand, paired=True, resamples=9999, seed=4)
    ref = sps.permutation_test((base, cand), lambda x, y, axis: np.mean(y, axis=axis) - np.mean(x, axis=axis),
                               permutation_type="samples", n_resamples=49_999, vectorized=True,
                               rng=np.random.default_rng(1)).pvalue
    standard_error = math.sqrt(ref * (1 - ref) / 9999) * 2  # two-sided doubles the count's error
    assert abs(ours - ref) < 4 * standard_error + 1e-4
    # a real shift is detected, no shift is not
    assert stats.permutation_pvalue(base, base + 1.0 + rng.normal(0, 0.1, 60), paired=True) < 0.001


def test_crafter_score_difference_ci_matches_a_direct_scipy_bootstrap():
    rng = np.random.default_rng(8)
    base = (rng.random((30, 22)) < 0.3).astype(float)
    cand = (rng.random((30, 22)) < 0.45).astype(float)

    def direct(ia, ib):  # the published formula on the resampled episodes, one resample at a time
        rates_a = {name: base[ia.astype(int), k].mean() for k, name in enumerate(ACHIEVEMENTS)}
        rates_b = {name: cand[ib.astype(int), k].mean() for k, name in enumerate(ACHIEVEMENTS)}
        return crafter_score(rates_b) - crafter_score(rates_a)

    idx = np.arange(30)
    for paired in (False, True):
        ours = stats.bootstrap_score_difference(base, cand, paired=paired, resamples=499, seed=5)
        if paired:
            ref = sps.bootstrap((idx,), lambda i: direct(i, i), n_resamples=499, vectorized=False,
                                rng=np.random.default_rng(5))
        else:
            ref = sps.bootstrap((idx, idx), direct, n_resamples=499, vectorized=False, rng=np.random.default_rng(5))
        assert ours.method == "BCa"
        assert (ours.low, ours.high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
        assert ours.low < direct(idx, idx) < ours.high
