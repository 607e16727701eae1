"""Trace analyses on hand-made runs whose counts can be worked out by hand."""

from __future__ import annotations

import json

import pytest

from crafter_tui.cli import main
from crafter_tui.evaluation import analyses
from crafter_tui.evaluation.episodes import read_run
from crafter_tui.traces.schema import TurnRecord
from crafter_tui.world.rules import ACHIEVEMENTS
from tests.eval_builders import Ep, Step, write_run


def test_classify_steps_by_hand():
    steps_ep = Ep(seed=0, steps=[
        Step("noop"),                                   # idle
        Step("move_left", pos=(10, 10), facing=(-1, 0)),  # only turned: useful, not wasted
        Step("move_left", pos=(10, 10), facing=(-1, 0)),  # into the wall it already faces: wasted
        Step("move_left", pos=(9, 10), facing=(-1, 0)),   # moved
        Step("make_wood_pickaxe", pos=(9, 10), facing=(-1, 0)),  # nothing changed: failed craft
        Step("make_wood_pickaxe", pos=(9, 10), facing=(-1, 0)),  # again: repeated failed craft
        Step("do", pos=(9, 10), facing=(-1, 0), wood=1),         # collected wood
        Step("make_wood_pickaxe", pos=(9, 10), facing=(-1, 0), wood=1),  # fails again, but things changed
        Step("place_table", pos=(9, 10), facing=(-1, 0), wood=1),        # failed place
    ])
    run = read_run(write_run_tmp(steps_ep))
    waste = analyses.classify_steps(run.steps()[0])
    assert (waste.noops, waste.turn_only_moves, waste.blocked_moves) == (1, 1, 1)
    assert (waste.failed_crafts, waste.failed_places, waste.repeated_failed_crafts) == (3, 1, 1)
    assert waste.wasted == 3  # noop + blocked move + one repeated failed craft


_TMP: list = []


def write_run_tmp(ep: Ep):
    return write_run(_TMP[-1], f"r{len(list(_TMP[-1].iterdir()))}", [ep])


@pytest.fixture(autouse=True)
def _tmp(tmp_path):
    _TMP.append(tmp_path)
    yield
    _TMP.pop()


def test_find_loops():
    back_and_forth = [Step("move_left", pos=(10, 10)), Step("move_right", pos=(11, 10))] * 5
    ep = Ep(seed=0, steps=[Step("do"), *back_and_forth, Step("do"), Step("move_up", pos=(3, 3))])
    run = read_run(write_run_tmp(ep))
    assert analyses.find_loops(run.steps()[0]) == [10]


@pytest.mark.parametrize(("error", "kind"), [
    ("too many actions (6 > 5)", "too_many_actions"),
    ("unknown action name 'jump' (valid: noop, move_left)", "unknown_action"),
    ("arguments of interact are not valid JSON (Expecting value: line 1 column 1 (char 0))", "parse_failure"),
    ("unknown tool 'fly' (expected interact or terminate)", "bad_tool_call"),
    ("no tool call in the reply (expected a call to interact or terminate)", "bad_tool_call"),
    ("interact: missing field 'actions'", "bad_tool_call"),
    ("something else entirely", "other"),
])
def test_invalid_kinds_from_the_agent_error_texts(error, kind):
    turn = TurnRecord(episode=0, seed=0, turn=0, step=0, observation="", assistant={}, valid=False, error=error)
    assert analyses.invalid_kind(turn) == kind


def _call(name: str, arguments: str) -> dict:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": name, "arguments": arguments}}]}


@pytest.mark.parametrize(("message", "kind"), [
    (_call("interact", json.dumps({"actions": ["noop"] * 9, "reasoning": "r"})), "too_many_actions"),
    (_call("interact", json.dumps({"actions": ["jump"], "reasoning": "r"})), "unknown_action"),
    (_call("interact", "{not json"), "parse_failure"),
    (_call("fly", "{}"), "bad_tool_call"),
    (_call("interact", json.dumps({"actions": ["noop"]})), "bad_tool_call"),
    ({"role": "assistant", "content": "I will walk north."}, "bad_tool_call"),
])
def test_invalid_kinds_of_the_real_agent_replies(message, kind):
    replies = pytest.importorskip("crafter_tui.agents.replies")
    decision = replies.decision_from_message(message)
    assert not decision.valid
    turn = TurnRecord(episode=0, seed=0, turn=0, step=0, observation="", assistant={}, valid=False,
                      error=decision.error)
    assert analyses.invalid_kind(turn) == kind, decision.error


def quality_run(tmp_path):
    eps = [
        Ep(seed=1, achievements=["collect_wood"], errors=[None, "too many actions (7 > 5)", None,
                                                           "arguments of interact are not valid JSON (x)"],
           steps=[Step("noop"), Step("noop"), Step("move_left")], termination="max_steps"),
        Ep(seed=2, achievements=["collect_wood", "place_table"], errors=[None, None],
           steps=[Step("move_left", pos=(1, 1)), Step("move_left", pos=(1, 1))], termination="death"),
    ]
    return write_run(tmp_path, "q", eps)


def test_quality_rules_efficiency_reports(tmp_path):
    run = read_run(quality_run(tmp_path))
    quality = analyses.analyze_quality([run])
    assert (quality.turns, quality.invalid_turns, quality.parse_failures) == (6, 2, 1)
    assert quality.invalid_by_kind["too_many_actions"] == 1 and quality.truncated_episodes == 1
    rules = analyses.analyze_rules([run])
    assert rules.invalid_rate == pytest.approx(2 / 6)
    assert rules.invalid_rate_by_kind["parse_failure"] == pytest.approx(1 / 6)
    assert rules.in_game_noops["moves_into_walls"] == 2  # one per episode
    efficiency = analyses.analyze_efficiency([run])
    assert efficiency.wasted == 4 and efficiency.steps == 5  # 2 noops + 2 moves into walls
    assert [row["wasted"] for row in efficiency.per_episode] == [3, 1]


def test_seed_report(tmp_path):
    eps = [Ep(seed=42, achievements=["collect_wood"]), Ep(seed=42, achievements=["collect_wood", "eat_cow"]),
           Ep(seed=43, achievements=[])]
    run = read_run(write_run(tmp_path, "s", eps))
    other = read_run(write_run(tmp_path, "o", [Ep(seed=42, achievements=list(ACHIEVEMENTS))], model="model-b"))
    by_model = analyses.analyze_seeds([run, other], seeds=[42, 43, 44]).models
    assert by_model["model-b"].seeds[0].mean_achievements == 22  # kept apart from model-a's seed 42
    report = by_model["model-a"]
    by_seed = {row.seed: row for row in report.seeds}
    assert by_seed[42].mean_achievements == 1.5 and by_seed[42].achievements_always == ["collect_wood"]
    assert by_seed[42].achievements_sometimes == ["eat_cow"] and report.missing_seeds == [44]
    assert report.between_seed_std == pytest.approx(0.75)  # means 1.5 and 0
    assert report.seed_dependent_achievements["collect_wood"] == 1.0


def test_analyze_commands_write_their_outputs(tmp_path, capsys):
    traces = tmp_path / "traces"
    quality_run(traces)
    png, html = tmp_path / "actions.png", tmp_path / "ach.html"
    assert main(["analyze", "actions", "--traces", str(traces), "--output", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = json.loads(capsys.readouterr().out)
    assert out["actions"]["noop"] == 2 and out["tool_calls"]["interact"] == 4
    assert main(["analyze", "achievements", "--traces", str(traces), "--output", str(html)]) == 0
    text = html.read_text(encoding="utf-8")
    assert "data:image/png;base64," in text and "collect_wood" in text and "http" not in text.replace("http-equiv", "")
    seeds = tmp_path / "seed_report.json"
    assert main(["analyze", "seeds", "--traces", str(traces), "--seeds", "1,2", "--output", str(seeds)]) == 0
    assert [row["seed"] for row in json.loads(seeds.read_text())["models"]["model-a"]["seeds"]] == [1, 2]
    for kind in ("quality", "rules", "efficiency"):
        capsys.readouterr()
        assert main(["analyze", kind, "--traces", str(traces)]) == 0
        assert json.loads(capsys.readouterr().out)["episodes"] == 2


def test_analyze_training_from_a_metrics_file(tmp_path):
    events = tmp_path / "events.jsonl"
    lines = [{"job_id": "ftjob-a", "type": "metrics", "data": {"step": s, "train_loss": 2.0 / s,
                                                                "valid_loss": 3.0 / s if s % 2 else None}}
             for s in (1, 2, 3)]
    lines.append({"job_id": "ftjob-b", "step": 1, "train_loss": 1.5})
    events.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "training_analysis.json"
    assert main(["analyze", "training", "--job-ids", "ftjob-a,ftjob-b", "--metrics-file", str(events),
                 "--output", str(out)]) == 0
    jobs = {job["job_id"]: job for job in json.loads(out.read_text())["jobs"]}
    assert jobs["ftjob-a"]["last_train_loss"] == pytest.approx(2 / 3)
    assert (jobs["ftjob-a"]["best_valid_loss"], jobs["ftjob-a"]["best_valid_step"]) == (1.0, 3)
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_analyze_errors_are_one_line(tmp_path, capsys):
    assert main(["analyze", "quality", "--traces", str(tmp_path / "missing")]) == 2
    assert "no such trace folder" in capsys.readouterr().err
    assert main(["analyze", "training"]) == 2
    assert "--job-ids" in capsys.readouterr().err
    assert main(["analyze", "training", "--job-ids", "ftjob-zzz"]) == 2  # not in the job registry
    assert "ftjob-zzz" in capsys.readouterr().err
