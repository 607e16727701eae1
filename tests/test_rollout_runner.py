"""The rollout runner and `crafter-tui rollout`: results, determinism, crash safety, resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from crafter_tui.cli import main
from crafter_tui.config import AppConfig
from crafter_tui.rollout.events import EpisodeFinished, RunFinished, RunStarted
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.services.rollouts import RolloutService, run_rollout
from crafter_tui.traces.schema import EpisodeSummary, RunRecord, StepRecord, TurnRecord
from crafter_tui.world.text_obs import OBSERVATION_REVISIONS

REQUIRED_JSON_KEYS = {
    "run_id", "run_dir", "episodes", "achievements_per_episode", "steps_per_episode", "mean_achievements",
    "crafter_score", "progression", "success_rates", "invalid_actions", "termination_reasons",
}


def _rollout_json(capsys, *args: str) -> dict:
    code = main(["rollout", *args, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_rollout_json_has_the_documented_keys_and_valid_trace_files(capsys, tmp_path):
    result = _rollout_json(capsys, "--agent", "random", "--episodes", "3", "--max-steps", "40",
                           "--seed", "5", "--out", str(tmp_path / "traces"))
    assert REQUIRED_JSON_KEYS <= result.keys()
    assert result["episodes"] == 3 and result["seeds"] == [5, 6, 7]
    assert all(steps <= 40 for steps in result["steps_per_episode"])
    run_dir = Path(result["run_dir"])
    record = RunRecord.model_validate_json((run_dir / "run.json").read_text())
    assert record.status == "finished" and record.seeds == [5, 6, 7] and record.agent == "random"
    assert record.versions.crafter == "1.8.3" and record.prompt_hash
    steps = [StepRecord.model_validate(x) for x in _lines(run_dir / "steps.jsonl")]
    turns = [TurnRecord.model_validate(x) for x in _lines(run_dir / "turns.jsonl")]
    episodes = [EpisodeSummary.model_validate(x) for x in _lines(run_dir / "episodes.jsonl")]
    assert len(episodes) == 3
    assert sum(e.steps for e in episodes) == len(steps)
    assert sum(e.turns for e in episodes) == len(turns)
    assert all(len(s.view) == 63 and s.view[31] == "@" for s in steps)
    assert result["achievements_per_episode"] == [e.num_achievements for e in sorted(episodes, key=lambda e: e.seed)]


def test_scripted_expert_through_the_runner_beats_random(tmp_path):
    config = AppConfig()
    expert = RolloutSpec(agent="scripted", model="scripted-expert", episodes=10, seed=0, max_steps=300,
                         out_dir=tmp_path / "t")
    rand = expert.model_copy(update={"agent": "random", "model": "random"})
    expert_result = _run(expert, config)
    random_result = _run(rand, config)
    assert expert_result.stats.mean_achievements >= 10, expert_result.stats.achievements_per_episode
    assert random_result.stats.mean_achievements <= 4
    turns = _lines(expert_result.run_dir / "turns.jsonl")
    assert len({t["reasoning"] for t in turns}) > 20  # explanations, not a constant string


def _run(spec, config):
    import asyncio

    return asyncio.run(run_rollout(spec, config))


async def test_service_streams_typed_events_in_order(tmp_path):
    spec = RolloutSpec(agent="random", model="random", episodes=2, max_steps=20, out_dir=tmp_path)
    events = [event async for event in RolloutService(AppConfig()).run(spec)]
    assert isinstance(events[0], RunStarted) and events[0].pending == 2
    assert isinstance(events[-1], RunFinished) and events[-1].status == "finished"
    assert sum(isinstance(e, EpisodeFinished) for e in events) == 2


ROLLOUT_CMD = [sys.executable, "-m", "crafter_tui", "rollout", "--agent", "scripted", "--max-steps", "300",
               "--seed", "100", "--quiet"]


def _steps_by_episode(run_dir: Path, attempt: int | None = None) -> dict[int, list[tuple]]:
    found: dict[int, list[tuple]] = defaultdict(list)
    for raw in _lines(run_dir / "steps.jsonl"):
        if attempt is None or raw["attempt"] == attempt:
            found[raw["episode"]].append((raw["step"], raw["action"], raw["view"], tuple(raw["inventory"]),
                                          raw["reward"]))
    return found


def test_two_processes_produce_identical_trajectories(tmp_path):
    for name in ("a", "b"):
        subprocess.run([*ROLLOUT_CMD, "--episodes", "3", "--out", str(tmp_path), "--run-id", name],
                       check=True, capture_output=True, timeout=240)
    assert _steps_by_episode(tmp_path / "a") == _steps_by_episode(tmp_path / "b")
    turns_a = [(t["episode"], t["observation"], t["assistant"]) for t in _lines(tmp_path / "a" / "turns.jsonl")]
    turns_b = [(t["episode"], t["observation"], t["assistant"]) for t in _lines(tmp_path / "b" / "turns.jsonl")]
    assert sorted(turns_a, key=str) == sorted(turns_b, key=str)


def test_kill_9_then_resume_finishes_every_episode_exactly_once(tmp_path):
    episodes = 10  # the kill lands after ~700 of ~3,000 steps: a wide window even with a fast world
    clean = tmp_path / "clean"
    subprocess.run([*ROLLOUT_CMD, "--episodes", str(episodes), "--concurrency", "2", "--out", str(tmp_path),
                    "--run-id", "clean"], check=True, capture_output=True, timeout=240)
    proc = subprocess.Popen([*ROLLOUT_CMD, "--episodes", str(episodes), "--concurrency", "2",
                             "--out", str(tmp_path), "--run-id", "crashed"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    crashed = tmp_path / "crashed"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        summaries = crashed / "episodes.jsonl"
        if summaries.exists() and len(summaries.read_text().splitlines()) >= 1 and \
                len((crashed / "steps.jsonl").read_text().splitlines()) > 700:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = {e["episode"] for e in _lines(crashed / "episodes.jsonl")}
    assert 0 < len(finished_before) < episodes, "the kill should land mid-run"
    partial = _steps_by_episode(crashed)
    reference = _steps_by_episode(clean)
    for episode, steps in partial.items():  # everything written before the kill equals a clean run
        assert steps == reference[episode][: len(steps)]

    subprocess.run([*ROLLOUT_CMD, "--out", str(tmp_path), "--resume", "crashed"], check=True,
                   capture_output=True, timeout=240)
    summaries = _lines(crashed / "episodes.jsonl")
    assert sorted(s["episode"] for s in summaries) == list(range(episodes))
    record = json.loads((crashed / "run.json").read_text())
    assert record["status"] == "finished"
    for summary in summaries:  # the finished attempt of each episode equals the clean run
        mine = [s for s in _lines(crashed / "steps.jsonl")
                if s["episode"] == summary["episode"] and s["attempt"] == summary["attempt"]]
        got = [(s["step"], s["action"], s["view"], tuple(s["inventory"]), s["reward"]) for s in mine]
        assert got == reference[summary["episode"]]


@pytest.mark.parametrize("args, message", [
    (["--episodes", "0"], "--episodes: expected a positive integer"),
    (["--difficulty", "nightmare"], "--difficulty: invalid choice"),
    (["--agent", "gpt"], "--agent: invalid choice"),
    (["--max-steps", "many"], "--max-steps: expected a positive integer"),
    (["--seed", "-3"], "seed"),
    (["--env", "remote", "--env-url", ""], "env_url"),
])
def test_bad_flags_give_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "traces"
    proc = subprocess.run([sys.executable, "-m", "crafter_tui", "rollout", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr
    assert not out.exists()


def test_bad_config_gives_one_line_naming_key_and_file(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[eval]\nepisodes = -2\n")
    out = tmp_path / "traces"
    proc = subprocess.run([sys.executable, "-m", "crafter_tui", "rollout", "--config", str(config), "--out",
                           str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "bad.toml" in proc.stderr and "eval.episodes" in proc.stderr
    assert not out.exists()


def test_resume_of_unknown_run_is_a_clear_error(capsys, tmp_path):
    assert main(["rollout", "--out", str(tmp_path), "--resume", "nope"]) == 2
    assert "--resume: no run folder" in capsys.readouterr().err


def test_resume_replays_episodes_that_ended_by_an_infrastructure_failure(capsys, tmp_path):
    result = _rollout_json(capsys, "--agent", "random", "--episodes", "2", "--max-steps", "30",
                           "--out", str(tmp_path), "--run-id", "r")
    run_dir = Path(result["run_dir"])
    summaries = _lines(run_dir / "episodes.jsonl")
    broken = dict(summaries[1], termination="env_error", error="env service unreachable")
    (run_dir / "episodes.jsonl").write_text("".join(json.dumps(s) + "\n" for s in (summaries[0], broken)))
    resumed = _rollout_json(capsys, "--out", str(tmp_path), "--resume", "r")
    assert resumed["termination_reasons"] == result["termination_reasons"]
    last = _lines(run_dir / "episodes.jsonl")[-1]
    assert last["episode"] == broken["episode"] and last["attempt"] == 1
    replayed = [s for s in _lines(run_dir / "steps.jsonl") if s["episode"] == broken["episode"]]
    first, second = ([s for s in replayed if s["attempt"] == a] for a in (0, 1))
    assert [s["view"] for s in first] == [s["view"] for s in second]


def test_a_run_of_an_earlier_observation_wording_is_not_continued(capsys, tmp_path):
    for run_id, observation in (("b", "brief"), ("f", "full")):
        _rollout_json(capsys, "--agent", "random", "--episodes", "1", "--max-steps", "10", "--observation",
                      observation, "--out", str(tmp_path), "--run-id", run_id)
        record = json.loads((tmp_path / run_id / "run.json").read_text())
        assert record["settings"]["observation_revision"] == OBSERVATION_REVISIONS[observation]
        del record["settings"]["observation_revision"]  # as written before revisions were recorded
        (tmp_path / run_id / "run.json").write_text(json.dumps(record))
    _rollout_json(capsys, "--out", str(tmp_path), "--resume", "f")  # full has only ever had one wording
    assert main(["rollout", "--out", str(tmp_path), "--resume", "b"]) == 2
    err = capsys.readouterr().err
    assert "holds an unrecorded revision of the 'brief' observation and this version writes revision " \
        f"{OBSERVATION_REVISIONS['brief']}" in err
    assert "b/run.json" in err


def test_a_summary_line_of_the_wrong_shape_is_reported_and_its_episode_replayed(capsys, tmp_path, caplog):
    result = _rollout_json(capsys, "--agent", "random", "--episodes", "2", "--max-steps", "20",
                           "--out", str(tmp_path), "--run-id", "s")
    run_dir = Path(result["run_dir"])
    summaries = _lines(run_dir / "episodes.jsonl")
    broken = {k: v for k, v in summaries[1].items() if k != "termination"}
    (run_dir / "episodes.jsonl").write_text("".join(json.dumps(s) + "\n" for s in (summaries[0], broken)))
    with caplog.at_level("WARNING"):
        _rollout_json(capsys, "--out", str(tmp_path), "--resume", "s")
    assert "skipped a summary of episode 1 (termination" in caplog.text
    assert sorted(s["episode"] for s in _lines(run_dir / "episodes.jsonl") if "termination" in s) == [0, 1]
