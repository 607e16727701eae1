"""``crafter-tui rollout --agent dagger``: the served model plays in process, the scripted expert (which
plans on the semantic map the runner hands it) labels every turn; without a served model name it is a
clear one-line error."""

from __future__ import annotations

import json

import pytest

from crafter_tui.cli import main
from tests.doubles.openai_double import OpenAIDouble, interact

ROLLOUT = ["rollout", "--agent", "dagger", "--episodes", "2", "--max-steps", "30", "--history-turns", "0",
           "--observation", "brief", "--concurrency", "2", "--quiet", "--json"]


def _turns(out) -> tuple[dict, list[dict]]:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    record = json.loads((run_dir / "run.json").read_text())
    turns = [json.loads(line) for line in (run_dir / "turns.jsonl").read_text().splitlines()]
    return record, turns


def test_dagger_rollout_plays_the_served_model_and_labels_each_turn_with_the_expert(tmp_path, capsys):
    config = tmp_path / "crafter_config.toml"
    config.write_text("[eval]\nexpert_beta = 0.5\n")
    out = tmp_path / "traces"
    with OpenAIDouble(lambda request: interact("noop", reasoning="student")) as double:
        code = main([*ROLLOUT, "--model", "student-model", "--base-url", double.base_url, "--out", str(out),
                     "--config", str(config)])
        asked = [json.loads(request.body)["model"] for request in double.chat_requests]
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["agent"] == "dagger" and result["model"] == "student-model"
    record, turns = _turns(out)
    assert record["agent"] == "dagger" and len(turns) == sum(result["turns_per_episode"])
    by = [turn["extra"]["executed_by"] for turn in turns]
    # beta 0.5 from the config: both play; the served model is asked exactly on the turns it executes
    assert 0 < by.count("student") < len(turns) and len(asked) == by.count("student")
    assert set(asked) == {"student-model"}
    for turn in turns:
        label = json.loads(turn["assistant"]["tool_calls"][0]["function"]["arguments"])
        executed = json.loads(turn["extra"]["executed"]["tool_calls"][0]["function"]["arguments"])
        if turn["extra"]["executed_by"] == "student":
            assert turn["actions"] == ["noop"] and executed["reasoning"] == "student"
        else:
            assert executed == label and turn["actions"] == label["actions"]
        assert turn["extra"]["label_goal"]  # the expert planned (it saw the semantic map) on every turn
    # the expert's labels are its own plan, not the student's noop
    assert any(json.loads(t["assistant"]["tool_calls"][0]["function"]["arguments"])["actions"] != ["noop"]
               for t in turns)


@pytest.mark.parametrize("model", [None, "scripted-expert", "random"])
def test_dagger_without_a_served_model_is_a_clear_error(tmp_path, capsys, model):
    flags = ["--model", model] if model else []
    code = main([*ROLLOUT, *flags, "--out", str(tmp_path / "traces")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--model" in err and "dagger agent needs the served model" in err
    assert not (tmp_path / "traces").exists() or not any((tmp_path / "traces").iterdir())


def test_dagger_against_an_endpoint_that_is_down_ends_the_episode_with_the_endpoint_named(tmp_path, capsys):
    import socket

    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    config = tmp_path / "crafter_config.toml"
    config.write_text("[openai]\nmax_retries = 0\n")
    out = tmp_path / "traces"
    code = main([*ROLLOUT, "--episodes", "1", "--model", "student-model", "--base-url", url, "--out", str(out),
                 "--config", str(config)])
    captured = capsys.readouterr()
    # a run whose every episode failed could not do its job: exit 1, the cause named, no score
    assert code == 1 and json.loads(captured.out)["termination_reasons"] == {"agent_error": 1}
    assert "every episode failed" in captured.err and url in captured.err
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    (summary,) = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert summary["termination"] == "agent_error"
    assert "could not connect to model endpoint" in summary["error"] and url in summary["error"]
    # the student's endpoint is recorded, so a resume plays it where it was played
    assert json.loads((run_dir / "run.json").read_text())["endpoint"] == url
