"""Failed episodes are never scores: rollout/eval exit non-zero, eval registers nothing all-failed,
compare leaves them out and says so; rule understanding counts what the game refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crafter_tui.cli import main
from crafter_tui.config import AppConfig
from crafter_tui.evaluation.compare import CompareOptions, compare_experiments
from crafter_tui.evaluation.experiments import Episode, Experiment, experiment_from_runs
from crafter_tui.evaluation.run_stats import run_stats
from crafter_tui.services.evaluation import build_comparison, render_report
from crafter_tui.traces.schema import EpisodeSummary
from crafter_tui.world.rules import ACHIEVEMENTS
from tests.doubles.openai_double import OpenAIDouble, WoodcutterResponder, http_error
from tests.eval_builders import NOW, Ep, Step, write_run

FAST = CompareOptions(resamples=999)


def _summary(seed: int, achievements: int, termination: str) -> EpisodeSummary:
    return EpisodeSummary(episode=seed, seed=seed, run_id="r", agent="openai", model="m", steps=10, turns=5,
                          reward=float(achievements), achievements=list(ACHIEVEMENTS[:achievements]),
                          num_achievements=achievements, termination=termination,  # type: ignore[arg-type]
                          error="LLMCallError: boom" if termination == "agent_error" else None,
                          started_at=NOW, finished_at=NOW, wall_s=1.0)


def test_run_stats_leave_failed_episodes_out_of_every_figure():
    stats = run_stats([_summary(0, 4, "death"), _summary(1, 0, "agent_error"), _summary(2, 2, "max_steps"),
                       _summary(3, 0, "timeout")])
    assert (stats.episodes, stats.failed) == (2, 2)
    assert stats.failed_by_cause == {"agent_error": 1, "timeout": 1}
    assert stats.mean_achievements == 3.0 and stats.seeds == [0, 2]
    assert stats.first_failure == "seed 1: LLMCallError: boom"
    nothing = run_stats([_summary(0, 0, "env_error")])
    assert nothing.episodes == 0 and nothing.mean_achievements is None and nothing.progression is None
    assert nothing.success_rates == {} and nothing.crafter_score is None


def _episodes(counts, terminations=None):
    terminations = terminations or ["death"] * len(counts)
    return [Episode(seed=i, num_achievements=c, achievements=list(ACHIEVEMENTS[:c]), steps=50, turns=10,
                    invalid_actions=0, termination=t) for i, (c, t) in enumerate(zip(counts, terminations))]


def test_compare_leaves_failed_episodes_out_stays_paired_and_says_so_in_every_format():
    base = Experiment(name="base", model="a", episodes=_episodes([2, 2, 3, 2, 3, 2]))
    cand = Experiment(name="cand", model="b", episodes=_episodes(
        [3, 0, 4, 3, 0, 4], ["death", "agent_error", "death", "death", "agent_error", "death"]))
    comparison = compare_experiments([base, cand], FAST)
    summary = comparison.experiment("cand")
    assert (summary.episodes, summary.failed, summary.failed_by_cause) == (4, 2, {"agent_error": 2})
    assert summary.achievements.mean == pytest.approx(3.5)  # not (3+0+4+3+0+4)/6
    pair = comparison.pairs[0]
    assert pair.paired and "2 left out where an episode failed" in pair.pairing
    metric = pair.metrics[0]
    assert metric.n_baseline == metric.n_candidate == 4
    assert metric.mean_baseline == pytest.approx(np.mean([2, 3, 2, 2]))
    assert any("2 of 6 episodes FAILED (agent_error 2)" in w for w in comparison.warnings)
    for fmt in ("md", "html", "json"):
        assert "FAILED" in render_report(comparison, fmt)


def test_an_all_failed_experiment_is_not_measured_and_not_called_worse():
    base = Experiment(name="base", model="a", episodes=_episodes([2, 2, 3]))
    dead = Experiment(name="dead", model="b", episodes=_episodes([0, 0, 0], ["agent_error"] * 3))
    comparison = compare_experiments([base, dead], FAST)
    assert comparison.experiment("dead").episodes == 0
    assert comparison.experiment("dead").note == "no scored episodes: every episode failed"
    assert all(m.verdict == "not compared" for m in comparison.pairs[0].metrics)


def test_eval_exits_non_zero_and_registers_nothing_when_every_episode_failed(tmp_path, capsys):
    with OpenAIDouble(lambda request: http_error(400, message="context too long")) as double:
        code = main(["eval", "--model", "m", "--base-url", double.base_url, "--episodes", "2", "--max-steps", "5",
                     "--experiment", "dead", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "every episode failed (agent_error 2)" in err and "was not registered" in err
    assert main(["eval", "--list"]) == 0
    assert "no experiments registered" in capsys.readouterr().out


def test_rollout_and_eval_exit_non_zero_above_the_failed_fraction(tmp_path, capsys):
    woodcutter = WoodcutterResponder()

    def first_episode_fails(request):  # a sampled turn's seed is episode seed * 100003 + turn
        return http_error(400, message="bad request") if request.json["seed"] < 100_003 else woodcutter(request)

    with OpenAIDouble(first_episode_fails) as double:
        args = ["--model", "m", "--base-url", double.base_url, "--episodes", "4", "--max-steps", "6",
                "--temperature", "0.5", "--quiet"]
        assert main(["rollout", *args, "--json"]) == 1
        captured = capsys.readouterr()
        assert json.loads(captured.out)["failed"] == 1
        assert "1 of 4 episodes failed (agent_error 1" in captured.err and "max_failed_fraction 0.1" in captured.err
        assert main(["rollout", *args, "--max-failed-fraction", "0.5"]) == 0  # a configurable fraction
        capsys.readouterr()
        assert main(["eval", *args, "--experiment", "partly"]) == 1  # registered, with its failure kept apart
    out = capsys.readouterr().out
    assert "registered experiment partly v1.0" in out and "3 episodes" in out and "1 failed episode(s) left out" in out


def test_rule_understanding_counts_what_the_game_refused(tmp_path):
    # random-like play: crafts without a table or materials and moves into walls; the expert: none of that
    clumsy = [Ep(seed=0, steps=[Step("make_wood_pickaxe"), Step("make_wood_pickaxe"), Step("place_table"),
                                Step("move_left", pos=(10, 10)), Step("move_left", pos=(10, 10)), Step("noop")],
                 errors=[None, None, None])]
    clean = [Ep(seed=0, steps=[Step("do", wood=1), Step("move_left", pos=(9, 10), wood=1), Step("place_table", wood=0)],
                errors=[None, None, None])]
    runs = [write_run(tmp_path, "clumsy", clumsy, model="random"), write_run(tmp_path, "clean", clean, model="x")]
    experiments = [experiment_from_runs(name, [path]) for name, path in zip(("clumsy", "clean"), runs)]
    comparison = build_comparison(experiments, AppConfig(), metrics=["achievements", "rule_understanding"])
    rates = {e.name: e.metrics["rule_understanding"].mean for e in comparison.experiments}
    # 2 failed crafts + 1 failed place + 1 move into a wall (the first move cannot be judged) over 3 turns
    assert rates["clumsy"] == pytest.approx(4 / 3) and rates["clean"] == 0.0


def test_filter_max_invalid_fraction_drops_sloppy_episodes(tmp_path, capsys):
    sloppy = [Ep(seed=0, errors=["bad json", "bad json", None, None]), Ep(seed=1, errors=[None, None, None, None])]
    write_run(tmp_path / "traces", "run", sloppy)
    assert main(["filter", "--input-dir", str(tmp_path / "traces"), "--stats-only", "--json",
                 "--max-invalid-fraction", "0.25"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes_selected"] == 1
