"""Runs screen with failures: failed episodes marked with their error, follow live moving on, an honest
rollout status panel, elided run ids, and ``q`` asking while a rollout started here runs."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from textual.widgets import DataTable

from crafter_tui.traces.schema import EPISODES_FILE, RUN_FILE, STEPS_FILE, TURNS_FILE
from crafter_tui.tui.app import CrafterApp
from crafter_tui.tui.screens.confirm import ConfirmScreen
from crafter_tui.tui.screens.runs import RunsScreen, elide_middle
from tests.tui_support import console_config, copy_run, make_run, plain, wait_for


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs-failures") / "traces")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def _fail_episode_1(run: Path) -> None:
    """Episode 1 ended in agent_error after three invalid turns and no step."""
    episodes = _lines(run / EPISODES_FILE)
    for record in episodes:
        if record["episode"] == 1:
            record.update(termination="agent_error", error="model HTTP 500: upstream overloaded", steps=0,
                          invalid_actions=3, achievements=[], num_achievements=0)
    _write(run / EPISODES_FILE, episodes)
    _write(run / STEPS_FILE, [s for s in _lines(run / STEPS_FILE) if s["episode"] != 1])
    turns = [t for t in _lines(run / TURNS_FILE) if t["episode"] != 1]
    bad = [t for t in _lines(run / TURNS_FILE) if t["episode"] == 1][:3]
    for index, turn in enumerate(bad):
        turn.update(turn=index, step=0, valid=False, error="no tool call in the reply", actions=[])
    _write(run / TURNS_FILE, turns + bad)


async def test_a_failed_episode_is_marked_and_shows_its_error_and_invalid_turns(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "traces")
    _fail_episode_1(run)
    app = CrafterApp(console_config(run.parent))
    async with app.run_test(size=(140, 44)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await wait_for(pilot, lambda: len(screen.episodes) == 2, what="episodes listed")
        table = screen.query_one("#episodes-table", DataTable)
        assert "✗ agent_error" in str(table.get_row("1")[2])
        table.move_cursor(row=1)
        await wait_for(pilot, lambda: screen.tail is not None and screen.tail.episode == 1
                       and screen.tail.summary is not None, what="episode 1 open")
        turns = plain(screen.query_one("#turns"))
        assert "agent_error" in turns and "model HTTP 500: upstream overloaded" in turns
        assert "invalid: no tool call in the reply" in turns and "3 invalid turns" in turns
        assert "agent_error" in plain(screen.query_one("#episode-title"))


async def test_follow_live_moves_on_to_the_playing_episode(finished_run, tmp_path):
    """Episode 0 has ended while episode 1 plays: following live shows episode 1, not the finished one."""
    live = tmp_path / "traces" / "live-run"
    live.mkdir(parents=True)
    record = json.loads((finished_run / RUN_FILE).read_text())
    record.update(run_id="live-run", status="running", pid=os.getpid(), finished_at=None)
    (live / RUN_FILE).write_text(json.dumps(record))
    steps, turns = _lines(finished_run / STEPS_FILE), _lines(finished_run / TURNS_FILE)
    _write(live / STEPS_FILE, [s for s in steps if s["episode"] == 0] + [s for s in steps if s["episode"] == 1][:10])
    _write(live / TURNS_FILE, [t for t in turns if t["episode"] == 0])
    _write(live / EPISODES_FILE, [e for e in _lines(finished_run / EPISODES_FILE) if e["episode"] == 0])
    app = CrafterApp(console_config(live.parent))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await wait_for(pilot, lambda: screen.tail is not None and screen.tail.episode == 1 and len(screen.steps) == 10,
                       what="the playing episode 1 on view")
        assert screen.follow and screen.query_one("#episodes-table", DataTable).cursor_row == 1


def test_run_ids_are_elided_in_the_middle():
    run_id = "openai-gpt-4o-mini-20261208-031500-abcdef"
    short = elide_middle(run_id, 24)
    assert len(short) == 24 and short.startswith("openai-gpt-") and short.endswith("500-abcdef") and "…" in short
    assert elide_middle("short", 24) == "short"


async def _park_rollout() -> None:
    await asyncio.sleep(60)


async def test_rollout_status_panel_says_stopped_and_failed(tmp_path):
    app = CrafterApp(console_config(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        screen.rollout_total, screen.rollout_done = 10, 1
        screen.run_worker(_park_rollout(), group="rollout", name="rollout")
        await pilot.pause()
        await pilot.press("x")
        await wait_for(pilot, lambda: "stopped (interrupted) after 1/10" in plain(screen.query_one("#launch-status")),
                       what="stopped status")

        async def broken() -> None:
            raise RuntimeError("env service refused the connection")

        screen.run_worker(broken(), group="rollout", name="rollout", exit_on_error=False)
        await wait_for(pilot, lambda: "failed" in plain(screen.query_one("#launch-status")), what="failed status")
        assert "env service refused the connection" in plain(screen.query_one("#launch-status"))


async def test_quit_asks_while_a_rollout_started_here_runs(tmp_path):
    app = CrafterApp(console_config(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        screen.run_worker(_park_rollout(), group="rollout", name="rollout")
        await pilot.pause()
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="quit question")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen, what="back on runs")
        assert app.is_running
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="quit question again")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.is_running, what="the app quit")
