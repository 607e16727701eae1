"""``eval`` and ``compare`` end to end through the CLI entry point."""

from __future__ import annotations

import json

import pytest

from crafter_tui.cli import main
from crafter_tui.evaluation.experiments import ExperimentRegistry
from tests.eval_builders import simple_episodes, write_run
from tests.test_eval_experiments import GUIDE_EXAMPLE

FAST = ["--resamples", "999"]


@pytest.fixture
def guide_file(tmp_path):
    path = tmp_path / "experiments.json"
    path.write_text(json.dumps(GUIDE_EXAMPLE), encoding="utf-8")
    return path


def test_compare_the_guide_file_to_html_md_and_json(tmp_path, guide_file, capsys):
    report = tmp_path / "comparison_report.html"
    assert main(["compare", "--experiments", str(guide_file), "--output", str(report), *FAST]) == 0
    text = report.read_text(encoding="utf-8")
    assert "improved-7b vs baseline-7b" in text and "data:image/png;base64," in text
    assert "underpowered" in text  # 3 vs 3 episodes
    assert "wrote" in capsys.readouterr().err
    assert main(["compare", "--experiments", str(guide_file), "--format", "json", *FAST]) == 0
    data = json.loads(capsys.readouterr().out)
    metric = data["pairs"][0]["metrics"][0]
    assert metric["underpowered"] is True and metric["min_attainable_p"] == pytest.approx(0.1)
    assert data["settings"]["deltas"]["improved-7b"]["epochs"] == 2.0
    md = tmp_path / "summary.md"
    assert main(["compare", "--experiments", str(guide_file), "--output", str(md), "--baseline", "improved-7b",
                 *FAST]) == 0
    assert md.read_text(encoding="utf-8").startswith("# Experiment comparison")
    assert "baseline-7b vs improved-7b" in md.read_text(encoding="utf-8")


def test_efficient_compare_form(tmp_path, capsys):
    base, improved = tmp_path / "baseline_results.json", tmp_path / "improved_results.json"
    base.write_text(json.dumps({"name": "baseline", "model": "m", "achievements": [1, 2, 2, 3, 1, 2]}))
    improved.write_text(json.dumps({"name": "improved", "model": "m2", "achievements": [3, 4, 3, 5, 4, 4]}))
    out = tmp_path / "comparison_summary.md"
    assert main(["compare", "--baseline", str(base), "--improved", str(improved), "--metrics",
                 "achievements,time_efficiency,rule_understanding", "--output", str(out), *FAST]) == 0
    text = out.read_text(encoding="utf-8")
    assert "improved vs baseline" in text and "Wasted actions" in text
    assert "significantly better" in text  # 6 vs 6 separated samples: p = 2/924


@pytest.mark.parametrize(("argv", "fragment"), [
    (["compare"], "--experiments"),
    (["compare", "--experiments", "missing.json,other"], "missing.json: no such experiments file"),
    (["compare", "--experiments", "nobody"], "no experiment 'nobody'"),
    (["compare", "--improved", "x.json"], "--baseline"),
    (["compare", "--experiments", "GUIDE", "--baseline", "nope"], "--baseline"),
    (["compare", "--experiments", "GUIDE", "--metrics", "speed"], "unknown metric(s) speed"),
    (["compare", "--experiments", "GUIDE", "--output", "r.pdf"], "--output"),
    (["compare", "--experiments", "GUIDE", "--resamples", "5"], "evaluation.resamples"),
])
def test_compare_bad_input_is_one_line_exit_2(guide_file, capsys, argv, fragment):
    argv = [str(guide_file) if a == "GUIDE" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_eval_registers_runs_and_compare_uses_names(tmp_path, capsys):
    data = tmp_path / "data"
    config = tmp_path / "crafter_config.toml"
    config.write_text(f'[storage]\ndata_dir = "{data}"\n', encoding="utf-8")
    a = write_run(tmp_path / "traces", "a", simple_episodes([1, 2, 2, 3, 2, 1, 2, 3]))
    b = write_run(tmp_path / "traces", "b", simple_episodes([3, 4, 4, 5, 3, 4, 5, 4]), model="m-2")
    assert main(["eval", "--config", str(config), "--experiment", "base", "--runs", str(a), "--epochs", "0"]) == 0
    assert main(["eval", "--config", str(config), "--experiment", "better", "--runs", str(b),
                 "--json"]) == 0
    assert "registered experiment base v1.0" in capsys.readouterr().out.splitlines()[0]
    assert main(["eval", "--config", str(config), "--experiment", "base", "--runs", str(a)]) == 0
    assert "base v1.1" in capsys.readouterr().out
    assert ExperimentRegistry(data).names() == ["base", "better"]
    assert main(["compare", "--config", str(config), "--experiments", "base@v1.0,better", "--format", "json",
                 *FAST]) == 0
    pair = json.loads(capsys.readouterr().out)["pairs"][0]
    assert pair["paired"] is True and pair["metrics"][0]["rank_test"] == "wilcoxon"
    assert pair["metrics"][0]["difference"] == pytest.approx(2.0)
    assert main(["eval", "--config", str(config), "--list"]) == 0
    assert "better" in capsys.readouterr().out


def test_eval_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # argparse-level: one line, exit 2
        main(["eval", "--difficulty", "easy,impossible", "--experiment", "x"])
    assert exit_info.value.code == 2 and "impossible" in capsys.readouterr().err
    assert main(["eval", "--episodes", "1"]) == 2
    assert "--experiment" in capsys.readouterr().err
    assert main(["eval", "--experiment", "has space"]) == 2
    assert main(["eval", "--experiment", "x", "--runs", str(tmp_path / "none")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_eval_plays_each_difficulty_with_the_same_seeds(tmp_path, capsys):
    data, traces = tmp_path / "data", tmp_path / "traces"
    config = tmp_path / "c.toml"
    config.write_text(f'[storage]\ndata_dir = "{data}"\n', encoding="utf-8")
    assert main(["eval", "--config", str(config), "--agent", "random", "--episodes", "2", "--max-steps", "15",
                 "--difficulty", "easy,hard", "--seed", "7", "--experiment", "rand", "--out", str(traces),
                 "--quiet", "--json"]) == 0
    registered = json.loads(capsys.readouterr().out)
    assert registered["version"] == "v1.0" and registered["instances"] == ["easy", "hard"]
    assert registered["seeds"] == [7, 8] and registered["episode_count"] == 4
    assert sorted(p.name for p in traces.iterdir()) == ["rand-v1.0-easy", "rand-v1.0-hard"]
    experiment = ExperimentRegistry(data).load("rand")
    assert {(e.instance, e.seed) for e in experiment.episodes} == {("easy", 7), ("easy", 8), ("hard", 7),
                                                                  ("hard", 8)}
