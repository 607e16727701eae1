"""The comparison model: pairing, tests wired to the right samples, underpowered flags, custom metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from crafter_tui.config import AppConfig
from crafter_tui.errors import UserError
from crafter_tui.evaluation.compare import CompareOptions, Comparison, compare_experiments, pairing
from crafter_tui.evaluation.custom_metrics import load_custom_metric
from crafter_tui.evaluation.experiments import Episode, Experiment, experiment_from_runs
from crafter_tui.services.evaluation import build_comparison, render_report
from crafter_tui.world.rules import ACHIEVEMENTS
from tests.eval_builders import Ep, Step, simple_episodes, write_run

FAST = CompareOptions(resamples=999)


def counts_experiment(name, counts, seeds=None, **fields) -> Experiment:
    seeds = seeds if seeds is not None else list(range(len(counts)))
    episodes = [Episode(seed=s, num_achievements=c, achievements=list(ACHIEVEMENTS[:c]), steps=100, turns=10,
                        invalid_actions=1, reward=float(c), termination="death") for c, s in zip(counts, seeds)]
    return Experiment(name=name, model=fields.pop("model", name), episodes=episodes, seeds=seeds, **fields)


def test_paired_when_seeds_match_and_tests_use_the_differences():
    base = counts_experiment("base", [1, 2, 3, 2, 4, 3, 2, 3])
    cand = counts_experiment("cand", [3, 3, 5, 4, 5, 6, 3, 5])
    comparison = compare_experiments([base, cand], FAST)
    pair = comparison.pairs[0]
    assert pair.paired and "paired" in pair.pairing
    metric = pair.metrics[0]
    assert metric.metric == "achievements" and metric.rank_test == "wilcoxon"
    a, b = np.array([1, 2, 3, 2, 4, 3, 2, 3.0]), np.array([3, 3, 5, 4, 5, 6, 3, 5.0])
    assert metric.difference == pytest.approx(b.mean() - a.mean())
    assert metric.p_rank == pytest.approx(sps.wilcoxon(b, a).pvalue)
    assert metric.p_permutation == pytest.approx(2 / 2**8 * 1, abs=0.01)  # all 8 differences positive
    assert not metric.underpowered and "better" in metric.verdict


def test_independent_when_seeds_differ():
    base = counts_experiment("base", [1, 2, 3, 2], seeds=[0, 1, 2, 3])
    cand = counts_experiment("cand", [3, 3, 5, 4], seeds=[10, 11, 12, 13])
    paired, why = pairing(base, cand)
    assert not paired and "differ" in why
    metric = compare_experiments([base, cand], FAST).pairs[0].metrics[0]
    assert metric.rank_test == "mann-whitney" and not metric.paired
    assert metric.p_welch == pytest.approx(sps.ttest_ind([3, 3, 5, 4], [1, 2, 3, 2], equal_var=False).pvalue)


def test_three_versus_three_is_flagged_underpowered_not_not_significant():
    base = counts_experiment("base", [1, 2, 3], seeds=[0, 1, 2])
    cand = counts_experiment("cand", [7, 8, 9], seeds=[5, 6, 7])
    comparison = compare_experiments([base, cand], FAST)
    metric = comparison.pairs[0].metrics[0]
    assert metric.underpowered and metric.min_attainable_p == pytest.approx(0.10)
    assert metric.verdict.startswith("underpowered")
    # Boschloo can reach 0.031 with 3 vs 3 (all vs none), so per-achievement tests are not flagged ...
    assert not comparison.pairs[0].achievements_underpowered
    # ... but with 2 vs 2 nothing can reach 0.05
    two = compare_experiments([counts_experiment("b", [1, 2]), counts_experiment("c", [8, 9])], FAST)
    assert two.pairs[0].achievements_underpowered


def test_per_achievement_boschloo_with_bh():
    base = counts_experiment("base", [1] * 20)
    cand = counts_experiment("cand", [3] * 20)
    rows = {r.achievement: r for r in compare_experiments([base, cand], FAST).pairs[0].achievements}
    first3 = ACHIEVEMENTS[:3]
    moved = [name for name in first3[1:]]
    for name in moved:
        assert rows[name].candidate_successes == 20 and rows[name].baseline_successes == 0
        assert rows[name].p_boschloo == pytest.approx(
            sps.boschloo_exact([[0, 20], [20, 0]]).pvalue, rel=1e-6)
        assert rows[name].significant
    assert rows[first3[0]].p_boschloo == pytest.approx(1.0)


def test_zero_episode_experiment_is_reported_not_divided_by():
    base = counts_experiment("base", [1, 2, 3])
    empty = Experiment(name="empty", model="m")
    comparison = compare_experiments([base, empty], FAST)
    summary = comparison.experiment("empty")
    assert summary.episodes == 0 and summary.note and summary.progression is None
    assert any("zero episodes" in w for w in comparison.warnings)
    assert comparison.pairs[0].metrics[0].verdict == "not compared"
    render_report(comparison, "md")  # renders without dividing by zero


def test_settings_table_shows_only_what_differs_with_deltas():
    base = counts_experiment("base", [1, 2], epochs=3, model="m")
    cand = counts_experiment("cand", [2, 3], epochs=5, model="m")
    settings = compare_experiments([base, cand], FAST).settings
    assert "epochs" in settings.keys and "model" not in settings.keys
    assert settings.deltas["cand"]["epochs"] == 2.0


def test_bad_baseline_or_metric_is_a_user_error():
    base, cand = counts_experiment("base", [1]), counts_experiment("cand", [2])
    with pytest.raises(UserError, match="--baseline"):
        compare_experiments([base, cand], CompareOptions(baseline="nope"))
    with pytest.raises(UserError, match="unknown metric.*speed"):
        compare_experiments([base, cand], CompareOptions(metrics=["speed"]))


def test_json_is_machine_readable_and_round_trips():
    comparison = compare_experiments([counts_experiment("a", [1, 2, 3]), counts_experiment("b", [2, 3, 4])], FAST)
    data = json.loads(render_report(comparison, "json"))
    assert data["baseline"] == "a" and data["pairs"][0]["metrics"][0]["metric"] == "achievements"
    assert Comparison.model_validate(data).pairs[0].candidate == "b"


def test_instances_report_completion_and_times(tmp_path):
    eps = simple_episodes([1, 2], difficulty="easy") + simple_episodes([3, 4], seed0=0, difficulty="hard")
    eps[0].termination = "max_steps"
    run = write_run(tmp_path, "r", eps)
    summary = compare_experiments([experiment_from_runs("x", [run])], FAST).experiments[0]
    easy, hard = summary.instances
    assert (easy.instance, easy.episodes, easy.completion_rate, easy.death_rate) == ("easy", 2, 0.5, 0.5)
    assert hard.mean_steps == pytest.approx((130 + 140) / 2) and hard.mean_wall_s == 1.5


CUSTOM = '''
def per_episode(episodes):
    return [e.num_achievements * 2 for e in episodes]

def scalar(episodes):
    return sum(e.num_achievements for e in episodes) / len(episodes)

def several(episodes):
    return {"max": max(e.num_achievements for e in episodes), "n": len(episodes)}

def broken(episodes):
    return ["x"] * len(episodes)
'''


def test_custom_metrics_appear_like_built_in_ones(tmp_path):
    file = tmp_path / "metrics_mine.py"
    file.write_text(CUSTOM, encoding="utf-8")
    config = AppConfig()
    config.evaluation.custom_metrics = [f"{file}:per_episode", f"{file}:scalar", f"{file}:several"]
    config.evaluation.resamples = 999
    comparison = build_comparison([counts_experiment("a", [1, 2, 3]), counts_experiment("b", [2, 3, 4])], config)
    metric = next(m for m in comparison.pairs[0].metrics if m.metric == "per_episode")
    assert metric.difference == pytest.approx(2.0)
    assert comparison.experiment("a").scalars == {"scalar": 2.0, "several.max": 3.0, "several.n": 3.0}
    assert comparison.pairs[0].scalar_deltas["scalar"] == pytest.approx(1.0)
    assert "per_episode" in render_report(comparison, "md")


def test_custom_metric_errors_name_the_spec(tmp_path):
    file = tmp_path / "m.py"
    file.write_text(CUSTOM, encoding="utf-8")
    with pytest.raises(UserError, match="no function 'missing'"):
        load_custom_metric(f"{file}:missing")
    with pytest.raises(UserError, match="no such file"):
        load_custom_metric(f"{tmp_path}/none.py:f")
    with pytest.raises(UserError, match="no entry point 'not-installed'"):
        load_custom_metric("not-installed")
    config = AppConfig()
    config.evaluation.custom_metrics = [f"{file}:broken"]
    with pytest.raises(UserError, match=r"broken.*returned str, expected a number"):
        build_comparison([counts_experiment("a", [1, 2])], config)


def test_time_efficiency_comes_from_the_step_lines(tmp_path):
    wasteful = Ep(seed=0, steps=[Step("noop"), Step("noop"), Step("move_left", pos=(10, 10)),
                                 Step("move_left", pos=(10, 10))])
    tidy = Ep(seed=0, steps=[Step("move_left", pos=(10, 10)), Step("move_left", pos=(9, 10))])
    a = experiment_from_runs("a", [write_run(tmp_path, "a", [wasteful])])
    b = experiment_from_runs("b", [write_run(tmp_path, "b", [tidy])])
    config = AppConfig()
    config.evaluation.resamples = 999
    comparison = build_comparison([a, b], config, metrics=["achievements", "time_efficiency"])
    metric = next(m for m in comparison.pairs[0].metrics if m.metric == "time_efficiency")
    # 2 noops + 2 moves that changed neither cell nor facing; the tidy run moved on its second step
    assert (metric.mean_baseline, metric.mean_candidate) == (4.0, 0.0)


def doubled_achievements(episodes):
    """An installed-package style metric for the entry-point test."""
    return [2.0 * e.num_achievements for e in episodes]


doubled_achievements.higher_is_better = True


def test_custom_metric_from_an_entry_point(monkeypatch):
    from importlib.metadata import EntryPoint

    import crafter_tui.evaluation.custom_metrics as custom

    point = EntryPoint(name="doubled", value="tests.test_eval_compare:doubled_achievements",
                       group=custom.ENTRY_POINT_GROUP)
    monkeypatch.setattr(custom, "entry_points", lambda group: [point] if group == custom.ENTRY_POINT_GROUP else [])
    config = AppConfig()
    config.evaluation.custom_metrics = ["doubled"]
    config.evaluation.resamples = 999
    comparison = build_comparison([counts_experiment("a", [1, 1, 2]), counts_experiment("b", [2, 3, 3])], config)
    metric = next(m for m in comparison.pairs[0].metrics if m.metric == "doubled")
    assert metric.difference == pytest.approx(8 / 3) and metric.higher_is_better is True


def test_crafter_score_delta_has_a_bootstrap_ci_only_with_per_achievement_detail():
    comparison = compare_experiments([counts_experiment("a", [1, 2, 3, 2, 1, 2]),
                                      counts_experiment("b", [3, 4, 3, 5, 4, 4])], FAST)
    pair = comparison.pairs[0]
    assert pair.crafter_score_ci is not None and pair.crafter_score_ci.low < pair.crafter_score_delta
    assert "95% CI" in render_report(comparison, "md")
    counts_only = [Experiment(name=n, model="m", episodes=[Episode(num_achievements=v) for v in values])
                   for n, values in (("x", [1, 2]), ("y", [2, 3]))]
    assert compare_experiments(counts_only, FAST).pairs[0].crafter_score_ci is None
