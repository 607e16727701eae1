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
