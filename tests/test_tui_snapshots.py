"""Snapshots of the Runs and Compare screens with real data at 100x30, 160x48 and 220x60 in a dark and a
light theme (the layouts are responsive: the map scales, panels resize, lists scroll).

Content is fixed: the run is the scripted expert (a fixed run id, seeds and steps); the comparison is an
``experiments.json`` given by a relative path, with a fixed bootstrap seed. Regenerate after a deliberate
change with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input

from crafter_tui.tui.app import CrafterApp
from tests.tui_support import console_config, make_run, wait_for

SIZES = [(100, 30), (160, 48), (220, 60)]
THEMES = ["textual-dark", "textual-light"]


@pytest.fixture(scope="module")
def trace_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("snapshots") / "traces"
    make_run(folder, episodes=1, max_steps=30)
    return folder


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_runs_screen(snap_compare, trace_dir, size, theme):
    app = CrafterApp(console_config(trace_dir, theme=theme))

    async def settle(pilot):
        await wait_for(pilot, lambda: len(app.screen.steps) == 30, what="episode loaded")
        app.screen.query_one("#runs-table").cursor_type = "none"
        await pilot.press("comma", "comma", "comma")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_compare_screen(snap_compare, tmp_path, size, theme):
    Path("experiments.json").write_text(json.dumps({"experiments": [
        {"name": "base", "model": "m0", "achievements": [1, 2, 1, 3, 2, 1, 2, 2]},
        {"name": "tuned", "model": "m1", "achievements": [3, 4, 2, 5, 4, 3, 4, 3]}]}))
    config = console_config(tmp_path / "traces", data_dir=tmp_path / "data", theme=theme)
    config.evaluation.resamples = 999
    app = CrafterApp(config, start_mode="compare")

    async def settle(pilot):
        screen = app.screen
        screen.query_one("#open-path", Input).value = "experiments.json"
        screen.action_open_file()
        await wait_for(pilot, lambda: screen.comparison is not None, timeout=30, what="comparison")
        screen.set_focus(None)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=settle)
