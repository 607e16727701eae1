"""The jobs screen (waiting for its service: services.finetune)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer, Static

from crafter_tui.tui.base import NavTabs, WorkbenchScreen


class JobsScreen(WorkbenchScreen):
    MODE = "jobs"

    def compose(self) -> ComposeResult:
        yield NavTabs(self.MODE)
        yield Static("Not available yet: this screen needs services.finetune, which is not in this build.",
                     classes="notice")
        yield Footer()
