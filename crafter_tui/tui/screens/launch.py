"""The rollout form: agent, model, episodes, concurrency, difficulty, seed, steps.

Values are validated by ``RolloutSpec`` itself (the same model the CLI builds), and the
first bad field is named under the form instead of closing it.
"""

from __future__ import annotations

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from crafter_tui.config import AppConfig
from crafter_tui.rollout.spec import RolloutSpec

AGENTS = ("scripted", "random", "openai")
DIFFICULTIES = ("peaceful", "easy", "normal", "hard")
NUMBER_FIELDS = ("episodes", "concurrency", "seed", "max_steps")


class LaunchRolloutScreen(ModalScreen[RolloutSpec | None]):
    """Returns a validated ``RolloutSpec`` (or None when cancelled)."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="launch.cancel"),
                Binding("ctrl+s", "submit", "Launch", id="launch.submit")]

    def __init__(self, config: AppConfig) -> None:
        super().__init__()
        self.config = config

    def compose(self) -> ComposeResult:
        ev = self.config.eval
        with Vertical(id="launch-form", classes="form"):
            yield Label("Launch a rollout", classes="title")
            with Grid(classes="form-grid"):
                yield Label("agent")
                yield Select([(a, a) for a in AGENTS], value=ev.agent, allow_blank=False, id="agent", compact=True)
                yield Label("model")
                yield Input(ev.model_name, id="model", compact=True)
                yield Label("episodes")
                yield Input(str(ev.episodes), id="episodes", type="integer", compact=True)
                yield Label("concurrency")
                yield Input(str(ev.concurrency), id="concurrency", type="integer", compact=True)
                yield Label("difficulty")
                yield Select([(d, d) for d in DIFFICULTIES], value=ev.difficulty, allow_blank=False, id="difficulty", compact=True)
                yield Label("seed")
                yield Input(str(ev.seed), id="seed", type="integer", compact=True)
                yield Label("max steps")
                yield Input(str(ev.max_steps), id="max_steps", type="integer", compact=True)
            yield Static("", id="launch-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Launch", variant="primary", id="launch-ok")
                yield Button("Cancel", id="launch-cancel")

    def spec(self) -> RolloutSpec:
        """The spec the form describes (raises ValueError naming the bad field)."""
        values: dict[str, object] = {
            "agent": self.query_one("#agent", Select).value,
            "model": self.query_one("#model", Input).value.strip() or None,
            "difficulty": self.query_one("#difficulty", Select).value,
        }
        for name in NUMBER_FIELDS:
            text = self.query_one(f"#{name}", Input).value.strip()
            if not text:
                raise ValueError(f"{name}: required")
            try:
                values[name] = int(text)
            except ValueError:
                raise ValueError(f"{name}: not a whole number ({text!r})") from None
        try:
            return RolloutSpec.from_config(self.config, **values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "form"
            raise ValueError(f"{field}: {first['msg']}") from None

    def action_submit(self) -> None:
        try:
            spec = self.spec()
        except ValueError as exc:
            self.query_one("#launch-error", Static).update(str(exc))
            return
        self.dismiss(spec)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch-ok":
            self.action_submit()
        else:
            self.dismiss(None)
