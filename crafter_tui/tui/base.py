"""What every console screen shares: the navigation tabs, palette commands and error reporting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from functools import partial

from textual.app import App
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen
from textual.widgets import Tab, Tabs
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from crafter_tui.tui.app import CrafterApp

#: (mode name, tab label) in navigation order; the keys 1-4 follow this order.
SCREENS: tuple[tuple[str, str], ...] = (
    ("runs", "1 Runs"),
    ("filter", "2 Filter"),
    ("jobs", "3 Jobs"),
    ("compare", "4 Compare"),
)


@dataclass(frozen=True)
class PaletteCommand:
    """A command the palette offers while its screen is shown."""

    name: str
    help: str
    run: Callable[[], object]


def go_to_commands(app: App) -> list[PaletteCommand]:
    """"Go to <screen>" for every screen of the console (the palette's way of pressing 1-4)."""
    return [PaletteCommand(f"Go to {label.split(' ', 1)[1]}", f"show the {label.split(' ', 1)[1]} screen (key "
                           f"{label.split(' ', 1)[0]})", partial(app.switch_mode, mode))
            for mode, label in SCREENS]


#: mode -> the screen's name for people (help, titles)
SCREEN_TITLES: dict[str, str] = {mode: label.split(" ", 1)[1] for mode, label in SCREENS}


class ScreenCommands(Provider):
    """Offers the commands of the screen the palette was opened from (screen-aware palette)."""

    def _commands(self) -> list[PaletteCommand]:
        screen = self.screen
        own = screen.palette_commands() if isinstance(screen, WorkbenchScreen) else []
        return [*own, *go_to_commands(self.app)]

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.name, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), command.run, help=command.help)


class NavTabs(Tabs, can_focus=False):
    """The screen switcher at the top of every screen (click a tab or press 1-4); never takes focus."""

    def __init__(self, active: str) -> None:
        super().__init__(*(Tab(label, id=f"nav-{mode}") for mode, label in SCREENS), active=f"nav-{active}")
        self.mode = active

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        event.stop()
        target = (event.tab.id or "").removeprefix("nav-")
        if target and target != self.mode and self.app.current_mode != target:
            self.app.switch_mode(target)


class WorkbenchScreen(Screen):
    """Base of the four console screens."""

    COMMANDS = {ScreenCommands}
    MODE = ""

    @property
    def workbench(self) -> CrafterApp:
        """The app, typed: its config, services and shared state without ``type: ignore``."""
        return cast("CrafterApp", self.app)

    def palette_commands(self) -> list[PaletteCommand]:
        """Commands of this screen for the palette (override)."""
        return []

    def command(self, name: str, help: str, action: str) -> PaletteCommand:
        """A palette command that runs one of this screen's actions."""
        return PaletteCommand(name, help, partial(self.run_action, action))

    def on_screen_resume(self) -> None:
        self.call_after_refresh(self._mark_tab)  # a screen resumed at once after its creation has no tabs yet

    def _mark_tab(self) -> None:
        for tabs in self.query(NavTabs):
            if tabs.query(f"#nav-{self.MODE}"):
                tabs.active = f"nav-{self.MODE}"

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A failed worker is a notification, never a crashed console."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{event.worker.name or 'task'} failed: {error}", severity="error", timeout=8)
