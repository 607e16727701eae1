"""Experiments: the guide's experiments.json, the registry and its versions, errors that name the field."""

from __future__ import annotations

import json

import pytest

from crafter_tui.errors import UserError
from crafter_tui.evaluation.episodes import read_run
from crafter_tui.evaluation.experiments import (
    ExperimentRegistry,
    experiment_from_runs,
    load_experiments_file,
    next_version,
    resolve_experiments,
    training_data_for,
)
from tests.eval_builders import Ep, simple_episodes, write_run

GUIDE_EXAMPLE = {
    "experiments": [
        {"name": "baseline-7b", "model": "Qwen/Qwen2.5-7B-Instruct", "training_data": "crafter_baseline.jsonl",
         "epochs": 3, "achievements": [2.1, 2.3, 2.0], "instances": ["easy", "medium", "hard"], "version": "v1.0"},
        {"name": "improved-7b", "model": "ft:qwen2-5-7b-instruct:org-test123:timestamp",
         "training_data": "crafter_improved.jsonl", "epochs": 5, "achievements": [3.2, 3.5, 3.1],
         "instances": ["easy", "medium", "hard"], "version": "v1.1"},
    ]
}


def write_json(path, value):
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def test_the_guide_example_loads(tmp_path):
    experiments = load_experiments_file(write_json(tmp_path / "experiments.json", GUIDE_EXAMPLE))
    base, improved = experiments
    assert base.name == "baseline-7b" and base.epochs == 3 and base.version == "v1.0"
    assert [e.num_achievements for e in improved.episodes] == [3.2, 3.5, 3.1]
    assert improved.model == "ft:qwen2-5-7b-instruct:org-test123:timestamp"  # opaque, never split
    assert base.training_data is not None and base.training_data.path == "crafter_baseline.jsonl"
    assert all(e.achievements is None for e in base.episodes)  # counts only


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda e: e.update(achievements="many"), "experiments.0.achievements"),
    (lambda e: e.update(achievements=[1, -2]), "experiments.0.achievements"),
    (lambda e: e.pop("model"), "experiments.0.model"),
    (lambda e: e.update(epochs="three"), "experiments.0.epochs"),
    (lambda e: e.update(name="bad name!"), "experiments.0.name"),
    (lambda e: e.update(colour="blue"), "experiments.0.colour"),
])
def test_bad_files_name_the_field(tmp_path, mutate, field):
    data = json.loads(json.dumps(GUIDE_EXAMPLE))
    mutate(data["experiments"][0])
    path = write_json(tmp_path / "experiments.json", data)
    with pytest.raises(UserError) as info:
        load_experiments_file(path)
    assert str(path) in str(info.value) and f"'{field}'" in str(info.value)


def test_not_json_and_duplicates_are_reported(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{\"experiments\": [", encoding="utf-8")
    with pytest.raises(UserError, match="not valid JSON.*line 1"):
        load_experiments_file(path)
    data = {"experiments": [GUIDE_EXAMPLE["experiments"][0]] * 2}
    with pytest.raises(UserError, match="repeated: baseline-7b"):
        load_experiments_file(write_json(tmp_path / "d.json", data))


def test_single_object_and_seeds_enable_pairing(tmp_path):
    path = write_json(tmp_path / "one.json", {"name": "a", "model": "m", "achievements": [1, 2], "seeds": [4, 5]})
    (experiment,) = load_experiments_file(path)
    assert [e.seed for e in experiment.episodes] == [4, 5] and experiment.seeds == [4, 5]
    bad = write_json(tmp_path / "bad.json", {"name": "a", "model": "m", "achievements": [1, 2], "seeds": [4]})
    with pytest.raises(UserError, match="seeds has 1 entries but achievements has 2"):
        load_experiments_file(bad)


def test_versions_increment_and_an_explicit_one_is_kept(tmp_path):
    assert next_version([]) == "v1.0"
    assert next_version(["v1.0", "v1.1"]) == "v1.2"
    assert next_version(["v1.9", "v2.0", "custom"]) == "v2.1"
    run = write_run(tmp_path / "traces", "r1", simple_episodes([1, 2, 3]))
    registry = ExperimentRegistry(tmp_path / "data")
    first = registry.save(experiment_from_runs("exp", [run]))
    second = registry.save(experiment_from_runs("exp", [run]))
    named = registry.save(experiment_from_runs("exp", [run]), version="release-1")
    assert (first.version, second.version, named.version) == ("v1.0", "v1.1", "release-1")
    assert registry.load("exp").version == "release-1"
    assert registry.load("exp", "v1.0").version == "v1.0"
    assert registry.names() == ["exp"]
    with pytest.raises(UserError, match="already has version v1.1"):
        registry.save(experiment_from_runs("exp", [run]), version="v1.1")
    with pytest.raises(UserError, match="no experiment 'nope'"):
        registry.load("nope")


def test_experiment_from_runs_records_what_was_evaluated(tmp_path):
    run = write_run(tmp_path / "traces", "r1", simple_episodes([1, 2], difficulty="easy"), model="m-1",
                    settings={"temperature": 0.0})
    sft = tmp_path / "train.jsonl"
    sft.write_text("{}\n", encoding="utf-8")
    experiment = experiment_from_runs("e", [run], training_data=training_data_for(str(sft)), epochs=2)
    assert experiment.model == "m-1" and experiment.instances == ["easy"] and experiment.seeds == [0, 1]
    assert experiment.git_commit == "abc123" and experiment.package_version == "0.1.0"
    assert experiment.training_data.sha256 == "ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356"
    assert experiment.settings["temperature"] == 0.0 and experiment.settings["max_steps"] == 300


def test_reader_keeps_the_attempt_the_summary_names_and_reports_bad_lines(tmp_path):
    from tests.eval_builders import Step

    run = write_run(tmp_path, "r", [Ep(seed=1, steps=[Step("noop"), Step("noop")], attempt=1)],
                    extra_lines={"steps.jsonl": [json.dumps({"episode": 0, "seed": 1, "attempt": 0, "step": 1})],
                                 "episodes.jsonl": ["{not json", json.dumps({"episode": 3})]})
    loaded = read_run(run)
    assert len(loaded.summaries) == 1
    assert [s.action_name for s in loaded.steps()[0]] == ["noop", "noop"]  # attempt 0's line is ignored
    reasons = " ".join(str(p) for p in loaded.problems)
    assert "not valid JSON" in reasons and "bad episode summary" in reasons


def test_resolve_accepts_files_folders_and_names(tmp_path):
    traces = tmp_path / "traces"
    run = write_run(traces, "r1", simple_episodes([1, 2]))
    registry = ExperimentRegistry(tmp_path / "data")
    registry.save(experiment_from_runs("named", [run]))
    path = write_json(tmp_path / "experiments.json", GUIDE_EXAMPLE)
    assert [e.name for e in resolve_experiments(str(path), registry)] == ["baseline-7b", "improved-7b"]
    assert [e.name for e in resolve_experiments(str(run), registry)] == ["r1"]
    assert [e.name for e in resolve_experiments("named@v1.0," + str(traces), registry)] == ["named", "traces"]


def test_problems_name_the_real_line(tmp_path):
    run = write_run(tmp_path, "r", [Ep(seed=1), Ep(seed=2)],
                    extra_lines={"episodes.jsonl": ["{torn", json.dumps({"episode": 9, "seed": "x"})]})
    problems = [str(p) for p in read_run(run).problems]
    assert any(p.endswith("episodes.jsonl:3: not valid JSON (JSONDecodeError: Expecting property name enclosed "
                          "in double quotes: line 1 column 2 (char 1))") for p in problems), problems
    assert any("episodes.jsonl:4: bad episode summary" in p for p in problems), problems
