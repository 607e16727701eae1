"""The console shell: readable key names in help, "go to screen" palette commands, screenshots without
~/Downloads."""

from __future__ import annotations

from crafter_tui.tui.app import CrafterApp
from crafter_tui.tui.base import ScreenCommands, go_to_commands
from crafter_tui.tui.screens.help import HelpScreen
from tests.tui_support import console_config, plain, wait_for


async def test_help_shows_readable_key_names_and_screen_titles(tmp_path):
    app = CrafterApp(console_config(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        shown = "\n".join(plain(static, 120) for static in app.screen.query("Static"))
        assert "question_mark" not in shown.split("binding id")[0] or "?" in shown
        keys_column = [line.split()[0] for line in shown.splitlines() if line.strip() and "│" in line]
        assert "?" in shown and "." in keys_column and "," in keys_column
        assert "full_stop" not in keys_column and "question_mark" not in keys_column
        assert "Runs screen" in shown and "RunsScreen" not in shown


async def test_palette_offers_go_to_every_screen(tmp_path):
    app = CrafterApp(console_config(tmp_path / "traces", data_dir=tmp_path / "data"))
    async with app.run_test(size=(120, 40)) as pilot:
        names = [command.name for command in go_to_commands(app)]
        assert names == ["Go to Runs", "Go to Filter", "Go to Jobs", "Go to Compare"]
        provider = ScreenCommands(app.screen)
        assert "Go to Jobs" in [command.name for command in provider._commands()]
        go_to_commands(app)[3].run()
        await wait_for(pilot, lambda: app.current_mode == "compare" and getattr(app.screen, "MODE", "") == "compare"
                       and app.screen.is_mounted, what="compare by the palette command")
        await pilot.pause(0.3)


async def test_screenshot_without_a_downloads_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    app = CrafterApp(console_config(tmp_path / "traces", data_dir=tmp_path / "data"))
    async with app.run_test(size=(120, 40)) as pilot:
        app.action_screenshot(filename="shot.svg")
        await wait_for(pilot, lambda: (tmp_path / "data" / "screenshots" / "shot.svg").exists(), what="screenshot")
        assert not (tmp_path / "home" / "Downloads").exists()
