"""The filter screen (waiting for its service: services.traces and services.dataset)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer, Static

from crafter_tui.tui.base import NavTabs, WorkbenchScreen


class FilterScreen(WorkbenchScreen):
    MODE = "filter"

    def compose(self) -> ComposeResult:
        yield NavTabs(self.MODE)
        yield Static("Not available yet: this screen needs services.traces and services.dataset, which is not in this build.",
                     classes="notice")
        yield Footer()
