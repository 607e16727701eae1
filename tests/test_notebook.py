"""The notebook API: trace tables, experiments and comparisons as DataFrames, and a cheap ``import crafter_tui``."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import crafter_tui
from crafter_tui.errors import UserError
from crafter_tui.evaluation.experiments import ExperimentRegistry, experiment_from_runs
from crafter_tui.world.rules import ACHIEVEMENTS
from tests import eval_builders
from tests.trace_builders import small_store


@pytest.fixture
def store(tmp_path):
    with crafter_tui.open_store(small_store(tmp_path / "traces")) as opened:
        yield opened


def test_episodes_turns_and_steps_are_dataframes_of_the_store(store):
    runs = store.runs()
    assert isinstance(runs, pd.DataFrame) and runs.run_id.tolist() == ["run-a", "run-b"]
    episodes = store.episodes()
    assert list(zip(episodes.run_id, episodes.episode)) == [("run-a", 0), ("run-a", 1), ("run-a", 2),
                                                            ("run-b", 0), ("run-b", 1), ("run-b", 2)]
    assert episodes.num_achievements.tolist() == [2, 0, 1, 2, 1, 0]
    assert episodes.progression.tolist() == pytest.approx([2 / 22, 0, 1 / 22, 2 / 22, 1 / 22, 0])
    assert list(episodes.achievements[0]) == ["collect_wood", "place_table"]
    assert episodes.groupby("model").num_achievements.sum().to_dict() == {"model-a": 3, "model-b": 3}
    assert "ach_mask" not in episodes.columns
    turns = store.turns()
    assert len(turns) == 3 + 2 + 4 + 1 + 5 + 2 and "seq" not in turns.columns
    assert turns[turns.run_id == "run-a"].valid.tolist() == [True] * 5 + [True, False, True, True]
    steps = store.steps(run="run-b")
    assert steps.action_name.tolist() == ["do", "do"] + ["sleep"] * 4 + ["noop"] + ["move_left"] * 2
    assert len(store.steps()) == 18


def test_a_query_or_a_run_filter_binds_values_and_an_unknown_run_is_named(store):
    assert store.episodes(run="run-b").episode.tolist() == [0, 1, 2]
    found = store.sql("SELECT run_id, count(*) AS n FROM episodes WHERE num_achievements >= ? GROUP BY run_id "
                      "ORDER BY run_id", [1])
    assert found.to_dict("list") == {"run_id": ["run-a", "run-b"], "n": [2, 2]}
    assert store.arrow("SELECT * FROM runs").num_rows == 2
    with pytest.raises(UserError, match="unknown run 'nope'; known: run-a, run-b"):
        store.episodes(run="nope")


def test_a_missing_trace_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="trace directory not found"):
        crafter_tui.open_store(tmp_path / "nowhere")


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """Two registered experiments on the same seeds; the comparison's resamples kept small by the config."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRAFTER_TUI_CONFIG", raising=False)
    monkeypatch.delenv("CRAFTER_TUI_DATA_DIR", raising=False)
    (tmp_path / "crafter_config.toml").write_text("[evaluation]\nresamples = 199\n", encoding="utf-8")
    registry = ExperimentRegistry(tmp_path / "data")
    for name, counts in (("base", [1, 2, 1, 2, 1, 2]), ("cand", [3, 4, 3, 4, 3, 4])):
        run = eval_builders.write_run(tmp_path / "traces", name, eval_builders.simple_episodes(counts), model=name)
        registry.save(experiment_from_runs(name, [run]))
    return tmp_path / "data"


def test_experiments_and_their_episodes_as_tables(registered):
    table = crafter_tui.experiments(data_dir=registered)
    assert table[["name", "version", "model", "episodes"]].values.tolist() == [
        ["base", "v1.0", "base", 6], ["cand", "v1.0", "cand", 6]]
    episodes = crafter_tui.experiment_episodes("base,cand", data_dir=registered)
    assert episodes.groupby("experiment").num_achievements.mean().to_dict() == {"base": 1.5, "cand": 3.5}
    assert episodes.seed.tolist() == [0, 1, 2, 3, 4, 5] * 2


def test_a_comparison_as_tables_computed_or_loaded_from_its_report(registered, tmp_path):
    frames = crafter_tui.compare(["base", "cand"], data_dir=registered)
    assert frames.comparison.resamples == 199 and frames.comparison.baseline == "base"
    assert frames.experiments.set_index("experiment").achievements_mean.to_dict() == {"base": 1.5, "cand": 3.5}
    achievements = frames.metrics[frames.metrics.metric == "achievements"].iloc[0]
    assert (achievements.candidate, achievements.paired, achievements.difference) == ("cand", True, 2.0)
    assert {"ci_low", "ci_high", "p_permutation", "verdict"} <= set(frames.metrics.columns)
    rates = frames.achievements.set_index(["experiment", "achievement"])
    first, fourth = ACHIEVEMENTS[0], ACHIEVEMENTS[3]  # base unlocks the first one or two, cand three or four
    assert (rates.loc[("base", first)].successes, rates.loc[("base", first)].n) == (6, 6)
    assert (rates.loc[("base", fourth)].successes, rates.loc[("cand", fourth)].successes) == (0, 3)
    assert set(frames.differences.candidate) == {"cand"}
    report = tmp_path / "comparison.json"
    report.write_text(frames.comparison.model_dump_json(), encoding="utf-8")
    loaded = crafter_tui.load_comparison(report)
    pd.testing.assert_frame_equal(loaded.metrics, frames.metrics)
    report.write_text('{"baseline": 3}', encoding="utf-8")
    with pytest.raises(UserError, match="comparison.json: not a comparison report"):
        crafter_tui.load_comparison(report)


def test_importing_the_package_loads_no_table_library():
    code = ("import sys, crafter_tui; heavy = {'pandas', 'duckdb', 'pyarrow', 'pydantic'} & set(sys.modules); "
            "assert not heavy, heavy; assert callable(crafter_tui.open_store); assert 'duckdb' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
