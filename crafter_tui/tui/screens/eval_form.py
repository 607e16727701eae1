"""The evaluation form of Jobs ``e``: episodes, seed, steps and difficulty of the eval rollout of a fine-tuned
model, played as its model card says.

The form binds the model itself (``services.model_cards.bind_model``): a value that contradicts the card (an
observation format or history the model was not trained with) is refused here, under the form, exactly as
``crafter-tui eval --model`` refuses it, and the form stays open with its values.
"""

from __future__ import annotations

from typing import get_args

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, Static

from crafter_tui.config import AppConfig, Difficulty, ObservationFormat
from crafter_tui.errors import UserError, first_validation_error
from crafter_tui.tui.screens.form import FormScreen

AS_CARD = "as its card says"


class EvalForm(FormScreen[object]):
    """Returns a ``services.model_cards.Binding`` for the eval rollout (None when cancelled)."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="evalform.cancel"),
                Binding("ctrl+s", "submit", "Evaluate", id="evalform.submit")]
    ERROR_ID = "eval-form-error"
    OK_ID = "eval-ok"

    def __init__(self, config: AppConfig, model: str) -> None:
        super().__init__()
        self.config = config
        self.model = model

    def compose(self) -> ComposeResult:
        ev = self.config.eval
        with Vertical(id="eval-form", classes="form"):
            yield Label(f"Evaluate {self.model}", classes="title")
            with Grid(classes="form-grid"):
                yield Label("episodes")
                yield Input(str(ev.episodes), id="eval-episodes", type="integer", compact=True)
                yield Label("first seed")
                yield Input(str(ev.seed), id="eval-seed", type="integer", compact=True)
                yield Label("max steps")
                yield Input(str(ev.max_steps), id="eval-max_steps", type="integer", compact=True)
                yield Label("difficulty")
                yield Select([(d, d) for d in get_args(Difficulty)], value=ev.difficulty, allow_blank=False,
                             id="eval-difficulty", compact=True)
                yield Label("observation")
                yield Select([(AS_CARD, AS_CARD), *((o, o) for o in get_args(ObservationFormat))], value=AS_CARD,
                             allow_blank=False, id="eval-observation", compact=True)
                yield Label("history turns")
                yield Input("", placeholder=AS_CARD, id="eval-history_turns", type="integer", valid_empty=True,
                            compact=True)
            yield Static("", id="eval-form-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Evaluate", variant="primary", id="eval-ok")
                yield Button("Cancel", id="eval-cancel")

    def on_mount(self) -> None:
        self.query_one("#eval-episodes", Input).focus()

    def _int(self, name: str) -> int | None:
        text = self.query_one(f"#eval-{name}", Input).value.strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{name.replace('_', ' ')}: not a whole number ({text!r})") from None

    def build(self) -> object:
        """The bound spec (card applied, host routed); ValueError names the bad field or the contradiction."""
        from crafter_tui.rollout.spec import RolloutSpec
        from crafter_tui.services.model_cards import bind_model

        observation = self.query_one("#eval-observation", Select).value
        given = {"observation": None if observation == AS_CARD else observation,
                 "history_turns": self._int("history_turns")}
        overrides = {"episodes": self._int("episodes"), "seed": self._int("seed"),
                     "max_steps": self._int("max_steps"), "difficulty": self.query_one("#eval-difficulty", Select).value}
        if overrides["episodes"] is None:
            raise ValueError("episodes: required")
        try:
            spec = RolloutSpec.from_config(self.config, agent="openai", model=self.model, **overrides,
                                           **{k: v for k, v in given.items() if v is not None})
            return bind_model(spec, self.config, given, where="evaluation form")
        except ValidationError as exc:
            field, message = first_validation_error(exc, default_field="form")
            raise ValueError(f"{field}: {message}") from None
        except UserError as exc:
            raise ValueError(str(exc)) from None
