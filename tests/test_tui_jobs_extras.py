"""Jobs screen without a host: one "host unreachable" state instead of a toast per retry; the progress line
(step/total, epoch, tokens/s, ETA) from a job's metrics and events."""

from __future__ import annotations

from types import SimpleNamespace

from crafter_tui.config import AppConfig
from crafter_tui.tui.app import CrafterApp
from crafter_tui.tui.screens.jobs import JobsScreen
from crafter_tui.tui.widgets.job_progress import job_progress
from tests.tui_support import plain, wait_for


async def test_an_unreachable_host_is_one_state_not_stacked_toasts(tmp_path):
    config = AppConfig.model_validate({"storage": {"data_dir": str(tmp_path / "data")},
                                       "finetune": {"backend": "local", "local_url": "http://127.0.0.1:9"}})
    app = CrafterApp(config, start_mode="jobs")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        await pilot.pause(0.2)
        before = len(app._notifications)
        for attempt in range(5):
            screen.host_state("local", f"HTTP 404 (attempt {attempt})")
        await pilot.pause(0.1)
        unreachable = [n for n in list(app._notifications)[before:] if "unreachable" in str(n.message)]
        assert len(unreachable) == 1
        assert "attempt 4" in plain(screen.query_one("#jobs-status"))
        screen.host_state("local", None)
        await wait_for(pilot, lambda: any("reachable again" in str(n.message) for n in app._notifications),
                       what="back notice")
        assert screen.unreachable == {}


def test_progress_from_metrics_and_events():
    metrics = [SimpleNamespace(step=step, total_steps=100) for step in (10, 20, 25)]
    detail = SimpleNamespace(info=SimpleNamespace(hyperparameters={"n_epochs": 4}, created_at=1000,
                                                  trained_tokens=5000, done=False), entry=None)
    progress = job_progress(detail, metrics, [], now=1050.0)
    assert (progress.step, progress.total, progress.epoch, progress.epochs) == (25, 100, 2, 4)
    assert progress.tokens_per_s == 100.0 and progress.eta_s == 150.0
    assert plain(SimpleNamespace(content=progress.describe())).strip() == \
        "step 25/100  epoch 2/4  100 tokens/s  ETA 2m30s"
    assert job_progress(detail, [], [], now=1050.0) is None


async def test_no_local_service_is_started_without_asking(tmp_path):
    import socket

    from textual.widgets import Input

    from crafter_tui.finetune.local_service import is_up
    from crafter_tui.tui.screens.confirm import ConfirmScreen
    from crafter_tui.tui.screens.job_form import LaunchJobScreen

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "sft.jsonl"
    data.write_text("{}\n")
    config = AppConfig.model_validate({"storage": {"data_dir": str(tmp_path / "data")},
                                       "finetune": {"backend": "local", "local_url": url}})
    app = CrafterApp(config, start_mode="jobs")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchJobScreen), what="job form")
        app.screen.query_one("#data", Input).value = str(data)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the offer to start the service")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchJobScreen)
                       and "not started" in plain(app.screen.query_one("#job-form-error")), what="form back")
        assert not is_up(url) and app.started_services == []
        assert not (tmp_path / "data" / "service" / "serve.pid").exists()


async def test_an_evaluation_that_is_refused_says_so_and_registers_nothing(tmp_path, monkeypatch):
    from crafter_tui.errors import UserError
    from crafter_tui.rollout.spec import RolloutSpec
    from crafter_tui.services.evaluation import EvaluationService
    from crafter_tui.services.model_cards import Binding

    async def all_failed(self, request):
        raise UserError("every episode of the experiment failed (agent_error 2): not registered", where="eval")
        yield  # pragma: no cover - an async generator

    monkeypatch.setattr(EvaluationService, "run_eval", all_failed)
    config = AppConfig.model_validate({"storage": {"data_dir": str(tmp_path / "data")},
                                       "output": {"trace_dir": str(tmp_path / "traces")}})
    app = CrafterApp(config, start_mode="jobs")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        spec = RolloutSpec(agent="openai", model="ft:tiny", episodes=2, out_dir=tmp_path / "traces")
        entry = SimpleNamespace(suffix="tiny", job_id="job-1")
        screen.evaluate(entry, "ft:tiny", Binding(spec=spec, config=config))
        await wait_for(pilot, lambda: "not registered" in plain(screen.query_one("#jobs-status")), what="status")
        assert EvaluationService(config).registry.names() == []
