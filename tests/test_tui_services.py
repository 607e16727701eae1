"""The console's typed Services container: one lazily built service per property, the same one each time,
nothing heavy built at start-up."""

from __future__ import annotations

from crafter_tui.services.finetune import FinetuneService
from crafter_tui.services.runs import RunsService
from crafter_tui.tui.app import CrafterApp
from crafter_tui.tui.services import Services
from tests.tui_support import console_config, wait_for


def test_each_service_is_built_once_on_first_use(tmp_path):
    services = Services(console_config(tmp_path / "traces", data_dir=tmp_path / "data"))
    assert not services.is_built("runs") and not services.is_built("finetune")
    assert isinstance(services.runs, RunsService) and services.runs is services.runs
    assert services.get("runs") is services.runs
    finetune = services.finetune
    assert isinstance(finetune, FinetuneService) and finetune.autostart_local is False  # never started silently
    assert services.dataset.traces is services.traces  # the dataset service shares the one trace store


async def test_the_app_builds_only_what_its_screen_uses(tmp_path):
    app = CrafterApp(console_config(tmp_path / "traces", data_dir=tmp_path / "data"))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.services.is_built("runs"), what="the runs service")
        assert not any(app.services.is_built(name) for name in ("traces", "dataset", "finetune", "evaluation"))
