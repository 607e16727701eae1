"""Filter screen: export never overwrites without asking nor writes an empty selection; field errors shown;
first field focused; all 22 achievements listed; the example shown as a chat transcript."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from crafter_tui.tui.app import CrafterApp
from crafter_tui.tui.screens.confirm import ConfirmScreen
from crafter_tui.tui.screens.filter import FilterScreen, chat_transcript, success_table
from crafter_tui.tui.widgets.charts import integer_ticks
from crafter_tui.world.rules import ACHIEVEMENTS
from tests.tui_support import console_config, make_run, plain, wait_for


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("filter-safety") / "traces"
    make_run(folder, run_id="expert", episodes=2, max_steps=40)
    return folder


async def _ready(pilot, app) -> FilterScreen:
    screen = app.screen
    assert isinstance(screen, FilterScreen)
    await wait_for(pilot, lambda: screen.stats is not None, timeout=20, what="first statistics")
    return screen


async def test_export_asks_before_overwriting_and_refuses_an_empty_selection(store, tmp_path):
    target = tmp_path / "used-by-a-job.jsonl"
    target.write_text("precious\n")
    app = CrafterApp(console_config(store), start_mode="filter")
    async with app.run_test(size=(140, 44)) as pilot:
        screen = await _ready(pilot, app)
        assert app.focused is screen.query_one("#f-min_achievements", Input)  # the first field has the focus
        screen.query_one("#f-export-path", Input).value = str(target)
        screen.query_one("#f-validation_split", Input).value = "0"
        await pilot.pause(0.3)
        screen.action_export()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="overwrite question")
        await pilot.press("n")
        await pilot.pause(0.2)
        assert target.read_text() == "precious\n"
        # a selection of nothing is refused before anything is written
        screen.query_one("#f-min_achievements", Input).value = "22"
        await wait_for(pilot, lambda: screen.stats_spec is not None and screen.stats_spec.min_achievements == 22
                       and screen.stats.episodes_selected == 0, what="empty selection")
        screen.action_export()
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmScreen) and target.read_text() == "precious\n"
        assert any("0 examples" in str(n.message) for n in app._notifications)
        # a yes overwrites
        screen.query_one("#f-min_achievements", Input).value = ""
        await wait_for(pilot, lambda: screen.stats_spec is not None and screen.stats_spec.min_achievements is None,
                       what="selection back")
        screen.action_export()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="overwrite question")
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.last_export == target, timeout=20, what="export written")
        assert '"messages"' in target.read_text()


async def test_empty_fields_are_valid_and_out_of_range_values_are_errors(store):
    app = CrafterApp(console_config(store), start_mode="filter")
    async with app.run_test(size=(140, 44)) as pilot:
        screen = await _ready(pilot, app)
        field = screen.query_one("#f-min_reward", Input)
        field.value = ""
        await pilot.pause(0.3)
        assert field.is_valid and not field.has_class("-invalid")
        progression = screen.query_one("#f-min_progression", Input)
        progression.value = "5"
        await wait_for(pilot, lambda: "min_progression" in plain(screen.query_one("#filter-error")),
                       what="out-of-range error")
        assert progression.has_class("field-error")
        progression.value = ""
        await wait_for(pilot, lambda: not progression.has_class("field-error"), what="error cleared")


def test_success_table_lists_all_22_and_ticks_are_whole_numbers():
    rates = {name: index / 22 for index, name in enumerate(ACHIEVEMENTS)}
    import io

    from rich.console import Console

    console = Console(width=80, file=io.StringIO(), color_system=None)
    console.print(success_table(rates))
    shown = console.file.getvalue()
    assert all(name.replace("_", " ") in shown for name in ACHIEVEMENTS) and len(ACHIEVEMENTS) == 22
    assert integer_ticks(3) == [0, 1, 2, 3] and all(isinstance(t, int) for t in integer_ticks(37))
    assert integer_ticks(37)[-1] >= 37


def test_the_example_is_a_chat_transcript():
    text = chat_transcript({"messages": [
        {"role": "system", "content": "You play Crafter.\nBe brief."},
        {"role": "user", "content": "You see a tree."},
        {"role": "assistant", "content": None,
         "tool_calls": [{"function": {"name": "act", "arguments": '{"actions": ["do"]}'}}]},
    ]}).plain
    assert "── system" in text and "You play Crafter.\nBe brief." in text and "\\n" not in text
    assert '→ act({"actions": ["do"]})' in text
