"""Runs & live episode screen, driven through Pilot against real run folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Select

from crafter_tui.services.runs import EpisodeTail, RunsIndex
from crafter_tui.traces.schema import EPISODES_FILE, RUN_FILE, STEPS_FILE, TURNS_FILE
from crafter_tui.tui.app import CrafterApp
from crafter_tui.tui.screens.launch import LaunchRolloutScreen
from crafter_tui.tui.screens.runs import RunsScreen
from crafter_tui.tui.widgets.scrubber import StepScrubber
from tests.tui_support import FIXTURE_RUN_ID, console_config, copy_run, make_run, wait_for


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "traces")


def runs_screen(app: CrafterApp) -> RunsScreen:
    screen = app.screen
    assert isinstance(screen, RunsScreen)
    return screen


async def test_lists_runs_and_replays_an_episode_with_the_scrubber(finished_run, tmp_path):
    app = CrafterApp(console_config(finished_run.parent))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = runs_screen(app)
        await wait_for(pilot, lambda: len(screen.steps) == 60, what="episode 0 loaded")
        assert [info.run_id for info in screen.runs] == [FIXTURE_RUN_ID]
        assert screen.runs[0].status == "finished" and screen.runs[0].episodes_finished == 2
        assert screen.query_one("#episodes-table", DataTable).row_count == 2
        assert screen.position == 59 and screen.tail is not None and screen.tail.finished
        await pilot.press("comma", "comma")
        assert screen.position == 57
        screen.query_one(StepScrubber).focus()
        await pilot.press("home")
        assert screen.position == 0
        await pilot.press("right", "right", "right")
        assert screen.position == 3
        assert screen.query_one(StepScrubber).position == 3
        await pilot.press("end")
        assert screen.position == 59
        # the second episode, by clicking its row
        await pilot.click("#episodes-table", offset=(2, 2))
        await wait_for(pilot, lambda: screen.tail.episode == 1 and len(screen.steps) == 60, what="episode 1")
        turns = str(screen.query_one("#turns").render())
        assert "turn" in turns and screen.turns


async def test_follows_a_run_written_by_another_writer(finished_run, tmp_path):
    """A run that grows on disk (as a rollout in another terminal writes it) is followed live."""
    trace_dir = tmp_path / "traces"
    live = trace_dir / "live-run"
    live.mkdir(parents=True)
    record = json.loads((finished_run / RUN_FILE).read_text())
    record.update(run_id="live-run", status="running", pid=os.getpid(), finished_at=None)
    (live / RUN_FILE).write_text(json.dumps(record))
    steps = [line for line in (finished_run / STEPS_FILE).read_text().splitlines()
             if json.loads(line)["episode"] == 0]
    turns = [line for line in (finished_run / TURNS_FILE).read_text().splitlines()
             if json.loads(line)["episode"] == 0]

    def append(name: str, lines: list[str]) -> None:
        with (live / name).open("a") as handle:
            handle.write("".join(line + "\n" for line in lines))

    append(STEPS_FILE, steps[:10])
    append(TURNS_FILE, turns[:10])
    app = CrafterApp(console_config(trace_dir))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = runs_screen(app)
        await wait_for(pilot, lambda: len(screen.steps) == 10, what="first 10 live steps")
        assert screen.runs[0].status == "running"
        assert screen.episodes[0].finished is False and screen.episodes[0].steps == 10
        append(STEPS_FILE, steps[10:40])
        with (live / STEPS_FILE).open("a") as handle:
            handle.write(steps[40][:25])  # a line being written: must wait for its newline
        await wait_for(pilot, lambda: len(screen.steps) == 40, what="appended steps")
        assert screen.position == 39  # following live: on the newest step
        await pilot.press("comma")  # stepping back leaves follow mode
        assert not screen.follow
        with (live / STEPS_FILE).open("a") as handle:
            handle.write(steps[40][25:] + "\n" + "".join(line + "\n" for line in steps[41:]))
        append(EPISODES_FILE, [line for line in (finished_run / EPISODES_FILE).read_text().splitlines()
                               if json.loads(line)["episode"] == 0])
        await wait_for(pilot, lambda: len(screen.steps) == 60 and screen.tail.finished, what="episode end")
        assert screen.position == 38  # the user's position was kept
        await wait_for(pilot, lambda: screen.episodes and screen.episodes[0].finished, what="episode row update")


async def test_launches_a_rollout_from_the_form(tmp_path):
    trace_dir = tmp_path / "traces"
    app = CrafterApp(console_config(trace_dir))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = runs_screen(app)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchRolloutScreen), what="launch form")
        form = app.screen
        form.query_one("#agent", Select).value = "random"
        form.query_one("#model", Input).value = "random"
        form.query_one("#episodes", Input).value = "0"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, LaunchRolloutScreen)  # invalid: stays open, names the field
        assert "episodes" in str(form.query_one("#launch-error").render())
        form.query_one("#episodes", Input).value = "2"
        form.query_one("#max_steps", Input).value = "30"
        await pilot.click("#launch-ok")
        await wait_for(pilot, lambda: not isinstance(app.screen, LaunchRolloutScreen), what="form closed")
        await wait_for(pilot, lambda: screen.runs and screen.runs[0].status == "finished"
                       and screen.runs[0].episodes_finished == 2, timeout=20, what="launched run finished")
        assert screen.runs[0].agent == "random"
        assert "finished" in str(screen.query_one("#launch-status").render())


async def test_a_failing_scan_is_a_notification_not_a_crash(tmp_path, monkeypatch):
    def broken(self):
        raise OSError("disk on fire")

    monkeypatch.setattr(RunsIndex, "scan", broken)
    app = CrafterApp(console_config(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: any("disk on fire" in str(n.message) for n in app._notifications),
                       what="error notification")
        assert app.is_running


def test_episode_tail_reads_only_complete_new_lines(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    tail = EpisodeTail(run, 1)
    first = tail.poll()
    assert len(first.steps) == 60 and first.finished and all(step.episode == 1 for step in first.steps)
    again = tail.poll()
    assert again.steps == [] and again.turns == []


async def test_polls_form_one_chain_and_survive_errors(finished_run, tmp_path, monkeypatch):
    """Switching screens back and forth never multiplies polls; a failed scan retries later."""
    app = CrafterApp(console_config(finished_run.parent))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = runs_screen(app)
        await wait_for(pilot, lambda: screen.scans >= 1, what="first scan")
        for _ in range(2):
            await pilot.press("2")  # the filter screen is light to create here (its store opens in a worker)
            await pilot.press("escape", "1")  # its first field has the focus: escape leaves it
        await wait_for(pilot, lambda: app.screen is screen, what="back on runs")
        before = screen.scans
        await pilot.pause(2.2)
        assert screen.scans - before <= 4  # about one scan a second, not one chain per visit
        calls = []

        def flaky(self):
            calls.append(1)
            if len(calls) == 1:
                raise OSError("transient")
            return []

        monkeypatch.setattr(RunsIndex, "scan", flaky)
        await wait_for(pilot, lambda: len(calls) >= 2, timeout=15, what="a retry after the failed scan")
