"""The rollout form: agent, model, episodes, concurrency, difficulty, seed, steps.

Values are validated by ``RolloutSpec`` itself (the same model the CLI builds), and the
first bad field is named under the form instead of closing it.
"""

from __future__ import annotations

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, Static

from crafter_tui.config import AppConfig
from crafter_tui.errors import first_validation_error
from crafter_tui.tui.screens.form import FormScreen
from crafter_tui.rollout.spec import RolloutSpec

AGENTS = ("scripted", "random", "openai")
DIFFICULTIES = ("peaceful", "easy", "normal", "hard")
NUMBER_FIELDS = ("episodes", "concurrency", "seed", "max_steps")


class LaunchRolloutScreen(FormScreen[RolloutSpec]):
    """Returns a validated ``RolloutSpec`` (or None when cancelled)."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="launch.cancel"),
                Binding("ctrl+s", "submit", "Launch", id="launch.submit")]

    ERROR_ID = "launch-error"
    OK_ID = "launch-ok"

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
            field, message = first_validation_error(exc, default_field="form")
            raise ValueError(f"{field}: {message}") from None

    def build(self) -> RolloutSpec:
        return self.spec()
