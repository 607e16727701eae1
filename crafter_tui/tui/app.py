"""The console: ``crafter-tui`` with no command.

Start-up must paint within a second, so this module imports only Textual and the config;
each screen module (and the services behind it: DuckDB, the trainer client, statistics) is
imported when its screen is first shown.
"""

from __future__ import annotations

import asyncio
import importlib
from importlib.resources import files
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from crafter_tui.config import AppConfig
from crafter_tui.tui.base import SCREENS
from crafter_tui.tui.services import Services

#: The stylesheets ship as package data (``crafter_tui.styles``, the top-level styles/ folder), so
#: an installed wheel finds them exactly as a checkout does; never a path relative to the source tree.
try:
    STYLES = files("crafter_tui.styles")
except ModuleNotFoundError as missing:  # a source tree on sys.path that was never installed
    raise ImportError("crafter_tui.styles (the styles/ folder) is not installed: "
                      "run `pip install -e .` in the checkout") from missing

#: worker groups whose work quitting would interrupt: ``q`` asks first while one runs
WORK_GROUPS = frozenset({"rollout"})

#: mode -> (module under crafter_tui.tui.screens, class name)
SCREEN_CLASSES: dict[str, tuple[str, str]] = {
    "runs": ("runs", "RunsScreen"),
    "filter": ("filter", "FilterScreen"),
    "jobs": ("jobs", "JobsScreen"),
    "compare": ("compare", "CompareScreen"),
}


def _screen_factory(mode: str):  # type: ignore[no-untyped-def]
    """A zero-argument factory that imports the screen's module only when the mode is first used."""

    def build() -> Screen:
        module_name, class_name = SCREEN_CLASSES[mode]
        module = importlib.import_module(f"crafter_tui.tui.screens.{module_name}")
        return getattr(module, class_name)()

    return build


class CrafterApp(App[int]):
    """The Crafter workbench console: runs, filter tuning, fine-tune jobs, comparisons."""

    TITLE = "crafter-tui"
    CSS_PATH = [Path(str(STYLES / "app.tcss")), Path(str(STYLES / "screens.tcss"))]
    MODES = {mode: _screen_factory(mode) for mode, _ in SCREENS}
    BINDINGS = [
        *(Binding(str(index), f"app.switch_mode('{mode}')", label.split(" ", 1)[1], id=f"nav.{mode}")
          for index, (mode, label) in enumerate(SCREENS, start=1)),
        Binding("question_mark,f1", "help", "Help", id="app.help"),
        Binding("ctrl+t", "cycle_theme", "Theme", show=False, id="app.theme"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(self, config: AppConfig | None = None, *, start_mode: str = "runs") -> None:
        super().__init__()
        self.config = config or AppConfig()
        self.start_mode = start_mode
        self.services = Services(self.config)
        self.last_export: Path | None = None  # the filter screen's last export (the job form's default data)
        self.started_services: list[tuple[Path, str]] = []  # (pid file, URL) of services this console started

    def on_mount(self) -> None:
        self._apply_preferences()
        self.switch_mode(self.start_mode)

    def _apply_preferences(self) -> None:
        """Theme and remapped keys from ``[tui]`` of the config; a bad value is a notice, not a crash."""
        theme = self.config.tui.theme
        if theme in self.available_themes:
            self.theme = theme
        else:
            self.notify(f"unknown theme {theme!r} in [tui].theme; known: {', '.join(sorted(self.available_themes))}",
                        severity="warning", timeout=8)
        if self.config.tui.keymap:
            self.set_keymap(dict(self.config.tui.keymap))

    def service(self, name: str) -> object:
        """The shared service ``name`` (runs, rollouts, traces, dataset, finetune, evaluation), built once;
        typed access is ``self.services.<name>``."""
        return self.services.get(name)

    async def aservice(self, name: str) -> object:
        """``service(name)``, built in a thread: importing DuckDB, SciPy or the OpenAI SDK takes
        a second or more, which must not freeze the screen that asked."""
        if self.services.is_built(name):
            return self.services.get(name)
        return await asyncio.to_thread(self.services.get, name)

    def on_unmount(self) -> None:
        self.services.close()
        if self.started_services:
            from crafter_tui.finetune.local_service import stop_service

            for pid_file, url in self.started_services:  # what the console started, it stops
                stop_service(pid_file, url, grace_s=5.0)

    def running_work(self) -> list[str]:
        """What the console started that quitting would interrupt (rollouts launched from it)."""
        return [worker.name or worker.group for worker in self.workers
                if worker.group in WORK_GROUPS and worker.is_running]

    async def action_quit(self) -> None:
        """Quit, after a yes/no question while a rollout started here is still playing."""
        running = self.running_work()
        if not running:
            self.exit()
            return
        from crafter_tui.tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(ConfirmScreen(f"Still running: {', '.join(running)}. Quitting interrupts it "
                                       "(the run can be resumed later). Quit anyway?", yes="Quit"), answered)

    def screenshot_folder(self) -> Path:
        """Where screenshots go: ~/Downloads when it exists, else the console's data folder (created), so the
        palette's "Screenshot" never fails on a machine without a Downloads folder."""
        downloads = Path.home() / "Downloads"
        if downloads.is_dir():
            return downloads
        folder = Path(self.config.storage.data_dir).expanduser() / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        folder = Path(path) if path else self.screenshot_folder()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.deliver_screenshot(filename, str(folder))
        except OSError as exc:
            self.notify(f"screenshot not saved: {folder}: {exc.strerror or exc}", severity="error")
            return
        self.notify(f"screenshot saved in {folder}", timeout=4)

    def action_help(self) -> None:
        from crafter_tui.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_cycle_theme(self) -> None:
        themes = sorted(self.available_themes)
        self.theme = themes[(themes.index(self.theme) + 1) % len(themes)] if self.theme in themes else themes[0]
        self.notify(f"theme: {self.theme}")


def run_console(config: AppConfig) -> int:
    """Entry point of ``crafter-tui`` with no command; the caller loads the configuration (the console
    knows nothing of argv: the CLI and ``python -m crafter_tui.tui`` each read their own)."""
    result = CrafterApp(config).run()
    return int(result or 0)
