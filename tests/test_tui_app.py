"""The console shell: navigation by key and mouse, help, palette, remapped keys, themes, snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.command import CommandPalette

from crafter_tui.cli import main as cli_main
from crafter_tui.tui.app import CrafterApp
from crafter_tui.tui.screens.help import HelpScreen
from crafter_tui.tui.screens.launch import LaunchRolloutScreen
from tests.tui_support import console_config, make_run, plain, wait_for

SIZE = (120, 40)


@pytest.fixture(scope="module")
def trace_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("app") / "traces"
    make_run(folder, episodes=1, max_steps=30)
    return folder


async def test_navigate_by_keys_and_by_clicking_tabs(tmp_path):
    app = CrafterApp(console_config(tmp_path / "traces", data_dir=tmp_path / "data"))
    async with app.run_test(size=SIZE) as pilot:
        assert app.current_mode == "runs"
        for key, mode in (("2", "filter"), ("3", "jobs"), ("4", "compare"), ("1", "runs")):
            await pilot.press("escape", key)  # the filter's first field has the focus: escape leaves it
            await wait_for(pilot, lambda: app.current_mode == mode and type(app.screen).MODE == mode, what=mode)
        await pilot.click("#nav-jobs")
        await wait_for(pilot, lambda: app.current_mode == "jobs", what="jobs by mouse")
        await pilot.click("#nav-runs")
        await wait_for(pilot, lambda: app.current_mode == "runs", what="runs by mouse")


async def test_help_lists_the_keys_of_the_app_and_the_screen(tmp_path):
    app = CrafterApp(console_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = "\n".join(plain(widget) for widget in app.screen.query("Static"))
        assert "nav.filter" in text and "runs.launch" in text and "New rollout" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_keymap_and_theme_come_from_the_config(tmp_path):
    config = console_config(tmp_path, theme="nord", keymap={"nav.jobs": "j", "runs.launch": "ctrl+n"})
    app = CrafterApp(config)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "nord"
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchRolloutScreen), what="remapped launch key")
        await pilot.press("escape")
        await pilot.press("n")  # the old key no longer launches
        await pilot.pause()
        assert not isinstance(app.screen, LaunchRolloutScreen)
        await pilot.press("j")
        await wait_for(pilot, lambda: app.current_mode == "jobs", what="remapped navigation key")


async def test_an_unknown_theme_is_a_notice_not_a_crash(tmp_path):
    app = CrafterApp(console_config(tmp_path, theme="no-such-theme"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert any("unknown theme" in str(note.message) for note in app._notifications)
        assert app.theme == "textual-dark"


async def test_palette_offers_the_commands_of_the_current_screen(tmp_path):
    app = CrafterApp(console_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"launch a rollout")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchRolloutScreen), what="launch form from palette")


def test_cli_without_command_opens_the_console(monkeypatch, tmp_path):
    seen = {}

    def fake_run(self):  # the console's own run loop is not what is tested here
        seen["app"] = self
        return 0

    monkeypatch.setattr(CrafterApp, "run", fake_run)
    config = tmp_path / "crafter_config.toml"
    config.write_text('[tui]\ntheme = "nord"\n')
    assert cli_main(["--config", str(config)]) == 0
    assert isinstance(seen["app"], CrafterApp) and seen["app"].config.tui.theme == "nord"


# ---- snapshots (fixed size, stable content: a fixed run id, no timestamps on screen) -----------------
def test_snapshot_runs_screen(snap_compare, trace_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    app = CrafterApp(console_config(trace_dir))

    async def settle(pilot):
        await wait_for(pilot, lambda: len(app.screen.steps) == 30, what="episode loaded")
        app.screen.query_one("#runs-table").cursor_type = "none"
        await pilot.press("comma", "comma", "comma")

    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_snapshot_help_screen(snap_compare, tmp_path):
    app = CrafterApp(console_config(tmp_path))
    assert snap_compare(app, terminal_size=SIZE, press=["question_mark"])


def test_snapshot_launch_form(snap_compare, tmp_path):
    app = CrafterApp(console_config(tmp_path))
    assert snap_compare(app, terminal_size=SIZE, press=["n"])
