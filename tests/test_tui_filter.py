"""Filter screen against the real trace store and dataset services on a temporary store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Checkbox, Input

from crafter_tui.tui.app import CrafterApp
from crafter_tui.tui.screens.filter import FilterScreen
from tests.tui_support import console_config, make_run, plain, wait_for


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("filter") / "traces"
    make_run(folder, run_id="expert", episodes=2, max_steps=40)
    make_run(folder, run_id="random", episodes=2, max_steps=40, agent="random")
    return folder


async def test_a_threshold_change_updates_the_counts(store):
    app = CrafterApp(console_config(store), start_mode="filter")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, FilterScreen)
        await wait_for(pilot, lambda: screen.stats is not None, timeout=20, what="first statistics")
        assert screen.stats.episodes_total == 4 and screen.stats.episodes_selected == 4
        best = max(int(k) for k, v in screen.stats.achievements_histogram.items() if v)
        field = screen.query_one("#f-min_achievements", Input)
        field.focus()
        await pilot.press(*str(best))
        await wait_for(pilot, lambda: screen.stats_spec is not None and screen.stats_spec.min_achievements == best,
                       what="statistics of the new threshold")
        selected = screen.stats.episodes_selected
        assert 0 < selected < 4
        assert f"episodes {selected} / 4" in plain(screen.query_one("#filter-counts"))
        # a bad value is named, and nothing is queried with it
        field.value = "-3"
        await wait_for(pilot, lambda: "min_achievements" in plain(screen.query_one("#filter-error")),
                       what="field error")
        assert screen.stats.episodes_selected == selected
        field.value = ""
        screen.query_one("#f-drop_invalid", Checkbox).value = True
        await wait_for(pilot, lambda: screen.stats_spec is not None and screen.stats_spec.drop_invalid
                       and screen.stats.episodes_selected == 4, what="statistics after a checkbox")
        # small store: the detail (action mix, tokens, cost) and the preview follow by themselves
        await wait_for(pilot, lambda: screen.detail is not None and screen.stats_spec == screen.spec, timeout=30,
                       what="detail")
        assert screen.detail.action_distribution
        await wait_for(pilot, lambda: "── user" in plain(screen.query_one("#filter-preview-text")), timeout=20,
                       what="preview example (a chat transcript)")
        assert "── assistant" in plain(screen.query_one("#filter-preview-text"))
        # the two ways of shaping the reasoning exclude each other: named, and the last good spec stays
        screen.query_one("#f-drop_reasoning", Checkbox).value = True
        screen.query_one("#f-goal_reasoning", Checkbox).value = True
        await wait_for(pilot, lambda: "choose one" in plain(screen.query_one("#filter-error")),
                       what="conflicting reasoning switches named")
        assert not screen.spec.goal_reasoning
        screen.query_one("#f-drop_reasoning", Checkbox).value = False
        error = screen.query_one("#filter-error")
        await wait_for(pilot, lambda: screen.spec.goal_reasoning and not plain(error).strip(),
                       what="goal reasoning alone accepted")


async def test_export_and_validate_show_their_results(store, tmp_path):
    app = CrafterApp(console_config(store), start_mode="filter")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.stats is not None, timeout=20, what="first statistics")
        out = tmp_path / "out" / "sft.jsonl"
        screen.query_one("#f-export-path", Input).value = str(out)
        screen.query_one("#do-export").scroll_visible(animate=False)  # below the fields, as a user scrolls to it
        await pilot.pause()
        await pilot.click("#do-export")
        await wait_for(pilot, lambda: screen.last_export == out, timeout=30, what="export")
        lines = out.read_text().splitlines()
        assert lines and "messages" in json.loads(lines[0])
        assert f"exported {len(lines)} examples" in plain(screen.query_one("#filter-actions-result"))
        assert app.last_export == out
        await pilot.click("#do-validate")
        await wait_for(pilot, lambda: plain(screen.query_one("#filter-actions-result")).startswith("valid"),
                       timeout=30, what="validation result")
