"""Terminal rendering of pipeline events (shared by ``pipeline`` and ``demo``)."""

from __future__ import annotations

import sys

from rich.console import Console

from crafter_tui.services.pipeline import PipelineEvent, StageFinished, StageProgress, StageStarted


class PipelineView:
    """One line per stage start/finish and throttled progress lines, on stderr."""

    def __init__(self, enabled: bool = True) -> None:
        self.console = Console(file=sys.stderr, highlight=False)
        self.enabled = enabled
        self._last: dict[str, float] = {}

    def on_event(self, event: PipelineEvent) -> None:
        if not self.enabled:
            return
        if isinstance(event, StageStarted):
            self.console.print(f"[bold cyan]>> {event.stage}[/] {event.detail}")
        elif isinstance(event, StageProgress):
            self._progress(event)
        elif isinstance(event, StageFinished):
            if event.skipped:
                self.console.print(f"[dim]== {event.stage}: already done ({_brief(event.result)})[/]")
            else:
                self.console.print(f"[green]== {event.stage}[/] done in {event.wall_s:.1f} s  {_brief(event.result)}")

    def _progress(self, event: StageProgress) -> None:
        import time

        now = time.monotonic()
        final = event.total is not None and event.done >= event.total
        if not final and now - self._last.get(event.stage, 0.0) < 2.0:
            return
        self._last[event.stage] = now
        total = f"/{event.total:g}" if event.total else ""
        self.console.print(f"   {event.stage}: {event.done:g}{total} {event.message}")


def _brief(result: dict) -> str:
    shown = {k: v for k, v in result.items() if k not in ("finished",)}
    return ", ".join(f"{k}={v}" for k, v in shown.items())
