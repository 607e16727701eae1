"""Runs & live episode: the runs list, a run's episodes, and the episode view.

Data comes from ``services.runs`` (files read incrementally, so runs of other processes
show up and progress live) and ``services.rollouts`` (launching). Every file read runs in a
thread worker that only posts a message; the next poll is scheduled after the last one has
been drawn, so polls never pile up, and nothing polls while the screen is hidden.
"""

from __future__ import annotations

import asyncio
import bisect
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Label, ProgressBar, Static
from textual.worker import Worker, WorkerState

from crafter_tui.rollout.events import EpisodeFinished, RolloutEvent, RunFinished, RunStarted
from crafter_tui.services.runs import EpisodeFrames, EpisodeRow, EpisodeTail, RunInfo, RunsService
from crafter_tui.traces.schema import FAILED_TERMINATIONS, StepRecord, TurnRecord
from crafter_tui.tui.base import NavTabs, PaletteCommand, WorkbenchScreen
from crafter_tui.tui.widgets.episode import AchievementsView, InventoryView, MapView, Panel, VitalsBars
from crafter_tui.tui.widgets.scrubber import StepScrubber

RUNS_POLL_S = 1.0
TAIL_POLL_S = 0.2
TURNS_SHOWN = 6
STATUS_STYLE = {"running": "bold green", "finished": "cyan", "failed": "bold red", "interrupted": "yellow",
                "stale": "bold yellow"}


class RunsScanned(Message):
    """A poll of the trace folder finished (runs, and the episodes of the selected run)."""

    def __init__(self, runs: list[RunInfo], run_dir: Path | None, episodes: list[EpisodeRow]) -> None:
        super().__init__()
        self.runs, self.run_dir, self.episodes = runs, run_dir, episodes


class FramesRead(Message):
    """New steps/turns of the episode on view."""

    def __init__(self, tail: EpisodeTail, frames: EpisodeFrames) -> None:
        super().__init__()
        self.tail, self.frames = tail, frames


class RolloutUpdate(Message):
    """An event of a rollout this console launched; a newer one replaces a queued older one."""

    def __init__(self, event: RolloutEvent) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        return (isinstance(message, RolloutUpdate) and self.event.kind == "episode_progress"
                and message.event.kind == "episode_progress")


def elide_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, its middle replaced by ``…``: run ids differ at both ends
    (the agent/model prefix and the timestamp suffix), so neither end may be cut."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}…{text[len(text) - (width - 1 - head):]}"


class EpisodeView(Vertical):
    """Map, vitals, inventory, achievements, scrubber and the agent's turns of one episode."""

    def compose(self) -> ComposeResult:
        yield Panel(id="episode-title")
        with Horizontal(id="episode-top"):
            yield MapView(id="map")
            with Vertical(id="vitals-col"):
                yield VitalsBars(id="vitals")
                yield Label("Inventory", classes="section")
                yield InventoryView(id="inventory")
            with VerticalScroll(id="achievements-box"):
                yield AchievementsView(id="achievements")
        yield StepScrubber(id="scrubber")
        yield Panel(id="turns")


class RunsScreen(WorkbenchScreen):
    """Runs (live status and progress), episodes of a run, and the episode view."""

    MODE = "runs"
    BINDINGS = [
        Binding("n", "launch", "New rollout", id="runs.launch"),
        Binding("f", "toggle_follow", "Follow live", id="runs.follow"),
        Binding("r", "refresh", "Refresh", id="runs.refresh"),
        Binding("x", "cancel_rollout", "Stop rollout", id="runs.cancel"),
        Binding("comma", "step(-1)", "Step back", id="runs.step_back"),
        Binding("full_stop", "step(1)", "Step fwd", id="runs.step_forward"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunInfo] = []
        self.run_dir: Path | None = None
        self.episodes: list[EpisodeRow] = []
        self.tail: EpisodeTail | None = None
        self.steps: list[StepRecord] = []
        self.turns: list[TurnRecord] = []
        self.first_unlock: dict[str, int] = {}  # achievement -> index of the step that unlocked it
        self.position = 0
        self.follow = True
        self.launched_run: Path | None = None
        self.rollout_total = 0  # episodes the launched rollout plays
        self.rollout_done = 0  # of them, finished
        self.rollout_failed = 0  # of them, failed (agent_error, env_error, timeout)
        self.rollout_ended = False  # its run_finished event arrived
        self._auto_episodes: set[int] = set()  # episode rows the screen (not the user) moved the cursor to
        self.scans = 0
        self.frames_drawn = 0
        self._scan_busy = False  # a scan is in flight: its handler schedules the next one
        self._scan_timer: object | None = None
        self._tail_busy = False
        self._tail_timer: object | None = None

    @property
    def service(self) -> RunsService:
        return self.workbench.services.runs

    def compose(self) -> ComposeResult:
        yield NavTabs(self.MODE)
        with Horizontal(id="runs-body"):
            with Vertical(id="runs-left"):
                yield Label("Runs", classes="section")
                yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
                yield Label("Episodes", classes="section")
                yield DataTable(id="episodes-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="launch-status")
                yield ProgressBar(id="launch-progress", show_eta=False)
            yield EpisodeView(id="episode-view")
        yield Footer()

    def on_mount(self) -> None:
        runs = self.query_one("#runs-table", DataTable)
        runs.add_columns("run", "status", "agent/model", "episodes", "ach")
        episodes = self.query_one("#episodes-table", DataTable)
        episodes.add_columns("ep", "seed", "state", "steps", "ach", "reward")
        self.query_one("#launch-progress").display = False
        self._draw_step()
        self._poll_runs()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self._poll_runs()
        if self.tail is not None and not self.tail.finished and not self._tail_busy:
            self._poll_tail()

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            self.command("Launch a rollout", "open the rollout form (agent, model, episodes, ...)", "launch"),
            self.command("Follow live on/off", "keep the episode view on the newest step", "toggle_follow"),
            self.command("Refresh runs", "rescan the trace folder now", "refresh"),
            self.command("Stop the launched rollout", "cancel the rollout started here", "cancel_rollout"),
        ]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Notify (base class), and keep a poll chain alive when one of its reads failed."""
        super().on_worker_state_changed(event)
        if event.state != WorkerState.ERROR or not self.is_current:
            return
        if event.worker.group == "runs-scan":
            self._scan_busy = False
            self._scan_timer = self.set_timer(RUNS_POLL_S * 2, self._poll_runs)
        elif event.worker.group == "episode-tail":
            self._tail_busy = False
            self._tail_timer = self.set_timer(TAIL_POLL_S * 5, self._poll_tail)

    @on(Worker.StateChanged)
    def _rollout_worker_ended(self, event: Worker.StateChanged) -> None:
        """The status panel says how a launched rollout really ended: a failure before or during the run, or
        a stop by ``x``, is never left showing "running"."""
        if event.worker.group != "rollout" or event.state not in (WorkerState.ERROR, WorkerState.CANCELLED,
                                                                  WorkerState.SUCCESS):
            return
        status = self.query_one("#launch-status", Static)
        done = f"{self.rollout_done}/{self.rollout_total} episodes"
        if event.state == WorkerState.ERROR:
            status.update(Text(f"rollout failed after {done}: {event.worker.error}", style="bold red"))
        elif event.state == WorkerState.CANCELLED or not self.rollout_ended:
            status.update(Text(f"rollout stopped (interrupted) after {done}", style="yellow"))
        else:
            return
        self.query_one("#launch-progress", ProgressBar).display = False
        self._poll_runs()

    def rollout_running(self) -> bool:
        """A rollout started from this console is still playing (quitting would interrupt it)."""
        return any(worker.group == "rollout" and worker.is_running for worker in self.workers)

    # ---- runs polling -------------------------------------------------------------------
    def _poll_runs(self) -> None:
        """Start a scan unless one is in flight; one chain of polls only, however often asked."""
        if self._scan_timer is not None:
            self._scan_timer.stop()  # type: ignore[attr-defined]
            self._scan_timer = None
        if not self._scan_busy:
            self._scan_busy = True
            self._scan(self.run_dir)

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs-scan", name="scanning runs")
    def _scan(self, run_dir: Path | None) -> None:
        runs = self.service.index.scan()
        episodes = self.service.index.episodes(run_dir) if run_dir is not None else []
        self.post_message(RunsScanned(runs, run_dir, episodes))

    def on_runs_scanned(self, message: RunsScanned) -> None:
        self._scan_busy = False
        self.scans += 1
        self.runs = message.runs
        self._fill_runs_table()
        if message.run_dir is not None and message.run_dir == self.run_dir:
            self.episodes = message.episodes
            self._fill_episodes_table()
            self._follow_playing()
        elif self.run_dir is None and self.runs:
            self._select_run(self.runs[0].run_dir)
        if self.is_current:
            self._scan_timer = self.set_timer(RUNS_POLL_S, self._poll_runs)

    def _fill_runs_table(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        keys = [str(info.run_dir) for info in self.runs]
        if [row.value for row in table.rows] != keys:
            table.clear()
            for info in self.runs:
                table.add_row(*self._run_cells(info), key=str(info.run_dir))
            if self.run_dir is not None and str(self.run_dir) in keys:
                table.move_cursor(row=keys.index(str(self.run_dir)), animate=False)
            return
        for info in self.runs:
            for column, cell in zip(table.columns, self._run_cells(info)):
                table.update_cell(str(info.run_dir), column, cell)

    @staticmethod
    def _run_cells(info: RunInfo) -> tuple[object, ...]:
        mean = "-" if info.mean_achievements is None else f"{info.mean_achievements:.1f}"
        return (elide_middle(info.run_id, 24), Text(info.status, style=STATUS_STYLE.get(info.status, "")),
                elide_middle(f"{info.agent}/{info.model}", 20), f"{info.episodes_finished}/{info.episodes}", mean)

    def _fill_episodes_table(self) -> None:
        table = self.query_one("#episodes-table", DataTable)
        keys = [str(row.episode) for row in self.episodes]
        if [row.value for row in table.rows] != keys:
            cursor = table.cursor_row
            table.clear()
            for row in self.episodes:
                table.add_row(*self._episode_cells(row), key=str(row.episode))
            if self.episodes:
                row = min(cursor, len(self.episodes) - 1)
                self._auto_episodes.add(self.episodes[row].episode)
                table.move_cursor(row=row, animate=False)
            return
        for row in self.episodes:
            for column, cell in zip(table.columns, self._episode_cells(row)):
                table.update_cell(str(row.episode), column, cell)

    @staticmethod
    def _episode_cells(row: EpisodeRow) -> tuple[object, ...]:
        if not row.finished:
            state = Text("playing", style="bold green")
        elif row.failed:
            state = Text(f"✗ {row.termination}", style="bold red")
        else:
            state = Text(row.termination or "?", style="cyan")
        return (row.episode, row.seed, state, row.steps, row.achievements, f"{row.reward:.1f}")

    @on(DataTable.RowHighlighted, "#runs-table")
    def _run_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None and Path(event.row_key.value) != self.run_dir:
            self._select_run(Path(event.row_key.value))

    def _select_run(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.episodes = []
        self.query_one("#episodes-table", DataTable).clear()
        self._close_episode()
        if self._scan_busy:  # the scan in flight is for another run: its result is ignored, rescan after
            self._scan_timer = self.set_timer(0.05, self._poll_runs)
        else:
            self._poll_runs()

    @on(DataTable.RowHighlighted, "#episodes-table")
    def _episode_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is None or self.run_dir is None:
            return
        episode = int(event.row_key.value)
        chosen_by_user = episode not in self._auto_episodes
        self._auto_episodes.clear()  # highlights arrive in order: older programmatic moves are done
        row = next((row for row in self.episodes if row.episode == episode), None)
        if (chosen_by_user and self.follow and row is not None and row.finished
                and any(not other.finished for other in self.episodes)):
            self.follow = False  # the user went back to a finished episode: stay there
            self.notify("follow live off (press f to follow the playing episode)", timeout=3)
        if self.tail is None or self.tail.episode != episode or self.tail.run_dir != self.run_dir:
            self.open_episode(self.run_dir, episode)

    def _follow_playing(self) -> None:
        """Follow live moves on: once the episode on view has ended, show the first one still playing."""
        if not self.follow or self.run_dir is None or (self.tail is not None and not self.tail.finished):
            return
        playing = [row.episode for row in self.episodes if not row.finished]
        if not playing or (self.tail is not None and self.tail.episode == playing[0]):
            return
        target = playing[0]
        table = self.query_one("#episodes-table", DataTable)
        self._auto_episodes.add(target)
        table.move_cursor(row=[row.episode for row in self.episodes].index(target), animate=False)
        self.open_episode(self.run_dir, target)

    # ---- episode view -------------------------------------------------------------------
    def open_episode(self, run_dir: Path, episode: int) -> None:
        """Show ``episode`` of ``run_dir`` from its first step and follow it while it is played."""
        self.tail = self.service.tail(run_dir, episode)
        self.steps, self.turns, self.position, self.first_unlock = [], [], 0, {}
        self._draw_step()
        self._poll_tail()

    def _close_episode(self) -> None:
        self.tail = None
        self.steps, self.turns, self.position, self.first_unlock = [], [], 0, {}
        self._draw_step()

    def _poll_tail(self) -> None:
        if self._tail_timer is not None:
            self._tail_timer.stop()  # type: ignore[attr-defined]
            self._tail_timer = None
        if self.tail is not None:
            self._tail_busy = True
            self._read_frames(self.tail)

    @work(thread=True, exclusive=True, exit_on_error=False, group="episode-tail", name="reading episode")
    def _read_frames(self, tail: EpisodeTail) -> None:
        import crafter_tui.world.rules  # noqa: F401  (imported here, off the event loop, before the first draw)
        import crafter_tui.world.text_obs  # noqa: F401  (the map legend's symbol names)

        self.post_message(FramesRead(tail, tail.poll()))

    def on_frames_read(self, message: FramesRead) -> None:
        if message.tail is not self.tail:
            return  # an episode no longer on view (its replacement's read is already scheduled)
        self._tail_busy = False
        frames = message.frames
        if frames.restarted:
            self.steps, self.turns, self.first_unlock = [], [], {}
        was_at_end = self.position >= len(self.steps) - 1
        for index, step in enumerate(frames.steps, start=len(self.steps)):
            for name in step.new_achievements:
                self.first_unlock.setdefault(name, index)
        self.steps.extend(frames.steps)
        self.turns.extend(frames.turns)
        if frames.steps and (self.follow and was_at_end or len(self.steps) == len(frames.steps)):
            self.position = len(self.steps) - 1 if self.follow else 0
        self._draw_step()
        if not frames.finished and self.is_current:
            self._tail_timer = self.set_timer(TAIL_POLL_S, self._poll_tail)
        elif frames.finished and self.follow and self.is_current:
            self._poll_runs()  # move on to a playing episode without waiting for the next scan

    def _draw_step(self) -> None:
        self.frames_drawn += 1
        step = self.steps[self.position] if self.steps else None
        view = self.query_one(EpisodeView)
        view.query_one("#map", MapView).show(step.view if step else None)
        view.query_one("#vitals", VitalsBars).show(step)
        view.query_one("#inventory", InventoryView).show(step)
        unlocked = {name for name, index in self.first_unlock.items() if index <= self.position}
        view.query_one("#achievements", AchievementsView).show(unlocked, set(step.new_achievements) if step else set(),
                                                               any_step=step is not None)
        view.query_one("#scrubber", StepScrubber).set_range(len(self.steps), self.position)
        view.query_one("#episode-title", Panel).update(self._title(step))
        view.query_one("#turns", Panel).update(self._turns_text(step))

    def _title(self, step: StepRecord | None) -> Text:
        """Episode and its state first (never cut off on a narrow screen), then the step on view."""
        if self.tail is None:
            return Text("Select a run and an episode.", style="dim")
        text = Text(f"episode {self.tail.episode} ", style="bold", no_wrap=True, overflow="ellipsis")
        summary = self.tail.summary
        if summary is not None and summary.termination in FAILED_TERMINATIONS:
            text.append(f"[✗ {summary.termination}]", style="bold red")
        elif self.tail.finished:
            text.append(f"[{summary.termination if summary is not None else 'finished'}]", style="cyan")
        else:
            text.append(f"[live{', following' if self.follow else ''}]", style="green")
        if step is not None:
            text.append(f"  seed {step.seed}  step {step.step}  action {step.action_name}  reward {step.reward:+.1f}")
        return text

    def _turns_shown(self) -> int:
        """As many turns as the log has room for (about two lines each), never fewer than TURNS_SHOWN."""
        return max(TURNS_SHOWN, self.query_one("#turns", Panel).size.height // 2)

    def _turns_text(self, step: StepRecord | None) -> Text:
        text = Text()
        summary = self.tail.summary if self.tail is not None else None
        if summary is not None and summary.termination in FAILED_TERMINATIONS:
            text.append(f"✗ episode failed ({summary.termination}): {summary.error or 'no error text recorded'}",
                        style="bold red")
            if summary.invalid_actions:
                text.append(f"  · {summary.invalid_actions} invalid turns", style="red")
            text.append("\n")
        # turns arrive in order: the last few up to this step's turn, without scanning them all; with no
        # step (every turn invalid, or the agent failed at once) the newest turns still show their errors
        end = (bisect.bisect_right(self.turns, step.turn, key=lambda turn: turn.turn) if step is not None
               else len(self.turns))
        shown = self.turns[max(0, end - self._turns_shown()):end]
        if step is None and not shown and self.tail is not None and self.tail.finished and not text:
            text.append("this episode has no steps and no turns", style="dim")
        for turn in reversed(shown):
            current = step is not None and turn.turn == step.turn
            text.append(f"turn {turn.turn} ", style="bold yellow" if current else "bold")
            text.append(f"(step {turn.step}) ", style="dim")
            text.append(", ".join(turn.actions) or "(no action)", style="cyan")
            if not turn.valid:
                text.append(f"  invalid: {turn.error}", style="red")
            if turn.new_achievements:
                text.append("  ★ " + ", ".join(turn.new_achievements), style="bold yellow")
            text.append("\n")
            if turn.reasoning:
                text.append(f"  {turn.reasoning}\n", style="italic")
        return text

    def on_step_scrubber_changed(self, message: StepScrubber.Changed) -> None:
        self.position = message.position
        self.follow = self.follow and message.position == len(self.steps) - 1
        self._draw_step()

    def action_step(self, delta: int) -> None:
        if self.steps:
            self.position = max(0, min(self.position + delta, len(self.steps) - 1))
            self.follow = self.follow and self.position == len(self.steps) - 1
            self._draw_step()

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        if self.follow and self.steps:
            self.position = len(self.steps) - 1
        self._draw_step()
        self.notify(f"follow live {'on' if self.follow else 'off'}", timeout=2)

    def action_refresh(self) -> None:
        self._poll_runs()

    # ---- launching ----------------------------------------------------------------------
    def action_launch(self) -> None:
        from crafter_tui.tui.screens.launch import LaunchRolloutScreen

        self.app.push_screen(LaunchRolloutScreen(self.workbench.config), self._launch)

    def _launch(self, spec: object) -> None:
        if spec is None:
            return
        progress = self.query_one("#launch-progress", ProgressBar)
        progress.display = True
        progress.update(total=getattr(spec, "episodes", None), progress=0)
        self.rollout_total, self.rollout_done, self.rollout_failed = int(getattr(spec, "episodes", 0) or 0), 0, 0
        self.rollout_ended = False
        self.query_one("#launch-status", Static).update("starting rollout…")
        self.follow = True
        self.run_rollout(spec)

    @work(thread=True, exclusive=True, exit_on_error=False, group="rollout", name="rollout")
    def run_rollout(self, spec: object) -> None:
        """Plays the rollout through RolloutService on its own event loop, off the console's."""
        from textual.worker import get_current_worker

        worker = get_current_worker()

        async def consume() -> None:
            from crafter_tui.services.model_cards import bind_model, serving
            from crafter_tui.services.rollouts import RolloutService

            # a model trained here plays as its card says, on the host that serves it
            binding = bind_model(spec, self.workbench.config)  # type: ignore[arg-type]
            async with serving(binding):
                stream = RolloutService(binding.config).run(binding.spec)
                try:
                    async for event in stream:
                        self.post_message(RolloutUpdate(event))
                        if worker.is_cancelled:
                            break
                finally:
                    await stream.aclose()

        asyncio.run(consume())

    def on_rollout_update(self, message: RolloutUpdate) -> None:
        event = message.event
        status = self.query_one("#launch-status", Static)
        progress = self.query_one("#launch-progress", ProgressBar)
        if isinstance(event, RunStarted):
            self.launched_run = event.run_dir
            self.rollout_total = event.pending
            progress.update(total=event.pending, progress=0)
            status.update(f"rollout {elide_middle(event.run_id, 30)}: running")
            self._select_run(event.run_dir)
            self._poll_runs()
        elif isinstance(event, EpisodeFinished):
            self.rollout_done += 1
            progress.advance(1)
            if event.summary.termination in FAILED_TERMINATIONS:
                self.rollout_failed += 1
                status.update(Text(f"running · {self.rollout_failed} failed episode(s), last: "
                                   f"{event.summary.termination}: {event.summary.error or '?'}", style="red"))
        elif isinstance(event, RunFinished):
            self.rollout_ended = True
            failed = f", {self.rollout_failed} failed" if self.rollout_failed else ""
            style = "cyan" if event.status == "finished" and not self.rollout_failed else "bold red"
            status.update(Text(f"rollout {elide_middle(event.run_id, 30)}: {event.status} "
                               f"({self.rollout_done}/{self.rollout_total} episodes{failed}) in {event.wall_s:.1f}s",
                               style=style))
            progress.display = False
            self.notify(f"rollout {event.status}{failed}", timeout=4,
                        severity="information" if style == "cyan" else "warning")
            self._poll_runs()

    def action_cancel_rollout(self) -> None:
        cancelled = self.workers.cancel_group(self, "rollout")
        self.notify("stopping the rollout…" if cancelled else "no rollout launched from here is running", timeout=3)
