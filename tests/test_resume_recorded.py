"""``--resume`` plays the recorded experiment, and an unfinished LLM episode continues from its last
recorded turn: killed with SIGKILL mid-episode and resumed, a run asks the endpoint exactly what an
uninterrupted run asks and its trace is the same, turn for turn (TEST DOUBLE endpoint, counting requests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from crafter_tui.cli import main
from crafter_tui.traces.jsonl import iter_jsonl
from tests.doubles.openai_double import OpenAIDouble, WoodcutterResponder, delayed
from tests.ft_support import REPO_ROOT

ARGS = ["--model", "m", "--episodes", "2", "--max-steps", "24", "--concurrency", "1", "--temperature", "0.7",
        "--max-tokens", "200", "--quiet"]
#: What may differ between two plays of the same turn: how long the call took, and which attempt wrote it.
VOLATILE = {"latency_ms", "attempt", "wall_s", "started_at", "finished_at", "run_id"}


def _counted(run_dir: Path, name: str) -> dict[int, list[dict]]:
    """Episode -> its lines of the attempt its summary counts, minus the volatile fields, in order."""
    counted = {raw["episode"]: raw.get("attempt", 0) for raw in iter_jsonl(run_dir / "episodes.jsonl")}
    key = "turn" if name == "turns.jsonl" else "step"
    out: dict[int, list[dict]] = {}
    for raw in iter_jsonl(run_dir / name):
        if raw.get("attempt", 0) == counted.get(raw["episode"]):
            out.setdefault(raw["episode"], []).append({k: v for k, v in raw.items() if k not in VOLATILE})
    return {episode: sorted(lines, key=lambda line: line[key]) for episode, lines in out.items()}


def test_a_resume_refuses_flags_that_change_the_recorded_experiment(tmp_path, capsys):
    with OpenAIDouble(WoodcutterResponder()) as double:
        assert main(["rollout", *ARGS, "--base-url", double.base_url, "--run-id", "r1", "--episodes", "1"]) == 0
    capsys.readouterr()
    code = main(["rollout", "--resume", "r1", "--temperature", "0.0", "--base-url", "http://127.0.0.1:9/v1"])
    err = capsys.readouterr().err
    assert code == 2 and "--temperature: recorded 0.7, given 0.0" in err and "--base-url: recorded" in err
    assert main(["rollout", "--resume", "r1", "--max-turns", "30"]) == 2  # recorded without a turn limit
    assert "--max-turns: recorded None, given 30" in capsys.readouterr().err
    assert main(["rollout", "--resume", "r1", "--temperature", "0.7", "--quiet"]) == 0  # the same value is fine


def _kill_mid_episode(tmp_path: Path, double: OpenAIDouble, hold_at: int) -> None:
    """Start the rollout in a process, hold the ``hold_at``-th request unanswered, kill -9 the process."""
    command = [sys.executable, "-m", "crafter_tui", "rollout", *ARGS, "--base-url", double.base_url,
               "--run-id", "cut"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(double.chat_requests) < hold_at:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the rollout did not reach the request to hold"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_killed_llm_episode_continues_from_its_last_turn_and_pays_no_turn_twice(tmp_path):
    woodcutter = WoodcutterResponder()
    with OpenAIDouble(woodcutter) as reference:
        assert main(["rollout", *ARGS, "--base-url", reference.base_url, "--run-id", "whole"]) == 0
        uninterrupted = len(reference.chat_requests)
    hold_at = 9  # inside the first episode (each episode takes ~20 turns)
    answered = []

    def respond(request):
        if len(answered) + 1 == hold_at and not getattr(respond, "held", False):
            respond.held = True  # type: ignore[attr-defined]
            return delayed(120_000, woodcutter(request))  # the request in flight when the process dies
        answered.append(request)
        return woodcutter(request)

    with OpenAIDouble(respond) as double:
        _kill_mid_episode(tmp_path, double, hold_at)
        before = len(answered)
        run_dir = tmp_path / "traces_v2_synth" / "cut"
        assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # killed: nothing finished it
        assert before == hold_at - 1 and not (run_dir / "episodes.jsonl").read_text().strip()
        # resumed with no flags: the recorded endpoint, temperature and seeds
        assert main(["rollout", "--resume", "cut", "--quiet"]) == 0
        after = len(answered) - before
        sent_after = [r.json for r in double.chat_requests[hold_at:]]
    assert before + after == uninterrupted  # no turn answered twice
    assert all(body["temperature"] == 0.7 and "seed" in body for body in sent_after)
    whole = tmp_path / "traces_v2_synth" / "whole"
    for name in ("turns.jsonl", "steps.jsonl"):
        assert _counted(run_dir, name) == _counted(whole, name), name
    summaries = {raw["episode"]: raw for raw in iter_jsonl(run_dir / "episodes.jsonl")}
    reference_summaries = {raw["episode"]: raw for raw in iter_jsonl(whole / "episodes.jsonl")}
    for episode, summary in reference_summaries.items():
        for key in ("steps", "turns", "achievements", "reward", "prompt_tokens", "completion_tokens", "termination"):
            assert summaries[episode][key] == summary[key], (episode, key)
    assert summaries[0]["attempt"] == 1  # continued as the next attempt, its earlier turns written again


def _unfinished(tmp_path: Path, double: OpenAIDouble, run_id: str) -> Path:
    """A one-episode run whose every turn is recorded but whose summary was never written (killed at the end)."""
    assert main(["rollout", *ARGS, "--episodes", "1", "--base-url", double.base_url, "--run-id", run_id]) == 0
    run_dir = tmp_path / "traces_v2_synth" / run_id
    (run_dir / "episodes.jsonl").write_text("")
    return run_dir


def test_an_episode_whose_turns_are_all_recorded_is_finished_without_a_request(tmp_path):
    with OpenAIDouble(WoodcutterResponder()) as double:
        run_dir = _unfinished(tmp_path, double, "done-but-unsummarised")
        asked = len(double.chat_requests)
        assert main(["rollout", "--resume", run_dir.name, "--quiet"]) == 0
        assert len(double.chat_requests) == asked
    summary = next(iter_jsonl(run_dir / "episodes.jsonl"))
    assert summary["attempt"] == 1 and summary["termination"] == "max_steps"


def test_a_replay_that_differs_from_the_record_plays_the_episode_again_from_its_seed(tmp_path, caplog):
    with OpenAIDouble(WoodcutterResponder()) as double:
        run_dir = _unfinished(tmp_path, double, "tampered")
        steps = (run_dir / "steps.jsonl").read_text().splitlines()
        third = json.loads(steps[2])
        third["view"] = "#" * 63  # not the world this seed makes
        steps[2] = json.dumps(third)
        (run_dir / "steps.jsonl").write_text("\n".join(steps) + "\n")
        asked = len(double.chat_requests)
        assert main(["rollout", "--resume", run_dir.name, "--quiet"]) == 0
        assert len(double.chat_requests) == 2 * asked  # every turn asked again: the record could not be trusted
    summary = next(iter_jsonl(run_dir / "episodes.jsonl"))
    assert summary["attempt"] == 2 and "replayed step 3 differs from the recorded one in view" in caplog.text
