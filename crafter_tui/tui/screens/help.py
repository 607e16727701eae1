"""The help screen: every key of the console, as currently mapped."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from crafter_tui.tui.base import SCREEN_TITLES


def key_name(app: App, key: str, binding: Binding) -> str:
    """``?`` for ``question_mark``, ``.`` for ``full_stop``, ``Ctrl+S`` for ``ctrl+s``: what the user presses."""
    return binding.key_display or app.get_key_display(binding.with_key(key))


def bindings_table(app: App, title: str, node_bindings: list[tuple[str, Binding]]) -> Table:
    table = Table(title=title, title_justify="left", expand=True, show_edge=False)
    table.add_column("key", style="bold yellow", no_wrap=True)
    table.add_column("does")
    table.add_column(Text("binding id (for [tui.keymap])"), style="dim")  # Text: the brackets are not markup
    for key, binding in node_bindings:
        table.add_row(key_name(app, key, binding), binding.description or binding.action, binding.id or "")
    return table


class HelpScreen(ModalScreen[None]):
    """Lists the keys of the app and of the screen it was opened from; escape closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.from_screen = screen

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static(Text("crafter-tui — keys (remap them in [tui.keymap] of crafter_config.toml "
                              "by binding id)", style="bold"))
            yield Static(bindings_table(self.app, "Everywhere", self._collect_bindings(self.app)))
            title = SCREEN_TITLES.get(getattr(self.from_screen, "MODE", ""), "This screen")
            yield Static(bindings_table(self.app, f"{title} screen", self._collect_bindings(self.from_screen)))
            yield Static(Text("ctrl+p opens the command palette (commands of this screen first); "
                              "tabs and table rows can be clicked.", style="dim"))

    @staticmethod
    def _collect_bindings(node) -> list[tuple[str, Binding]]:  # type: ignore[no-untyped-def]
        seen: list[tuple[str, Binding]] = []
        for key, bindings in node._bindings.key_to_bindings.items():
            for binding in bindings:
                if binding.system:
                    continue
                seen.append((key, binding))
        return seen
