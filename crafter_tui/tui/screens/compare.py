"""The compare screen (waiting for its service: services.evaluation)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer, Static

from crafter_tui.tui.base import NavTabs, WorkbenchScreen


class CompareScreen(WorkbenchScreen):
    MODE = "compare"

    def compose(self) -> ComposeResult:
        yield NavTabs(self.MODE)
        yield Static("Not available yet: this screen needs services.evaluation, which is not in this build.",
                     classes="notice")
        yield Footer()
