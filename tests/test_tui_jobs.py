"""Jobs screen against the real fine-tune service on loopback (its trainer is the TEST DOUBLE,
tests/doubles/ft_trainer_double.py, so a job takes about a second)."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Input, Select

from crafter_tui.agents.prompting import BRIEF_SYSTEM_PROMPT, TOOLS, stable_hash
from crafter_tui.config import AppConfig
from crafter_tui.dataset.card import ModelCard, PlayFormat, Sampling, write_card
from crafter_tui.servers.ft_server import ServeSettings, create_app
from crafter_tui.tui.app import CrafterApp
from crafter_tui.tui.screens.confirm import ConfirmScreen
from crafter_tui.tui.screens.eval_form import AS_CARD, EvalForm
from crafter_tui.tui.screens.job_form import LaunchJobScreen
from crafter_tui.tui.screens.jobs import JobsScreen
from crafter_tui.tui.widgets.charts import SeriesChart
from crafter_tui.world.text_obs import OBSERVATION_REVISIONS
from tests.doubles.ft_trainer_double import INFERENCE, TRAINER
from tests.ft_support import REPO_ROOT, ServerThread, sft_example, write_dataset
from tests.tui_support import plain, wait_for


@pytest.fixture()
def ft_server(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("FT_DOUBLE_STEPS", "24")
    monkeypatch.setenv("FT_DOUBLE_STEP_SECONDS", "0.2")
    settings = ServeSettings(data_dir=tmp_path / "svc", trainer=TRAINER, inference=INFERENCE, poll_interval=0.05)
    server = ServerThread(create_app(settings)).start()
    yield server
    server.stop()


def tool_dataset(path, n: int = 12):
    """A small valid SFT file (interact tool calls with the tool schema)."""
    rows = [{**sft_example(f"Step {i}/100. A tree is 1 north.", ["move_up", "do"]), "tools": TOOLS} for i in range(n)]
    return write_dataset(path, rows)


def jobs_config(tmp_path, server) -> AppConfig:
    return AppConfig.model_validate({
        "storage": {"data_dir": str(tmp_path / "data")},
        "output": {"trace_dir": str(tmp_path / "traces")},
        "finetune": {"backend": "local", "local_url": server.base_url, "model": "crafter-tiny", "epochs": 1},
        "eval": {"episodes": 1, "max_steps": 4, "concurrency": 1},
    })


async def test_launch_a_job_and_watch_its_chart_grow(tmp_path, ft_server):
    data = tool_dataset(tmp_path / "sft.jsonl")
    write_card(ModelCard(format=PlayFormat(
        observation="brief", observation_revision=OBSERVATION_REVISIONS["brief"], history_turns=0,
        system_prompt=BRIEF_SYSTEM_PROMPT, prompt_hash=stable_hash(BRIEF_SYSTEM_PROMPT), tools_hash=stable_hash(TOOLS)),
        sampling=Sampling(temperature=0.7, max_tokens=64)), data)  # the export's card travels with the job
    app = CrafterApp(jobs_config(tmp_path, ft_server), start_mode="jobs")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        await wait_for(pilot, lambda: screen.polls >= 1, what="first job poll")
        assert screen.rows == []
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchJobScreen), what="job form")
        app.screen.query_one("#data", Input).value = str(data)
        await pilot.click("#job-ok")
        await wait_for(pilot, lambda: screen.job_id is not None and screen.detail is not None, timeout=20,
                       what="job launched and selected")
        chart = screen.query_one("#loss-chart", SeriesChart)
        await wait_for(pilot, lambda: 0 < len(screen.metrics) < 24 and chart.points_drawn > 0, timeout=20,
                       what="first loss points while the job runs")
        partial = chart.points_drawn
        await wait_for(pilot, lambda: screen.status == "succeeded", timeout=30, what="job succeeded")
        await wait_for(pilot, lambda: "train" in chart.series and len(chart.series["train"][0]) == 24,
                       what="the whole curve")
        assert chart.points_drawn > partial  # the chart grew while we watched
        assert chart.points_drawn <= chart.size.width  # downsampled to the widget, never more points than columns
        await wait_for(pilot, lambda: screen.detail.checkpoints, what="checkpoints of the finished job")
        assert screen.detail.info.fine_tuned_model
        assert "step" in plain(screen.query_one("#job-checkpoints-text"))
        assert "step 24" in plain(screen.query_one("#job-progress-text"))  # the progress line from the metrics
        await wait_for(pilot, lambda: screen.rows and screen.rows[0].status == "succeeded", what="list refreshed")
        # "evaluate this model": the form (episodes, seeds, difficulty) binds the model's card ...
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EvalForm), what="evaluation form")
        form = app.screen
        form.query_one("#eval-observation", Select).value = "full"  # contradicts the card: refused in the form
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, EvalForm) and "brief" in plain(form.query_one("#eval-form-error"))
        form.query_one("#eval-observation", Select).value = AS_CARD
        form.query_one("#eval-seed", Input).value = "7"
        await pilot.press("ctrl+s")
        # ... then an eval rollout with the fine-tuned model, served by the same host
        await wait_for(pilot, lambda: "experiment eval-" in str(screen.query_one("#jobs-status").render()),
                       timeout=30, what="evaluation registered")
        # played as the model card says, not with the console's [eval] defaults
        (run_dir,) = [p for p in (tmp_path / "traces").iterdir() if p.name.startswith("eval-")]
        record = json.loads((run_dir / "run.json").read_text())
        assert record["settings"]["observation"] == "brief" and record["history_turns"] == 0
        assert record["settings"]["temperature"] == 0.7 and record["model_card"]["format"]["observation"] == "brief"
        assert record["seed"] == 7


async def test_cancel_a_running_job(tmp_path, ft_server, monkeypatch):
    monkeypatch.setenv("FT_DOUBLE_STEPS", "400")
    data = tool_dataset(tmp_path / "sft.jsonl")
    app = CrafterApp(jobs_config(tmp_path, ft_server), start_mode="jobs")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchJobScreen), what="job form")
        app.screen.query_one("#data", Input).value = str(data)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.status == "running", timeout=20, what="job running")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="cancel question")
        await pilot.press("n")
        await pilot.pause(0.5)
        assert screen.status == "running"  # "no" keeps the job
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="cancel question")
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.status == "cancelled", timeout=20, what="job cancelled")


async def test_a_failed_launch_gives_the_form_back_with_its_values(tmp_path, ft_server):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": "nope"}\n')
    app = CrafterApp(jobs_config(tmp_path, ft_server), start_mode="jobs")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchJobScreen), what="job form")
        app.screen.query_one("#data", Input).value = str(bad)
        app.screen.query_one("#suffix", Input).value = "my-try"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchJobScreen)
                       and "failed" in plain(app.screen.query_one("#job-form-error")), timeout=20,
                       what="the form back with the error")
        form = app.screen
        assert form.query_one("#data", Input).value == str(bad) and form.query_one("#suffix", Input).value == "my-try"
        assert app.is_running
