"""Fine-tune jobs: every job across hosts, and the selected job's settings, live curves,
events and checkpoints; cancel, launch, and "evaluate this model".

All data comes from ``services.finetune`` (which polls one request at a time and fetches only
new events). The job list is re-polled only after the previous poll was drawn and only while
the screen is shown; the selected job is followed by the service's ``watch`` stream, and the
charts are redrawn at most a few times a second however fast metrics arrive.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Label, ProgressBar, Static
from textual.worker import get_current_worker

from crafter_tui.tui.base import NavTabs, PaletteCommand, WorkbenchScreen
from crafter_tui.tui.widgets.charts import SeriesChart

JOBS_POLL_S = 3.0
WATCH_INTERVAL_S = 1.0
CHART_REDRAW_S = 0.25
EVENTS_SHOWN = 200
STATUS_STYLE = {"running": "bold green", "succeeded": "cyan", "failed": "bold red", "cancelled": "yellow",
                "queued": "dim", "validating_files": "dim"}
LOSS_SERIES = ("train_loss", "valid_loss", "full_valid_loss")
ACCURACY_SERIES = ("train_mean_token_accuracy", "valid_mean_token_accuracy", "full_valid_mean_token_accuracy")


class JobsScreen(WorkbenchScreen):
    """Jobs across all hosts and the selected job, live."""

    MODE = "jobs"
    BINDINGS = [
        Binding("n", "launch", "New job", id="jobs.launch"),
        Binding("c", "cancel_job", "Cancel job", id="jobs.cancel"),
        Binding("e", "evaluate", "Evaluate model", id="jobs.evaluate"),
        Binding("r", "refresh", "Refresh", id="jobs.refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list = []
        self.job_id: str | None = None
        self.detail = None  # JobDetail of the selected job
        self.metrics: list = []  # MetricPoint of the selected job, by arrival
        self.events: list = []
        self.status: str | None = None
        self.polls = 0
        self.chart_draws = 0
        self._chart_pending = False
        self._poll_timer: object | None = None
        self.unreachable: dict[str, str] = {}  # host -> why it cannot be reached now (one state, one notice)
        self._last_request: object | None = None  # the launch form's values, kept when a launch fails

    async def finetune_service(self):  # type: ignore[no-untyped-def]
        return await self.workbench.aservice("finetune")

    def compose(self) -> ComposeResult:
        yield NavTabs(self.MODE)
        with Horizontal(id="jobs-body"):
            with Vertical(id="jobs-left"):
                yield Label("Jobs (all hosts)", classes="section")
                yield DataTable(id="jobs-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="jobs-status")
                yield ProgressBar(id="jobs-progress", show_eta=False)
            with Vertical(id="job-detail"):
                yield Static(Text("Select a job.", style="dim"), id="job-settings")
                with Horizontal(id="job-progress-row"):
                    yield ProgressBar(id="job-progress", show_eta=False, show_percentage=True)
                    yield Static("", id="job-progress-text")
                with Horizontal(id="job-chart"):
                    yield SeriesChart("loss", id="loss-chart")
                    yield SeriesChart("token accuracy", id="accuracy-chart")
                with Horizontal(id="job-lower"):
                    with VerticalScroll(id="job-events"):
                        yield Static(id="job-events-text")
                    with VerticalScroll(id="job-checkpoints"):
                        yield Static(id="job-checkpoints-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#jobs-table", DataTable).add_columns("job", "host", "status", "model", "result")
        self.query_one("#jobs-progress").display = False
        self.poll_jobs()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.poll_jobs()

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            self.command("Launch a fine-tune job", "open the job form", "launch"),
            self.command("Cancel the selected job", "ask its host to stop it", "cancel_job"),
            self.command("Evaluate this model", "play an eval rollout with the job's fine-tuned model", "evaluate"),
            self.command("Refresh jobs", "poll every host now", "refresh"),
        ]

    # ---- the job list -------------------------------------------------------------------
    def poll_jobs(self) -> None:
        """Poll now (a poll in flight is replaced); one chain of polls only."""
        if self._poll_timer is not None:
            self._poll_timer.stop()  # type: ignore[attr-defined]
            self._poll_timer = None
        self._poll_jobs()

    def host_state(self, host: str, problem: str | None) -> None:
        """One "host unreachable" state per host: noticed once when it starts and once when it ends, shown
        in the status line meanwhile, never a toast per retry stacked over every screen."""
        if problem is None:
            if self.unreachable.pop(host, None) is not None:
                self.notify(f"{host} reachable again", timeout=3)
        elif host not in self.unreachable:
            self.unreachable[host] = problem
            self.notify(f"{host} unreachable: {problem} (retrying quietly)", severity="warning", timeout=6)
        else:
            self.unreachable[host] = problem
        self._draw_unreachable()

    def _draw_unreachable(self) -> None:
        if self.unreachable:
            self.query_one("#jobs-status", Static).update(Text("\n".join(
                f"⚠ {host} unreachable: {problem}; retrying" for host, problem in self.unreachable.items()),
                style="bold yellow"))

    @work(exclusive=True, exit_on_error=False, group="jobs-poll", name="listing jobs")
    async def _poll_jobs(self) -> None:
        try:
            rows = await (await self.finetune_service()).list_jobs(hosts=True)  # the hosts' own lists too
            self.polls += 1
            self.rows = rows
            self._fill_table()
            for host in {row.entry.host for row in rows if row.problem is None}:
                self.host_state(host, None)
            for row in rows:
                if row.problem is not None:
                    self.host_state(row.entry.host, str(row.problem))
        finally:
            if self.is_current and not get_current_worker().is_cancelled:
                # the next poll only after this one finished, only while shown, and only from the live chain
                self._poll_timer = self.set_timer(JOBS_POLL_S, self.poll_jobs)

    def _fill_table(self) -> None:
        table = self.query_one("#jobs-table", DataTable)
        keys = [row.entry.job_id for row in self.rows]
        cells = {row.entry.job_id: self._cells(row) for row in self.rows}
        if [r.value for r in table.rows] != keys:
            table.clear()
            for key in keys:
                table.add_row(*cells[key], key=key)
            if self.job_id in keys:
                table.move_cursor(row=keys.index(self.job_id), animate=False)
            return
        for key in keys:
            for column, cell in zip(table.columns, cells[key]):
                table.update_cell(key, column, cell)

    @staticmethod
    def _cells(row) -> tuple[object, ...]:  # type: ignore[no-untyped-def]
        status = row.status if row.problem is None else f"{row.status}?"
        host = row.entry.host if row.launched_here else f"{row.entry.host} (ext)"  # not launched by crafter-tui
        return (row.entry.job_id[-20:], host, Text(status, style=STATUS_STYLE.get(row.status, "")),
                row.entry.model[:18], (row.entry.fine_tuned_model or row.entry.error or "")[-30:])

    def action_refresh(self) -> None:
        self.poll_jobs()

    @on(DataTable.RowHighlighted, "#jobs-table")
    def _job_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value and event.row_key.value != self.job_id:
            self.select_job(event.row_key.value)

    # ---- the selected job ---------------------------------------------------------------
    def select_job(self, job_id: str) -> None:
        self.job_id = job_id
        self.detail, self.metrics, self.events, self.status = None, [], [], None
        self._draw_events()
        self._schedule_chart()
        self.follow_job(job_id)

    @work(exclusive=True, exit_on_error=False, group="job-follow", name="following the job")
    async def follow_job(self, job_id: str) -> None:
        """Follow the selected job until it ends; a failed poll is reported and retried, never the end
        of monitoring (a host that hiccups once must not leave the screen frozen on a stale state)."""
        while job_id == self.job_id:
            try:
                await self._follow(job_id)
                return
            except Exception as exc:  # noqa: BLE001 - shown, then retried
                if job_id != self.job_id:
                    return
                self.host_state(self._host_of(job_id), str(exc))
                await asyncio.sleep(WATCH_INTERVAL_S)

    def _host_of(self, job_id: str) -> str:
        return next((row.entry.host for row in self.rows if row.entry.job_id == job_id), "the job's host")

    async def _follow(self, job_id: str) -> None:
        detail = await (await self.finetune_service()).detail(job_id)
        if job_id != self.job_id:
            return
        self.host_state(detail.entry.host, None)
        self.detail = detail
        self.metrics = list(detail.metrics)
        self.events = list(detail.events)
        self.status = detail.info.status
        self._draw_detail()
        if detail.info.done:
            return
        seen = {event.id for event in self.events}
        async for event in (await self.finetune_service()).watch(job_id, interval=WATCH_INTERVAL_S):
            if job_id != self.job_id:
                return
            if event.kind == "metrics":
                self.metrics.append(event.point)
                self._schedule_chart()
            elif event.kind == "message" and event.event.id not in seen:
                self.events.append(event.event)
                self._draw_events()
            elif event.kind in ("status", "finished"):
                self.status = event.info.status
                if self.detail is not None:
                    self.detail.info = event.info
                self._draw_settings()
        self.detail = await (await self.finetune_service()).detail(job_id)  # final checkpoints and model name
        if job_id == self.job_id:
            self.metrics = list(self.detail.metrics)
            self._draw_detail()
            self.poll_jobs()

    def _draw_progress(self) -> None:
        """Step N/total, epoch, tokens/s and ETA of the selected job, from its metrics and events."""
        from crafter_tui.tui.widgets.job_progress import job_progress

        bar = self.query_one("#job-progress", ProgressBar)
        label = self.query_one("#job-progress-text", Static)
        progress = job_progress(self.detail, self.metrics, self.events, now=time.time())
        if progress is None:
            bar.update(total=None, progress=0)
            label.update(Text("no progress reported yet", style="dim"))
            return
        bar.update(total=progress.total or None, progress=progress.step)
        label.update(progress.describe())

    def _draw_detail(self) -> None:
        self._draw_settings()
        self._draw_events()
        self._schedule_chart()
        text = Text()
        if self.detail is not None and self.detail.checkpoints:
            text.append("checkpoints\n", style="bold")
            for checkpoint in self.detail.checkpoints:
                loss = checkpoint.metrics.get("train_loss")
                text.append(f"step {checkpoint.step:>5}  {'' if loss is None else f'loss {loss:.3f}  '}", style="cyan")
                text.append(f"{checkpoint.model}\n")
        else:
            text.append("no checkpoints yet", style="dim")
        self.query_one("#job-checkpoints-text", Static).update(text)

    def _draw_settings(self) -> None:
        if self.detail is None:
            return
        entry, info = self.detail.entry, self.detail.info
        text = Text()
        text.append(f"{entry.job_id}", style="bold")
        text.append(f"  on {entry.host}  ")
        text.append(info.status, style=STATUS_STYLE.get(info.status, "bold"))
        text.append(f"\nbase {info.model}   result {info.fine_tuned_model or '-'}")
        if info.trained_tokens:
            text.append(f"   trained tokens {info.trained_tokens:,}")
        hyper = ", ".join(f"{k}={v}" for k, v in (info.hyperparameters or entry.hyperparameters).items())
        text.append(f"\n{hyper or 'default hyperparameters'}")
        text.append(f"\ndata {entry.training_path or entry.training_file_id or '?'}")
        if info.error:
            text.append(f"\nerror: {info.error}", style="bold red")
        self.query_one("#job-settings", Static).update(text)

    def _draw_events(self) -> None:
        text = Text()
        for event in self.events[-EVENTS_SHOWN:][::-1]:
            stamp = datetime.fromtimestamp(event.created_at).strftime("%H:%M:%S")
            text.append(f"{stamp} ", style="dim")
            text.append(f"{event.message}\n", style="red" if event.level == "error" else "")
        self.query_one("#job-events-text", Static).update(text or Text("no events yet", style="dim"))

    def _schedule_chart(self) -> None:
        """Coalesce redraws: however many points arrive, the charts redraw at most every 250 ms."""
        if not self._chart_pending:
            self._chart_pending = True
            self.set_timer(CHART_REDRAW_S, self._draw_charts)

    def _draw_charts(self) -> None:
        self._chart_pending = False
        self.chart_draws += 1
        self._draw_progress()
        by_step = {point.step: point for point in self.metrics}
        steps = sorted(by_step)
        for chart_id, names in (("#loss-chart", LOSS_SERIES), ("#accuracy-chart", ACCURACY_SERIES)):
            series = {}
            for name in names:
                xs = [float(s) for s in steps if getattr(by_step[s], name) is not None]
                if xs:
                    series[name.replace("_mean_token_accuracy", "").replace("_loss", "")] = (
                        xs, [float(getattr(by_step[int(x)], name)) for x in xs])
            self.query_one(chart_id, SeriesChart).set_series(series)

    # ---- actions ------------------------------------------------------------------------
    def action_cancel_job(self) -> None:
        if self.job_id is None:
            self.notify("select a job first", severity="warning")
            return
        from crafter_tui.tui.screens.confirm import ConfirmScreen

        job_id = self.job_id
        info = self.detail.info if self.detail is not None and self.detail.entry.job_id == job_id else None
        if info is not None and info.done:
            self.notify(f"job {job_id} has already ended ({info.status})", severity="warning")
            return
        where = f"step {self.metrics[-1].step}" if self.metrics else "its current state"
        self.app.push_screen(ConfirmScreen(f"Cancel fine-tune job {job_id} at {where}? Its training so far is "
                                           "lost.", yes="Cancel the job", no="Keep it running"),
                             lambda yes: self.cancel_job(job_id) if yes else None)

    @work(exclusive=True, exit_on_error=False, group="job-cancel", name="cancelling the job")
    async def cancel_job(self, job_id: str) -> None:
        info = await (await self.finetune_service()).cancel(job_id)
        self.notify(f"job {job_id}: {info.status}")
        self.poll_jobs()

    def action_launch(self) -> None:
        from crafter_tui.tui.screens.job_form import LaunchJobScreen

        last_export = getattr(self.app, "last_export", None)
        self.app.push_screen(LaunchJobScreen(self.workbench.config, str(last_export or "sft.jsonl"),
                                             initial=self._last_request), self._launch)

    def _launch(self, request: object) -> None:
        if request is not None:
            self._last_request = request
            self.launch_job(request)

    async def _local_service_offered(self) -> bool:
        """The local fine-tune service answers, or the user agreed to start it (and the console stops it on
        quit); never started behind the user's back."""
        from crafter_tui.finetune.local_service import is_up, service_dir
        from crafter_tui.tui.screens.confirm import ConfirmScreen

        config = self.workbench.config
        url = config.finetune.local_url
        if await asyncio.to_thread(is_up, url):
            return True
        folder = service_dir(config)
        if not await self.app.push_screen_wait(ConfirmScreen(
                f"No fine-tune service answers at {url}. Start one here (data in {folder}); the console stops it "
                "when it quits?", yes="Start it", no="Don't")):
            return False
        self.query_one("#jobs-status", Static).update(f"starting the fine-tune service at {url}…")
        _, started = await (await self.finetune_service()).ensure_local_service()
        if started:
            self.workbench.started_services.append((folder / "serve.pid", url))
        return True

    def _reopen_form(self, request: object, error: str) -> None:
        """A failed launch gives the form back with every value the user typed and the reason under it."""
        from crafter_tui.tui.screens.job_form import LaunchJobScreen

        self.app.push_screen(LaunchJobScreen(self.workbench.config, initial=request, error=error),
                             self._launch)

    @work(exclusive=True, exit_on_error=False, group="job-launch", name="launching the job")
    async def launch_job(self, request) -> None:  # type: ignore[no-untyped-def]
        status = self.query_one("#jobs-status", Static)
        progress = self.query_one("#jobs-progress", ProgressBar)
        progress.display = True
        progress.update(total=None)
        try:
            if request.backend == "local" and not await self._local_service_offered():
                self._reopen_form(request, f"no fine-tune service answers at {self.app.config.finetune.local_url}"
                                  " (not started)")  # type: ignore[attr-defined]
                return
            status.update("checking the dataset…")
            prepared = await (await self.finetune_service()).prepare(request)
            estimate = prepared.estimate
            status.update(f"{estimate.examples:,} examples, {estimate.total_tokens:,} tokens; uploading…")
            entry = await (await self.finetune_service()).launch(request, prepared)
        except Exception as exc:  # noqa: BLE001 - shown under the form, which comes back with its values
            status.update(Text(f"launch failed: {exc}", style="red"))
            self._reopen_form(request, f"launch failed: {exc}")
            return
        finally:
            progress.display = False
        self._last_request = None
        status.update(Text(f"launched {entry.job_id} on {entry.host}", style="green"))
        self.notify(f"job {entry.job_id} launched")
        self.job_id = None
        self.select_job(entry.job_id)
        self.poll_jobs()

    def action_evaluate(self) -> None:
        """Open the evaluation form (episodes, seeds, difficulty); it binds the model's card itself."""
        model = self.detail.info.fine_tuned_model if self.detail is not None else None
        if not model:
            self.notify("the selected job has no fine-tuned model yet", severity="warning")
            return
        from crafter_tui.tui.screens.eval_form import EvalForm

        entry = self.detail.entry  # type: ignore[union-attr]
        self.app.push_screen(EvalForm(self.workbench.config, model),
                             lambda binding: self.evaluate(entry, model, binding) if binding is not None else None)

    @work(exclusive=True, exit_on_error=False, group="job-eval", name="evaluating the model")
    async def evaluate(self, entry, model: str, binding) -> None:  # type: ignore[no-untyped-def]
        """Play an eval rollout with the fine-tuned model, as its model card says and on the host that serves
        it, and register it (an evaluation whose every episode failed is not registered)."""
        await self.workbench.aservice("evaluation")  # imports it off the event loop
        from crafter_tui.services.evaluation import EvalRequest, EvaluationService
        from crafter_tui.services.model_cards import serving

        spec, eval_config = binding.spec, binding.config
        name = f"eval-{(entry.suffix or entry.job_id)}".replace(":", "-")[:60]
        request = EvalRequest(experiment=name, spec=spec, difficulties=[spec.difficulty])
        status = self.query_one("#jobs-status", Static)
        progress = self.query_one("#jobs-progress", ProgressBar)
        progress.display = True
        progress.update(total=spec.episodes, progress=0)
        started = time.perf_counter()
        try:
            async with serving(binding):
                async for event in EvaluationService(eval_config).run_eval(request):
                    if event.kind == "rollout" and event.event.kind == "episode_finished":
                        progress.advance(1)
                    elif event.kind == "instance_started":
                        status.update(f"evaluating {model} on {event.difficulty}…")
                    elif event.kind == "eval_finished":
                        experiment = event.experiment
                        took = time.perf_counter() - started
                        status.update(Text(f"experiment {experiment.name}@{experiment.version}: "
                                           f"{len(experiment.episodes)} episodes in {took:.0f}s "
                                           "(compare it on screen 4)", style="green"))
                        self.notify(f"evaluation registered as {experiment.name}@{experiment.version}")
        except Exception as exc:
            # e.g. every episode failed: nothing was registered, and the status line says why
            status.update(Text(f"evaluation of {model} not registered: {exc}", style="bold red"))
            raise  # and the worker's error becomes a notification
        finally:
            progress.display = False
