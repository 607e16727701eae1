"""Terminal rendering of rollout events and results (rich), shared by rollout and eval."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crafter_tui.rollout.events import EpisodeFinished, EpisodeProgress, RolloutEvent, RunStarted

if TYPE_CHECKING:
    from crafter_tui.services.rollouts import RunResult


class RolloutProgress:
    """A progress bar over episodes (and env steps) on stderr; silent when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
            console=Console(file=sys.stderr), transient=False, disable=not enabled)
        self._task = None
        self._steps: dict[int, int] = {}
        self._finished = 0
        self._achievements = 0

    def __enter__(self) -> "RolloutProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def on_event(self, event: RolloutEvent) -> None:
        if isinstance(event, RunStarted):
            self._task = self._progress.add_task(event.run_id, total=event.pending, detail="")
        elif isinstance(event, EpisodeProgress):
            self._steps[event.episode] = event.step
            self._refresh()
        elif isinstance(event, EpisodeFinished):
            self._finished += 1
            self._achievements += event.summary.num_achievements
            self._steps[event.summary.episode] = event.summary.steps
            self._refresh(advance=1)

    def _refresh(self, advance: int = 0) -> None:
        if self._task is None:
            return
        mean = self._achievements / self._finished if self._finished else 0.0
        detail = f"{sum(self._steps.values())} steps, {mean:.1f} achievements/episode"
        self._progress.update(self._task, advance=advance, detail=detail)


def render_run_summary(result: "RunResult") -> None:
    """The end-of-run statistics as the original guide promised them, and more."""
    stats = result.stats
    console = Console()
    console.print(f"[bold]Run[/bold] {result.run_id}  ({result.record.agent} / {result.record.model}, "
                  f"{result.record.difficulty})")
    console.print(f"traces: {result.run_dir}", soft_wrap=True)
    if stats.failed:
        causes = ", ".join(f"{cause} {count}" for cause, count in sorted(stats.failed_by_cause.items()))
        console.print(f"[bold red]{stats.failed} failed episode(s)[/] ({causes}; first, {stats.first_failure}): "
                      "left out of every figure below", soft_wrap=True)
    if not stats.episodes:
        console.print("No scored episodes." if stats.failed else "No finished episodes.")
        return
    overview = Table(show_header=False, box=None)
    overview.add_row("episodes", str(stats.episodes) + (f" scored, {stats.failed} failed" if stats.failed else ""))
    overview.add_row("achievements / episode",
                     f"mean {stats.mean_achievements:.2f}, median {stats.median_achievements:.1f}, "
                     f"std {stats.std_achievements:.2f}")
    overview.add_row("Crafter score", f"{stats.crafter_score:.2f}")
    overview.add_row("progression", f"{100 * (stats.progression or 0):.1f}% (unique achievements / 22)")
    overview.add_row("episode length", f"mean {stats.mean_steps:.1f} steps")
    overview.add_row("termination", ", ".join(f"{k} {v}" for k, v in sorted(stats.termination_reasons.items())))
    overview.add_row("invalid actions", str(stats.invalid_actions))
    overview.add_row("tokens", f"{stats.prompt_tokens} prompt, {stats.completion_tokens} completion")
    overview.add_row("wall time", f"{result.wall_s:.1f} s")
    console.print(overview)
    rates = Table("achievement", "success", title="Success rate per achievement")
    for name, rate in sorted(stats.success_rates.items(), key=lambda item: -item[1]):
        rates.add_row(name, f"{100 * rate:5.1f}%")
    console.print(rates)
