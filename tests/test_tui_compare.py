"""Compare screen against the real evaluation service on a temporary experiment registry."""

from __future__ import annotations

import pytest
from textual.widgets import Input, SelectionList

from crafter_tui.services.evaluation import EvaluationService
from crafter_tui.tui.app import CrafterApp
from crafter_tui.tui.screens.compare import CompareScreen
from tests.tui_support import console_config, plain, play_run, wait_for


@pytest.fixture()
async def registry(tmp_path):
    config = console_config(tmp_path / "traces", data_dir=tmp_path / "data",
                            )
    config.evaluation.resamples = 999  # fast, still a real bootstrap
    expert = await play_run(tmp_path / "traces", run_id="expert-run", episodes=3, max_steps=40)
    randoms = await play_run(tmp_path / "traces", run_id="random-run", episodes=3, max_steps=40, agent="random")
    service = EvaluationService(config)
    await service.register_runs("expert", [expert])
    await service.register_runs("random", [randoms])
    return config


async def test_compare_two_experiments_and_export_the_report(registry, tmp_path):
    app = CrafterApp(registry, start_mode="compare")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        await wait_for(pilot, lambda: len(screen.experiments) == 2, what="experiments listed")
        await pilot.press("c")  # nothing selected: a warning, no crash
        assert any("at least two" in str(n.message) for n in app._notifications)
        screen.query_one(SelectionList).select_all()
        await pilot.pause()
        screen.query_one("#baseline").value = "random@v1.0"
        await pilot.click("#do-compare")
        await wait_for(pilot, lambda: screen.comparison is not None, timeout=30, what="comparison")
        comparison = screen.comparison
        assert comparison.baseline == "random"
        assert [pair.candidate for pair in comparison.pairs] == ["expert"]
        table = plain(screen.query_one("#compare-table"))
        scores = plain(screen.query_one("#compare-scores"))
        assert "underpowered" in table + scores  # 3 episodes each: the screen must say so
        assert "expert" in scores
        screen.query_one("#report-path", Input).value = str(tmp_path / "report.md")
        screen.query_one("#report-format").value = "md"
        await pilot.press("x")
        await wait_for(pilot, lambda: screen.last_report is not None, what="report written")
        assert (tmp_path / "report.md").read_text().strip()


async def test_no_experiments_says_how_to_make_one(tmp_path):
    app = CrafterApp(console_config(tmp_path / "traces", data_dir=tmp_path / "data"), start_mode="compare")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: "No experiments yet" in plain(screen.query_one("#compare-status")),
                       what="empty state")


async def test_list_cursor_survives_resume_and_the_table_scrolls_into_view(registry, tmp_path):
    app = CrafterApp(registry, start_mode="compare")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: len(screen.experiments) == 2, what="experiments listed")
        listing = screen.query_one(SelectionList)
        listing.highlighted = 1
        listing.select(listing.get_option_at_index(1).value)
        await pilot.press("escape", "1")
        await wait_for(pilot, lambda: app.current_mode == "runs", what="runs")
        await pilot.press("4")
        await wait_for(pilot, lambda: app.screen is screen, what="compare again")
        await pilot.pause(0.5)  # the resumed screen re-reads the registry
        assert listing.highlighted == 1 and len(listing.selected) == 1
        listing.select_all()
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.comparison is not None, timeout=30, what="comparison")
        await pilot.pause(0.2)
        heat = plain(screen.query_one("#chart-spectrum"))
        assert "collect wood" in heat and "wake up" in heat  # every achievement is a row of the heatmap
        table = screen.query_one("#compare-table")
        assert table.size.height >= 6  # laid out at its full height, not squeezed to the leftover space
        table.scroll_visible(animate=False)
        await pilot.pause(0.2)
        main = screen.query_one("#compare-main")
        assert main.scroll_offset.y > 0 and main.max_scroll_y > 0  # reachable by scrolling


async def test_open_an_experiments_json(tmp_path):
    import json

    path = tmp_path / "experiments.json"
    path.write_text(json.dumps({"experiments": [
        {"name": "base", "model": "m0", "achievements": [1, 2, 1, 3, 2, 1]},
        {"name": "tuned", "model": "m1", "achievements": [3, 4, 2, 5, 4, 3]}]}))
    config = console_config(tmp_path / "traces", data_dir=tmp_path / "data")
    config.evaluation.resamples = 999
    app = CrafterApp(config, start_mode="compare")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        screen.query_one("#open-path", Input).value = str(path)
        screen.action_open_file()
        await wait_for(pilot, lambda: screen.comparison is not None, timeout=30, what="comparison of the file")
        assert [e.name for e in screen.comparison.experiments] == ["base", "tuned"]
        assert "tuned" in plain(screen.query_one("#compare-scores"))
